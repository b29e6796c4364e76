// Package confine starts processes with fewer privileges than their
// parent: a capability bounding set cut down to what they need, no
// ambient or inheritable capabilities beyond it, and no_new_privs, so no
// exec gives back what was taken (set-user-ID programs and file
// capabilities included). Linux keeps all three per thread, and a child
// gets them from the thread that forks it; so StartProcess forks from a
// fresh OS thread that restricts itself first and is then thrown away,
// leaving the caller's threads as they were.
package confine
