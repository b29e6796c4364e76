package grub

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"

	"tandem/internal/grubenv"
)

// Config is what grub.cfg needs to know.
type Config struct {
	// SerialUnit is the serial port number GRUB talks on (ttyS<unit>).
	SerialUnit int
	// Speed is the serial speed.
	Speed int
	// Cmdline is the kernel command line shared by both slots.
	Cmdline string
	// TimeoutSec is how long the menu waits.
	TimeoutSec int
}

// Slot paths on the boot partition.
func SlotDir(slot string) string    { return "/slot-" + slot }
func KernelPath(slot string) string { return SlotDir(slot) + "/vmlinuz" }
func InitrdPath(slot string) string { return SlotDir(slot) + "/initramfs.img" }

// The A/B logic, after RAUC's and Mender's GRUB integrations: a slot with
// tries left has one taken away (saved before booting it), a slot that has
// none left is abandoned for the other one. PID 1 empties tandem_tries once
// the slot reaches ready. If the kernel cannot even be loaded, the second
// menu entry (the other slot) is GRUB's fallback.
var cfgTemplate = template.Must(template.New("grub.cfg").Parse(`# tandem boot configuration: generated, do not edit.
serial --unit={{.SerialUnit}} --speed={{.Speed}}
terminal_input serial console
terminal_output serial console
set timeout={{.TimeoutSec}}
set default=0
set fallback=1
# PID 1 writes password.cfg from the node config's console.password: then
# only GRUB's superuser may edit an entry or use the command line (where
# kernel arguments such as tandem.rescue=1 could be added); booting the
# entries as they are needs no password (--unrestricted).
if [ -f ${prefix}/password.cfg ]; then source ${prefix}/password.cfg; fi

load_env {{.VarSlot}} {{.VarTries}} {{.VarFailed}}
if [ "${{"{"}}{{.VarSlot}}{{"}"}}" != B ]; then set {{.VarSlot}}=A; fi
if [ "${{"{"}}{{.VarTries}}{{"}"}}" = 0 ]; then
	echo "tandem: slot ${{"{"}}{{.VarSlot}}{{"}"}} used up its tries, falling back"
	set {{.VarFailed}}=${{"{"}}{{.VarSlot}}{{"}"}}
	if [ "${{"{"}}{{.VarSlot}}{{"}"}}" = A ]; then set {{.VarSlot}}=B; else set {{.VarSlot}}=A; fi
	set {{.VarTries}}=
	save_env {{.VarSlot}} {{.VarTries}} {{.VarFailed}}
{{- range .Decrements}}
elif [ "${{"{"}}{{$.VarTries}}{{"}"}}" = {{.From}} ]; then
	set {{$.VarTries}}={{.To}}
	save_env {{$.VarTries}}
{{- end}}
fi
if [ "${{"{"}}{{.VarSlot}}{{"}"}}" = A ]; then set tandem_other=B; else set tandem_other=A; fi

menuentry "tandem slot ${{"{"}}{{.VarSlot}}{{"}"}}" --unrestricted {
	echo "tandem: booting slot ${{"{"}}{{.VarSlot}}{{"}"}}"
	linux /slot-${{"{"}}{{.VarSlot}}{{"}"}}/vmlinuz {{.Cmdline}} tandem.slot=${{"{"}}{{.VarSlot}}{{"}"}}
	initrd /slot-${{"{"}}{{.VarSlot}}{{"}"}}/initramfs.img
}
menuentry "tandem slot ${tandem_other} (fallback)" --unrestricted {
	echo "tandem: booting fallback slot ${tandem_other}"
	linux /slot-${tandem_other}/vmlinuz {{.Cmdline}} tandem.slot=${tandem_other} tandem.fallback=1
	initrd /slot-${tandem_other}/initramfs.img
}
`))

type decrement struct{ From, To int }

// Render returns grub.cfg.
func (c Config) Render() ([]byte, error) {
	if strings.ContainsAny(c.Cmdline, "\"\n$;") {
		return nil, fmt.Errorf("grub.cfg: kernel command line %q has characters GRUB would interpret", c.Cmdline)
	}
	var decs []decrement
	for i := 9; i >= 1; i-- {
		decs = append(decs, decrement{i, i - 1})
	}
	var b bytes.Buffer
	err := cfgTemplate.Execute(&b, struct {
		Config
		VarSlot, VarTries, VarFailed string
		Decrements                   []decrement
	}{c, grubenv.VarSlot, grubenv.VarTries, grubenv.VarFailed, decs})
	return b.Bytes(), err
}
