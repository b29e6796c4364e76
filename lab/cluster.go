package lab

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/template"
	"time"

	"tandem/internal/passwd"
	"tandem/services/cluster"
)

// The lab's cluster: the names its node configs give it.
const (
	ClusterName   = "lab"
	ClusterDomain = "lab.tandem.test"
	// Founder is the node that creates the cluster; the others join it.
	Founder = "data-a"
	// AdminName is the host's administrator certificate's name.
	AdminName = "lab-host"
	// LeaseTTL is the cluster's lease time in the lab. Three TCG VMs on
	// a 2-core machine stall for seconds under load (the first mail
	// unpack, Postfix and Dovecot starting): with 6 s (a 3 s watchdog)
	// loaded owners were reset by their watchdogs while serving.
	LeaseTTL = 8 * time.Second
	// MTU is the nodes' MTU on the lab network (the switch carries
	// frames of up to 64 KiB; the host's side keeps 1500, and TCP's MSS
	// and PMTU discovery take care of the difference).
	MTU = 9000
)

// ClusterSeed is what makes the lab's three images pair into a cluster
// with no console input: each node's node.yaml (static address, the VIP,
// the lab's NTP server, the pairing section), the data nodes' mail users,
// and the one-time code the host uses for its administrator certificate.
type ClusterSeed struct {
	// Configs maps node name to its node.yaml.
	Configs map[string][]byte
	// AdminCode is the code for "tandemctl cluster admin".
	AdminCode string
	// MailUser (an address in ClusterDomain) and MailPassword log in over
	// IMAP; the data nodes' mail-users file holds them.
	MailUser, MailPassword string
	// ConsolePassword opens every node's rescue shell and GRUB's editor
	// (console.password in node.yaml holds only its hash).
	ConsolePassword string
	// BMCPasswords are the data nodes' BMC passwords (Options.BMCPasswords),
	// one each: a data node's seed holds only its peer's, which it fences
	// with (fencePasswordFile).
	BMCPasswords map[string]string
}

// fencePasswordFile is where a data node keeps the password of node's BMC:
// a seed file, so on perm and 0600.
func fencePasswordFile(node string) string { return "fence-" + node + ".pass" }

// Apply returns a copy of nodes whose seeds pair them: node.yaml on every
// node, mail-users on the data nodes.
func (s *ClusterSeed) Apply(nodes []Node) []Node {
	out := slices.Clone(nodes)
	users := fmt.Sprintf("%s:{PLAIN}%s\n", s.MailUser, s.MailPassword)
	for i := range out {
		seed := maps.Clone(out[i].Seed)
		if seed == nil {
			seed = map[string][]byte{}
		}
		seed["node.yaml"] = s.Configs[out[i].Name]
		if !out[i].Arbitrator() {
			seed["mail-users"] = []byte(users)
			for peer, pw := range s.BMCPasswords {
				if peer != out[i].Name {
					seed[fencePasswordFile(peer)] = []byte(pw + "\n")
				}
			}
		}
		out[i].Seed = seed
	}
	return out
}

