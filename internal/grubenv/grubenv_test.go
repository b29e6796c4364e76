package grubenv

import (
	"bytes"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	e := Initial()
	if err := e.TrySlot("B", 3); err != nil {
		t.Fatal(err)
	}
	e["note"] = "a\\b\nc"
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != Size || !bytes.HasPrefix(b, []byte("# GRUB Environment Block\nnote=a\\\\b\\nc\ntandem_slot=B\ntandem_tries=3\n#")) {
		t.Fatalf("Encode = %q", b[:80])
	}
	got, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if got["note"] != "a\\b\nc" || got[VarSlot] != "B" || got[VarTries] != "3" {
		t.Fatalf("Parse(Encode(e)) = %v", got)
	}
}

func TestParseRejectsForeign(t *testing.T) {
	for _, b := range [][]byte{nil, make([]byte, Size), []byte(header)} {
		if _, err := Parse(b); err == nil {
			t.Errorf("Parse(%d bytes) = nil error, want error", len(b))
		}
	}
}

func TestTooBig(t *testing.T) {
	e := Env{"x": string(bytes.Repeat([]byte{'v'}, Size))}
	if _, err := e.Encode(); err != ErrTooBig {
		t.Fatalf("Encode(huge) = %v, want ErrTooBig", err)
	}
}

func TestSlotTransitions(t *testing.T) {
	e := Initial()
	if err := e.TrySlot("B", 2); err != nil {
		t.Fatal(err)
	}
	e.Revert("B")
	if e[VarSlot] != "A" || e[VarTries] != "" || e[VarFailed] != "B" {
		t.Fatalf("after Revert(B): %v", e)
	}
	if err := e.TrySlot("B", 2); err != nil {
		t.Fatal(err)
	}
	e.MarkGood("B")
	if e[VarSlot] != "B" || e[VarTries] != "" || e[VarFailed] != "" {
		t.Fatalf("after MarkGood(B): %v", e)
	}
	if err := e.TrySlot("C", 1); err == nil {
		t.Fatal("TrySlot(C) = nil, want error")
	}
}
