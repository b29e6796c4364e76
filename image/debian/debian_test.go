package debian

import (
	"reflect"
	"strings"
	"testing"
)

func TestDepNames(t *testing.T) {
	got := depNames("libc6 (>= 2.34), lsb-base | sysvinit-utils, python3:any, ")
	want := []string{"libc6", "lsb-base", "python3"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("depNames = %v, want %v", got, want)
	}
}

func TestFindSources(t *testing.T) {
	deb822 := "# c\nTypes: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://sec.example/debian-security\nSuites: bookworm-security\n"
	if got := findDeb822(strings.NewReader(deb822), "bookworm-security"); got != "http://sec.example/debian-security" {
		t.Errorf("findDeb822(bookworm-security) = %q", got)
	}
	if got := findDeb822(strings.NewReader(deb822), "trixie"); got != "" {
		t.Errorf("findDeb822(trixie) = %q, want none", got)
	}
	list := "deb-src http://x/ bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n"
	if got := findOneLine(strings.NewReader(list), "bookworm"); got != "http://mirror.example/debian" {
		t.Errorf("findOneLine = %q", got)
	}
}

func TestReleaseHashes(t *testing.T) {
	rel := "Origin: Debian\nSHA256:\n aaaa 10 main/binary-amd64/Packages.xz\n bbbb 20 main/binary-amd64/Release\n"
	h := releaseHashes([]byte(rel))
	if h["main/binary-amd64/Packages.xz"] != "aaaa" || len(h) != 2 {
		t.Fatalf("releaseHashes = %v", h)
	}
}
