package pid1

import (
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
)

func ask(t *testing.T, in *Init, cmd string) string {
	t.Helper()
	a, b := net.Pipe()
	go in.handleControl(b)
	_, _ = io.WriteString(a, cmd+"\n")
	out, _ := io.ReadAll(a)
	return string(out)
}

func TestControl(t *testing.T) {
	in := &Init{log: NewLog(io.Discard, 10), shutdown: make(chan string, 1), slot: "B"}
	in.log.Logf("hello")
	if got := ask(t, in, "log"); !strings.Contains(got, "init: hello") {
		t.Errorf("log = %q, want the logged line", got)
	}
	if got := ask(t, in, "status"); !strings.HasPrefix(got, "slot B\n") {
		t.Errorf("status = %q, want slot B first", got)
	}
	if got := ask(t, in, "fly"); !strings.Contains(got, `unknown command "fly"`) {
		t.Errorf("unknown command answer = %q", got)
	}
	ask(t, in, "poweroff")
	ask(t, in, "reboot") // ignored: a shutdown is already requested
	if got := <-in.shutdown; got != "poweroff" {
		t.Errorf("shutdown request = %q, want poweroff", got)
	}
	var buf bytes.Buffer
	in.log.out = &buf
	in.log.Printf("tandem: ready")
	if buf.String() != "tandem: ready\r\n" {
		t.Errorf("console marker = %q, want the line as given", buf.String())
	}
}
