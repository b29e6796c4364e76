package debian

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// fakeIndex is a small Packages index exercising alternatives, Provides,
// Pre-Depends and the skip list.
const fakeIndex = `Package: postfix
Version: 3.7
Pre-Depends: init-system-helpers (>= 1.54~)
Depends: libc6 (>= 2.34), debconf (>= 0.5) | debconf-2.0, netbase, cpio
Provides: mail-transport-agent

Package: libc6
Version: 2.36
Depends: libgcc-s1

Package: libgcc-s1
Version: 12

Package: netbase
Version: 6.4

Package: debconf
Version: 1.5

Package: cdebconf
Version: 0.2
Provides: debconf-2.0

Package: init-system-helpers
Version: 1.65
Depends: perl-base

Package: cpio
Version: 2.13

Package: perl-base
Version: 5.36

Package: dovecot-core
Version: 2.3
Depends: libc6, default-mta | mail-transport-agent, libssl3 | libssl1.1

Package: libssl1.1
Version: 1.1

Package: mailer
Version: 1
Depends: imap-server

Package: dovecot-imapd
Version: 2.3
Provides: imap-server

Package: courier-imap
Version: 5
Provides: imap-server

Package: broken
Version: 1
Depends: libc6, libmissing (>= 2)
`

func fakeArchive(t *testing.T) (*Archive, *[]string) {
	var logs []string
	return &Archive{pkgs: parsePackages(strings.NewReader(fakeIndex)), src: Source{Suite: "fake", Component: "main"},
		logf: func(f string, a ...any) { logs = append(logs, f) }}, &logs
}

func names(ps []Package) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

func TestClosure(t *testing.T) {
	skip := map[string]string{"debconf": "maintainer scripts", "init-system-helpers": "maintainer scripts", "cpio": "scripts"}
	for _, c := range []struct {
		name  string
		roots []string
		skip  map[string]string
		want  []string
	}{
		// debconf is skipped, so its alternative debconf-2.0 is satisfied
		// by the skip (not by cdebconf); Pre-Depends is followed.
		{"skip list", []string{"postfix"}, skip, []string{"libc6", "libgcc-s1", "netbase", "postfix"}},
		{"no skip", []string{"postfix"}, nil, []string{"cpio", "debconf", "init-system-helpers", "libc6", "libgcc-s1", "netbase", "perl-base", "postfix"}},
		// default-mta does not exist; mail-transport-agent is provided by
		// postfix, already chosen; libssl3 does not exist, libssl1.1 does.
		{"alternatives and provides", []string{"postfix", "dovecot-core"}, skip, []string{"dovecot-core", "libc6", "libgcc-s1", "libssl1.1", "netbase", "postfix"}},
		// A virtual package with two providers resolves to the first by name.
		{"virtual", []string{"mailer"}, nil, []string{"courier-imap", "mailer"}},
		// ... unless one provider is chosen already.
		{"virtual chosen", []string{"dovecot-imapd", "mailer"}, nil, []string{"dovecot-imapd", "mailer"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, _ := fakeArchive(t)
			got, err := a.Closure(c.roots, c.skip)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(names(got), c.want) {
				t.Errorf("Closure(%v) = %v, want %v", c.roots, names(got), c.want)
			}
		})
	}
}

func TestClosureErrors(t *testing.T) {
	a, _ := fakeArchive(t)
	if _, err := a.Closure([]string{"nosuch"}, nil); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("Closure(nosuch) error = %v, want ErrNotFound naming it", err)
	}
	_, err := a.Closure([]string{"broken"}, nil)
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "broken") || !strings.Contains(err.Error(), "libmissing") {
		t.Errorf("Closure(broken) error = %v, want ErrNotFound naming broken and libmissing", err)
	}
}

func TestClosureLogsSkips(t *testing.T) {
	a, logs := fakeArchive(t)
	if _, err := a.Closure([]string{"postfix"}, map[string]string{"cpio": "scripts", "init-system-helpers": "scripts"}); err != nil {
		t.Fatal(err)
	}
	if len(*logs) != 2 {
		t.Errorf("Closure logged %d skips, want 2: %v", len(*logs), *logs)
	}
}
