package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"tandem/services/mail"
	"tandem/services/mail/mailtls"
)

// The mail service's settings that are the same on whichever data node
// runs it live in etcd, once for the cluster (docs/mail.md, "TLS"): every
// member can read and change them, with or without the volume mounted,
// and the owner's workload applies a change within a monitor interval.
// etcd takes only members' certificates, and a member already serves the
// mail, so the service key there reaches no one new.
const (
	// keyMailService is the service's host name and domain
	// (mailServiceName), put by the data nodes from their mail resource,
	// so that every member (the arbitrator included) checks
	// certificates, users and domains against it.
	keyMailService = "/tandem/mail/service"
	// keyMailCA is the mail CA (mailCA): never the cluster CA.
	keyMailCA = "/tandem/mail/ca"
	// keyMailCert is the service certificate (mailCert).
	keyMailCert = "/tandem/mail/cert"
)

// Sources of the service certificate.
const (
	// CertFromCluster: issued by the cluster's mail CA, renewed by the
	// cluster.
	CertFromCluster = "cluster"
	// CertInstalled: the admin's own (tandemctl mail cert install),
	// never replaced by the cluster.
	CertInstalled = "installed"
)

type mailCA struct {
	Cert []byte `json:"cert"`
	Key  []byte `json:"key"`
}

type mailCert struct {
	mailtls.Pair
	Source string `json:"source"`
	// Names are the names the admin added to a cluster-issued
	// certificate besides the service's.
	Names []string `json:"names,omitempty"`
}

// MailCert describes the service certificate: GET /v1/mail/cert, and
// tandemctl status's line about it.
type MailCert struct {
	Service string       `json:"service"`
	Source  string       `json:"source"`
	Info    mailtls.Info `json:"info"`
	// CA is the mail CA's certificate (PEM): what mail clients trust for
	// a cluster-issued certificate.
	CA []byte `json:"ca,omitempty"`
}

// mailServiceName is the mail service's host name (service.domain) and
// the cluster's mail domain.
type mailServiceName struct {
	Host   string `json:"host"`
	Domain string `json:"domain"`
	// Users is the node's users file to import while the cluster has no
	// users (not stored).
	Users string `json:"-"`
}

// mailService is this node's mail resource's names, if it has one (data
// nodes).
func (d *Daemon) mailService() (mailServiceName, bool) {
	for _, rc := range d.cfg.Group {
		if rc.Agent == "mail" {
			w, err := mail.FromParams(rc.Params)
			if err != nil {
				return mailServiceName{}, false // the resource refuses to start anyway
			}
			return mailServiceName{Host: w.Hostname(), Domain: w.Domain, Users: w.Users}, true
		}
	}
	return mailServiceName{}, false
}

// publishedService reads the names a data node published.
func (d *Daemon) publishedService(ctx context.Context) (mailServiceName, bool, error) {
	var s mailServiceName
	_, found, err := d.getJSON(ctx, keyMailService, &s)
	return s, found, err
}

// getJSON reads key into v; found is false when there is no such key.
func (d *Daemon) getJSON(ctx context.Context, key string, v any) (rev int64, found bool, err error) {
	r, err := d.cli.Get(ctx, key)
	if err != nil {
		return 0, false, err
	}
	if len(r.Kvs) == 0 {
		return 0, false, nil
	}
	if err := json.Unmarshal(r.Kvs[0].Value, v); err != nil {
		return 0, false, fmt.Errorf("%s: %w", key, err)
	}
	return r.Kvs[0].ModRevision, true, nil
}

