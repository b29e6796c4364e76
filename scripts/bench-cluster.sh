#!/usr/bin/env bash
# Failover figures of the cluster daemon against keepalived, on network
# namespaces this machine creates (root; nothing leaves them).
#
#   scripts/bench-cluster.sh [-runs N] [-soak DURATION]
#
# -runs N        runs of each measurement (default 10)
# -soak 10m      also count false failovers while both data nodes burn all
#                CPU for that long (long: not part of CI)
#
# Prints median and worst of: unplanned failover (SIGKILL of the owner until
# the VIP answers on the peer), detection (SIGKILL until the peer holds the
# lease), planned move, keepalived failover (VRRP, default timers), and the
# tandem/keepalived ratio of the unplanned medians.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=10
. scripts/bench-args.sh bench-cluster 2,16p "network namespaces" "$@"
bash scripts/deps.sh
timeout=30m
if [ -n "$soak" ]; then
	timeout=90m
fi
TANDEM_BENCH_RUNS="$runs" TANDEM_BENCH_SOAK="$soak" \
	go test -run '^$' -bench '^BenchmarkCluster$' -benchtime 1x -timeout "$timeout" -v ./services/cluster |
	grep -E 'median|ratio|false failovers|^Benchmark|^ok|FAIL|PASS'
