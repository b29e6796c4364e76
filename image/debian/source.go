// Package debian fetches binary packages from a Debian archive: it verifies
// the suite's signed InRelease against a keyring, checks the package index
// and every .deb against the hashes the archive publishes, keeps them in a
// cache for the next build, and unpacks them without root.
package debian

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Source names one suite of a Debian archive.
type Source struct {
	// URI is the archive's base URL (the directory that holds dists/).
	URI string
	// Suite is the distribution, e.g. "bookworm".
	Suite string
	// Component is the archive area, e.g. "main".
	Component string
	// Arch is the Debian architecture, e.g. "amd64".
	Arch string
	// Keyring is the OpenPGP keyring file the InRelease must be signed with.
	Keyring string
}

// DefaultKeyring is where Debian's debian-archive-keyring package puts the
// archive keys.
const DefaultKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// MirrorEnv overrides the archive URI taken from the machine's apt sources.
const MirrorEnv = "TANDEM_DEBIAN_MIRROR"

// AptSourcesDir is where the machine's apt sources live.
var AptSourcesDir = "/etc/apt"

// MachineMirror returns the archive URI to fetch from: $TANDEM_DEBIAN_MIRROR
// if set, else the first apt source on this machine that carries suite.
// tandem never names a mirror itself: the builder uses the one the machine's
// apt already trusts.
func MachineMirror(suite string) (string, error) {
	if m := os.Getenv(MirrorEnv); m != "" {
		return strings.TrimRight(m, "/"), nil
	}
	files, _ := filepath.Glob(filepath.Join(AptSourcesDir, "sources.list.d", "*.sources"))
	lists, _ := filepath.Glob(filepath.Join(AptSourcesDir, "sources.list.d", "*.list"))
	files = append(append(files, lists...), filepath.Join(AptSourcesDir, "sources.list"))
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		var uri string
		if strings.HasSuffix(f, ".sources") {
			uri = findDeb822(fh, suite)
		} else {
			uri = findOneLine(fh, suite)
		}
		fh.Close()
		if uri != "" {
			return strings.TrimRight(uri, "/"), nil
		}
	}
	return "", fmt.Errorf("no apt source for suite %q in %s and %s is not set: add the suite to apt's sources or set %s", suite, AptSourcesDir, MirrorEnv, MirrorEnv)
}

// findOneLine scans sources.list lines: "deb [opts] URI SUITE COMPONENTS".
func findOneLine(r io.Reader, suite string) string {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) >= 2 && f[1] == suite {
			return f[0]
		}
	}
	return ""
}

// findDeb822 scans deb822 .sources stanzas for Types: deb and the suite.
func findDeb822(r io.Reader, suite string) string {
	for _, st := range parseStanzas(r) {
		if !hasWord(st["Types"], "deb") || !hasWord(st["Suites"], suite) {
			continue
		}
		if e := st["Enabled"]; e == "no" {
			continue
		}
		if uris := strings.Fields(st["URIs"]); len(uris) > 0 {
			return uris[0]
		}
	}
	return ""
}

func hasWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}

// parseStanzas reads RFC 822 style control stanzas (Packages, Release,
// .sources): "Field: value" lines, continuation lines starting with a
// space, stanzas separated by blank lines, '#' comment lines ignored.
func parseStanzas(r io.Reader) []map[string]string {
	var out []map[string]string
	cur := map[string]string{}
	last := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			if len(cur) > 0 {
				out = append(out, cur)
				cur = map[string]string{}
			}
			last = ""
		case strings.HasPrefix(line, "#"):
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				cur[last] += "\n" + strings.TrimSpace(line)
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = k
			cur[k] = strings.TrimSpace(v)
		}
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}