// ensureMailSite makes what a mail service needs once for the cluster,
// on a data node: the published service name, a DKIM key for every
// served domain, the mail CA, a certificate for service (its host name;
// renewed when due). Two nodes doing it at once both succeed: each write
// is conditional, and the loser reads the winner's.
func (d *Daemon) ensureMailSite(ctx context.Context, svc mailServiceName, now time.Time) error {
	service := svc.Host
	if cur, found, err := d.publishedService(ctx); err != nil {
		return err
	} else if !found || cur != (mailServiceName{Host: svc.Host, Domain: svc.Domain}) {
		b, _ := json.Marshal(svc)
		if _, err := d.cli.Txn(ctx).Then(clientv3.OpPut(keyMailService, string(b)), bumpMail()).Commit(); err != nil {
			return err
		}
	}
	if err := d.importMailUsers(ctx, svc); err != nil {
		d.log.Warn("mail users file not imported", "file", svc.Users, "err", err)
	}
	if err := d.ensureDKIM(ctx, now); err != nil {
		return err
	}
	var ca mailCA
	_, found, err := d.getJSON(ctx, keyMailCA, &ca)
	if err != nil {
		return err
	}
	if !found {
		cert, key, err := mailtls.NewCA(d.cf.Cluster)
		if err != nil {
			return err
		}
		b, _ := json.Marshal(mailCA{Cert: cert, Key: key})
		if _, err := d.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(keyMailCA), "=", 0)).
			Then(clientv3.OpPut(keyMailCA, string(b))).Commit(); err != nil {
			return err
		}
		if _, _, err := d.getJSON(ctx, keyMailCA, &ca); err != nil {
			return err
		}
		d.log.Info("mail CA made")
	}
	var cur mailCert
	rev, found, err := d.getJSON(ctx, keyMailCert, &cur)
	if err != nil {
		return err
	}
	if found {
		if cur.Source == CertInstalled {
			return nil
		}
		info, err := mailtls.Check(cur.Pair, service, now)
		if err == nil && !info.Due(now) {
			return nil
		}
	}
	next, err := issueMailCert(ca, service, cur.Names)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(next)
	cmp := clientv3.Compare(clientv3.ModRevision(keyMailCert), "=", rev)
	if _, err := d.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(keyMailCert, string(b)), bumpMail()).Commit(); err != nil {
		return err
	}
	d.log.Info("mail certificate issued by the mail CA", "service", service, "names", cur.Names)
	return nil
}

// ensureDKIM makes a DKIM key for each served domain that has none: the
// cluster's own the first time, and any a cluster made before DKIM came
// (domain add makes one with the domain). Each is put only while the key
// is absent and the domain served, so two nodes at once or a domain
// deleted meanwhile change nothing.
func (d *Daemon) ensureDKIM(ctx context.Context, now time.Time) error {
	s, err := d.readMailState(ctx)
	if err != nil {
		return err
	}
	for _, dom := range slices.Sorted(maps.Keys(s.domains)) {
		if _, ok := s.dkim[dom]; ok {
			continue
		}
		k, err := mail.NewDKIMKey(dom, now)
		if err != nil {
			return err
		}
		cmps := append(s.domainServed(dom), absent(keyMailDKIM+dom))
		resp, err := d.cli.Txn(ctx).If(cmps...).Then(putJSON(keyMailDKIM+dom, k), bumpMail()).Commit()
		if err != nil {
			return err
		}
		if resp.Succeeded {
			d.log.Info("mail DKIM key made", "domain", dom, "selector", k.Selector)
		}
	}
	return nil
}

func issueMailCert(ca mailCA, service string, names []string) (mailCert, error) {
	p, err := mailtls.Issue(ca.Cert, ca.Key, append([]string{service}, names...))
	if err != nil {
		return mailCert{}, err
	}
	return mailCert{Pair: p, Source: CertFromCluster, Names: names}, nil
}

// mailSite returns the mail workload's Site for the data node's mail
// resource w: made first if this is the cluster's first mail start, then
// read again only when keyMailVersion changed.
func (d *Daemon) mailSite(w *mail.Workload) func(context.Context) (mail.Site, error) {
	svc := mailServiceName{Host: w.Hostname(), Domain: w.Domain, Users: w.Users}
	var cached mail.Site
	var cachedRev int64
	return func(ctx context.Context) (mail.Site, error) {
		r, err := d.cli.Get(ctx, keyMailVersion)
		if err != nil {
			return mail.Site{}, fmt.Errorf("mail settings from the cluster state: %w", err)
		}
		if len(r.Kvs) > 0 && r.Kvs[0].ModRevision == cachedRev {
			return cached, nil
		}
		s, rev, err := d.readMailSite(ctx, svc)
		if err != nil {
			return mail.Site{}, err
		}
		cached, cachedRev = s, rev
		return s, nil
	}
}

// readMailSite reads every mail setting of the cluster in one read, and
// the revision of keyMailVersion it saw.
func (d *Daemon) readMailSite(ctx context.Context, svc mailServiceName) (mail.Site, int64, error) {
	var cur mailCert
	_, found, err := d.getJSON(ctx, keyMailCert, &cur)
	if err == nil && !found {
		if err = d.ensureMailSite(ctx, svc, time.Now()); err == nil {
			_, found, err = d.getJSON(ctx, keyMailCert, &cur)
		}
	}
	if err != nil {
		return mail.Site{}, 0, fmt.Errorf("mail certificate from the cluster state: %w", err)
	}
	if !found {
		return mail.Site{}, 0, errors.New("no mail certificate in the cluster state")
	}
	r, err := d.cli.Get(ctx, mailPrefix, clientv3.WithPrefix())
	if err != nil {
		return mail.Site{}, 0, fmt.Errorf("mail settings from the cluster state: %w", err)
	}
	st, rev, err := decodeMailState(svc, r.Kvs)
	if err != nil {
		return mail.Site{}, 0, err
	}
	return st.site(cur.Pair), rev, nil
}

