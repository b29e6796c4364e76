package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"time"

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
	// keyMailService is the service's host name (service.domain), put
	// by the data nodes from their mail resource, so that every member
	// (the arbitrator included) checks certificates against it.
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

// mailService is the host name of this node's mail resource, if it has
// one (data nodes).
func (d *Daemon) mailService() (string, bool) {
	for _, rc := range d.cfg.Group {
		if rc.Agent == "mail" {
			w, err := mail.FromParams(rc.Params)
			if err != nil {
				return "", false // the resource refuses to start anyway
			}
			return w.Hostname(), true
		}
	}
	return "", false
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
// on a data node: the mail CA, a certificate for service (its host name;
// renewed when due), the published service name. Two nodes doing it at
// once both succeed: each write is conditional, and the loser reads the
// winner's.
func (d *Daemon) ensureMailSite(ctx context.Context, service string, now time.Time) error {
	if r, err := d.cli.Get(ctx, keyMailService); err != nil {
		return err
	} else if len(r.Kvs) == 0 || string(r.Kvs[0].Value) != service {
		if _, err := d.cli.Put(ctx, keyMailService, service); err != nil {
			return err
		}
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
	if _, err := d.cli.Txn(ctx).If(cmp).Then(clientv3.OpPut(keyMailCert, string(b))).Commit(); err != nil {
		return err
	}
	d.log.Info("mail certificate issued by the mail CA", "service", service, "names", cur.Names)
	return nil
}

func issueMailCert(ca mailCA, service string, names []string) (mailCert, error) {
	p, err := mailtls.Issue(ca.Cert, ca.Key, append([]string{service}, names...))
	if err != nil {
		return mailCert{}, err
	}
	return mailCert{Pair: p, Source: CertFromCluster, Names: names}, nil
}

// mailSite returns the mail workload's Site for service: the service
// certificate, made first if this is the cluster's first mail start.
func (d *Daemon) mailSite(service string) func(context.Context) (mail.Site, error) {
	return func(ctx context.Context) (mail.Site, error) { return d.readMailSite(ctx, service) }
}

func (d *Daemon) readMailSite(ctx context.Context, service string) (mail.Site, error) {
	var cur mailCert
	_, found, err := d.getJSON(ctx, keyMailCert, &cur)
	if err == nil && !found {
		if err = d.ensureMailSite(ctx, service, time.Now()); err == nil {
			_, found, err = d.getJSON(ctx, keyMailCert, &cur)
		}
	}
	if err != nil {
		return mail.Site{}, fmt.Errorf("mail certificate from the cluster state: %w", err)
	}
	if !found {
		return mail.Site{}, errors.New("no mail certificate in the cluster state")
	}
	return mail.Site{TLS: cur.Pair}, nil
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
	if r, err := d.cli.Get(ctx, keyMailService); err == nil && len(r.Kvs) > 0 {
		mc.Service = string(r.Kvs[0].Value)
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
	sr, err := d.cli.Get(c, keyMailService)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{"mail certificate: cluster state not readable (no quorum?): " + err.Error()})
		return
	}
	if len(sr.Kvs) == 0 {
		writeJSON(w, http.StatusConflict, apiError{"mail certificate: no data node has published the mail service's name yet"})
		return
	}
	service := string(sr.Kvs[0].Value)
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
	d.write(w, r, "mail certificate "+next.Source, clientv3.OpPut(keyMailCert, string(b)))
}
