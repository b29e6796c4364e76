// Package container is tandem's container runtime, small enough to read:
// the host side (Host) re-executes its own binary as the container's init in
// new mount, PID, UTS and IPC namespaces and talks to it over a control
// socket (status, exec, stop); the init side (RunInit) makes the mounts,
// pivots into the container's root, starts its services in order (confined
// to a few capabilities and no_new_privs if the Spec says so), reaps every
// process and stops them in reverse. The mail workload runs in one.
package container
