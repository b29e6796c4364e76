package recipe

import (
	"fmt"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"

	"tandem/image/overlay"
	"tandem/internal/yamlstrict"
)

// checkOverlayPaths checks the overlays field as written: each item a
// path on one line, none listed twice.
func checkOverlayPaths(paths []string) error {
	seen := map[string]int{}
	for i, p := range paths {
		f := fmt.Sprintf("overlays[%d]", i)
		switch {
		case p == "":
			return yamlstrict.Errorf(f, "empty: name a directory (relative paths are relative to the recipe file)")
		case !utf8.ValidString(p) || strings.ContainsFunc(p, unicode.IsControl):
			return yamlstrict.Errorf(f, "%q: not UTF-8, or holds a control character", p)
		}
		clean := filepath.Clean(p)
		if j, ok := seen[clean]; ok {
			return yamlstrict.Errorf(f, "%s is listed twice (overlays[%d])", p, j)
		}
		seen[clean] = i
	}
	return nil
}

// loadOverlays reads and checks each overlay (overlay.Scan), relative
// paths taken from the recipe's directory: one with mail/ files needs
// the postfix-dovecot workload, and no two may have a file and a
// directory at one path. Errors name the field and the path as written.
func (r *Recipe) loadOverlays() error {
	r.OverlayTrees = nil
	type seenAt struct {
		i   int
		dir bool
	}
	seen := map[string]seenAt{}
	for i, p := range r.Overlays {
		field := fmt.Sprintf("overlays[%d]", i)
		dir := p
		if !filepath.IsAbs(dir) {
			dir = filepath.Join(filepath.Dir(r.Path), p)
		}
		t, err := overlay.Scan(dir)
		if err != nil {
			return overlayError(field, p, err)
		}
		t.Name = fmt.Sprintf("%s: %s: %s", r.Path, field, p)
		if err := r.checkMailOverlay(t); err != nil {
			return overlayError(field, p, err)
		}
		for _, e := range t.Entries {
			s, ok := seen[e.Path]
			if ok && s.dir != e.Mode.IsDir() {
				return overlayError(field, p, fmt.Errorf("%s: a %s where overlays[%d] (%s) has a %s: %w",
					e.Path, kind(e.Mode.IsDir()), s.i, r.Overlays[s.i], kind(s.dir), overlay.ErrInvalid))
			}
			seen[e.Path] = seenAt{i, e.Mode.IsDir()}
		}
		r.OverlayTrees = append(r.OverlayTrees, t)
	}
	return nil
}

// checkMailOverlay refuses mail/ files when the recipe has no
// postfix-dovecot template to carry them.
func (r *Recipe) checkMailOverlay(t *overlay.Tree) error {
	if len(t.Part(overlay.Mail)) == 0 || (r.Workload != nil && r.Workload.Kind == WorkloadPostfixDovecot) {
		return nil
	}
	why := fmt.Sprintf("the %s role runs no mail workload", r.Role)
	if r.Workload != nil {
		why = fmt.Sprintf("workload kind %s carries its installer as it is", r.Workload.Kind)
	}
	return fmt.Errorf("%s/: mail overlays go into the %s template, and %s: %w", overlay.Mail, WorkloadPostfixDovecot, why, overlay.ErrInvalid)
}

// overlayError is err about the overlay at p (as written), as an error
// about the field (yamlstrict.FieldError: Load places it on the field's
// line, and it matches ErrInvalid).
func overlayError(field, p string, err error) error {
	return yamlstrict.Errorf(field, "%s: %v", p, err)
}

func kind(dir bool) string {
	if dir {
		return "directory"
	}
	return "file"
}
