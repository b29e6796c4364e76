package qcow2

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"tandem/internal/testenv"
)

// TestQemuImgAgrees converts a sparse raw image with data spread over
// several L2 regions and has qemu-img check the result and compare it
// with the raw image byte for byte.
func TestQemuImgAgrees(t *testing.T) {
	testenv.RequireTool(t, "qemu-img")
	dir := t.TempDir()
	raw, q := filepath.Join(dir, "d.raw"), filepath.Join(dir, "d.qcow2")
	f, err := os.Create(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1200 << 20); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 70000, 5 << 20, 600 << 20, 1200<<20 - 100} {
		if _, err := f.WriteAt([]byte("tandem data "+filepath.Base(raw)), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := Convert(q, raw); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "check", q).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img check: %v\n%s", err, out)
	}
	if out, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, q).CombinedOutput(); err != nil || !strings.Contains(string(out), "identical") {
		t.Fatalf("qemu-img compare: %v\n%s", err, out)
	}
	st, _ := os.Stat(q)
	if st.Size() > 1<<20 {
		t.Errorf("qcow2 of a nearly empty disk is %d bytes, want under 1 MiB", st.Size())
	}
}
