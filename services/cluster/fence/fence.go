// Package fence powers a peer off (STONITH) through its management
// controller, so the survivor may take the group over without waiting for
// the lease to expire. IPMI over LAN (iDRAC on PowerEdge) is spoken by a
// Go client; a hypervisor API for KVM guests can implement Fencer too.
package fence

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/chassis"
	"github.com/bougou/go-ipmi/pkg/types"
)

// Fencer powers a node off and confirms it is off, and reads its power
// state without changing it (a device check).
type Fencer interface {
	Fence(ctx context.Context, node string) error
	PowerStatus(ctx context.Context) (on bool, err error)
}

// Errors.
var (
	ErrNoAgent      = errors.New("no fencing agent for this node")
	ErrNotConfirmed = errors.New("power off not confirmed")
)

// Agents maps node names to the fencer of each.
type Agents map[string]Fencer

// Fence powers node off with its agent.
func (a Agents) Fence(ctx context.Context, node string) error {
	f, ok := a[node]
	if !ok {
		return fmt.Errorf("fence %s: %w", node, ErrNoAgent)
	}
	return f.Fence(ctx, node)
}

// IPMI fences through a BMC over IPMI 2.0 (RMCP+, "lanplus"), with
// go-ipmi: a Go client in tandem-cluster itself, so a node image needs no
// ipmitool and its C libraries (FreeIPMI, libgcrypt, readline: 13 MB
// installed) and no password is handed to another process.
type IPMI struct {
	Host     string
	Port     int // 623 if zero
	User     string
	Password string
	// CipherSuite for RMCP+ (default 3: HMAC-SHA1, AES-128, which iDRACs
	// and ipmi_sim speak); naming it skips the client's probe of the
	// suites the BMC offers.
	CipherSuite int
	Confirm     time.Duration // how long to wait for "off" (default 20s)
}

// session opens an authenticated session with the BMC, which the caller
// closes.
func (i *IPMI) session(ctx context.Context) (*client.Client, error) {
	port, cs := i.Port, i.CipherSuite
	if port == 0 {
		port = 623
	}
	if cs == 0 {
		cs = 3
	}
	c, err := client.NewClient(i.Host, port, i.User, i.Password)
	if err != nil {
		return nil, fmt.Errorf("ipmi %s: %w", i.Host, err)
	}
	// OPERATOR: the least privilege that may power the chassis off, so a
	// BMC user made for fencing needs no more.
	c.WithCipherSuiteID(types.CipherSuiteID(cs)).WithTimeout(2 * time.Second).WithRetry(2).
		WithMaxPrivilegeLevel(types.PrivilegeLevelOperator)
	if err := c.Connect(ctx); err != nil {
		return nil, fmt.Errorf("ipmi %s:%d as %s: %w", i.Host, port, i.User, err)
	}
	return c, nil
}

func closeSession(c *client.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = c.Close(ctx) // a session left open times out on the BMC
}

func powerOn(ctx context.Context, c *client.Client, host string) (bool, error) {
	r, err := c.GetChassisStatus(ctx)
	if err != nil {
		return false, fmt.Errorf("ipmi %s: chassis status: %w", host, err)
	}
	return r.PowerIsOn, nil
}

// PowerStatus reports whether the chassis is powered on.
func (i *IPMI) PowerStatus(ctx context.Context) (bool, error) {
	c, err := i.session(ctx)
	if err != nil {
		return false, err
	}
	defer closeSession(c)
	return powerOn(ctx, c, i.Host)
}

// Fence powers the chassis off and waits until the BMC reports it off.
// A chassis already off is fenced: the power-off is sent anyway (a BMC
// may report stale state) and confirmed like any other.
func (i *IPMI) Fence(ctx context.Context, node string) error {
	c, err := i.session(ctx)
	if err != nil {
		return fmt.Errorf("fence %s: %w", node, err)
	}
	defer closeSession(c)
	if _, err := c.ChassisControl(ctx, chassis.ChassisControlPowerDown); err != nil {
		return fmt.Errorf("fence %s: ipmi %s: power off: %w", node, i.Host, err)
	}
	wait := i.Confirm
	if wait == 0 {
		wait = 20 * time.Second
	}
	end := time.Now().Add(wait)
	for {
		on, err := powerOn(ctx, c, i.Host)
		if err == nil && !on {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("fence %s: %w after %v (last: on=%v, %v)", node, ErrNotConfirmed, wait, on, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fence %s: %w", node, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}
