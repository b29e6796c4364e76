package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"tandem/services/mail"
	"tandem/services/mail/mailtls"
)

// TestMailCertAPI: the mail service's certificate in the cluster state,
// against one in-process member (the founder of TestSecurity). A data
// node makes the mail CA and a certificate for the service once and
// renews it when due; an administrator installs their own, which the
// cluster never replaces, or has the mail CA issue one with more names;
// bad certificates are refused with the reason and change nothing; a
// monitor reads but cannot change it.
func TestMailCertAPI(t *testing.T) {
	s := startFounder(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := s.d
	const service = "mail.example.test"
	svc := mailServiceName{Host: service, Domain: "example.test"}
	admin := s.client(t, s.adminDir)
	if _, err := admin.MailCert(ctx); err == nil || !strings.Contains(err.Error(), "no mail certificate yet") {
		t.Errorf("mail cert before any data node made one: %v", err)
	}
	if err := admin.SetMailCert(ctx, MailCertRequest{Issue: true}); err == nil || !strings.Contains(err.Error(), "no data node has published") {
		t.Errorf("issue before any data node published the service: %v", err)
	}

	now := time.Now()
	if err := d.ensureMailSite(ctx, svc, now); err != nil {
		t.Fatal(err)
	}
	stored := func() (mailCert, int64) {
		t.Helper()
		var mc mailCert
		rev, found, err := d.getJSON(ctx, keyMailCert, &mc)
		if err != nil || !found {
			t.Fatalf("%s: found %v, %v", keyMailCert, found, err)
		}
		return mc, rev
	}
	first, rev := stored()
	if err := d.ensureMailSite(ctx, svc, now); err != nil {
		t.Fatal(err)
	}
	if _, again := stored(); again != rev {
		t.Error("a second ensureMailSite replaced a certificate that is not due")
	}
	mc, err := admin.MailCert(ctx)
	if err != nil {
		t.Fatal(err)
	}
	clusterCA, err := s.st.Read("ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	if mc.Service != service || mc.Source != CertFromCluster || mc.Info.Subject != service || mc.Info.Issuer != "tandem mail CA sec" || len(mc.CA) == 0 || bytes.Equal(mc.CA, clusterCA) {
		t.Errorf("mail cert = %+v; want the service's, from the mail CA (not the cluster CA)", mc)
	}
	site, _, err := d.readMailSite(ctx, svc)
	if err != nil || !bytes.Equal(site.TLS.Chain, first.Chain) || !bytes.Equal(site.TLS.Key, first.Key) {
		t.Errorf("the workload's site = %v; want the stored certificate", err)
	}
	// Due (less than a third of its life left): renewed.
	if err := d.ensureMailSite(ctx, svc, now.Add(mailtls.Lifetime*3/4)); err != nil {
		t.Fatal(err)
	}
	if renewed, _ := stored(); bytes.Equal(renewed.Chain, first.Chain) {
		t.Error("a certificate that is due was not renewed")
	}
	st, err := admin.Status(ctx)
	if err != nil || st.MailCert == nil || st.MailCert.Info.Subject != service || len(st.MailCert.CA) != 0 {
		t.Errorf("status's mail certificate = %+v, %v", st.MailCert, err)
	}

	// The admin's own certificate from another CA.
	siteCA, siteKey, err := mailtls.NewCA("site")
	if err != nil {
		t.Fatal(err)
	}
	own, err := mailtls.Issue(siteCA, siteKey, []string{service})
	if err != nil {
		t.Fatal(err)
	}
	other, err := mailtls.Issue(siteCA, siteKey, []string{"www.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	before, rev := stored()
	for _, c := range []struct {
		name string
		req  MailCertRequest
		want string
	}{
		{"key of another certificate", MailCertRequest{Chain: own.Chain, Key: other.Key}, "the key does not match"},
		{"for another name", MailCertRequest{Chain: other.Chain, Key: other.Key}, "not valid for the service name mail.example.test"},
		{"not PEM", MailCertRequest{Chain: []byte("x"), Key: own.Key}, "no PEM certificate"},
		{"issue and install at once", MailCertRequest{Chain: own.Chain, Key: own.Key, Issue: true}, "either issue or install"},
		{"a bad extra name", MailCertRequest{Issue: true, Names: []string{"Bad_Name"}}, `name "Bad_Name" is not a lower-case DNS name`},
	} {
		if err := admin.SetMailCert(ctx, c.req); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
	if after, r := stored(); r != rev || !bytes.Equal(after.Chain, before.Chain) {
		t.Error("a refused certificate changed the stored one")
	}
	if err := admin.SetMailCert(ctx, MailCertRequest{Chain: own.Chain, Key: own.Key}); err != nil {
		t.Fatal(err)
	}
	if mc, err := admin.MailCert(ctx); err != nil || mc.Source != CertInstalled || mc.Info.Issuer != "tandem mail CA site" {
		t.Errorf("after install: %+v, %v", mc, err)
	}
	// The cluster never replaces an installed certificate, due or not.
	if err := d.ensureMailSite(ctx, svc, now.Add(mailtls.Lifetime)); err != nil {
		t.Fatal(err)
	}
	if cur, _ := stored(); cur.Source != CertInstalled || !bytes.Equal(cur.Chain, own.Chain) {
		t.Error("ensureMailSite replaced the installed certificate")
	}
	// Back to the mail CA, with another name.
	if err := admin.SetMailCert(ctx, MailCertRequest{Issue: true, Names: []string{"imap.example.test", "imap.example.test"}}); err != nil {
		t.Fatal(err)
	}
	if mc, err := admin.MailCert(ctx); err != nil || mc.Source != CertFromCluster || strings.Join(mc.Info.Names, ",") != "mail.example.test,imap.example.test" {
		t.Errorf("after issue with a name: %+v, %v", mc, err)
	}
	// Renewal keeps the added names.
	if err := d.ensureMailSite(ctx, svc, now.Add(mailtls.Lifetime*3/4)); err != nil {
		t.Fatal(err)
	}
	if cur, _ := stored(); strings.Join(cur.Names, ",") != "imap.example.test" {
		t.Errorf("names after renewal: %v", cur.Names)
	}

	// A monitor reads, never changes.
	mon := s.monitor(t, ctx, admin)
	if _, err := mon.MailCert(ctx); err != nil {
		t.Errorf("monitor reads the mail certificate: %v", err)
	}
	if err := mon.SetMailCert(ctx, MailCertRequest{Chain: own.Chain, Key: own.Key}); err == nil || !strings.Contains(err.Error(), "nagios (monitor) may not POST /v1/mail/cert") {
		t.Errorf("monitor installs a certificate: %v, want refused", err)
	}
	// The private keys never leave through the API.
	b, _ := json.Marshal(mc)
	if bytes.Contains(b, []byte("PRIVATE KEY")) {
		t.Error("GET /v1/mail/cert answers a private key")
	}
}

// TestMailUsersAPI: users, aliases and domains through the API, as
// tandemctl mail user|alias|domain sends them: each bad input refused
// with what is wrong and nothing stored, passwords kept only as hashes,
// the workload's site following every change (and read again only after
// one), a monitor refused.
func TestMailUsersAPI(t *testing.T) {
	s := startFounder(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := s.d
	admin := s.client(t, s.adminDir)
	post := func(path string, req any) error { return admin.do(ctx, "POST", path, req, nil) }
	if err := post("/v1/mail/users", MailUserRequest{Action: "add", Name: "alice@example.test", Password: "correct horse battery"}); err == nil || !strings.Contains(err.Error(), "no data node has published") {
		t.Errorf("add a user before the service is published: %v", err)
	}
	w, err := mail.FromParams(map[string]string{"root": "/srv/mail", "domain": "example.test", "users": filepath.Join(t.TempDir(), "none")})
	if err != nil {
		t.Fatal(err)
	}
	siteOf := d.mailSite(w)
	if _, err := siteOf(ctx); err != nil { // publishes the service, makes the CA and the certificate
		t.Fatal(err)
	}
	ok := func(path string, req any) {
		t.Helper()
		if err := post(path, req); err != nil {
			t.Fatalf("%s %+v: %v", path, req, err)
		}
	}
	ok("/v1/mail/users", MailUserRequest{Action: "add", Name: "alice@example.test", Password: "correct horse battery", QuotaMiB: 100})
	ok("/v1/mail/domains", MailDomainRequest{Action: "add", Name: "example.org"})
	ok("/v1/mail/users", MailUserRequest{Action: "add", Name: "bob@example.org", Password: "another long one"})
	ok("/v1/mail/aliases", MailAliasRequest{Action: "add", From: "team@example.org", To: []string{"alice@example.test", "bob@example.org"}})
	ok("/v1/mail/aliases", MailAliasRequest{Action: "add", From: "team@example.org", To: []string{"carol@elsewhere.test", "bob@example.org"}})
	ok("/v1/mail/config", MailSettingRequest{Name: "message_size_limit", Value: "20M"})
	ok("/v1/mail/config", MailSettingRequest{Name: "relay_networks", Value: "192.0.2.0/24"})
	ok("/v1/mail/users", MailUserRequest{Action: "import", Users: []mail.User{{Name: "carol@example.test", Hash: "{PLAIN}carol's long password"}, {Name: "dave@example.test", Hash: "{SHA512-CRYPT}$6$salt$hash"}}})

	for _, c := range []struct {
		path string
		req  any
		want string
	}{
		{"/v1/mail/users", MailUserRequest{Action: "add", Name: "alice@example.test", Password: "correct horse battery"}, "alice@example.test is already a user"},
		{"/v1/mail/users", MailUserRequest{Action: "add", Name: "Eve@example.test", Password: "correct horse battery"}, "use lower case"},
		{"/v1/mail/users", MailUserRequest{Action: "add", Name: "eve", Password: "correct horse battery"}, `"eve" is not a mail address`},
		{"/v1/mail/users", MailUserRequest{Action: "add", Name: "eve@example.net", Password: "correct horse battery"}, "the domain example.net is not served"},
		{"/v1/mail/users", MailUserRequest{Action: "add", Name: "eve@example.test", Password: ""}, "the password for eve@example.test is empty"},
		{"/v1/mail/users", MailUserRequest{Action: "add", Name: "eve@example.test", Password: "short"}, "too short"},
		{"/v1/mail/users", MailUserRequest{Action: "add", Name: "eve@example.test", Password: "aaaaaaaaaaaa"}, "one character repeated"},
		{"/v1/mail/users", MailUserRequest{Action: "add", Name: "team@example.org", Password: "correct horse battery"}, "team@example.org is already an alias"},
		{"/v1/mail/users", MailUserRequest{Action: "add", Name: "tandem-monitor@example.test", Password: "correct horse battery"}, "the monitor's account"},
		{"/v1/mail/users", MailUserRequest{Action: "add", Name: "eve@example.test", Password: "correct horse battery", QuotaMiB: -1}, "quota -1 MiB"},
		{"/v1/mail/users", MailUserRequest{Action: "passwd", Name: "nobody@example.test", Password: "correct horse battery"}, `no mail user "nobody@example.test"`},
		{"/v1/mail/users", MailUserRequest{Action: "rename", Name: "alice@example.test"}, `action "rename"`},
		{"/v1/mail/users", MailUserRequest{Action: "import", Users: []mail.User{{Name: "eve@example.test", Hash: "{PLAIN}long enough pw"}, {Name: "alice@example.test", Hash: "{PLAIN}long enough pw"}}}, "import: alice@example.test is already a user"},
		{"/v1/mail/users", MailUserRequest{Action: "import", Users: []mail.User{{Name: "eve@example.test", Hash: "{MD5}x"}}}, "scheme {MD5} is not one tandem keeps"},
		{"/v1/mail/aliases", MailAliasRequest{Action: "add", From: "alice@example.test", To: []string{"bob@example.org"}}, "alice@example.test is already a user"},
		{"/v1/mail/aliases", MailAliasRequest{Action: "add", From: "loop@example.test", To: []string{"loop@example.test"}}, "cannot deliver to itself"},
		{"/v1/mail/aliases", MailAliasRequest{Action: "add", From: "x@example.test", To: []string{"not an address"}}, "is not a mail address"},
		{"/v1/mail/aliases", MailAliasRequest{Action: "add", From: "x@example.test"}, "no address to deliver to"},
		{"/v1/mail/domains", MailDomainRequest{Action: "add", Name: "example.test"}, "the cluster's own domain"},
		{"/v1/mail/domains", MailDomainRequest{Action: "add", Name: "Example.org"}, "not a lower-case DNS domain"},
		{"/v1/mail/domains", MailDomainRequest{Action: "del", Name: "example.org"}, "domain example.org still has 2 users and aliases"},
		{"/v1/mail/config", MailSettingRequest{Name: "relay_networks", Value: "0.0.0.0/0"}, "relay_networks: 0.0.0.0/0 is too large to trust with relaying"},
		{"/v1/mail/config", MailSettingRequest{Name: "open_relay", Value: "yes"}, `no setting "open_relay"`},
	} {
		before, _, err := d.readMailSite(ctx, mailServiceName{Host: w.Hostname(), Domain: w.Domain})
		if err != nil {
			t.Fatal(err)
		}
		if err := post(c.path, c.req); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %+v: %v, want an error with %q", c.path, c.req, err, c.want)
		}
		after, _, err := d.readMailSite(ctx, mailServiceName{Host: w.Hostname(), Domain: w.Domain})
		if err != nil {
			t.Fatal(err)
		}
		if a, b := fmt.Sprint(before.Users, before.Aliases, before.Domains, before.Settings), fmt.Sprint(after.Users, after.Aliases, after.Domains, after.Settings); a != b {
			t.Errorf("%s %+v was refused but changed the settings:\n%s\n%s", c.path, c.req, a, b)
		}
	}

	site, err := siteOf(ctx)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]mail.User{}
	for _, u := range site.Users {
		names[u.Name] = u
	}
	if len(names) != 4 || names["alice@example.test"].QuotaMiB != 100 || !strings.HasPrefix(names["alice@example.test"].Hash, "{ARGON2ID}$argon2id$") ||
		!strings.HasPrefix(names["carol@example.test"].Hash, "{ARGON2ID}") || names["dave@example.test"].Hash != "{SHA512-CRYPT}$6$salt$hash" {
		t.Errorf("site users = %+v", site.Users)
	}
	if got := site.Settings.Get(); got["message_size_limit"] != "20M" || got["relay_networks"] != "192.0.2.0/24" {
		t.Errorf("site settings = %v", got)
	}
	var settings map[string]string
	if err := admin.do(ctx, "GET", "/v1/mail/config", nil, &settings); err != nil || settings["message_size_limit"] != "20M" || settings["pop3"] != "false" {
		t.Errorf("GET /v1/mail/config = %v, %v", settings, err)
	}
	if fmt.Sprint(site.Domains) != "[example.org]" || len(site.Aliases) != 1 || strings.Join(site.Aliases[0].To, ",") != "alice@example.test,bob@example.org,carol@elsewhere.test" {
		t.Errorf("site domains %v, aliases %+v", site.Domains, site.Aliases)
	}
	r, err := d.cli.Get(ctx, mailPrefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range r.Kvs {
		if strings.Contains(string(kv.Value), "correct horse") || strings.Contains(string(kv.Value), "carol's long") {
			t.Errorf("%s holds a password in the clear", kv.Key)
		}
	}
	// Read again only after a change: the same answer, then a new one.
	if again, _ := siteOf(ctx); fmt.Sprint(again.Users) != fmt.Sprint(site.Users) {
		t.Error("the site changed without a change")
	}
	ok("/v1/mail/users", MailUserRequest{Action: "passwd", Name: "alice@example.test", Password: "a new long password"})
	ok("/v1/mail/users", MailUserRequest{Action: "del", Name: "dave@example.test"})
	ok("/v1/mail/aliases", MailAliasRequest{Action: "del", From: "team@example.org", To: []string{"carol@elsewhere.test"}})
	next, err := siteOf(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range next.Users {
		if u.Name == "dave@example.test" || u.Name == "alice@example.test" && u.Hash == names["alice@example.test"].Hash {
			t.Errorf("after passwd and del: %+v", next.Users)
		}
	}
	if strings.Join(next.Aliases[0].To, ",") != "alice@example.test,bob@example.org" {
		t.Errorf("alias after removing one address: %+v", next.Aliases)
	}

	var users []mail.User
	if err := admin.do(ctx, "GET", "/v1/mail/users", nil, &users); err != nil || len(users) != 3 || users[0].Name != "alice@example.test" || users[0].Hash != "" || users[0].QuotaMiB != 100 {
		t.Errorf("GET /v1/mail/users = %+v, %v; want names and quotas, no hashes", users, err)
	}
	var doms MailDomains
	if err := admin.do(ctx, "GET", "/v1/mail/domains", nil, &doms); err != nil || strings.Join(doms.Domains, ",") != "example.test,example.org" {
		t.Errorf("GET /v1/mail/domains = %+v, %v", doms, err)
	}
	mon := s.monitor(t, ctx, admin)
	if err := mon.do(ctx, "GET", "/v1/mail/aliases", nil, &[]mail.Alias{}); err != nil {
		t.Errorf("monitor lists aliases: %v", err)
	}
	if err := mon.do(ctx, "POST", "/v1/mail/users", MailUserRequest{Action: "del", Name: "alice@example.test"}, nil); err == nil || !strings.Contains(err.Error(), "may not POST /v1/mail/users") {
		t.Errorf("monitor deletes a user: %v, want refused", err)
	}
}

// TestMailDKIM: the DKIM keys' lifecycle. The first mail start makes one
// for the cluster's domain, later ones keep it; domain add makes one
// with the domain and domain del deletes it; a served domain without one
// (a cluster older than DKIM) gets one from the next ensureMailSite. GET
// /v1/mail/dkim/DOMAIN answers the record of the key the workload signs
// with, never the private key.
func TestMailDKIM(t *testing.T) {
	s := startFounder(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	d := s.d
	admin := s.client(t, s.adminDir)
	svc := mailServiceName{Host: "mail.example.test", Domain: "example.test"}
	w, err := mail.FromParams(map[string]string{"root": "/srv/mail", "domain": svc.Domain, "users": filepath.Join(t.TempDir(), "none")})
	if err != nil {
		t.Fatal(err)
	}
	siteOf := d.mailSite(w)
	keys := func() map[string]mail.DKIMKey {
		t.Helper()
		site, err := siteOf(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]mail.DKIMKey{}
		for _, k := range site.DKIM {
			out[k.Domain] = k
		}
		return out
	}
	show := func(dom string) (MailDKIM, error) {
		var dk MailDKIM
		err := admin.do(ctx, "GET", "/v1/mail/dkim/"+dom, nil, &dk)
		return dk, err
	}
	first := keys()["example.test"]
	if len(keys()) != 1 || !strings.HasPrefix(first.Selector, "tandem") || len(first.Selector) != len("tandem20261202") {
		t.Fatalf("DKIM keys after the first mail start = %+v; want one for example.test", keys())
	}
	if err := d.ensureMailSite(ctx, svc, time.Now()); err != nil {
		t.Fatal(err)
	}
	if again := keys()["example.test"]; !bytes.Equal(again.Key, first.Key) {
		t.Error("a second ensureMailSite replaced the cluster domain's key")
	}

	dk, err := show("example.test")
	if err != nil {
		t.Fatal(err)
	}
	txt, err := first.TXT()
	if err != nil {
		t.Fatal(err)
	}
	wantName := first.Selector + "._domainkey.example.test."
	if dk.Name != wantName || dk.TXT != txt || !strings.HasPrefix(dk.Record, wantName+` IN TXT "v=DKIM1; k=rsa; p=`) {
		t.Errorf("GET /v1/mail/dkim/example.test = %+v; want the record of the workload's key (%s)", dk, txt)
	}
	// The record's strings joined are the text, each at most 255 bytes.
	parts := strings.Split(strings.TrimSuffix(strings.TrimPrefix(dk.Record, wantName+` IN TXT "`), `"`), `" "`)
	if len(parts) < 2 || strings.Join(parts, "") != txt || slices.ContainsFunc(parts, func(p string) bool { return len(p) > 255 }) {
		t.Errorf("record %q: strings %d, want the text in strings of at most 255 bytes", dk.Record, len(parts))
	}
	var raw json.RawMessage
	if err := admin.do(ctx, "GET", "/v1/mail/dkim/example.test", nil, &raw); err != nil || bytes.Contains(raw, []byte("PRIVATE")) {
		t.Errorf("GET /v1/mail/dkim answers a private key (%v): %s", err, raw)
	}

	if err := admin.do(ctx, "POST", "/v1/mail/domains", MailDomainRequest{Action: "add", Name: "example.org"}, nil); err != nil {
		t.Fatal(err)
	}
	org, ok := keys()["example.org"]
	if !ok || bytes.Equal(org.Key, first.Key) {
		t.Fatalf("after domain add example.org: keys %v; want a new key for it", keys())
	}
	if dk, err := show("example.org"); err != nil || dk.Domain != "example.org" || dk.Selector != org.Selector {
		t.Errorf("GET /v1/mail/dkim/example.org = %+v, %v", dk, err)
	}
	if _, err := show("example.net"); err == nil || !strings.Contains(err.Error(), `the domain "example.net" is not served`) {
		t.Errorf("the record of a domain not served: %v", err)
	}
	if err := admin.do(ctx, "POST", "/v1/mail/domains", MailDomainRequest{Action: "del", Name: "example.org"}, nil); err != nil {
		t.Fatal(err)
	}
	if r, err := d.cli.Get(ctx, keyMailDKIM+"example.org"); err != nil || len(r.Kvs) != 0 {
		t.Errorf("%s after domain del: %v, %v; want it deleted", keyMailDKIM+"example.org", r, err)
	}
	if _, ok := keys()["example.org"]; ok {
		t.Error("the workload still signs for a deleted domain")
	}

	// A domain served without a key (added before DKIM came): the next
	// ensureMailSite makes one.
	if _, err := d.cli.Put(ctx, keyMailDomains+"old.example", "{}"); err != nil {
		t.Fatal(err)
	}
	if _, err := show("old.example"); err == nil || !strings.Contains(err.Error(), "has none yet") {
		t.Errorf("the record of a domain without a key: %v", err)
	}
	if err := d.ensureMailSite(ctx, svc, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := show("old.example"); err != nil {
		t.Errorf("after ensureMailSite, the record of a domain older than DKIM: %v", err)
	}
}

// monitor pairs a monitor "nagios" with a code admin makes, and returns
// its client.
func (s *secCluster) monitor(t *testing.T, ctx context.Context, admin *Client) *Client {
	t.Helper()
	code, err := admin.Code(ctx, "nagios", MonitorRole)
	if err != nil {
		t.Fatal(err)
	}
	st := State{Dir: filepath.Join(t.TempDir(), "monitor")}
	if err := JoinClient(ctx, "sec", "nagios", MonitorRole, st, s.api, code); err != nil {
		t.Fatal(err)
	}
	return s.client(t, st)
}
