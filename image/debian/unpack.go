package debian

import (
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"tandem/internal/tarx"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Unpacked returns a directory holding the data of the .deb at debPath,
// unpacked once into the cache and reused after. Owners are not kept (no
// root needed); modes and symlinks are.
func (a *Archive) Unpacked(p Package, debPath string) (string, error) {
	dst := filepath.Join(a.cache, "unpacked", p.SHA256[:32])
	if _, err := os.Stat(dst); err == nil {
		return dst, nil
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dst), ".tmp-unpack-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if err := UnpackDeb(debPath, tmp); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dst); err != nil {
		// Another build sharing the cache unpacked it meanwhile.
		if _, serr := os.Stat(dst); serr == nil {
			return dst, nil
		}
		return "", fmt.Errorf("unpack %s: %w", p.Name, err)
	}
	return dst, nil
}

// UnpackDeb extracts the data archive of a .deb into dir.
func UnpackDeb(debPath, dir string) error {
	return WithData(debPath, func(r io.Reader) error {
		_, err := tarx.Extract(context.Background(), r, dir, tarx.Options{})
		return err
	})
}

// WithData calls fn with the uncompressed data.tar of the .deb at debPath;
// errors name the file.
func WithData(debPath string, fn func(io.Reader) error) error {
	f, err := os.Open(debPath)
	if err != nil {
		return err
	}
	defer f.Close()
	r := bufio.NewReader(f)
	magic := make([]byte, 8)
	if _, err := io.ReadFull(r, magic); err != nil || string(magic) != "!<arch>\n" {
		return fmt.Errorf("%s: not a Debian package (no ar header)", debPath)
	}
	for {
		name, size, err := arNext(r)
		if err != nil {
			return fmt.Errorf("%s: %w", debPath, err)
		}
		body := io.LimitReader(r, size)
		if strings.HasPrefix(name, "data.tar") {
			dec, err := decompressor(name, body)
			if err != nil {
				return fmt.Errorf("%s: %w", debPath, err)
			}
			if err := fn(dec); err != nil {
				return fmt.Errorf("%s: %w", debPath, err)
			}
			return nil
		}
		if _, err := io.Copy(io.Discard, body); err != nil {
			return err
		}
		if size%2 == 1 {
			if _, err := r.ReadByte(); err != nil {
				return fmt.Errorf("ar padding: %w", err)
			}
		}
	}
}

// arNext reads one ar member header and returns the member's name and size.
func arNext(r *bufio.Reader) (string, int64, error) {
	hdr := make([]byte, 60)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return "", 0, fmt.Errorf("no data.tar member: %w", err)
	}
	name := strings.TrimRight(strings.TrimSpace(string(hdr[0:16])), "/")
	size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
	if err != nil {
		return "", 0, fmt.Errorf("ar member %q: bad size: %w", name, err)
	}
	return name, size, nil
}

func decompressor(name string, r io.Reader) (io.Reader, error) {
	switch filepath.Ext(name) {
	case ".xz":
		return xz.NewReader(bufio.NewReaderSize(r, 1<<20))
	case ".zst":
		d, err := zstd.NewReader(r)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	case ".gz":
		return gzip.NewReader(r)
	case ".tar":
		return r, nil
	}
	return nil, fmt.Errorf("unsupported member %s", name)
}
