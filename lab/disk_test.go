package lab

import (
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/disk"
	"github.com/diskfs/go-diskfs/filesystem"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"tandem/internal/nodeimage"
)

// testDisk makes a raw disk like an image's: a GPT whose second
// partition is the FAT32 tandem-boot one.
func testDisk(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	d, err := diskfs.Create(p, 80<<20, diskfs.SectorSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Partition(&gpt.Table{ProtectiveMBR: true, LogicalSectorSize: 512, PhysicalSectorSize: 512, Partitions: []*gpt.Partition{
		{Index: 1, Start: 2048, End: 4095, Type: gpt.BIOSBoot, Name: "tandem-bios"},
		{Index: 2, Start: 4096, End: 4096 + 70<<11 - 1, Type: gpt.EFISystemPartition, Name: nodeimage.PartBoot},
	}}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.CreateFilesystem(disk.FilesystemSpec{Partition: 2, FSType: filesystem.TypeFat32}); err != nil {
		t.Fatal(err)
	}
	return p
}

func readBootFile(t *testing.T, p, name string) (string, error) {
	t.Helper()
	d, err := diskfs.Open(p, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	fs, err := d.GetFilesystem(2)
	if err != nil {
		t.Fatal(err)
	}
	f, err := fs.OpenFile(path.Join(nodeimage.SeedDir, name), os.O_RDONLY)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	return string(b), err
}

func TestSeedDisk(t *testing.T) {
	p := testDisk(t)
	long := strings.Repeat("hostname: data-a\n", 1000) // several clusters
	if err := SeedDisk(p, map[string][]byte{"node.yaml": []byte(long), "cluster/ca.pem": []byte("CA")}); err != nil {
		t.Fatal(err)
	}
	// Seeding again replaces a file, shorter this time.
	if err := SeedDisk(p, map[string][]byte{"node.yaml": []byte("hostname: seeded\n")}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"node.yaml": "hostname: seeded\n", "cluster/ca.pem": "CA"} {
		if got, err := readBootFile(t, p, name); got != want || err != nil {
			t.Errorf("boot partition %s/%s = %q, %v; want %q", nodeimage.SeedDir, name, got, err, want)
		}
	}
	for _, bad := range []string{"../node.yaml", "/node.yaml", "a/./b", ""} {
		err := SeedDisk(p, map[string][]byte{bad: nil})
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("SeedDisk(%q) = %v, want an error naming the disk", bad, err)
		}
	}
}

func TestSeedDiskNotATandemDisk(t *testing.T) {
	p := filepath.Join(t.TempDir(), "blank.raw")
	if err := os.WriteFile(p, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := SeedDisk(p, map[string][]byte{"node.yaml": nil}); err == nil || !strings.Contains(err.Error(), p) {
		t.Errorf("SeedDisk(blank disk) = %v, want an error naming it", err)
	}
}
