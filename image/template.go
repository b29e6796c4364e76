package image

import (
	"bytes"
	"context"

	"tandem/image/disk"
	"tandem/image/overlay"
	"tandem/image/recipe"
	"tandem/image/workload"
)

// buildTemplate makes the mail workload's template (docs/mail.md): from
// Debian's packages for postfix-dovecot, the user's installer for zimbra.
// It goes into each slot directory of the boot partition, not into the
// initramfs, so a node reads it from disk when it creates the mail root.
// The recipe's mail overlays go into it (workload.OverlayDir).
func (b *builder) buildTemplate(ctx context.Context) error {
	w := b.r.Workload
	if w == nil {
		return nil
	}
	var buf bytes.Buffer
	switch w.Kind {
	case recipe.WorkloadZimbra:
		if err := workload.CopyInstaller(w.Installer, &buf); err != nil {
			return err
		}
	default:
		files, err := b.overlayFiles(overlay.Mail)
		if err != nil {
			return err
		}
		pkgs, err := workload.BuildPostfixDovecot(ctx, b.archive, &buf, workload.Options{Epoch: b.o.Epoch, Overlay: files, Logf: b.logf})
		if err != nil {
			return err
		}
		b.used = append(b.used, pkgs...)
	}
	b.template = buf.Bytes()
	b.logf("mail template (%s): %.1f MiB", w.Kind, float64(len(b.template))/(1<<20))
	return nil
}

// slotFiles are the files each slot directory carries besides the kernel
// and the initramfs.
func (b *builder) slotFiles() []disk.File {
	if b.template == nil {
		return nil
	}
	return []disk.File{{Name: workload.FileName(b.r.Workload.Kind), Data: b.template}}
}
