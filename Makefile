# The README's two commands are `make lab` (build the images, boot the lab)
# and `make test` (everything CI runs). Both install what they need first.

GO       ?= go
OUT      ?= out
export SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)

.PHONY: deps images lab test bench vet lint fuzz

deps:
	bash scripts/deps.sh

# The recipes that need no user-supplied input (r710-node needs NIC firmware).
images: deps
	$(GO) run ./cmd/tandem build -o $(OUT)/kvm-node recipes/kvm-node.yaml
	$(GO) run ./cmd/tandem build -o $(OUT)/kvm-arbitrator recipes/kvm-arbitrator.yaml

# The three-VM lab in the foreground until Ctrl-C (docs/lab.md); needs root.
lab: images
	$(GO) run ./cmd/tandem lab up -images $(OUT) -dir $(OUT)/lab

vet:
	$(GO) vet ./...

# gofmt, then staticcheck and errcheck, pinned as tools in go.mod (go tool builds them).
# scripts/lint/errcheck.exclude lists the calls whose errors may be dropped,
# and why; every other dropped error is handled or assigned to _ with a
# comment.
lint:
	@out=$$("$$($(GO) env GOROOT)/bin/gofmt" -l $$(git ls-files '*.go')); [ -z "$$out" ] || { echo "gofmt wants to rewrite:"; echo "$$out"; exit 1; }
	$(GO) tool staticcheck ./...
	$(GO) tool errcheck -exclude scripts/lint/errcheck.exclude ./...

# CI runs this as root with CI=true. Tests that need root, QEMU or a Debian
# daemon fail (never skip) under CI=true when what they need is missing.
# -count=1: these tests exercise QEMU, namespaces and daemons, whose results
# the Go test cache cannot vouch for. The packages that boot QEMU guests or
# run clusters of daemons take a machine-wide lock (testenv.LockMachine), so
# they run one at a time while the others run beside them; a package's wait
# for the lock counts against go test's kill timer (-timeout plus a minute),
# hence 60m although no package runs for half that.
test: deps vet lint
	$(GO) test -count=1 -timeout 60m ./...

# Every Go fuzz target for FUZZTIME each, one after the other. Not part of
# test: every go test already runs the seed corpora (f.Add and
# testdata/fuzz/NAME). FUZZ lists the targets as PACKAGE:NAME; the first
# step fails if a Fuzz function in the tree is not listed. A short
# -fuzzminimizetime: with the default minute, a short run spends most of
# its time minimising the new inputs it finds.
FUZZTIME ?= 20s
FUZZ = \
	./image/recipe:FuzzParse \
	./image/recipe:FuzzParseProfile \
	./internal/nodeconfig:FuzzLoad \
	./services/cluster:FuzzDecodeBodies \
	./services/dns:FuzzHandle

fuzz:
	@found=$$(git ls-files --cached --others --exclude-standard '*_test.go' | xargs grep -Ho '^func Fuzz[A-Za-z0-9_]*' | sed 's|^|./|; s|/[^/]*:func |:|' | sort); \
	listed=$$(printf '%s\n' $(FUZZ) | sort); \
	[ "$$found" = "$$listed" ] || { printf 'make fuzz: FUZZ lists\n%s\nbut the tree has\n%s\n' "$$listed" "$$found"; exit 1; }
	@set -e; for t in $(FUZZ); do \
		echo "fuzz $${t%%:*} $${t#*:} for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s "$${t%%:*}"; \
	done

# Figures, never pass/fail: image build and boot, DNS and DHCP, failover.
bench: deps
	$(GO) run ./cmd/tandem bench recipes/kvm-node.yaml
	bash scripts/bench-services.sh
	bash scripts/bench-cluster.sh
	$(GO) test -run '^$$' -bench '^BenchmarkReplicatedWrite$$' -benchtime 1x -timeout 15m -v ./services/replication
	bash scripts/bench-mail.sh -soak 10m