// mailCertStatus describes the service certificate.
func (d *Daemon) mailCertStatus(ctx context.Context) (*MailCert, error) {
	var cur mailCert
	_, found, err := d.getJSON(ctx, keyMailCert, &cur)
	if err != nil || !found {
		return nil, err
	}
	info, err := mailtls.Describe(cur.Chain)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyMailCert, err)
	}
	mc := &MailCert{Source: cur.Source, Info: info}
	if s, found, err := d.publishedService(ctx); err == nil && found {
		mc.Service = s.Host
	}
	var ca mailCA
	if _, found, err := d.getJSON(ctx, keyMailCA, &ca); err == nil && found {
		mc.CA = ca.Cert
	}
	return mc, nil
}

func (d *Daemon) handleMailCert(w http.ResponseWriter, r *http.Request) {
	c, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	mc, err := d.mailCertStatus(c)
	switch {
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, apiError{"mail certificate: " + err.Error()})
	case mc == nil:
		writeJSON(w, http.StatusNotFound, apiError{"no mail certificate yet: a data node makes one when it first starts the mail service"})
	default:
		writeJSON(w, 200, mc)
	}
}

// MailCertRequest installs a certificate (Chain and Key) or has the
// mail CA issue one (Issue, with Names added to the service's).
type MailCertRequest struct {
	Chain []byte   `json:"chain,omitempty"`
	Key   []byte   `json:"key,omitempty"`
	Issue bool     `json:"issue,omitempty"`
	Names []string `json:"names,omitempty"`
}

var dnsNameRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$`)

func (d *Daemon) handleMailCertPut(w http.ResponseWriter, r *http.Request) {
	var req MailCertRequest
	if !decode(w, r, &req) {
		return
	}
	c, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	svc, ok := d.requireService(w, c, "mail certificate")
	if !ok {
		return
	}
	service := svc.Host
	var next mailCert
	switch {
	case req.Issue && (req.Chain != nil || req.Key != nil):
		writeJSON(w, http.StatusBadRequest, apiError{"mail certificate: either issue or install (chain and key), not both"})
		return
	case req.Issue:
		for _, n := range req.Names {
			if !dnsNameRE.MatchString(n) || n == service {
				writeJSON(w, http.StatusBadRequest, apiError{fmt.Sprintf("mail certificate: name %q is not a lower-case DNS name other than the service's %s", n, service)})
				return
			}
		}
		var ca mailCA
		if _, found, err := d.getJSON(c, keyMailCA, &ca); err != nil || !found {
			writeJSON(w, http.StatusServiceUnavailable, apiError{fmt.Sprintf("mail certificate: no mail CA in the cluster state yet (%v)", err)})
			return
		}
		var err error
		if next, err = issueMailCert(ca, service, slices.Compact(slices.Sorted(slices.Values(req.Names)))); err != nil {
			writeJSON(w, http.StatusInternalServerError, apiError{"mail certificate: " + err.Error()})
			return
		}
	default:
		p := mailtls.Pair{Chain: req.Chain, Key: req.Key}
		if _, err := mailtls.Check(p, service, time.Now()); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{"mail certificate: " + err.Error()})
			return
		}
		next = mailCert{Pair: p, Source: CertInstalled}
	}
	b, _ := json.Marshal(next)
	d.write(w, r, "mail certificate "+next.Source, clientv3.OpPut(keyMailCert, string(b)), bumpMail())
}

// requireService reads the published service names, or answers why
// there are none.
func (d *Daemon) requireService(w http.ResponseWriter, ctx context.Context, what string) (mailServiceName, bool) {
	svc, found, err := d.publishedService(ctx)
	switch {
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, apiError{what + ": cluster state not readable (no quorum?): " + err.Error()})
	case !found:
		writeJSON(w, http.StatusConflict, apiError{what + ": no data node has published the mail service's name yet"})
	default:
		return svc, true
	}
	return svc, false
}

// Users, aliases and domains: one key each, below mailPrefix. Every
// change to anything below it also writes keyMailVersion in the same
// transaction, so the owner's workload reads them all again only when
// something changed (mailSite).
const (
	mailPrefix     = "/tandem/mail/"
	keyMailVersion = "/tandem/mail/version"
	keyMailDomains = "/tandem/mail/domains/" // + domain, besides the cluster's own
	keyMailUsers   = "/tandem/mail/users/"   // + address: mail.User
	keyMailAliases = "/tandem/mail/aliases/" // + address: mail.Alias
	// keyMailImported says a node's users file was imported; it is not
	// imported again.
	keyMailImported = "/tandem/mail/imported"
	// keyMailSettings holds the site settings (mail.Settings).
	keyMailSettings = "/tandem/mail/settings"
	// keyMailDKIM + domain is the domain's DKIM key (mail.DKIMKey), made
	// with the domain and deleted with it. Its private key is read by
	// the workload only; the API answers its public record.
	keyMailDKIM = "/tandem/mail/dkim/"
)

// Limits of the mail settings.
const (
	maxMailImport   = 4000    // users in one import (one transaction)
	maxAliasTargets = 100     // addresses one alias delivers to
	maxQuotaMiB     = 1 << 20 // 1 TiB
)

func bumpMail() clientv3.Op {
	return clientv3.OpPut(keyMailVersion, strconv.FormatInt(time.Now().UnixNano(), 10))
}

// importMailUsers imports the node's users file while the cluster has
// never imported one: the lab's and any node config's first users. The
// file is left as it is; after the import it is no longer read.
func (d *Daemon) importMailUsers(ctx context.Context, svc mailServiceName) error {
	if svc.Users == "" {
		return nil
	}
	r, err := d.cli.Get(ctx, keyMailImported)
	if err != nil || len(r.Kvs) > 0 {
		return err
	}
	f, err := os.Open(svc.Users)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	users, err := mail.ParseUsersFile(f, svc.Users, svc.Domain)
	if err != nil {
		return err
	}
	if len(users) > maxMailImport {
		return fmt.Errorf("%s: %d users, at most %d in one import", svc.Users, len(users), maxMailImport)
	}
	cmps := []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(keyMailImported), "=", 0)}
	ops := []clientv3.Op{clientv3.OpPut(keyMailImported, svc.Users), bumpMail()}
	for _, u := range users {
		if _, dom, _ := strings.Cut(u.Name, "@"); dom != svc.Domain {
			return fmt.Errorf("%s: user %s is not in the cluster's domain %s", svc.Users, u.Name, svc.Domain)
		}
		b, _ := json.Marshal(u)
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(keyMailUsers+u.Name), "=", 0))
		ops = append(ops, clientv3.OpPut(keyMailUsers+u.Name, string(b)))
	}
	resp, err := d.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return err
	}
	if resp.Succeeded {
		d.log.Info("mail users imported from the node's users file", "file", svc.Users, "users", len(users))
	}
	return nil
}

// MailUserRequest changes mail users (POST /v1/mail/users). Action is
// add (Name, Password, QuotaMiB), passwd (Name, Password), quota (Name,
// QuotaMiB), del (Name) or import (Users, each with a {SCHEME} password
// or hash in Hash). Passwords are hashed by the node and never logged.
type MailUserRequest struct {
	Action   string      `json:"action"`
	Name     string      `json:"name,omitempty"`
	Password string      `json:"password,omitempty"`
	QuotaMiB int         `json:"quota_mib,omitempty"`
	Users    []mail.User `json:"users,omitempty"`
}

// MailAliasRequest changes an alias: add (From, To: added to what the
// alias has) or del (From; with To, only those addresses).
type MailAliasRequest struct {
	Action string   `json:"action"`
	From   string   `json:"from"`
	To     []string `json:"to,omitempty"`
}

// MailDomainRequest adds or deletes a served domain.
type MailDomainRequest struct {
	Action string `json:"action"`
	Name   string `json:"name"`
}

// MailDomains is what GET /v1/mail/domains answers: the cluster's own
// domain first.
type MailDomains struct {
	Domains []string `json:"domains"`
}

// mailState is the users, aliases and domains as one read saw them.
type mailState struct {
	svc     mailServiceName
	domains map[string]bool // every served domain, the cluster's included
	users   map[string]mail.User
	aliases map[string]mail.Alias
	dkim    map[string]mail.DKIMKey // by domain
	// settings and the revision of keyMailSettings (0: none).
	settings    mail.Settings
	settingsRev int64
}

func (d *Daemon) readMailState(ctx context.Context) (*mailState, error) {
	svc, found, err := d.publishedService(ctx)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, errNoMailService
	}
	r, err := d.cli.Get(ctx, mailPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, err
	}
	s, _, err := decodeMailState(svc, r.Kvs)
	return s, err
}

// decodeMailState reads the keys below mailPrefix, and the revision of
// keyMailVersion among them.
func decodeMailState(svc mailServiceName, kvs []*mvccpb.KeyValue) (*mailState, int64, error) {
	s := &mailState{svc: svc, domains: map[string]bool{svc.Domain: true}, users: map[string]mail.User{}, aliases: map[string]mail.Alias{},
		dkim: map[string]mail.DKIMKey{}}
	var version int64
	for _, kv := range kvs {
		k := string(kv.Key)
		var err error
		switch {
		case k == keyMailVersion:
			version = kv.ModRevision
		case k == keyMailSettings:
			s.settingsRev = kv.ModRevision
			err = json.Unmarshal(kv.Value, &s.settings)
		case strings.HasPrefix(k, keyMailDomains):
			s.domains[strings.TrimPrefix(k, keyMailDomains)] = true
		case strings.HasPrefix(k, keyMailUsers):
			var u mail.User
			err = json.Unmarshal(kv.Value, &u)
			s.users[u.Name] = u
		case strings.HasPrefix(k, keyMailAliases):
			var a mail.Alias
			err = json.Unmarshal(kv.Value, &a)
			s.aliases[a.From] = a
		case strings.HasPrefix(k, keyMailDKIM):
			var dk mail.DKIMKey
			err = json.Unmarshal(kv.Value, &dk)
			s.dkim[dk.Domain] = dk
		}
		if err != nil {
			return nil, 0, fmt.Errorf("%s: %w", k, err)
		}
	}
	return s, version, nil
}

// site is the workload's Site of s with the certificate tls, each list
// in key order (Site's sum must not change with map order).
func (s *mailState) site(tls mailtls.Pair) mail.Site {
	site := mail.Site{TLS: tls, Settings: s.settings}
	for _, d := range slices.Sorted(maps.Keys(s.domains)) {
		if d != s.svc.Domain {
			site.Domains = append(site.Domains, d)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(s.users)) {
		site.Users = append(site.Users, s.users[n])
	}
	for _, n := range slices.Sorted(maps.Keys(s.aliases)) {
		site.Aliases = append(site.Aliases, s.aliases[n])
	}
	for _, n := range slices.Sorted(maps.Keys(s.dkim)) {
		site.DKIM = append(site.DKIM, s.dkim[n])
	}
	return site
}

var errNoMailService = errors.New("no data node has published the mail service's name yet")

// checkNewAddress checks that addr can become a user or an alias: a
// valid address in a served domain, neither a user nor an alias yet, not
// the monitor's.
func (s *mailState) checkNewAddress(addr string) error {
	local, dom, err := mail.ParseAddress(addr)
	if err != nil {
		return err
	}
	switch {
	case !s.domains[dom]:
		return fmt.Errorf("%s: the domain %s is not served (tandemctl mail domain add %s)", addr, dom, dom)
	case local == mail.MonitorUser:
		return fmt.Errorf("%s: %s is the monitor's account", addr, mail.MonitorUser)
	case s.users[addr].Name != "":
		return fmt.Errorf("%s is already a user (tandemctl mail user passwd changes the password)", addr)
	case s.aliases[addr].From != "":
		return fmt.Errorf("%s is already an alias", addr)
	}
	return nil
}

func checkQuota(q int) error {
	if q < 0 || q > maxQuotaMiB {
		return fmt.Errorf("quota %d MiB: want 0 (none) to %d", q, maxQuotaMiB)
	}
	return nil
}

// mailChange is a validated change: compares that keep it valid, the
// operations, and what to log (never a password).
type mailChange struct {
	cmps []clientv3.Cmp
	ops  []clientv3.Op
	what string
}

func absent(key string) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
}

func present(key string) clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(key), ">", 0)
}

// domainPresent keeps a change valid only while the domain of addr is
// served (the cluster's own always is).
func (s *mailState) domainPresent(addr string) []clientv3.Cmp {
	_, dom, _ := strings.Cut(addr, "@")
	return s.domainServed(dom)
}

// domainServed keeps a change valid only while dom is served.
func (s *mailState) domainServed(dom string) []clientv3.Cmp {
	if dom == s.svc.Domain {
		return nil
	}
	return []clientv3.Cmp{present(keyMailDomains + dom)}
}

func putJSON(key string, v any) clientv3.Op {
	b, _ := json.Marshal(v)
	return clientv3.OpPut(key, string(b))
}

func (s *mailState) userChange(req MailUserRequest) (mailChange, error) {
	key := keyMailUsers + req.Name
	cur, exists := s.users[req.Name]
	switch req.Action {
	case "add":
		if err := s.checkNewAddress(req.Name); err != nil {
			return mailChange{}, err
		}
		if err := mail.CheckPassword(req.Name, req.Password); err != nil {
			return mailChange{}, err
		}
		if err := checkQuota(req.QuotaMiB); err != nil {
			return mailChange{}, err
		}
		h, err := mail.HashPassword(req.Password)
		if err != nil {
			return mailChange{}, err
		}
		return mailChange{cmps: append(s.domainPresent(req.Name), absent(key), absent(keyMailAliases+req.Name)),
			ops: []clientv3.Op{putJSON(key, mail.User{Name: req.Name, Hash: h, QuotaMiB: req.QuotaMiB})}, what: "mail user added: " + req.Name}, nil
	case "passwd", "quota", "del":
		if !exists {
			return mailChange{}, fmt.Errorf("no mail user %q", req.Name)
		}
	case "import":
		return s.importChange(req.Users)
	default:
		return mailChange{}, fmt.Errorf("action %q: want add, passwd, quota, del or import", req.Action)
	}
	switch req.Action {
	case "passwd":
		if err := mail.CheckPassword(req.Name, req.Password); err != nil {
			return mailChange{}, err
		}
		h, err := mail.HashPassword(req.Password)
		if err != nil {
			return mailChange{}, err
		}
		cur.Hash = h
	case "quota":
		if err := checkQuota(req.QuotaMiB); err != nil {
			return mailChange{}, err
		}
		cur.QuotaMiB = req.QuotaMiB
	case "del":
		return mailChange{cmps: []clientv3.Cmp{present(key)}, ops: []clientv3.Op{clientv3.OpDelete(key)}, what: "mail user deleted: " + req.Name}, nil
	}
	return mailChange{cmps: []clientv3.Cmp{present(key)}, ops: []clientv3.Op{putJSON(key, cur)}, what: "mail user " + req.Action + ": " + req.Name}, nil
}

// importChange adds users all at once: every one valid and new, or none.
func (s *mailState) importChange(users []mail.User) (mailChange, error) {
	if len(users) == 0 || len(users) > maxMailImport {
		return mailChange{}, fmt.Errorf("import: %d users, want 1 to %d", len(users), maxMailImport)
	}
	var c mailChange
	seen := map[string]bool{}
	for _, u := range users {
		if seen[u.Name] {
			return mailChange{}, fmt.Errorf("import: %s is listed twice", u.Name)
		}
		seen[u.Name] = true
		if err := s.checkNewAddress(u.Name); err != nil {
			return mailChange{}, fmt.Errorf("import: %w", err)
		}
		h, err := mail.ImportedHash(u.Name, u.Hash)
		if err != nil {
			return mailChange{}, fmt.Errorf("import: %w", err)
		}
		if err := checkQuota(u.QuotaMiB); err != nil {
			return mailChange{}, fmt.Errorf("import: %s: %w", u.Name, err)
		}
		c.cmps = append(append(c.cmps, s.domainPresent(u.Name)...), absent(keyMailUsers+u.Name), absent(keyMailAliases+u.Name))
		c.ops = append(c.ops, putJSON(keyMailUsers+u.Name, mail.User{Name: u.Name, Hash: h, QuotaMiB: u.QuotaMiB}))
	}
	c.what = fmt.Sprintf("mail users imported: %d", len(users))
	return c, nil
}

func (s *mailState) aliasChange(req MailAliasRequest) (mailChange, error) {
	key := keyMailAliases + req.From
	cur, exists := s.aliases[req.From]
	for _, to := range req.To {
		if _, _, err := mail.ParseAddress(to); err != nil {
			return mailChange{}, fmt.Errorf("alias %s: %w", req.From, err)
		}
		if to == req.From {
			return mailChange{}, fmt.Errorf("alias %s: it cannot deliver to itself", req.From)
		}
	}
	switch req.Action {
	case "add":
		if len(req.To) == 0 {
			return mailChange{}, fmt.Errorf("alias %s: no address to deliver to", req.From)
		}
		if !exists {
			if err := s.checkNewAddress(req.From); err != nil {
				return mailChange{}, err
			}
		}
		next := mail.Alias{From: req.From, To: slices.Clone(cur.To)}
		for _, to := range req.To {
			if !slices.Contains(next.To, to) {
				next.To = append(next.To, to)
			}
		}
		if len(next.To) > maxAliasTargets {
			return mailChange{}, fmt.Errorf("alias %s: %d addresses, at most %d", req.From, len(next.To), maxAliasTargets)
		}
		cmps := append(s.domainPresent(req.From), absent(keyMailUsers+req.From))
		if exists {
			cmps = append(cmps, present(key))
		} else {
			cmps = append(cmps, absent(key))
		}
		return mailChange{cmps: cmps, ops: []clientv3.Op{putJSON(key, next)}, what: "mail alias added: " + req.From}, nil
	case "del":
		if !exists {
			return mailChange{}, fmt.Errorf("no mail alias %q", req.From)
		}
		rest := slices.DeleteFunc(slices.Clone(cur.To), func(a string) bool { return slices.Contains(req.To, a) })
		if len(req.To) == 0 || len(rest) == 0 {
			return mailChange{cmps: []clientv3.Cmp{present(key)}, ops: []clientv3.Op{clientv3.OpDelete(key)}, what: "mail alias deleted: " + req.From}, nil
		}
		return mailChange{cmps: []clientv3.Cmp{present(key)}, ops: []clientv3.Op{putJSON(key, mail.Alias{From: req.From, To: rest})}, what: "mail alias changed: " + req.From}, nil
	}
	return mailChange{}, fmt.Errorf("action %q: want add or del", req.Action)
}

func (s *mailState) domainChange(req MailDomainRequest) (mailChange, error) {
	key := keyMailDomains + req.Name
	if !dnsNameRE.MatchString(req.Name) {
		return mailChange{}, fmt.Errorf("%q is not a lower-case DNS domain", req.Name)
	}
	if req.Name == s.svc.Domain {
		return mailChange{}, fmt.Errorf("%s is the cluster's own domain: always served", req.Name)
	}
	switch req.Action {
	case "add":
		if s.domains[req.Name] {
			return mailChange{}, fmt.Errorf("domain %s is already served", req.Name)
		}
		k, err := mail.NewDKIMKey(req.Name, time.Now())
		if err != nil {
			return mailChange{}, err
		}
		return mailChange{cmps: []clientv3.Cmp{absent(key), absent(keyMailDKIM + req.Name)},
			ops:  []clientv3.Op{clientv3.OpPut(key, "{}"), putJSON(keyMailDKIM+req.Name, k)},
			what: "mail domain added: " + req.Name + " (DKIM selector " + k.Selector + ")"}, nil
	case "del":
		if !s.domains[req.Name] {
			return mailChange{}, fmt.Errorf("domain %s is not served", req.Name)
		}
		n := 0
		for a := range s.users {
			if strings.HasSuffix(a, "@"+req.Name) {
				n++
			}
		}
		for a := range s.aliases {
			if strings.HasSuffix(a, "@"+req.Name) {
				n++
			}
		}
		if n > 0 {
			return mailChange{}, fmt.Errorf("domain %s still has %d users and aliases: delete them first", req.Name, n)
		}
		return mailChange{cmps: []clientv3.Cmp{present(key)}, ops: []clientv3.Op{clientv3.OpDelete(key), clientv3.OpDelete(keyMailDKIM + req.Name)},
			what: "mail domain deleted: " + req.Name}, nil
	}
	return mailChange{}, fmt.Errorf("action %q: want add or del", req.Action)
}

// handleMailChange decodes a change, validates it against the current
// settings and commits it in one transaction whose compares keep it
// valid: a concurrent change that would make it wrong turns it into a
// 409, and nothing is half-written.
func handleMailChange[R any](d *Daemon, what string, change func(*mailState, R) (mailChange, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req R
		if !decode(w, r, &req) {
			return
		}
		c, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		s, err := d.readMailState(c)
		switch {
		case errors.Is(err, errNoMailService):
			writeJSON(w, http.StatusConflict, apiError{what + ": " + err.Error()})
			return
		case err != nil:
			writeJSON(w, http.StatusServiceUnavailable, apiError{what + ": cluster state not readable (no quorum?): " + err.Error()})
			return
		}
		ch, err := change(s, req)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{what + ": " + err.Error()})
			return
		}
		resp, err := d.cli.Txn(c).If(ch.cmps...).Then(append(ch.ops, bumpMail())...).Commit()
		switch {
		case err != nil:
			writeJSON(w, http.StatusServiceUnavailable, apiError{fmt.Sprintf("%s: cluster state not writable (no quorum?): %v", what, err)})
		case !resp.Succeeded:
			writeJSON(w, http.StatusConflict, apiError{what + ": the mail settings changed meanwhile: try again"})
		default:
			d.log.Info("api", "change", ch.what, "client", r.TLS.PeerCertificates[0].Subject.CommonName)
			writeJSON(w, 200, map[string]string{"ok": ch.what})
		}
	}
}

// handleMailList answers the users (without hashes), the aliases or the
// domains.
func (d *Daemon) handleMailList(list func(*mailState) any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		s, err := d.readMailState(c)
		switch {
		case errors.Is(err, errNoMailService):
			writeJSON(w, http.StatusConflict, apiError{err.Error()})
		case err != nil:
			writeJSON(w, http.StatusServiceUnavailable, apiError{"mail settings: " + err.Error()})
		default:
			writeJSON(w, 200, list(s))
		}
	}
}

func listUsers(s *mailState) any {
	out := []mail.User{}
	for _, n := range slices.Sorted(maps.Keys(s.users)) {
		out = append(out, mail.User{Name: n, QuotaMiB: s.users[n].QuotaMiB})
	}
	return out
}

func listAliases(s *mailState) any {
	out := []mail.Alias{}
	for _, n := range slices.Sorted(maps.Keys(s.aliases)) {
		out = append(out, s.aliases[n])
	}
	return out
}

func listDomains(s *mailState) any {
	delete(s.domains, s.svc.Domain)
	return MailDomains{Domains: append([]string{s.svc.Domain}, slices.Sorted(maps.Keys(s.domains))...)}
}

// MailSettingRequest sets one site setting (POST /v1/mail/config); an
// empty Value resets it to its default.
type MailSettingRequest struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

func (s *mailState) settingChange(req MailSettingRequest) (mailChange, error) {
	next := s.settings
	if err := next.Set(req.Name, req.Value); err != nil {
		return mailChange{}, err
	}
	cmp := clientv3.Compare(clientv3.ModRevision(keyMailSettings), "=", s.settingsRev)
	return mailChange{cmps: []clientv3.Cmp{cmp}, ops: []clientv3.Op{putJSON(keyMailSettings, next)},
		what: fmt.Sprintf("mail setting %s = %q", req.Name, next.Get()[req.Name])}, nil
}

func listSettings(s *mailState) any { return s.settings.Get() }

// MailDKIM is a domain's DKIM key as GET /v1/mail/dkim/DOMAIN answers it:
// the public record only, never the private key.
type MailDKIM struct {
	Domain   string `json:"domain"`
	Selector string `json:"selector"`
	// Name is the record's DNS name, SELECTOR._domainkey.DOMAIN.
	Name string `json:"name"`
	// TXT is the record's text, "v=DKIM1; k=rsa; p=...".
	TXT string `json:"txt"`
	// Record is the zone file line (the text split into strings of at
	// most 255 bytes).
	Record string `json:"record"`
}

func (d *Daemon) handleMailDKIM(w http.ResponseWriter, r *http.Request) {
	c, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	dom := r.PathValue("domain")
	s, err := d.readMailState(c)
	switch {
	case errors.Is(err, errNoMailService):
		writeJSON(w, http.StatusConflict, apiError{"mail DKIM key: " + err.Error()})
		return
	case err != nil:
		writeJSON(w, http.StatusServiceUnavailable, apiError{"mail DKIM key: cluster state not readable (no quorum?): " + err.Error()})
		return
	}
	k, ok := s.dkim[dom]
	switch {
	case !s.domains[dom]:
		writeJSON(w, http.StatusNotFound, apiError{fmt.Sprintf("mail DKIM key: the domain %q is not served", dom)})
		return
	case !ok:
		writeJSON(w, http.StatusNotFound, apiError{"mail DKIM key: " + dom + " has none yet: a data node makes one within a minute"})
		return
	}
	dk, err := describeDKIM(k)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, apiError{fmt.Sprintf("mail DKIM key: %s: %v", keyMailDKIM+dom, err)})
		return
	}
	writeJSON(w, 200, dk)
}

func describeDKIM(k mail.DKIMKey) (MailDKIM, error) {
	txt, err := k.TXT()
	if err != nil {
		return MailDKIM{}, err
	}
	rec, err := k.Record()
	if err != nil {
		return MailDKIM{}, err
	}
	return MailDKIM{Domain: k.Domain, Selector: k.Selector, Name: k.Name(), TXT: txt, Record: rec}, nil
}

func (d *Daemon) mailRoutes(mux *http.ServeMux) {
	mux.Handle("GET /v1/mail/config", d.auth(readers, d.handleMailList(listSettings)))
	mux.Handle("POST /v1/mail/config", d.auth(admins, handleMailChange(d, "mail setting", (*mailState).settingChange)))
	mux.Handle("GET /v1/mail/cert", d.auth(readers, d.handleMailCert))
	mux.Handle("POST /v1/mail/cert", d.auth(admins, d.handleMailCertPut))
	mux.Handle("GET /v1/mail/users", d.auth(readers, d.handleMailList(listUsers)))
	mux.Handle("POST /v1/mail/users", d.auth(admins, handleMailChange(d, "mail user", (*mailState).userChange)))
	mux.Handle("GET /v1/mail/aliases", d.auth(readers, d.handleMailList(listAliases)))
	mux.Handle("POST /v1/mail/aliases", d.auth(admins, handleMailChange(d, "mail alias", (*mailState).aliasChange)))
	mux.Handle("GET /v1/mail/domains", d.auth(readers, d.handleMailList(listDomains)))
	mux.Handle("POST /v1/mail/domains", d.auth(admins, handleMailChange(d, "mail domain", (*mailState).domainChange)))
	mux.Handle("GET /v1/mail/dkim/{domain}", d.auth(readers, http.HandlerFunc(d.handleMailDKIM)))
}
