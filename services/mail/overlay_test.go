package mail

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"tandem/image"
	"tandem/image/overlay"
	"tandem/image/recipe"
	"tandem/image/workload"
	"tandem/services/mail/mailprobe"
)

// TestWorkloadOverlay: the recipe's mail overlay, carried in the
// template, is laid over the root after the generated configuration (a
// generated file replaced, a file added, modes kept) at the first start
// and again after a reload rewrote the configuration.
func TestWorkloadOverlay(t *testing.T) {
	tb := newTestbed(t, nil)
	w := tb.w
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	a, err := image.OpenArchive(ctx, recipe.Debian{Suite: "bookworm"}, image.DefaultCacheDir(), image.DefaultIndexMaxAge, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	w.Template = filepath.Join(t.TempDir(), "mail.tar.zst")
	f, err := os.Create(w.Template)
	if err != nil {
		t.Fatal(err)
	}
	files := []overlay.File{
		{Path: "etc/mailname", Mode: 0o644, Data: []byte("site.example.test\n")},
		{Path: "etc/postfix/header_checks", Mode: 0o640, Data: []byte("/^Subject:.*lottery win/ REJECT no lottery mail here\n")},
	}
	if _, err := workload.BuildPostfixDovecot(ctx, a, f, workload.Options{Overlay: files}); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		for _, o := range files {
			p := filepath.Join(w.rootfs(), o.Path)
			b, err := os.ReadFile(p)
			st, serr := os.Stat(p)
			if err != nil || serr != nil || string(b) != string(o.Data) || st.Mode().Perm() != o.Mode {
				t.Errorf("%s: %s = %q (%v, %v); want the overlay's %q, mode %o", when, o.Path, b, err, st.Mode(), o.Data, o.Mode)
			}
		}
	}
	w.Prefetch()
	overlays.Lock()
	prefetched := len(overlays.byPath[w.Template])
	overlays.Unlock()
	if prefetched != len(files) {
		t.Errorf("Prefetch read %d files of the overlay, want %d", prefetched, len(files))
	}
	if err := tb.in(func() error { return w.Start(ctx) }); err != nil {
		t.Fatalf("Start: %v\n%s", err, readLog(w))
	}
	check("after Start")
	// main.cf names the site's header_checks: Postfix rejects by it.
	msg := mailprobe.Message{From: "x@example.net", To: "alice@example.test", Subject: "a lottery win for you", MessageID: "<lottery@x>", Body: "b"}
	if ok, err := mailprobe.Send(ctx, w.Dial, "127.0.0.1:25", msg); ok || err == nil {
		t.Errorf("a message matching the overlay's header_checks was acknowledged (%v, %v)", ok, err)
	}
	site := tb.site
	site.Users = append(site.Users, testUser(t, "erin@example.test", "erin-pw"))
	tb.setSite(site)
	if err := w.Monitor(ctx); err != nil {
		t.Fatal(err)
	}
	check("after a reload")
}
