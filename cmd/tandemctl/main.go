// Command tandemctl administers a tandem cluster through a node's mTLS API.
//
// Usage:
//
//	tandemctl [-state DIR] [-endpoint URL] COMMAND [ARGS]
//
// Commands:
//
//	status [-json]                   cluster status, like crm_mon
//	node standby|online NODE         keep NODE from running the group, or let it again
//	resource move NODE               planned move of the group to NODE
//	resource cleanup [RESOURCE] [-node NODE]  reset fail counts
//	maintenance on|off               stop or resume managing resources
//	cluster create -config FILE      create a cluster on this node; prints the pairing codes
//	cluster join -config FILE -peer URL -code CODE   join a cluster
//	cluster code [-role admin|monitor] NAME   a one-time pairing code for NAME
//	cluster admin|monitor -cluster NAME -name NAME -peer URL -code CODE   a client certificate
//	cluster revoke SERIAL|NAME       revoke a certificate, or all of NAME's
//	cluster remove NODE              remove a member (to replace it)
//	replication status [-json]       the replicated volume on both data nodes
//	replication resolve-split-brain -keep NODE   end a split brain keeping NODE's data
//	mail cert show [-ca] [-json]     the mail service's certificate (-ca: the mail CA's, PEM)
//	mail cert install CERT KEY       serve the admin's certificate (chain in CERT, leaf first)
//	mail cert issue [NAME...]        serve one of the cluster's mail CA, for the service and NAMEs
//	mail user add|passwd ADDR [-quota MIB]   a mail user (password without echo, or from stdin)
//	mail user quota ADDR MIB | del ADDR | list [-json] | import FILE
//	mail alias add|del FROM [TO...] | list [-json]
//	mail domain add|del DOMAIN | list [-json]
//	mail dkim show [-json] DOMAIN    the DNS TXT record of DOMAIN's DKIM key
//	mail config get [NAME] | set NAME VALUE   site settings (size limit, relay networks, POP3, smarthost and its login)
//	mail config set smarthost_password        the smarthost's password (without echo, or from stdin)
//	fence test [-json] NODE          check NODE's fence device without fencing
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"tandem/internal/passwd"
	"tandem/services/cluster"
	"tandem/services/mail"
)

// errUsage marks bad arguments (exit status 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "tandemctl:", err)
		if errors.Is(err, errUsage) || errors.Is(err, flag.ErrHelp) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

