# The README's two commands are `make lab` (build the images, boot them) and
# `make test` (everything CI runs). Both install what they need first.

GO       ?= go
OUT      ?= out
RECIPES  := kvm-node kvm-arbitrator r710-node
export SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

.PHONY: deps images lab test bench vet

deps:
	bash scripts/deps.sh

# Builds the images of the recipes that need no user-supplied input.
images: deps
	$(GO) run ./cmd/tandem build -o $(OUT)/kvm-node recipes/kvm-node.yaml
	$(GO) run ./cmd/tandem build -o $(OUT)/kvm-arbitrator recipes/kvm-arbitrator.yaml

lab: images
	$(GO) run ./cmd/tandem boot $(OUT)/kvm-node

vet:
	$(GO) vet ./...

# CI runs this as root. Tests that need root, QEMU or a Debian daemon fail
# (never skip) when CI=true and what they need is missing.
test: deps vet
	$(GO) test -timeout 40m ./...

bench: deps
	$(GO) run ./cmd/tandem bench
