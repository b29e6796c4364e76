#!/usr/bin/env bash
# Issue 5's figures in the three-VM lab (QEMU TCG; root: the lab's network
# namespace). Builds the images, boots labs, and runs BenchmarkLabBoot,
# BenchmarkMailCluster and BenchmarkFailoverFencing.
#
#   scripts/bench-mail.sh [-runs N] [-soak DURATION]
#
# -runs N        fresh labs booted, and unplanned failovers (SIGKILL of the
#                owner) in one lab (default 5)
# -soak 10m      then keep mail flowing that long and check that SMTP, IMAP
#                and every acknowledged message are still there
#
# Prints: first boot to the cluster formed and to it serving, one fresh
# lab per run; then, in one lab: failover (kill to SMTP banner on the
# VIP) with its split (lease taken, DRBD promoted, mounted, mail started,
# VIP up), medians over the runs; resync of the killed node after it boots
# again; both data nodes power-cycled to serving; idle memory per node.
# Then issue 14's side by side: as many SIGKILLs in a fresh lab whose
# nodes fence through the lab's BMCs, and in one without fence devices.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=5
. scripts/bench-args.sh bench-mail 2,19p "the lab's network namespace" "$@"
bash scripts/deps.sh
TANDEM_BENCH_RUNS="$runs" TANDEM_BENCH_SOAK="$soak" \
	go test -run '^$' -bench '^Benchmark(LabBoot|MailCluster|FailoverFencing)$' -benchtime 1x -timeout 5h -v ./e2e |
	grep -E 'median|run [0-9]+:|lab [0-9]+:|boot to|power-cycled|idle memory|soak|^Benchmark|^ok|FAIL|PASS'