const usage = `Usage: tandemctl [-state DIR] [-endpoint URL] COMMAND [ARGS]

Commands:
  status [-json]                     cluster status, like crm_mon
  node standby|online NODE           keep NODE from running the group, or let it again
  resource move NODE                 planned move of the group to NODE
  resource cleanup [RESOURCE] [-node NODE]
                                     reset fail counts
  maintenance on|off                 stop or resume managing resources
  cluster create -config FILE        create a cluster on this node; prints the
                                     pairing codes of the other nodes and "admin"
  cluster join -config FILE -peer URL -code CODE
                                     join a cluster with a one-time pairing code
  cluster code [-role admin|monitor] NAME
                                     a one-time pairing code for the node NAME of
                                     cluster.nodes, or an administrator or monitor
  cluster admin|monitor -cluster NAME -name NAME -peer URL -code CODE
                                     get an administrator's or a read-only
                                     monitor's certificate into -state
  cluster revoke SERIAL|NAME         revoke a certificate, or every one of NAME's
  cluster remove NODE                remove a member (its certificates revoked)
  replication status [-json]         the replicated volume on both data nodes
  replication resolve-split-brain -keep NODE
                                     end a split brain: NODE's data wins, the other
                                     node's changes since the split are discarded
  mail cert show [-ca] [-json]       the mail service's certificate; -ca prints
                                     the mail CA's (PEM) for clients to trust
  mail cert install CERT KEY         serve the admin's certificate: CERT holds the
                                     chain (leaf first), KEY its private key (PEM)
  mail cert issue [NAME...]          serve a certificate of the cluster's mail CA
                                     for the service name and NAMEs (the default)
  mail user add ADDR [-quota MIB]    add a mail user; the password is asked for
                                     twice without echo, or read from stdin
  mail user passwd ADDR              set a user's password (the same way)
  mail user quota ADDR MIB           set a user's quota (0: none)
  mail user del ADDR | list [-json]  delete a user, or list them
  mail user import FILE              add every user of a Dovecot passwd-file
                                     (USER[@DOMAIN]:{SCHEME}PASSWORD), all or none
  mail alias add FROM TO...          mail for FROM goes to each TO (added to it)
  mail alias del FROM [TO...]        delete the alias, or only those addresses
  mail alias list [-json]
  mail domain add|del DOMAIN         serve another domain, or stop serving it
  mail domain list [-json]           the domains, the cluster's own first
  mail dkim show [-json] DOMAIN      the DNS TXT record of DOMAIN's DKIM key, a
                                     zone file line to publish in DOMAIN's zone
  mail config get [NAME]             the site settings: message_size_limit,
                                     relay_networks, pop3, smarthost,
                                     smarthost_user, smarthost_password
  mail config set NAME VALUE         change one ("" resets it to its default)
  mail config set smarthost_password the smarthost's password, asked for
  fence test [-json] NODE            check NODE's fence device (its power
                                     state, read by the peer that holds it)
                                     without fencing

Flags:
`

