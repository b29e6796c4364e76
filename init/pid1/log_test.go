package pid1

import (
	"bytes"
	"strings"
	"testing"
)

func TestLogRing(t *testing.T) {
	var out bytes.Buffer
	l := NewLog(&out, 3)
	for _, s := range []string{"a", "b", "c", "d"} {
		l.Logf("%s", s)
	}
	got := l.Lines()
	if len(got) != 3 || !strings.HasSuffix(got[0], "init: b") || !strings.HasSuffix(got[2], "init: d") {
		t.Fatalf("Lines() = %q, want the last three (b, c, d)", got)
	}
	if !strings.Contains(out.String(), "init: a\r\n") {
		t.Errorf("console output lacks the first line: %q", out.String())
	}
}
