package pid1

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"tandem/internal/atomicfile"
	"tandem/internal/nodeimage"
)

// Where PID 1 sees the seed and where it moves it.
var (
	bootSeedDir = "/boot" + nodeimage.SeedDir
	permDir     = filepath.Dir(nodeimage.NodeConfigPerm) // /perm/tandem
)

// moveSeed moves the seed files from the boot partition into perm before
// settings are re-read, so a seeded node.yaml is in effect on this boot.
// It is a required step: a node that cannot apply the config it was given
// stops for rescue rather than run with another; the files stay on /boot,
// so nothing is lost and the next boot tries again.
func (in *Init) moveSeed(context.Context) error {
	if in.disk == nil {
		return nil // PXE, diskless: no boot partition
	}
	n, err := seedMover{write: atomicfile.Write, logf: in.log.Logf}.move(bootSeedDir, permDir)
	if n == 0 && err == nil {
		in.log.Logf("no seed files in %s", bootSeedDir)
	}
	return err
}

// seedMover moves every file under a seed directory to the same relative
// name under a destination directory: each is written there atomically
// (mode 0600), and only then removed from the seed directory, so a crash
// in between leaves it in both places and the next run replaces the copy
// with it again. A file already at the destination is replaced: the seed
// is newer by definition.
type seedMover struct {
	// write writes a file atomically (atomicfile.Write; a fake in tests).
	write func(path string, data []byte, perm os.FileMode) error
	logf  func(format string, args ...any)
}

// move moves the files under seed to dst and returns how many it moved.
// It stops at the first failure; the files not yet moved stay in seed.
// Emptied subdirectories of seed are removed, seed itself stays.
func (m seedMover) move(seed, dst string) (int, error) {
	files, dirs, err := seedFiles(seed)
	if err != nil || len(files) == 0 {
		return 0, err
	}
	for i, rel := range files {
		if err := m.moveOne(filepath.Join(seed, rel), filepath.Join(dst, rel)); err != nil {
			return i, err
		}
		m.logf("seed %s moved to %s", filepath.Join(seed, rel), filepath.Join(dst, rel))
	}
	slices.Reverse(dirs) // deepest first
	for _, d := range dirs {
		os.Remove(filepath.Join(seed, d)) // fails, harmlessly, if not empty
	}
	if len(dirs) > 0 {
		return len(files), syncDir(seed)
	}
	return len(files), nil
}

// seedFiles lists the regular files under seed and its subdirectories,
// relative to it, in lexical order. A missing seed directory has none.
func seedFiles(seed string) (files, dirs []string, err error) {
	err = filepath.WalkDir(seed, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(seed, p)
		switch {
		case rel == ".":
		case d.IsDir():
			dirs = append(dirs, rel)
		case d.Type().IsRegular():
			files = append(files, rel)
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("seed %s: %w", seed, err)
	}
	return files, dirs, nil
}

func (m seedMover) moveOne(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("seed %s: %w", src, err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return fmt.Errorf("seed %s: %w", src, err)
	}
	if err := m.write(dst, data, 0o600); err != nil {
		return fmt.Errorf("seed %s: %w", src, err)
	}
	// The removal is made durable at once: a seed file that came back
	// after a crash would replace what perm learned since.
	if err := os.Remove(src); err != nil {
		return fmt.Errorf("seed %s: moved to %s but not removed: %w", src, dst, err)
	}
	return syncDir(filepath.Dir(src))
}

// syncDir makes the removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("seed %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("seed %s: sync: %w", dir, err)
	}
	return nil
}
