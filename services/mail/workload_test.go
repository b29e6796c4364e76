package mail

import (
	"context"
	"testing"
	"time"
)

// TestDetachDeadline: the first start's unpack outlives the start's
// deadline, but not a cancelled start.
func TestDetachDeadline(t *testing.T) {
	parent, cancelParent := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancelParent()
	ctx, cancel := detachDeadline(parent, time.Minute)
	defer cancel()
	<-parent.Done()
	time.Sleep(20 * time.Millisecond)
	if ctx.Err() != nil {
		t.Fatalf("after the parent's deadline: ctx.Err() = %v, want nil", ctx.Err())
	}
	p2, cancel2 := context.WithCancel(context.Background())
	ctx2, cancelCtx2 := detachDeadline(p2, time.Minute)
	defer cancelCtx2()
	cancel2()
	select {
	case <-ctx2.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("detachDeadline's context outlived its cancelled parent")
	}
}
