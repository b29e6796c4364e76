package netnstest

import "tandem/internal/netns"

// Do runs fn on an OS thread that has entered namespace ns, and returns its
// error (netns.Do). Sockets that fn opens (a listener, a netlink
// connection) stay in ns after Do returns, so a test can serve from a
// namespace in-process.
func (n *Net) Do(ns string, fn func() error) error { return netns.Do(ns, fn) }
