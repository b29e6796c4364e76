// The layers of the tree, bottom up, and the test that keeps them:
//
//	internal/                  shared building blocks; import nothing else of tandem's
//	image/, init/, services/   the builder, PID 1, the node daemons; each only internal/
//	lab/                       the three-VM lab and its QEMU harness; may use all of the above
//	cmd/, e2e/                 thin mains and the tests of built images; may use everything
//
// A test file outside internal/ may reach across and up (a service's guest
// test boots lab/vmtest, the mail root's test builds the real template with
// image/); internal/'s tests stay in internal/.
package tandem

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// layer maps a directory's first path element to its layer.
var layer = map[string]int{
	"internal": 0,
	"image":    1, "init": 1, "services": 1,
	"lab": 2,
	"cmd": 3, "e2e": 3,
}

// allowed says whether a file in dir (slash-separated, relative to the
// module root) may import the tandem package imp.
func allowed(dir, imp string, test bool) bool {
	from, to := top(dir), top(strings.TrimPrefix(imp, "tandem/"))
	lf, lt := layer[from], layer[to]
	switch {
	case from == "internal":
		return to == "internal"
	case test:
		return true
	case lt < lf:
		return lt == 0 || lf > 1
	case lt == lf:
		return from == to || lf > 1
	}
	return false
}

func top(p string) string { return strings.SplitN(p, "/", 2)[0] }

func TestLayers(t *testing.T) {
	fset := token.NewFileSet()
	checked := 0
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); p != "." && (strings.HasPrefix(n, ".") || n == "testdata" || n == "out") {
				return filepath.SkipDir
			}
			return nil
		}
		dir := filepath.ToSlash(filepath.Dir(p))
		if !strings.HasSuffix(p, ".go") || dir == "." {
			return nil
		}
		if _, ok := layer[top(dir)]; !ok {
			t.Errorf("%s: directory %s is in no layer (add it to layers_test.go)", p, top(dir))
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, is := range f.Imports {
			imp, _ := strconv.Unquote(is.Path.Value)
			if strings.HasPrefix(imp, "tandem/") && !allowed(dir, imp, strings.HasSuffix(p, "_test.go")) {
				t.Errorf("%s imports %s: %s may not depend on %s (layers_test.go)", fset.Position(is.Pos()), imp, top(dir), top(strings.TrimPrefix(imp, "tandem/")))
			}
		}
		checked++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if checked < 100 {
		t.Fatalf("checked only %d Go files: is the test running at the module root?", checked)
	}
}

func TestAllowed(t *testing.T) {
	for _, c := range []struct {
		dir, imp string
		test     bool
		want     bool
	}{
		{"internal/nodeconfig", "tandem/internal/atomicfile", false, true},
		{"internal/nodeconfig", "tandem/services/cluster", false, false},
		{"internal/netns", "tandem/lab/vmtest", true, false},
		{"services/cluster", "tandem/internal/nodeconfig", false, true},
		{"services/cluster", "tandem/services/replication", false, true},
		{"services/cluster", "tandem/image", false, false},
		{"services/cluster", "tandem/init/supervise", false, false},
		{"services/cluster", "tandem/lab", false, false},
		{"services/network", "tandem/lab/vmtest", true, true},
		{"services/mail", "tandem/image/workload", true, true},
		{"services/mail", "tandem/image/workload", false, false},
		{"lab", "tandem/services/ntp", false, true},
		{"lab", "tandem/cmd/tandem", false, false},
		{"cmd/tandem", "tandem/lab", false, true},
		{"e2e", "tandem/image/disk", false, true},
	} {
		if got := allowed(c.dir, c.imp, c.test); got != c.want {
			t.Errorf("allowed(%s, %s, test=%v) = %v, want %v", c.dir, c.imp, c.test, got, c.want)
		}
	}
}

// TestReadmeLayout keeps README's layout table (the one headed "| folder |")
// true to the tree: a row for every top-level folder and layers_test.go,
// and nothing in it that is not there.
func TestReadmeLayout(t *testing.T) {
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "\n| folder | holds |\n")
	if !ok {
		t.Fatal(`README.md has no "| folder | holds |" table`)
	}
	table, _, _ = strings.Cut(table, "\n\n")
	rows := map[string]bool{}
	for _, line := range strings.Split(table, "\n")[1:] { // after the | --- | line
		cell := strings.SplitN(line, "|", 3)[1]
		for _, name := range strings.Split(cell, ",") {
			rows[strings.TrimSuffix(strings.Trim(strings.TrimSpace(name), "`"), "/")] = true
		}
	}
	entries, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"layers_test.go": true}
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") && e.Name() != "out" && e.Name() != "bin" { // build output (.gitignore)
			want[e.Name()] = true
		}
	}
	for name := range want {
		if !rows[name] {
			t.Errorf("README's layout table has no row for %s", name)
		}
	}
	for name := range rows {
		if !want[name] {
			t.Errorf("README's layout table names %s, which is not in the tree", name)
		}
	}
}
