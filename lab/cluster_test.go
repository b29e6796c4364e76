package lab

import (
	"bytes"
	"maps"
	"slices"
	"testing"

	"tandem/internal/nodeconfig"
	"tandem/internal/passwd"
	"tandem/services/cluster"
)

// The seeded configs must load as node configs and give each node the
// cluster config the lab expects.
func TestClusterSeed(t *testing.T) {
	s, err := NewClusterSeed(Nodes)
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Configs) != 3 || s.AdminCode == "" {
		t.Fatalf("seed = %d configs, admin code %q", len(s.Configs), s.AdminCode)
	}
	for _, n := range Nodes {
		nc, err := nodeconfig.Load(bytes.NewReader(s.Configs[n.Name]), n.Name+".yaml")
		if err != nil {
			t.Fatalf("%s: %v\n%s", n.Name, err, s.Configs[n.Name])
		}
		cfg, err := cluster.FromNodeConfig(nc, "/dev/vda4")
		if err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
		if cfg.Address != n.Addr.String() || (n.Name == "arbiter") != (cfg.Role == "arbitrator") {
			t.Errorf("%s: address %s role %s", n.Name, cfg.Address, cfg.Role)
		}
		if ok, err := passwd.Check(nc.Console.Password, s.ConsolePassword); !ok || err != nil {
			t.Errorf("%s: console.password %q does not check against the lab's console password: %v", n.Name, nc.Console.Password, err)
		}
		p := nc.Cluster.Pairing
		if n.Name == Founder && len(p.Codes) != 3 || n.Name != Founder && p.Code == "" {
			t.Errorf("%s: pairing %+v", n.Name, p)
		}
	}
}

func TestClusterSeedApply(t *testing.T) {
	s, err := NewClusterSeed(Nodes)
	if err != nil {
		t.Fatal(err)
	}
	nodes := s.Apply(Nodes)
	for _, n := range nodes {
		_, users := n.Seed["mail-users"]
		if !bytes.Equal(n.Seed["node.yaml"], s.Configs[n.Name]) || users == (n.Name == "arbiter") {
			t.Errorf("%s: seed files %v", n.Name, slices.Collect(maps.Keys(n.Seed)))
		}
	}
	if Nodes[0].Seed != nil {
		t.Error("Apply changed its argument")
	}
	if want := s.MailUser + ":{PLAIN}" + s.MailPassword + "\n"; string(nodes[0].Seed["mail-users"]) != want {
		t.Errorf("mail-users = %q, want %q", nodes[0].Seed["mail-users"], want)
	}
}
