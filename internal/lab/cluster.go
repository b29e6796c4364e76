package lab

import (
	"bytes"
	"text/template"

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
)

// ClusterSeed is what makes the lab's three images pair into a cluster
// with no console input: each node's node.yaml (static address, the VIP,
// the lab's NTP server, the pairing section) and the one-time code the
// host uses for its administrator certificate.
type ClusterSeed struct {
	// Configs maps node name to its node.yaml.
	Configs map[string][]byte
	// AdminCode is the code for "tandemctl cluster admin".
	AdminCode string
}

var nodeYAML = template.Must(template.New("node.yaml").Parse(`# {{.Self.Name}} in tandem's lab: written by the lab before first boot.
hostname: {{.Self.Name}}
cluster:
  name: {{.Cluster}}
  domain: {{.Domain}}
  vip: {{.VIP}}
  nodes:
{{- range .Nodes}}
    - {name: {{.Name}}, address: {{.Addr}}{{if eq .Image "kvm-arbitrator"}}, role: arbitrator{{end}}}
{{- end}}
  pairing:
    founder: {{.Founder}}
{{- if eq .Self.Name .Founder}}
    codes: [{{range $i, $c := .Codes}}{{if $i}}, {{end}}{{$c}}{{end}}]
{{- else}}
    code: {{.Code}}
{{- end}}
network:
  links:
    - {name: eth0, addresses: [{{.Self.Addr}}/{{.Bits}}]}
time:
  servers: [{{.Host}}]
dns:
  listen: ["0.0.0.0:53"]
  allow: [{{.Subnet}}]
`))

// NewClusterSeed makes fresh pairing codes and the node configs for nodes.
func NewClusterSeed(nodes []Node) (*ClusterSeed, error) {
	codes := map[string]string{}
	var founderCodes []string
	for _, n := range append(nodes, Node{Name: AdminName}) {
		if n.Name == Founder {
			continue
		}
		c, err := cluster.NewCode()
		if err != nil {
			return nil, err
		}
		codes[n.Name] = c
		founderCodes = append(founderCodes, c)
	}
	s := &ClusterSeed{Configs: map[string][]byte{}, AdminCode: codes[AdminName]}
	for _, n := range nodes {
		var b bytes.Buffer
		err := nodeYAML.Execute(&b, map[string]any{
			"Self": n, "Nodes": nodes, "Cluster": ClusterName, "Domain": ClusterDomain, "VIP": VIP,
			"Founder": Founder, "Codes": founderCodes, "Code": codes[n.Name], "Bits": Subnet.Bits(),
			"Host": HostAddr, "Subnet": Subnet,
		})
		if err != nil {
			return nil, err
		}
		s.Configs[n.Name] = b.Bytes()
	}
	return s, nil
}
