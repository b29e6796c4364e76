// Package e2e holds the tests that boot tandem's own images under QEMU
// (TCG): boot on BIOS and UEFI, PXE, service supervision, ACPI power-off,
// the A/B slot scheme. They build the kvm-node recipe once per run.
package e2e
