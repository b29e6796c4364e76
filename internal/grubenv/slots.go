package grubenv

import "fmt"

// The variables of the A/B scheme, read by grub.cfg.
const (
	// VarSlot names the slot GRUB boots: "A" or "B".
	VarSlot = "tandem_slot"
	// VarTries counts the boots a new slot has left; empty once the slot
	// is marked good. GRUB decrements it before each boot and falls back to
	// the other slot when it reaches 0.
	VarTries = "tandem_tries"
	// VarFailed names the slot GRUB or PID 1 fell back from, for status.
	VarFailed = "tandem_failed"
)

// Other returns the slot that is not s.
func Other(s string) string {
	if s == "A" {
		return "B"
	}
	return "A"
}

// Initial is the environment of a freshly built image: slot A, good.
func Initial() Env { return Env{VarSlot: "A"} }

// TrySlot sets the environment to boot slot s on trial with tries boots.
func (e Env) TrySlot(s string, tries int) error {
	if s != "A" && s != "B" {
		return fmt.Errorf("slot %q: want A or B", s)
	}
	if tries < 1 || tries > 9 {
		return fmt.Errorf("tries %d: want 1..9", tries)
	}
	e[VarSlot] = s
	e[VarTries] = fmt.Sprint(tries)
	delete(e, VarFailed)
	return nil
}

// MarkGood records that the running slot s reached ready: it stays the
// boot slot with no trial counting.
func (e Env) MarkGood(s string) {
	e[VarSlot] = s
	delete(e, VarTries)
}

// Revert makes the boot slot the other one than failed, marked good, and
// records failed.
func (e Env) Revert(failed string) {
	e[VarSlot] = Other(failed)
	delete(e, VarTries)
	e[VarFailed] = failed
}
