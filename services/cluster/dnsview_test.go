package cluster

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"tandem/image/recipe"
	"tandem/services/dns"
)

// The view the daemon writes is what tandem-dns reads (its strict
// decoder), world-readable, rewritten only when it changes.
func TestDNSView(t *testing.T) {
	s := startFounder(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := filepath.Join(t.TempDir(), "run", "dns-view.json")
	s.d.dnsView = p
	if err := s.d.writeDNSView(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	v, err := dns.LoadClusterView(bytes.NewReader(b), p)
	if err != nil {
		t.Fatalf("tandem-dns refuses the daemon's view: %v\n%s", err, b)
	}
	if v.VIP != "" || len(v.Nodes) != 1 || v.Nodes[0].Name != "c" || v.Nodes[0].Address != "127.0.0.5" || len(v.TXT) != 0 {
		t.Errorf("view of the founder (an arbitrator) = %+v; want c at 127.0.0.5, no VIP, no DKIM record yet", v)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o644 {
		t.Errorf("view mode %v, want 0644", st.Mode())
	}
	before := st.ModTime()
	time.Sleep(10 * time.Millisecond)
	if err := s.d.writeDNSView(ctx); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); !st.ModTime().Equal(before) {
		t.Error("an unchanged view was written again")
	}

	// Once a data node has made the mail site, the view carries the
	// cluster domain's DKIM record, as the key's TXT says it.
	if err := s.d.ensureMailSite(ctx, mailServiceName{Host: "mail.example.test", Domain: "example.test"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.d.writeDNSView(ctx); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(p)
	v, err = dns.LoadClusterView(bytes.NewReader(b), p)
	if err != nil {
		t.Fatal(err)
	}
	rec, ok, err := s.d.dkimRecord(ctx)
	if err != nil || !ok || len(v.TXT) != 1 || v.TXT[0].Name != rec.Name || v.TXT[0].Text != rec.Text ||
		!strings.HasSuffix(rec.Name, "._domainkey") || !strings.HasPrefix(rec.Text, "v=DKIM1; k=rsa; p=") {
		t.Errorf("view's TXT = %+v, the DKIM record %+v (%v, %v)", v.TXT, rec, ok, err)
	}
}

// The shipped recipes start tandem-dns with -cluster on the file they
// start tandem-cluster with -dns-view on.
func TestRecipesShareTheDNSView(t *testing.T) {
	paths, err := filepath.Glob("../../recipes/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, p := range paths {
		if strings.HasSuffix(p, ".config.yaml") {
			continue
		}
		f, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		r, err := recipe.Parse(p, f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		flags := map[string]string{}
		for _, s := range r.Services {
			for _, flag := range []string{"-cluster", "-dns-view"} {
				if i := slices.Index(s.Args, flag); i >= 0 && i+1 < len(s.Args) {
					flags[s.Command+flag] = s.Args[i+1]
				}
			}
		}
		if flags["tandem-dns-cluster"] == "" && flags["tandem-cluster-dns-view"] == "" {
			continue // no cluster on these nodes
		}
		n++
		if flags["tandem-dns-cluster"] != flags["tandem-cluster-dns-view"] {
			t.Errorf("%s: tandem-dns -cluster %q, tandem-cluster -dns-view %q: want the same file", p, flags["tandem-dns-cluster"], flags["tandem-cluster-dns-view"])
		}
	}
	if n == 0 {
		t.Error("no recipe runs tandem-dns with the cluster's view")
	}
}
