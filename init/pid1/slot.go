package pid1

import (
	"errors"
	"os"

	"tandem/internal/grubenv"
)

const grubenvPath = "/boot/grub/grubenv"

// onTrial reports whether the booted slot is still on trial: GRUB counts
// its tries, or it was booted as the fallback entry.
func (in *Init) onTrial() bool {
	if in.slot == "" || in.disk == nil {
		return false
	}
	env, err := readEnv()
	if err != nil {
		return false
	}
	return env[grubenv.VarTries] != "" || env[grubenv.VarSlot] != in.slot
}

// markGood ends the trial of the running slot.
func (in *Init) markGood() error {
	if in.slot == "" || in.disk == nil {
		return nil
	}
	env, err := readEnv()
	if err != nil {
		return err
	}
	if env[grubenv.VarTries] == "" && env[grubenv.VarSlot] == in.slot {
		return nil
	}
	env.MarkGood(in.slot)
	in.log.Logf("slot %s marked good", in.slot)
	return writeEnv(env)
}

// revert makes GRUB boot the other slot next.
func (in *Init) revert() error {
	if in.disk == nil || in.slot == "" {
		return errors.New("no boot disk")
	}
	env, err := readEnv()
	if err != nil {
		return err
	}
	env.Revert(in.slot)
	in.log.Logf("slot %s failed: next boot uses slot %s", in.slot, env[grubenv.VarSlot])
	return writeEnv(env)
}

func readEnv() (grubenv.Env, error) {
	b, err := os.ReadFile(grubenvPath)
	if err != nil {
		return nil, err
	}
	return grubenv.Parse(b)
}

// writeEnv overwrites grubenv in place: GRUB's save_env needs the file to
// keep its size and its blocks, so it is not replaced by a rename. One
// 1024-byte write within one FAT cluster is as atomic as the disk's sector
// writes; a torn block fails grubenv.Parse and GRUB's load_env alike,
// which leaves GRUB on its defaults (slot A).
func writeEnv(env grubenv.Env) error {
	b, err := env.Encode()
	if err != nil {
		return err
	}
	f, err := os.OpenFile(grubenvPath, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(b, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
