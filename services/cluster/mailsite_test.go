package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

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
	admin := s.client(t, s.adminDir)
	if _, err := admin.MailCert(ctx); err == nil || !strings.Contains(err.Error(), "no mail certificate yet") {
		t.Errorf("mail cert before any data node made one: %v", err)
	}
	if err := admin.SetMailCert(ctx, MailCertRequest{Issue: true}); err == nil || !strings.Contains(err.Error(), "no data node has published") {
		t.Errorf("issue before any data node published the service: %v", err)
	}

	now := time.Now()
	if err := d.ensureMailSite(ctx, service, now); err != nil {
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
	if err := d.ensureMailSite(ctx, service, now); err != nil {
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
	site, err := d.readMailSite(ctx, service)
	if err != nil || !bytes.Equal(site.TLS.Chain, first.Chain) || !bytes.Equal(site.TLS.Key, first.Key) {
		t.Errorf("the workload's site = %v; want the stored certificate", err)
	}
	// Due (less than a third of its life left): renewed.
	if err := d.ensureMailSite(ctx, service, now.Add(mailtls.Lifetime*3/4)); err != nil {
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
	if err := d.ensureMailSite(ctx, service, now.Add(mailtls.Lifetime)); err != nil {
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
	if err := d.ensureMailSite(ctx, service, now.Add(mailtls.Lifetime*3/4)); err != nil {
		t.Fatal(err)
	}
	if cur, _ := stored(); strings.Join(cur.Names, ",") != "imap.example.test" {
		t.Errorf("names after renewal: %v", cur.Names)
	}

	// A monitor reads, never changes.
	code, err := admin.Code(ctx, "nagios", MonitorRole)
	if err != nil {
		t.Fatal(err)
	}
	monitor := State{Dir: filepath.Join(t.TempDir(), "monitor")}
	if err := JoinClient(ctx, "sec", "nagios", MonitorRole, monitor, s.api, code); err != nil {
		t.Fatal(err)
	}
	mon := s.client(t, monitor)
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
