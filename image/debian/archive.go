package debian

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
	"github.com/ulikunitz/xz"

	"tandem/internal/atomicfile"
)

// ErrNotFound is returned for a package the suite does not have.
var ErrNotFound = errors.New("no such package")

// Package is one binary package of the index.
type Package struct {
	Name       string
	Version    string
	Filename   string // path below the archive URI
	SHA256     string
	Size       int64
	Depends    []string // names only: versions and alternatives beyond the first are dropped
	PreDepends []string
	// Requires holds Pre-Depends then Depends, one entry per relation, each
	// the names of its alternatives in order (versions dropped).
	Requires [][]string
	// Provides names the virtual packages this one provides.
	Provides []string
}

// Archive is an opened suite: its verified index and a cache directory.
type Archive struct {
	src   Source
	cache string
	logf  func(string, ...any)
	pkgs  map[string]Package
	http  *http.Client
}

// Open loads the suite's package index, from the cache when it is younger
// than maxAge, else fetched and verified anew. Every later build uses the
// same cached index, so package versions stay put until it is refreshed.
func Open(ctx context.Context, src Source, cacheDir string, maxAge time.Duration, logf func(string, ...any)) (*Archive, error) {
	if src.Component == "" {
		src.Component = "main"
	}
	if src.Arch == "" {
		src.Arch = "amd64"
	}
	if src.Keyring == "" {
		src.Keyring = DefaultKeyring
	}
	a := &Archive{src: src, cache: cacheDir, logf: logf, http: &http.Client{Timeout: 30 * time.Minute}}
	dir := a.indexDir()
	idx := filepath.Join(dir, "Packages")
	if st, err := os.Stat(idx); err != nil || time.Since(st.ModTime()) > maxAge {
		if err := a.refreshIndex(ctx, dir); err != nil {
			return nil, err
		}
	}
	f, err := os.Open(idx)
	if err != nil {
		return nil, fmt.Errorf("open package index: %w", err)
	}
	defer f.Close()
	a.pkgs = parsePackages(f)
	if len(a.pkgs) == 0 {
		return nil, fmt.Errorf("package index %s is empty", idx)
	}
	return a, nil
}

func (a *Archive) indexDir() string {
	key := sha256.Sum256([]byte(a.src.URI + " " + a.src.Suite + " " + a.src.Component + " " + a.src.Arch))
	return filepath.Join(a.cache, "index", a.src.Suite+"-"+hex.EncodeToString(key[:6]))
}

// refreshIndex fetches InRelease, checks its signature, then fetches the
// Packages index and checks it against the hash InRelease lists.
func (a *Archive) refreshIndex(ctx context.Context, dir string) error {
	a.logf("debian: fetching %s index", a.src.Suite)
	inrel, err := a.get(ctx, "dists/"+a.src.Suite+"/InRelease", io.Discard)
	if err != nil {
		return err
	}
	release, err := a.verifyInRelease(inrel)
	if err != nil {
		return err
	}
	name := a.src.Component + "/binary-" + a.src.Arch + "/Packages.xz"
	want, ok := releaseHashes(release)[name]
	if !ok {
		return fmt.Errorf("InRelease of %s lists no %s", a.src.Suite, name)
	}
	xzData, err := a.get(ctx, "dists/"+a.src.Suite+"/"+name, io.Discard)
	if err != nil {
		return err
	}
	if got := sha256Hex(xzData); got != want {
		return fmt.Errorf("%s: sha256 %s, InRelease says %s", name, got, want)
	}
	zr, err := xz.NewReader(bytes.NewReader(xzData))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, "Packages"), plain, 0o644)
}

func (a *Archive) verifyInRelease(data []byte) ([]byte, error) {
	kf, err := os.Open(a.src.Keyring)
	if err != nil {
		return nil, fmt.Errorf("archive keyring: %w (install debian-archive-keyring)", err)
	}
	defer kf.Close()
	keys, err := openpgp.ReadKeyRing(kf)
	if err != nil {
		return nil, fmt.Errorf("read keyring %s: %w", a.src.Keyring, err)
	}
	block, _ := clearsign.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("InRelease of %s is not clear-signed", a.src.Suite)
	}
	if _, err := block.VerifySignature(keys, nil); err != nil {
		return nil, fmt.Errorf("InRelease of %s: signature check against %s: %w", a.src.Suite, a.src.Keyring, err)
	}
	return block.Plaintext, nil
}

