package core

import (
	"strings"
	"testing"
	"time"
)

func TestTimingValidate(t *testing.T) {
	d := DefaultTiming()
	mod := func(f func(*Timing)) Timing { x := d; f(&x); return x }
	tests := []struct {
		name    string
		t       Timing
		wantErr string
	}{
		{"default", d, ""},
		{"ttl-too-short", mod(func(x *Timing) { x.LeaseTTL = time.Second }), "lease_ttl"},
		{"renewals-exceed-ttl", mod(func(x *Timing) { x.RenewRetries = 10 }), "must be less than lease_ttl"},
		{"watchdog-not-below-ttl", mod(func(x *Timing) { x.WatchdogTimeout = x.LeaseTTL }), "watchdog_timeout"},
		{"no-stop-margin", mod(func(x *Timing) { x.StopMargin = 0 }), "stop_margin"},
		{"negative-margin", mod(func(x *Timing) { x.TakeoverMargin = -1 }), "takeover_margin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.t.Validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Validate(%+v) = %v, want error containing %q", tt.t, err, tt.wantErr)
			}
		})
	}
}
