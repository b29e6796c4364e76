package qemu

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"time"
)

// Event is a QMP event QEMU sent (WATCHDOG, SHUTDOWN, ...).
type Event struct {
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

func (e Event) String() string { return e.Event + " " + string(e.Data) }

// WatchQMP connects to QEMU's QMP socket at path, retrying for up to wait
// while QEMU creates it, enters command mode and calls each for every
// event until QEMU closes the socket (it does when it exits); done is
// closed then.
func WatchQMP(path string, wait time.Duration, each func(Event)) (done <-chan struct{}, err error) {
	var c net.Conn
	for deadline := time.Now().Add(wait); ; time.Sleep(50 * time.Millisecond) {
		if c, err = net.Dial("unix", path); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(c, `{"execute":"qmp_capabilities"}`+"\n"); err != nil {
		c.Close()
		return nil, err
	}
	ch := make(chan struct{})
	go func() {
		defer close(ch)
		defer c.Close()
		sc := bufio.NewScanner(c)
		for sc.Scan() {
			var e Event
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Event != "" {
				each(e)
			}
		}
	}()
	return ch, nil
}
