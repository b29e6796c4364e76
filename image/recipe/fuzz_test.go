package recipe

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// addFiles adds every file matching each pattern as a seed.
func addFiles(f *testing.F, patterns ...string) {
	for _, pat := range patterns {
		paths, err := filepath.Glob(pat)
		if err != nil || len(paths) == 0 {
			f.Fatalf("seeds %s: %v files, error %v", pat, len(paths), err)
		}
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
}

// FuzzParse feeds Parse arbitrary recipes. For every input: no panic; an
// error wraps ErrInvalid and starts with the file's name; a recipe that
// parses validates again, its kernel arguments joined into a command line
// split back into the same arguments with none of the image's own, its
// overlays are distinct paths on one line each, and marshalling and
// parsing it again changes nothing. Seeds: recipes/ and
// testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	addFiles(f, "../../recipes/*.yaml")
	f.Add([]byte(good))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := Parse("f.yaml", bytes.NewReader(data))
		if err != nil {
			checkParseError(t, err)
			return
		}
		if err := r.validate(); err != nil {
			t.Fatalf("a parsed recipe does not validate again: %v", err)
		}
		checkCmdline(t, r.KernelArgs)
		checkOverlayList(t, r.Overlays)
		out, err := yaml.Marshal(r)
		if err != nil {
			t.Fatalf("yaml.Marshal(parsed recipe) = %v", err)
		}
		again, err := Parse("f.yaml", bytes.NewReader(out))
		if err != nil {
			t.Fatalf("Parse(marshalled recipe) = %v\n%s", err, out)
		}
		if out2, _ := yaml.Marshal(again); !bytes.Equal(out, out2) {
			t.Fatalf("marshal, parse, marshal changed the recipe:\n%s\nbecame\n%s", out, out2)
		}
	})
}

// FuzzParseProfile is FuzzParse for hardware profiles, whose firmware
// paths must also stay inside firmware_dir. Seeds: hardware/ and
// testdata/fuzz/FuzzParseProfile.
func FuzzParseProfile(f *testing.F) {
	addFiles(f, "../../hardware/*.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseProfile("f.yaml", bytes.NewReader(data))
		if err != nil {
			checkParseError(t, err)
			return
		}
		if err := p.validate(); err != nil {
			t.Fatalf("a parsed profile does not validate again: %v", err)
		}
		checkCmdline(t, p.KernelArgs)
		for _, fw := range p.Firmware {
			if in := filepath.Join("lib/firmware", fw); !strings.HasPrefix(in, "lib/firmware/") {
				t.Fatalf("firmware %q lands at %s in the image, outside lib/firmware", fw, in)
			}
		}
		out, err := yaml.Marshal(p)
		if err != nil {
			t.Fatalf("yaml.Marshal(parsed profile) = %v", err)
		}
		if _, err := ParseProfile("f.yaml", bytes.NewReader(out)); err != nil {
			t.Fatalf("ParseProfile(marshalled profile) = %v\n%s", err, out)
		}
	})
}

func checkParseError(t *testing.T, err error) {
	t.Helper()
	if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), "f.yaml") {
		t.Fatalf("error %q: want it to wrap ErrInvalid and start with the file's name", err)
	}
}

// checkCmdline: the arguments reach the kernel as they are, one each, and
// none is a tandem.KEY the image sets.
func checkCmdline(t *testing.T, args []string) {
	t.Helper()
	line := strings.Join(args, " ")
	if got := strings.Fields(line); !slices.Equal(got, args) {
		t.Fatalf("kernel_args %q make the command line %q, which splits into %q", args, line, got)
	}
	if strings.ContainsAny(line, scriptChars) {
		t.Fatalf("kernel_args %q: GRUB or iPXE would read part of %q as syntax", args, line)
	}
	for _, a := range args {
		key, _, _ := strings.Cut(a, "=")
		if slices.Contains(imageArgs, key) {
			t.Fatalf("kernel_args %q set %s, which the image sets", args, key)
		}
	}
}

// checkOverlayList: each overlay is a non-empty path on one line, none
// listed twice (the same directory would be laid twice).
func checkOverlayList(t *testing.T, paths []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, p := range paths {
		if p == "" || strings.ContainsAny(p, "\n\r\x00") || seen[filepath.Clean(p)] {
			t.Fatalf("overlays %q: %q is empty, spans lines or is listed twice", paths, p)
		}
		seen[filepath.Clean(p)] = true
	}
}
