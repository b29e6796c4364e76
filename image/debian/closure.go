package debian

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Closure returns roots and every package they need, following
// Pre-Depends and Depends, sorted by name. Versions are not compared: one
// suite has one version of each package. Of a relation's alternatives the
// first one already chosen wins, else the first that exists; a virtual
// package resolves to a chosen provider, else the first provider by name.
// Packages named in skip (name -> why) are neither taken nor followed, and
// satisfy every relation that names them; Closure reports each one it
// skipped through logf.
func (a *Archive) Closure(roots []string, skip map[string]string) ([]Package, error) {
	c := closure{a: a, skip: skip, chosen: map[string]bool{}, skipped: map[string]bool{}, providers: a.providers()}
	for _, r := range roots {
		name, ok := c.resolve(r)
		if !ok {
			return nil, fmt.Errorf("%s: %w", r, ErrNotFound)
		}
		c.take(name, r)
	}
	for len(c.queue) > 0 {
		p := c.queue[0]
		c.queue = c.queue[1:]
		for _, rel := range p.Requires {
			if err := c.satisfy(p, rel); err != nil {
				return nil, err
			}
		}
	}
	out := make([]Package, 0, len(c.chosen))
	for name := range c.chosen {
		out = append(out, a.pkgs[name])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

type closure struct {
	a         *Archive
	skip      map[string]string
	providers map[string][]string
	chosen    map[string]bool
	skipped   map[string]bool
	queue     []Package
	via       map[string]string // package -> the package that pulled it in
}

// satisfy picks a package for one relation of p unless one of its
// alternatives is chosen already.
func (c *closure) satisfy(p Package, rel []string) error {
	for _, alt := range rel {
		if c.chosen[alt] || c.skipped[alt] {
			return nil
		}
		for _, prov := range c.providers[alt] {
			if c.chosen[prov] {
				return nil
			}
		}
	}
	for _, alt := range rel {
		if name, ok := c.resolve(alt); ok {
			c.take(name, p.Name)
			return nil
		}
	}
	return fmt.Errorf("%s (needed by %s) depends on %s: %w", p.Name, c.chain(p.Name), strings.Join(rel, " | "), ErrNotFound)
}

// resolve maps a relation's name to a real package ("" if skipped).
func (c *closure) resolve(name string) (string, bool) {
	if why, ok := c.skip[name]; ok {
		if !c.skipped[name] {
			c.skipped[name] = true
			c.a.logf("debian: skipping %s: %s", name, why)
		}
		return "", true
	}
	if _, ok := c.a.pkgs[name]; ok {
		return name, true
	}
	provs := c.providers[name]
	for _, p := range provs {
		if _, ok := c.skip[p]; ok {
			return c.resolve(p)
		}
	}
	if len(provs) > 0 {
		return provs[0], true
	}
	return "", false
}

func (c *closure) take(name, via string) {
	if name == "" || c.chosen[name] {
		return
	}
	if c.via == nil {
		c.via = map[string]string{}
	}
	if via != name {
		c.via[name] = via
	}
	c.chosen[name] = true
	c.queue = append(c.queue, c.a.pkgs[name])
}

// chain names the packages that pulled name in, root last.
func (c *closure) chain(name string) string {
	var path []string
	for n := c.via[name]; n != "" && !slices.Contains(path, n); n = c.via[n] {
		path = append(path, n)
	}
	if len(path) == 0 {
		return "the roots"
	}
	return strings.Join(path, " <- ")
}

// providers maps each virtual package to the real packages providing it,
// sorted by name.
func (a *Archive) providers() map[string][]string {
	out := map[string][]string{}
	for _, p := range a.pkgs {
		for _, v := range p.Provides {
			out[v] = append(out[v], p.Name)
		}
	}
	for _, ps := range out {
		sort.Strings(ps)
	}
	return out
}
