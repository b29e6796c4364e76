package kmod

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"tandem/internal/testenv"
)

// writeModule writes a minimal ELF relocatable with a .modinfo section, as
// the kernel's modules have.
func writeModule(t *testing.T, path, depends string) {
	t.Helper()
	testenv.MkdirAll(t, filepath.Dir(path))
	if err := os.WriteFile(path, elfWithModinfo("license=GPL\x00depends="+depends+"\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestClosureOrdersDependenciesFirst(t *testing.T) {
	dir := t.TempDir()
	writeModule(t, filepath.Join(dir, "kernel/fs/ext4/ext4.ko"), "jbd2,mbcache,crc16")
	writeModule(t, filepath.Join(dir, "kernel/fs/jbd2/jbd2.ko"), "")
	writeModule(t, filepath.Join(dir, "kernel/fs/mbcache.ko"), "")
	writeModule(t, filepath.Join(dir, "kernel/drivers/net/virtio_net.ko"), "net_failover")
	writeModule(t, filepath.Join(dir, "kernel/drivers/net/net_failover.ko"), "failover")
	writeModule(t, filepath.Join(dir, "kernel/net/core/failover.ko"), "")
	testenv.WriteFile(t, filepath.Join(dir, "modules.builtin"), []byte("kernel/lib/crc16.ko\n"), 0o644)
	tree, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	order, dep, err := tree.Closure([]string{"ext4", "virtio-net"})
	if err != nil {
		t.Fatal(err)
	}
	want := "kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko kernel/fs/ext4/ext4.ko kernel/net/core/failover.ko kernel/drivers/net/net_failover.ko kernel/drivers/net/virtio_net.ko"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("Closure order = %s\nwant %s", got, want)
	}
	if !strings.Contains(string(dep), "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n") {
		t.Errorf("modules.dep lacks virtio_net's transitive deps:\n%s", dep)
	}
	_, _, err = tree.Closure([]string{"bonding"})
	if !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "bonding") {
		t.Errorf("Closure(bonding) = %v, want ErrUnknown naming bonding", err)
	}
}
