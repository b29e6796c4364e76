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
		nc, cfg := loadSeed(t, s, n)
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
		// A data node fences its peer with the peer's BMC.
		if peer := otherData(n.Name); peer != "" {
			f, ok := cfg.Fencing[peer]
			want := BMCAddr(nodeNamed(peer)).String()
			if len(cfg.Fencing) != 1 || !ok || f.Address != want || f.User != BMCUser || f.PasswordFile != "/perm/tandem/fence-"+peer+".pass" {
				t.Errorf("%s: fencing %+v; want %s's BMC at %s", n.Name, cfg.Fencing, peer, want)
			}
		} else if len(cfg.Fencing) != 0 {
			t.Errorf("%s: fencing %+v; an arbitrator fences nothing", n.Name, cfg.Fencing)
		}
	}
	if len(s.BMCPasswords) != 2 || s.BMCPasswords["data-a"] == s.BMCPasswords["data-b"] || s.BMCPasswords["data-a"] == "" {
		t.Errorf("BMC passwords %v: want one each for the data nodes, different", s.BMCPasswords)
	}
}

// loadSeed loads n's seeded node config and the cluster config it gives.
func loadSeed(t *testing.T, s *ClusterSeed, n Node) (*nodeconfig.Config, *cluster.Config) {
	t.Helper()
	nc, err := nodeconfig.Load(bytes.NewReader(s.Configs[n.Name]), n.Name+".yaml")
	if err != nil {
		t.Fatalf("%s: %v\n%s", n.Name, err, s.Configs[n.Name])
	}
	cfg, err := cluster.FromNodeConfig(nc, "/dev/vda4")
	if err != nil {
		t.Fatalf("%s: %v", n.Name, err)
	}
	return nc, cfg
}

// otherData is the data node other than name ("" for the arbitrator).
func otherData(name string) string {
	switch name {
	case "data-a":
		return "data-b"
	case "data-b":
		return "data-a"
	}
	return ""
}

func nodeNamed(name string) Node {
	i := slices.IndexFunc(Nodes, func(n Node) bool { return n.Name == name })
	return Nodes[i]
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
	for _, n := range nodes {
		peer := otherData(n.Name)
		for f := range n.Seed {
			if f != "node.yaml" && f != "mail-users" && f != "fence-"+peer+".pass" {
				t.Errorf("%s: seed file %s", n.Name, f)
			}
		}
		if peer != "" && string(n.Seed["fence-"+peer+".pass"]) != s.BMCPasswords[peer]+"\n" {
			t.Errorf("%s: %s's BMC password file = %q, want its password", n.Name, peer, n.Seed["fence-"+peer+".pass"])
		}
	}
	if want := s.MailUser + ":{PLAIN}" + s.MailPassword + "\n"; string(nodes[0].Seed["mail-users"]) != want {
		t.Errorf("mail-users = %q, want %q", nodes[0].Seed["mail-users"], want)
	}
}

// Without fencing the configs still load, with no fence device, no BMC
// password, and no password file among the seeds.
func TestClusterSeedWithoutFencing(t *testing.T) {
	s, err := NewClusterSeedWithoutFencing(Nodes)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range Nodes {
		_, cfg := loadSeed(t, s, n)
		if len(cfg.Fencing) != 0 || bytes.Contains(s.Configs[n.Name], []byte("BMC")) {
			t.Errorf("%s: fencing %+v\n%s", n.Name, cfg.Fencing, s.Configs[n.Name])
		}
	}
	if len(s.BMCPasswords) != 0 {
		t.Errorf("BMC passwords %v, want none", s.BMCPasswords)
	}
	for _, n := range s.Apply(Nodes) {
		for f := range n.Seed {
			if f != "node.yaml" && f != "mail-users" {
				t.Errorf("%s: seed file %s", n.Name, f)
			}
		}
	}
}