// releaseHashes maps each path of a Release file's SHA256 list to its hash.
func releaseHashes(release []byte) map[string]string {
	out := map[string]string{}
	for _, st := range parseStanzas(bytes.NewReader(release)) {
		for _, line := range strings.Split(st["SHA256"], "\n") {
			if f := strings.Fields(line); len(f) == 3 {
				out[f[2]] = f[0]
			}
		}
	}
	return out
}

func parsePackages(r io.Reader) map[string]Package {
	out := map[string]Package{}
	for _, st := range parseStanzas(r) {
		size, _ := strconv.ParseInt(st["Size"], 10, 64)
		p := Package{
			Name: st["Package"], Version: st["Version"], Filename: st["Filename"],
			SHA256: st["SHA256"], Size: size,
			Depends: depNames(st["Depends"]), PreDepends: depNames(st["Pre-Depends"]),
			Requires: append(depAlternatives(st["Pre-Depends"]), depAlternatives(st["Depends"])...),
			Provides: depNames(st["Provides"]),
		}
		out[p.Name] = p
	}
	return out
}

// depNames turns "a (>= 1), b | c, d:any" into [a b d].
func depNames(s string) []string {
	var out []string
	for _, alt := range strings.Split(s, ",") {
		first, _, _ := strings.Cut(alt, "|")
		name, _, _ := strings.Cut(strings.TrimSpace(first), " ")
		name, _, _ = strings.Cut(name, ":")
		if name != "" {
			out = append(out, name)
		}
	}
	return out
}

// depAlternatives turns "a (>= 1), b | c:any" into [[a] [b c]].
func depAlternatives(s string) [][]string {
	var out [][]string
	for _, rel := range strings.Split(s, ",") {
		var alts []string
		for _, alt := range strings.Split(rel, "|") {
			name, _, _ := strings.Cut(strings.TrimSpace(alt), " ")
			name, _, _ = strings.Cut(name, ":")
			if name != "" {
				alts = append(alts, name)
			}
		}
		if len(alts) > 0 {
			out = append(out, alts)
		}
	}
	return out
}

// Package returns the named package of the suite.
func (a *Archive) Package(name string) (Package, error) {
	p, ok := a.pkgs[name]
	if !ok {
		return Package{}, fmt.Errorf("%s in %s/%s: %w", name, a.src.Suite, a.src.Component, ErrNotFound)
	}
	return p, nil
}

// Fetch returns the path of p's .deb in the cache, downloading it first if
// it is missing. The file is checked against the index's sha256 either way.
func (a *Archive) Fetch(ctx context.Context, p Package) (string, error) {
	dst := filepath.Join(a.cache, "debs", filepath.Base(p.Filename))
	if data, err := os.ReadFile(dst); err == nil && sha256Hex(data) == p.SHA256 {
		return dst, nil
	}
	a.logf("debian: downloading %s %s (%.1f MiB)", p.Name, p.Version, float64(p.Size)/(1<<20))
	var w io.Writer = io.Discard
	if p.Size > progressMin {
		w = &progress{logf: a.logf, name: p.Name, total: p.Size}
	}
	data, err := a.get(ctx, p.Filename, w)
	if err != nil {
		return "", err
	}
	if got := sha256Hex(data); got != p.SHA256 {
		return "", fmt.Errorf("%s: sha256 %s, index says %s", p.Filename, got, p.SHA256)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", err
	}
	return dst, atomicfile.Write(dst, data, 0o644)
}

func (a *Archive) get(ctx context.Context, rel string, w io.Writer) ([]byte, error) {
	url := a.src.URI + "/" + rel
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch %s: %s", url, resp.Status)
	}
	var buf bytes.Buffer
	if _, err := io.Copy(io.MultiWriter(&buf, w), resp.Body); err != nil {
		return nil, fmt.Errorf("fetch %s: %w", url, err)
	}
	return buf.Bytes(), nil
}

// progressMin is the size above which a download reports its progress.
const progressMin = 4 << 20

// progress logs a download's progress every 10%.
type progress struct {
	logf       func(string, ...any)
	name       string
	total, n   int64
	lastDecile int64
}

func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.total > 0 {
		if d := p.n * 10 / p.total; d > p.lastDecile {
			p.lastDecile = d
			p.logf("debian: %s %d%%", p.name, d*10)
		}
	}
	return len(b), nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