type cli struct {
	state    cluster.State
	endpoint string
	stdout   io.Writer
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tandemctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	defState, defEndpoint := cluster.ClientDefaults()
	state := fs.String("state", defState, "state directory of this node (its certificate authenticates the client)")
	endpoint := fs.String("endpoint", defEndpoint, "API of a cluster node")
	fs.Usage = func() { fmt.Fprint(stderr, usage); fs.PrintDefaults() }
	if err := fs.Parse(args); err != nil {
		return err
	}
	c := &cli{state: cluster.State{Dir: *state}, endpoint: *endpoint, stdout: stdout}
	a := fs.Args()
	if len(a) == 0 {
		fs.Usage()
		return fmt.Errorf("%w: no command", errUsage)
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	switch a[0] {
	case "status":
		return c.status(ctx, a[1:], stderr)
	case "node":
		return c.node(ctx, a[1:])
	case "resource":
		return c.resource(ctx, a[1:], stderr)
	case "maintenance":
		if len(a) != 2 || (a[1] != "on" && a[1] != "off") {
			return fmt.Errorf("%w: maintenance on|off", errUsage)
		}
		return c.post(ctx, "/v1/maintenance", cluster.Request{On: a[1] == "on"})
	case "cluster":
		return c.cluster(ctx, a[1:], stderr)
	case "replication":
		return c.replication(ctx, a[1:], stderr)
	case "mail":
		return c.mail(ctx, a[1:], stderr)
	case "fence":
		return c.fenceTest(ctx, a[1:], stderr)
	}
	fs.Usage()
	return fmt.Errorf("%w: unknown command %q", errUsage, a[0])
}

// fenceTest asks the node that holds NODE's fence device to read its
// power state now, without fencing; a device that does not answer is an
// error.
func (c *cli) fenceTest(ctx context.Context, a []string, stderr io.Writer) error {
	const usage = "fence test [-json] NODE"
	if len(a) == 0 || a[0] != "test" {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	node, asJSON, err := jsonAndOne(a, "fence test", usage, "print the check as JSON", stderr)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var fc cluster.FenceCheck
	if err := cl.Do(ctx, http.MethodPost, "/v1/fence/test/"+url.PathEscape(node), struct{}{}, &fc); err != nil {
		return err
	}
	if err := c.show(asJSON, fc, func(w io.Writer) {
		if fc.Error == "" {
			fmt.Fprintf(w, "fence device of %s (on %s) answers: power %s\n", fc.Target, fc.By, fc.Power)
		}
	}); err != nil {
		return err
	}
	if fc.Error != "" {
		return fmt.Errorf("fence device of %s (on %s) does not answer: %s", fc.Target, fc.By, fc.Error)
	}
	return nil
}

// jsonAndOne parses the arguments after a[0] of a command that takes
// -json and one argument.
func jsonAndOne(a []string, name, usage, jsonHelp string, stderr io.Writer) (arg string, asJSON bool, err error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	j := fs.Bool("json", false, jsonHelp)
	if err := fs.Parse(a[1:]); err != nil {
		return "", false, fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() != 1 {
		return "", false, fmt.Errorf("%w: %s", errUsage, usage)
	}
	return fs.Arg(0), *j, nil
}

func (c *cli) client() (*cluster.Client, error) {
	return cluster.NewClient(c.state, c.endpoint)
}

func (c *cli) post(ctx context.Context, path string, req cluster.Request) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	if err := cl.Post(ctx, path, req); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, "ok")
	return nil
}

// show prints v as indented JSON (-json) or as text.
func (c *cli) show(asJSON bool, v any, text func(io.Writer)) error {
	if !asJSON {
		text(c.stdout)
		return nil
	}
	e := json.NewEncoder(c.stdout)
	e.SetIndent("", "  ")
	return e.Encode(v)
}

func (c *cli) status(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: status takes no arguments", errUsage)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	s, err := cl.Status(ctx)
	if err != nil {
		return err
	}
	return c.show(*asJSON, s, func(w io.Writer) { cluster.FormatStatus(w, *s) })
}

func (c *cli) node(ctx context.Context, a []string) error {
	if len(a) != 2 || (a[0] != "standby" && a[0] != "online") {
		return fmt.Errorf("%w: node standby|online NODE", errUsage)
	}
	return c.post(ctx, "/v1/node/"+a[0], cluster.Request{Node: a[1]})
}

func (c *cli) resource(ctx context.Context, a []string, stderr io.Writer) error {
	if len(a) == 0 {
		return fmt.Errorf("%w: resource move|cleanup", errUsage)
	}
	switch a[0] {
	case "move":
		if len(a) != 2 {
			return fmt.Errorf("%w: resource move NODE", errUsage)
		}
		return c.post(ctx, "/v1/resource/move", cluster.Request{Node: a[1]})
	case "cleanup":
		fs := flag.NewFlagSet("cleanup", flag.ContinueOnError)
		fs.SetOutput(stderr)
		node := fs.String("node", "", "only this node's fail counts")
		var res string
		rest := a[1:]
		if len(rest) > 0 && rest[0] != "" && rest[0][0] != '-' {
			res, rest = rest[0], rest[1:]
		}
		if err := fs.Parse(rest); err != nil || fs.NArg() > 0 {
			return fmt.Errorf("%w: resource cleanup [RESOURCE] [-node NODE]", errUsage)
		}
		return c.post(ctx, "/v1/resource/cleanup", cluster.Request{Node: *node, Resource: res})
	}
	return fmt.Errorf("%w: resource move|cleanup, not %q", errUsage, a[0])
}

func (c *cli) cluster(ctx context.Context, a []string, stderr io.Writer) error {
	if len(a) == 0 {
		return fmt.Errorf("%w: cluster create|join|code|admin|monitor|revoke|remove", errUsage)
	}
	fs := flag.NewFlagSet("cluster "+a[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "/perm/tandem/cluster.yaml", "this node's cluster configuration")
	peer := fs.String("peer", "", "API URL of a cluster member, e.g. https://10.0.0.1:7443")
	code := fs.String("code", "", "one-time pairing code")
	clusterName := fs.String("cluster", "", "cluster name (cluster admin|monitor)")
	name := fs.String("name", "", "the administrator's or monitor's name (cluster admin|monitor)")
	role := fs.String("role", "", "admin or monitor (cluster code for a client, not a node)")
	if err := fs.Parse(a[1:]); err != nil {
		return fmt.Errorf("%w: bad arguments to cluster %s", errUsage, a[0])
	}
	arg := ""
	switch a[0] {
	case "code", "revoke", "remove":
		if fs.NArg() != 1 {
			return fmt.Errorf("%w: cluster %s takes one name", errUsage, a[0])
		}
		arg = fs.Arg(0)
	default:
		if fs.NArg() > 0 {
			return fmt.Errorf("%w: cluster %s takes no arguments", errUsage, a[0])
		}
	}
	switch a[0] {
	case "admin", "monitor":
		if *clusterName == "" || *name == "" || *peer == "" || *code == "" {
			return fmt.Errorf("%w: cluster %s needs -cluster, -name, -peer and -code", errUsage, a[0])
		}
		if err := cluster.JoinClient(ctx, *clusterName, *name, a[0], c.state, *peer, *code); err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "%s %s of cluster %s: certificate in %s\n", a[0], *name, *clusterName, c.state.Dir)
		return nil
	case "code":
		cl, err := c.client()
		if err != nil {
			return err
		}
		k, err := cl.Code(ctx, arg, *role)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "pairing code for %s (valid %v, once): %s\n", arg, cluster.CodeTTL, k)
		return nil
	case "revoke":
		req := cluster.Request{Name: arg}
		if isSerial(arg) {
			req = cluster.Request{Serial: arg}
		}
		return c.post(ctx, "/v1/cluster/revoke", req)
	case "remove":
		return c.post(ctx, "/v1/cluster/remove", cluster.Request{Node: arg})
	case "create", "join":
	default:
		return fmt.Errorf("%w: cluster create|join|code|admin|monitor|revoke|remove, not %q", errUsage, a[0])
	}
	f, err := os.Open(*cfgPath)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	cfg, err := cluster.LoadConfig(f, *cfgPath)
	f.Close()
	if err != nil {
		return err
	}
	if a[0] == "create" {
		codes, err := cluster.Create(cfg, c.state, nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(c.stdout, "cluster %s created on %s\npairing codes (valid %v, once each):\n", cfg.Cluster, cfg.Node, cluster.CreateCodeTTL)
		for _, n := range slices.Sorted(maps.Keys(codes)) {
			fmt.Fprintf(c.stdout, "  %s: %s\n", n, codes[n])
		}
		return nil
	}
	if *peer == "" || *code == "" {
		return fmt.Errorf("%w: cluster join needs -peer URL and -code CODE", errUsage)
	}
	if err := cluster.Join(ctx, cfg, c.state, *peer, *code); err != nil {
		return err
	}
	fmt.Fprintf(c.stdout, "%s joined cluster %s; start tandem-cluster\n", cfg.Node, cfg.Cluster)
	return nil
}

// isSerial tells a certificate serial (hexadecimal, as tandem or openssl
// print it: longer than any name) from a name.
func isSerial(s string) bool {
	h := strings.ReplaceAll(s, ":", "")
	if len(h) < 24 {
		return false
	}
	for _, r := range strings.ToLower(h) {
		if !strings.ContainsRune("0123456789abcdef", r) {
			return false
		}
	}
	return true
}

func (c *cli) replication(ctx context.Context, a []string, stderr io.Writer) error {
	if len(a) == 0 {
		return fmt.Errorf("%w: replication status|resolve-split-brain", errUsage)
	}
	fs := flag.NewFlagSet("replication "+a[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON (status)")
	keep := fs.String("keep", "", "the node whose data wins (resolve-split-brain)")
	if err := fs.Parse(a[1:]); err != nil || fs.NArg() > 0 {
		return fmt.Errorf("%w: bad arguments to replication %s", errUsage, a[0])
	}
	switch a[0] {
	case "status":
		cl, err := c.client()
		if err != nil {
			return err
		}
		rs, err := cl.Replication(ctx)
		if err != nil {
			return err
		}
		return c.show(*asJSON, rs, func(w io.Writer) { cluster.FormatReplication(w, rs) })
	case "resolve-split-brain":
		if *keep == "" {
			return fmt.Errorf("%w: replication resolve-split-brain -keep NODE", errUsage)
		}
		return c.post(ctx, "/v1/replication/resolve", cluster.Request{Node: *keep})
	}
	return fmt.Errorf("%w: replication status|resolve-split-brain, not %q", errUsage, a[0])
}

func (c *cli) mail(ctx context.Context, a []string, stderr io.Writer) error {
	if len(a) < 2 {
		return fmt.Errorf("%w: mail cert|user|alias|domain|dkim|config COMMAND", errUsage)
	}
	switch a[0] {
	case "user":
		return c.mailUser(ctx, a[1:], stderr)
	case "alias":
		return c.mailAlias(ctx, a[1:], stderr)
	case "domain":
		return c.mailDomain(ctx, a[1:], stderr)
	case "config":
		return c.mailConfig(ctx, a[1:], stderr)
	case "dkim":
		return c.mailDKIM(ctx, a[1:], stderr)
	case "cert":
	default:
		return fmt.Errorf("%w: mail cert|user|alias|domain|dkim|config COMMAND", errUsage)
	}
	switch a[1] {
	case "show":
		fs := flag.NewFlagSet("mail cert show", flag.ContinueOnError)
		fs.SetOutput(stderr)
		asJSON := fs.Bool("json", false, "print JSON")
		ca := fs.Bool("ca", false, "print the mail CA's certificate (PEM), which mail clients trust for a certificate the cluster issued")
		if err := fs.Parse(a[2:]); err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("%w: mail cert show takes no arguments", errUsage)
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		mc, err := cl.MailCert(ctx)
		if err != nil {
			return err
		}
		if *ca {
			_, err := c.stdout.Write(mc.CA)
			return err
		}
		return c.show(*asJSON, mc, func(w io.Writer) {
			i := mc.Info
			fmt.Fprintf(w, "service:  %s\nsource:   %s\nsubject:  %s\nnames:    %s\nissuer:   %s\nvalid:    %s to %s\nsha256:   %s\nchain:    %d certificates\n",
				mc.Service, mc.Source, i.Subject, strings.Join(i.Names, ", "), i.Issuer,
				i.NotBefore.UTC().Format(time.RFC3339), i.NotAfter.UTC().Format(time.RFC3339), i.SHA256, i.Chain)
		})
	case "install":
		if len(a) != 4 {
			return fmt.Errorf("%w: mail cert install CERT KEY", errUsage)
		}
		chain, err := os.ReadFile(a[2])
		if err != nil {
			return err
		}
		key, err := os.ReadFile(a[3])
		if err != nil {
			return err
		}
		cl, err := c.client()
		if err != nil {
			return err
		}
		if err := cl.SetMailCert(ctx, cluster.MailCertRequest{Chain: chain, Key: key}); err != nil {
			return err
		}
	case "issue":
		cl, err := c.client()
		if err != nil {
			return err
		}
		if err := cl.SetMailCert(ctx, cluster.MailCertRequest{Issue: true, Names: a[2:]}); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: mail cert show|install|issue", errUsage)
	}
	fmt.Fprintln(c.stdout, "ok: the mail service takes it within a monitor interval")
	return nil
}

// mailPost sends one change of the mail settings and says what it did.
func (c *cli) mailPost(ctx context.Context, path string, req any) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	var out map[string]string
	if err := cl.Do(ctx, http.MethodPost, path, req, &out); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, "ok:", out["ok"])
	return nil
}

// mailList fetches a list and prints it as JSON or with text.
func (c *cli) mailList(ctx context.Context, path string, args []string, stderr io.Writer, v any, text func(io.Writer)) error {
	fs := flag.NewFlagSet("list", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: list takes no arguments", errUsage)
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	if err := cl.Do(ctx, http.MethodGet, path, nil, v); err != nil {
		return err
	}
	return c.show(*asJSON, v, text)
}

func (c *cli) mailUser(ctx context.Context, a []string, stderr io.Writer) error {
	const usage = "mail user add|passwd ADDR [-quota MIB] | quota ADDR MIB | del ADDR | list [-json] | import FILE"
	switch {
	case a[0] == "list":
		var users []mail.User
		return c.mailList(ctx, "/v1/mail/users", a[1:], stderr, &users, func(w io.Writer) {
			tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "USER\tQUOTA")
			for _, u := range users {
				q := "none"
				if u.QuotaMiB > 0 {
					q = fmt.Sprintf("%d MiB", u.QuotaMiB)
				}
				fmt.Fprintf(tw, "%s\t%s\n", u.Name, q)
			}
			tw.Flush()
		})
	case len(a) < 2:
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	req := cluster.MailUserRequest{Action: a[0], Name: a[1]}
	switch a[0] {
	case "add", "passwd":
		fs := flag.NewFlagSet("mail user "+a[0], flag.ContinueOnError)
		fs.SetOutput(stderr)
		quota := fs.Int("quota", 0, "the user's quota in MiB (0: none)")
		if a[0] == "passwd" {
			quota = nil
		}
		if err := fs.Parse(a[2:]); err != nil {
			return fmt.Errorf("%w: %w", errUsage, err)
		}
		if fs.NArg() > 0 {
			return fmt.Errorf("%w: %s", errUsage, usage)
		}
		if quota != nil {
			req.QuotaMiB = *quota
		}
		pw, err := passwd.Read(os.Stdin, stderr, "password for "+req.Name)
		if err != nil {
			return err
		}
		req.Password = pw
	case "quota":
		if len(a) != 3 {
			return fmt.Errorf("%w: mail user quota ADDR MIB", errUsage)
		}
		q, err := strconv.Atoi(a[2])
		if err != nil {
			return fmt.Errorf("%w: mail user quota ADDR MIB: %q is not a number of MiB", errUsage, a[2])
		}
		req.QuotaMiB = q
	case "del":
		if len(a) != 2 {
			return fmt.Errorf("%w: mail user del ADDR", errUsage)
		}
	case "import":
		if len(a) != 2 {
			return fmt.Errorf("%w: mail user import FILE", errUsage)
		}
		users, err := readUsersFile(ctx, c, a[1])
		if err != nil {
			return err
		}
		req = cluster.MailUserRequest{Action: "import", Users: users}
	default:
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	return c.mailPost(ctx, "/v1/mail/users", req)
}

// readUsersFile reads a passwd-file to import; names without a domain
// get the cluster's. Passwords travel as the file has them ({PLAIN} ones
// are checked and hashed by the node).
func readUsersFile(ctx context.Context, c *cli, file string) ([]mail.User, error) {
	cl, err := c.client()
	if err != nil {
		return nil, err
	}
	var doms cluster.MailDomains
	if err := cl.Do(ctx, http.MethodGet, "/v1/mail/domains", nil, &doms); err != nil {
		return nil, err
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return mail.ReadUsersFile(f, file, doms.Domains[0])
}

func (c *cli) mailAlias(ctx context.Context, a []string, stderr io.Writer) error {
	switch a[0] {
	case "list":
		var aliases []mail.Alias
		return c.mailList(ctx, "/v1/mail/aliases", a[1:], stderr, &aliases, func(w io.Writer) {
			for _, x := range aliases {
				fmt.Fprintf(w, "%s -> %s\n", x.From, strings.Join(x.To, ", "))
			}
		})
	case "add", "del":
		if len(a) < 2 || a[0] == "add" && len(a) < 3 {
			return fmt.Errorf("%w: mail alias add FROM TO... | del FROM [TO...]", errUsage)
		}
		return c.mailPost(ctx, "/v1/mail/aliases", cluster.MailAliasRequest{Action: a[0], From: a[1], To: a[2:]})
	}
	return fmt.Errorf("%w: mail alias add|del|list", errUsage)
}

func (c *cli) mailDomain(ctx context.Context, a []string, stderr io.Writer) error {
	switch a[0] {
	case "list":
		var doms cluster.MailDomains
		return c.mailList(ctx, "/v1/mail/domains", a[1:], stderr, &doms, func(w io.Writer) {
			for _, d := range doms.Domains {
				fmt.Fprintln(w, d)
			}
		})
	case "add", "del":
		if len(a) != 2 {
			return fmt.Errorf("%w: mail domain add|del DOMAIN", errUsage)
		}
		return c.mailPost(ctx, "/v1/mail/domains", cluster.MailDomainRequest{Action: a[0], Name: a[1]})
	}
	return fmt.Errorf("%w: mail domain add|del|list", errUsage)
}

// mailDKIM prints a domain's DKIM record (the zone file line, or with
// -json all of cluster.MailDKIM).
func (c *cli) mailDKIM(ctx context.Context, a []string, stderr io.Writer) error {
	const usage = "mail dkim show [-json] DOMAIN"
	if a[0] != "show" {
		return fmt.Errorf("%w: %s", errUsage, usage)
	}
	domain, asJSON, err := jsonAndOne(a, "mail dkim show", usage, "print JSON: the domain, the selector, the record's name, text and zone file line", stderr)
	if err != nil {
		return err
	}
	cl, err := c.client()
	if err != nil {
		return err
	}
	var dk cluster.MailDKIM
	if err := cl.Do(ctx, http.MethodGet, "/v1/mail/dkim/"+url.PathEscape(domain), nil, &dk); err != nil {
		return err
	}
	return c.show(asJSON, dk, func(w io.Writer) { fmt.Fprintln(w, dk.Record) })
}

func (c *cli) mailConfig(ctx context.Context, a []string, stderr io.Writer) error {
	switch {
	case a[0] == "set" && len(a) == 3 && a[1] == mail.SetSmarthostPassword && a[2] != "":
		return fmt.Errorf("%w: %s is asked for (or read from stdin), never given on the command line; \"\" removes it", errUsage, a[1])
	case a[0] == "set" && len(a) == 3:
		return c.mailPost(ctx, "/v1/mail/config", cluster.MailSettingRequest{Name: a[1], Value: a[2]})
	case a[0] == "set" && len(a) == 2 && a[1] == mail.SetSmarthostPassword:
		pw, err := passwd.Read(os.Stdin, stderr, "password for the smarthost")
		if err != nil {
			return err
		}
		return c.mailPost(ctx, "/v1/mail/config", cluster.MailSettingRequest{Name: a[1], Value: pw})
	case a[0] == "get" && len(a) <= 2:
		cl, err := c.client()
		if err != nil {
			return err
		}
		var settings map[string]string
		if err := cl.Do(ctx, http.MethodGet, "/v1/mail/config", nil, &settings); err != nil {
			return err
		}
		names := mail.SettingNames
		if len(a) == 2 {
			if _, ok := settings[a[1]]; !ok {
				return fmt.Errorf("%w: no setting %q (the settings: %s)", errUsage, a[1], strings.Join(names, ", "))
			}
			names = a[1:]
		}
		for _, n := range names {
			fmt.Fprintf(c.stdout, "%s = %s\n", n, settings[n])
		}
		return nil
	}
	return fmt.Errorf("%w: mail config get [NAME] | set NAME VALUE | set smarthost_password", errUsage)
}
