package disk

import (
	"fmt"
	"io"
	"os"

	"github.com/diskfs/go-diskfs"
)

// bootPartition is the boot/ESP partition's number in the table.
const bootPartition = 2

// ReadBootFile returns a file of the boot partition of the disk image (or
// disk) at path.
func ReadBootFile(path, name string) ([]byte, error) {
	d, err := diskfs.Open(path, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		return nil, err
	}
	defer d.Close()
	fs, err := d.GetFilesystem(bootPartition)
	if err != nil {
		return nil, fmt.Errorf("%s: boot partition: %w", path, err)
	}
	f, err := fs.OpenFile(name, os.O_RDONLY)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", path, name, err)
	}
	defer f.Close()
	return io.ReadAll(f)
}

// OverwriteBootFile replaces the content of an existing file of the boot
// partition in place; data must be exactly as long as the file, as GRUB's
// save_env needs of grubenv.
func OverwriteBootFile(path, name string, data []byte) error {
	old, err := ReadBootFile(path, name)
	if err != nil {
		return err
	}
	if len(old) != len(data) {
		return fmt.Errorf("%s: %s is %d bytes, new content %d: only same-size overwrites", path, name, len(old), len(data))
	}
	d, err := diskfs.Open(path, diskfs.WithOpenMode(diskfs.ReadWrite))
	if err != nil {
		return err
	}
	defer d.Close()
	fs, err := d.GetFilesystem(bootPartition)
	if err != nil {
		return fmt.Errorf("%s: boot partition: %w", path, err)
	}
	f, err := fs.OpenFile(name, os.O_RDWR)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", path, name, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("%s: write %s: %w", path, name, err)
	}
	return f.Close()
}
