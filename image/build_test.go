package image

import (
	"context"
	"reflect"
	"testing"

	"tandem/image/recipe"
	"tandem/internal/testenv"
)

// TestReproducible builds kvm-node twice into different directories with
// the same SOURCE_DATE_EPOCH and compares every artifact's sha256.
func TestReproducible(t *testing.T) {
	testenv.RequireTool(t, "grub-mkimage", "mke2fs")
	r, err := recipe.Load("../recipes/kvm-node.yaml", "")
	if err != nil {
		t.Fatal(err)
	}
	var ms [2]*Manifest
	for i := range ms {
		ms[i], err = Build(context.Background(), r, Options{OutDir: t.TempDir(), Epoch: 1700000000, Logf: t.Logf})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(ms[0].Artifacts) != 5 {
		t.Errorf("kvm-node built %d artifacts, want 5 (raw, qcow2, kernel, initramfs, ipxe): %+v", len(ms[0].Artifacts), ms[0].Artifacts)
	}
	if !reflect.DeepEqual(ms[0].Artifacts, ms[1].Artifacts) {
		t.Errorf("two builds differ:\n%+v\n%+v", ms[0].Artifacts, ms[1].Artifacts)
	}
}

// TestFailedBuildKeepsPrevious makes a build into the same directory fail
// midway and checks that the earlier build's files are all still there.
func TestFailedBuildKeepsPrevious(t *testing.T) {
	testenv.RequireTool(t, "grub-mkimage", "mke2fs")
	r, err := recipe.Load("../recipes/kvm-arbitrator.yaml", "")
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	first, err := Build(context.Background(), r, Options{OutDir: out, Epoch: 1, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	broken := *r
	broken.Services = append(append([]recipe.Service(nil), r.Services...), recipe.Service{Name: "x", Command: "tandem-nonexistent"})
	if _, err := Build(context.Background(), &broken, Options{OutDir: out, Epoch: 2, Logf: t.Logf}); err == nil {
		t.Fatal("build with an unknown service command succeeded")
	}
	again, err := ReadManifest(out)
	if err != nil || !reflect.DeepEqual(again, first) {
		t.Fatalf("after a failed build the manifest is %+v (%v), want the first build's", again, err)
	}
	for _, a := range first.Artifacts {
		if size, sum, err := hashFile(out + "/" + a.File); err != nil || size != a.Size || sum != a.SHA256 {
			t.Errorf("%s changed or vanished after a failed build", a.File)
		}
	}
}
