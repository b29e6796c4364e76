package mail

import (
	"archive/tar"
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"tandem/internal/atomicfile"
	"tandem/internal/mailroot"
	"tandem/internal/tarx"
)

// maxOverlay bounds what the workload reads of the template's overlay
// into memory.
const maxOverlay = 64 << 20

// overlayFile is a file of the recipe's mail overlays.
type overlayFile struct {
	rel  string // below the root
	mode os.FileMode
	data []byte
}

// readOverlay reads the files below mailroot.OverlayDir in the template
// at path: the recipe's mail overlays (docs/mail.md, "Overlays").
func readOverlay(tpl string) ([]overlayFile, error) {
	f, err := os.Open(tpl)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	zr, err := zstd.NewReader(bufio.NewReaderSize(f, 1<<20), zstd.WithDecoderLowmem(true), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	var out []overlayFile
	total := 0
	err = tarx.Each(zr, func(name string, h *tar.Header, body io.Reader) error {
		rel, ok := strings.CutPrefix(path.Clean(name), mailroot.OverlayDir+"/")
		if !ok || h.Typeflag != tar.TypeReg {
			return nil
		}
		if !filepath.IsLocal(rel) {
			return fmt.Errorf("overlay entry %q leaves the root", name)
		}
		if total += int(h.Size); total > maxOverlay {
			return fmt.Errorf("the overlay holds more than %d MiB", maxOverlay>>20)
		}
		b, err := io.ReadAll(body)
		if err != nil {
			return err
		}
		out = append(out, overlayFile{rel: rel, mode: tarx.Mode(h.Mode).Perm(), data: b})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("mail: overlay in %s: %w", tpl, err)
	}
	return out, nil
}

// overlays holds the overlays read, by template path: reading one
// decompresses the whole template (seconds under TCG), which Prefetch
// does when the daemon starts so that a takeover's Start does not.
var overlays struct {
	sync.Mutex
	byPath map[string][]overlayFile
}

// readOverlayOnce reads the overlay of the template at tpl, or returns it
// from an earlier read.
func readOverlayOnce(tpl string) ([]overlayFile, error) {
	overlays.Lock()
	defer overlays.Unlock()
	if o, ok := overlays.byPath[tpl]; ok {
		return o, nil
	}
	o, err := readOverlay(tpl)
	if err != nil {
		return nil, err
	}
	if overlays.byPath == nil {
		overlays.byPath = map[string][]overlayFile{}
	}
	overlays.byPath[tpl] = o
	return o, nil
}

// Prefetch reads the template's overlay ahead of the first Start (the
// cluster daemon calls it at start, in the background); a failure is
// Start's to report. It runs at the workload's nice value on a thread of
// its own, which ends with it: the daemon's other threads run at a
// higher priority, and decompressing the template must not delay them.
func (w *Workload) Prefetch() {
	if w.Kind != mailroot.KindPostfixDovecot {
		return
	}
	runtime.LockOSThread()                                   // never unlocked: the niced thread exits with the goroutine
	_ = unix.Setpriority(unix.PRIO_PROCESS, 0, WorkloadNice) // 0: this thread; without it the read runs at the daemon's priority, no worse

	if tpl, err := w.templatePath(); err == nil {
		_, _ = readOverlayOnce(tpl) // Start reads it again and says what is wrong
	}
}

// loadOverlay reads the template's overlay once.
func (w *Workload) loadOverlay() error {
	if w.overlayRead {
		return nil
	}
	tpl, err := w.templatePath()
	if err != nil {
		return err
	}
	if w.overlay, err = readOverlayOnce(tpl); err != nil {
		return err
	}
	w.overlayRead = true
	if len(w.overlay) > 0 {
		w.logf("the template's overlay: %d files laid over the generated configuration", len(w.overlay))
	}
	return nil
}

// overlayHas reports whether the overlay has the file rel.
func (w *Workload) overlayHas(rel string) bool {
	for _, f := range w.overlay {
		if f.rel == rel {
			return true
		}
	}
	return false
}

// layOverlay writes the recipe's mail overlays over the root, after the
// generated configuration (which they may replace), each file atomically
// and root's; only files that differ are written.
func (w *Workload) layOverlay() error {
	for _, f := range w.overlay {
		p := filepath.Join(w.rootfs(), f.rel)
		if old, err := os.ReadFile(p); err == nil && bytes.Equal(old, f.data) {
			if st, err := os.Stat(p); err == nil && st.Mode().Perm() == f.mode {
				continue
			}
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fmt.Errorf("mail: overlay: %w", err)
		}
		if err := atomicfile.Write(p, f.data, f.mode); err != nil {
			return fmt.Errorf("mail: overlay %s: %w", f.rel, err)
		}
		if err := os.Chown(p, 0, 0); err != nil {
			return fmt.Errorf("mail: overlay %s: %w", f.rel, err)
		}
	}
	return nil
}