var nodeYAML = template.Must(template.New("node.yaml").Parse(`# {{.Self.Name}} in tandem's lab: written by the lab before first boot.
hostname: {{.Self.Name}}
cluster:
  name: {{.Cluster}}
  domain: {{.Domain}}
  vip: {{.VIP}}
  # Emulated nodes stall for seconds under load (TCG, three VMs on a few
  # cores): a longer lease keeps a busy owner from losing it.
  lease_ttl: {{.LeaseTTL}}
  nodes:
{{- if .BMC}}
  # Each data node's BMC (the lab's ipmi_sim), which its peer fences it with.
{{- end}}
{{- range .Nodes}}
{{- if .Arbitrator}}
    - {name: {{.Name}}, address: {{.Addr}}, role: arbitrator}
{{- else if $.BMC}}
    - name: {{.Name}}
      address: {{.Addr}}
      fence: {agent: ipmi, address: {{index $.BMC .Name}}, user: {{$.BMCUser}}, password_file: /perm/tandem/{{index $.PasswordFile .Name}}}
{{- else}}
    - {name: {{.Name}}, address: {{.Addr}}}
{{- end}}
{{- end}}
  pairing:
    founder: {{.Founder}}
{{- if eq .Self.Name .Founder}}
    codes:
{{- range $name, $c := .Codes}}
      {{$name}}: {{$c}}
{{- end}}
{{- else}}
    code: {{.Code}}
{{- end}}
network:
  # Jumbo frames: under TCG every frame costs the sending and the
  # receiving guest and the lab's switch; DRBD's resync and etcd's
  # traffic take a sixth of the frames at 9000 bytes.
  links:
    - {name: eth0, mtu: {{.MTU}}, addresses: [{{.Self.Addr}}/{{.Bits}}]}
time:
  servers: [{{.Host}}]
dns:
  listen: ["0.0.0.0:53"]
  allow: [{{.Subnet}}]
console:
  password: "{{.Console}}"
`))

// NewClusterSeed makes fresh pairing codes and the node configs for
// nodes, which configure fencing through the lab's BMCs, one per data
// node.
func NewClusterSeed(nodes []Node) (*ClusterSeed, error) { return newClusterSeed(nodes, true) }

// NewClusterSeedWithoutFencing is NewClusterSeed with no fence devices
// and no BMC passwords: a takeover waits for the lease, as before fencing
// (BenchmarkFailoverFencing's other half).
func NewClusterSeedWithoutFencing(nodes []Node) (*ClusterSeed, error) {
	return newClusterSeed(nodes, false)
}

func newClusterSeed(nodes []Node, fencing bool) (*ClusterSeed, error) {
	codes := map[string]string{}
	for _, n := range append(nodes, Node{Name: AdminName}) {
		if n.Name == Founder {
			continue
		}
		c, err := cluster.NewCode()
		if err != nil {
			return nil, err
		}
		codes[n.Name] = c
	}
	pw, err := typeablePassword()
	if err != nil {
		return nil, err
	}
	console, err := typeablePassword()
	if err != nil {
		return nil, err
	}
	hash, err := passwd.Hash(console)
	if err != nil {
		return nil, err
	}
	s := &ClusterSeed{Configs: map[string][]byte{}, AdminCode: codes[AdminName],
		MailUser: "postmaster@" + ClusterDomain, MailPassword: pw, ConsolePassword: console,
		BMCPasswords: map[string]string{}}
	bmc, pwFile := map[string]string{}, map[string]string{}
	for _, n := range nodes {
		if n.Arbitrator() || !fencing {
			continue
		}
		if s.BMCPasswords[n.Name], err = typeablePassword(); err != nil {
			return nil, err
		}
		bmc[n.Name], pwFile[n.Name] = BMCAddr(n).String(), fencePasswordFile(n.Name)
	}
	for _, n := range nodes {
		var b bytes.Buffer
		err := nodeYAML.Execute(&b, map[string]any{
			"Self": n, "Nodes": nodes, "Cluster": ClusterName, "Domain": ClusterDomain, "VIP": VIP,
			"Founder": Founder, "Codes": codes, "Code": codes[n.Name], "Bits": Subnet.Bits(),
			"Host": HostAddr, "Subnet": Subnet, "LeaseTTL": LeaseTTL, "MTU": MTU,
			"Console": hash, "BMC": bmc, "BMCUser": BMCUser, "PasswordFile": pwFile,
		})
		if err != nil {
			return nil, err
		}
		s.Configs[n.Name] = b.Bytes()
	}
	return s, nil
}

// typeablePassword returns 80 random bits as 16 lower-case letters and
// digits: easy to type at a console or an IMAP client.
func typeablePassword() (string, error) {
	c, err := cluster.NewCode()
	return strings.ToLower(strings.ReplaceAll(c, "-", "")), err
}
