package grub

import (
	"bytes"
	"encoding/binary"
	"path/filepath"
	"testing"

	"tandem/internal/golden"
)

func TestConfigGolden(t *testing.T) {
	got, err := Config{SerialUnit: 1, Speed: 115200, Cmdline: "console=tty0 console=ttyS1,115200 panic=5", TimeoutSec: 1}.Render()
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, filepath.Join("testdata", "grub.cfg"), got)
}

func TestConfigRejectsInjection(t *testing.T) {
	if _, err := (Config{Cmdline: "quiet\"; reboot"}).Render(); err == nil {
		t.Fatal("Render with quote in cmdline = nil error, want error")
	}
}

func TestInstallBIOS(t *testing.T) {
	mbr := make([]byte, 512)
	mbr[0x1be] = 0xee // protective partition entry must survive
	mbr[510], mbr[511] = 0x55, 0xaa
	boot := bytes.Repeat([]byte{0xeb}, 512)
	core := make([]byte, 40*512)
	if err := InstallBIOS(mbr, boot, core, 2048); err != nil {
		t.Fatal(err)
	}
	if mbr[0] != 0xeb || mbr[0x1be] != 0xee || mbr[510] != 0x55 {
		t.Errorf("MBR code or partition table wrong: % x", mbr[0x1b0:0x1c0])
	}
	if got := binary.LittleEndian.Uint64(mbr[0x5c:]); got != 2048 {
		t.Errorf("kernel sector = %d, want 2048", got)
	}
	if mbr[0x66] != 0x90 || mbr[0x67] != 0x90 {
		t.Errorf("drive check not patched: % x", mbr[0x66:0x68])
	}
	l := core[500:512]
	if s, n, seg := binary.LittleEndian.Uint64(l), binary.LittleEndian.Uint16(l[8:]), binary.LittleEndian.Uint16(l[10:]); s != 2049 || n != 39 || seg != 0x820 {
		t.Errorf("blocklist = start %d len %d seg %#x, want 2049 39 0x820", s, n, seg)
	}
	if err := InstallBIOS(mbr, boot, core[:700], 2048); err == nil {
		t.Error("InstallBIOS(partial-sector core) = nil error, want error")
	}
}
