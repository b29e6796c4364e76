package pid1

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"tandem/init/supervise"
	"tandem/internal/nodeimage"
)

// readyTimeout bounds the wait for every service's READY=1.
const readyTimeout = 3 * time.Minute

// dataDevice is the data partition's device, empty without a disk (PXE).
func (in *Init) dataDevice() string {
	if in.disk == nil {
		return ""
	}
	return in.disk.part[nodeimage.PartData]
}

func (in *Init) startServices(ctx context.Context) error {
	env := append(in.settings.Env(), "TANDEM_SLOT="+in.slot, "TANDEM_ROLE="+in.image.Role, nodeConfigEnv+"="+in.nodeConfig(), "TANDEM_DATA_DEVICE="+in.dataDevice())
	var specs []supervise.Spec
	confined := false
	for _, s := range in.image.Services {
		spec := supervise.Spec{
			Name: s.Name, Path: s.Path, Env: env, Notify: s.Notify,
			Watchdog: time.Duration(s.WatchdogSec) * time.Second,
		}
		if err := in.confine(&spec, s.Args); err != nil {
			return err
		}
		confined = confined || spec.Confine != nil
		specs = append(specs, spec)
	}
	if confined {
		if err := shareConfig(in.nodeConfig(), sharedConfig, configGID); err != nil {
			in.log.Logf("node config: no copy for the confined services: %v", err)
		}
		go in.followConfig(ctx, in.nodeConfig(), sharedConfig, configGID)
	}
	switch {
	case in.settings.GetOr("rescue", "") != "1":
	case in.consoleHash == "":
		in.log.Logf("tandem.rescue=1: no console password (console.password in the node config): no rescue shell")
	default:
		in.log.Logf("rescue shell on the console behind the console password (tandem.rescue=1)")
		specs = append(specs, supervise.Spec{Name: "rescue-shell", Path: "/init", Args: []string{"rescue"}, Env: []string{RescuePath, consoleEnv + "=" + in.consoleHash}, Console: true})
	}
	sup, err := supervise.New(specs, supervise.Options{NotifyDir: "/run/tandem/notify", Logf: in.log.Logf, Output: os.Stdout})
	if err != nil {
		return err
	}
	in.sup = sup
	return sup.Start(ctx)
}

// RescuePath is the rescue shell's PATH: u-root's commands first.
const RescuePath = "PATH=/bbin:/bin:/usr/sbin:/usr/bin:/sbin"

// nodeConfig is the node configuration file the services read: the
// setting "config" if given (kernel command line first), else the one on
// perm, else the image's.
func (in *Init) nodeConfig() string {
	if p, ok := in.settings.Get("config"); ok {
		return p
	}
	if _, err := os.Stat(nodeimage.NodeConfigPerm); err == nil {
		return nodeimage.NodeConfigPerm
	}
	return nodeimage.NodeConfigPath
}

func (in *Init) waitServices(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if notReady := in.sup.WaitReady(ctx); notReady != nil {
		return fmt.Errorf("not ready after %s: %s", readyTimeout, strings.Join(notReady, ", "))
	}
	return nil
}
