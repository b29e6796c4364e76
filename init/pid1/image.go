package pid1

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/u-root/u-root/pkg/kmodule"
	"golang.org/x/sys/unix"

	"tandem/init/settings"
	"tandem/internal/nodeimage"
)

func (in *Init) readImage(context.Context) error {
	f, err := os.Open(nodeimage.Path)
	if err != nil {
		return err
	}
	defer f.Close()
	in.image, err = nodeimage.Read(f)
	if err != nil {
		return err
	}
	in.log.Logf("image %s (role %s)", in.image.Name, in.image.Role)
	return nil
}

func (in *Init) readSettings(context.Context) error {
	s, err := settings.Load(strings.NewReader(in.cmdline), settings.PermFile, settings.ImageFile)
	if err != nil {
		return err
	}
	in.settings = s
	in.slot = s.GetOr("slot", "")
	return nil
}

// loadModules loads the profile's modules in order (modprobe semantics:
// dependencies first, built-ins and loaded ones are fine). A module whose
// hardware is absent fails to load; that is logged, not fatal.
func (in *Init) loadModules(context.Context) error {
	var failed []string
	for _, m := range in.image.Modules {
		if err := kmodule.Probe(m, ""); err != nil && !errors.Is(err, unix.EEXIST) {
			in.log.Logf("module %s: %v", m, err)
			failed = append(failed, m)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d modules did not load: %s", len(failed), len(in.image.Modules), strings.Join(failed, ", "))
	}
	return nil
}

func (in *Init) setHostname(context.Context) error {
	name := in.settings.GetOr("hostname", in.image.Hostname)
	if err := unix.Sethostname([]byte(name)); err != nil {
		return fmt.Errorf("sethostname %q: %w", name, err)
	}
	in.log.Logf("host name %s (from %s)", name, sourceOr(in.settings.Source("hostname"), "image"))
	return nil
}

func sourceOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
