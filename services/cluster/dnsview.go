package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"tandem/internal/atomicfile"
	"tandem/services/mail"
)

// dnsView is the cluster view tandem-dns serves (its -cluster file,
// services/dns.ClusterView): the members as registered in the cluster
// state, on a data node the VIP, and the cluster domain's DKIM record.
// Everything in it is what the cluster's DNS publishes anyway, so the
// file is world-readable.
type dnsView struct {
	VIP   string        `json:"vip,omitempty"`
	Nodes []dnsViewNode `json:"nodes"`
	TXT   []dnsViewTXT  `json:"txt,omitempty"`
}

// dnsViewTXT is a text record, its name relative to the domain.
type dnsViewTXT struct {
	Name string `json:"name"`
	Text string `json:"text"`
}

type dnsViewNode struct {
	Name    string `json:"name"`
	Address string `json:"address"`
}

// vipAddress is the VIP of this node's group, if it has one.
func (d *Daemon) vipAddress() string {
	for _, rc := range d.cfg.Group {
		if rc.Agent == "vip" {
			if p, err := netip.ParsePrefix(rc.Params["address"]); err == nil {
				return p.Addr().String()
			}
		}
	}
	return ""
}

// writeDNSView writes the view for tandem-dns when it changed: atomically,
// so tandem-dns never reads half of one.
func (d *Daemon) writeDNSView(ctx context.Context) error {
	if d.dnsView == "" {
		return nil
	}
	ms, err := d.members(ctx)
	if err != nil {
		return err
	}
	v := dnsView{VIP: d.vipAddress(), Nodes: []dnsViewNode{}}
	for _, m := range ms {
		v.Nodes = append(v.Nodes, dnsViewNode{Name: m.Name, Address: m.Address})
	}
	slices.SortFunc(v.Nodes, func(a, b dnsViewNode) int { return strings.Compare(a.Name, b.Name) })
	if t, ok, err := d.dkimRecord(ctx); err != nil {
		return err
	} else if ok {
		v.TXT = []dnsViewTXT{t}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	if old, err := os.ReadFile(d.dnsView); err == nil && bytes.Equal(old, b) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(d.dnsView), 0o755); err != nil {
		return fmt.Errorf("dns view: %w", err)
	}
	if err := atomicfile.Write(d.dnsView, b, 0o644); err != nil {
		return fmt.Errorf("dns view: %w", err)
	}
	d.log.Info("dns view written", "file", d.dnsView, "members", len(v.Nodes), "vip", v.VIP)
	return nil
}

// dkimRecord is the cluster domain's DKIM record, once a data node has
// published the mail service and its key exists: the mail it signs
// verifies against what tandem-dns serves.
func (d *Daemon) dkimRecord(ctx context.Context) (dnsViewTXT, bool, error) {
	svc, found, err := d.publishedService(ctx)
	if err != nil || !found {
		return dnsViewTXT{}, false, err
	}
	var k mail.DKIMKey
	if _, found, err := d.getJSON(ctx, keyMailDKIM+svc.Domain, &k); err != nil || !found {
		return dnsViewTXT{}, false, err
	}
	txt, err := k.TXT()
	if err != nil {
		return dnsViewTXT{}, false, err
	}
	return dnsViewTXT{Name: k.Selector + "._domainkey", Text: txt}, true, nil
}
