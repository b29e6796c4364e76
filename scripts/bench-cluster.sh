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
soak=""
while [ $# -gt 0 ]; do
	case "$1" in
	-runs) runs="$2"; shift 2 ;;
	-soak) soak="$2"; shift 2 ;;
	-h|--help) sed -n '2,16p' "$0"; exit 0 ;;
	*) echo "bench-cluster: unknown argument $1" >&2; exit 2 ;;
	esac
done
if [ "$(id -u)" -ne 0 ]; then
	echo "bench-cluster: needs root (network namespaces)" >&2
	exit 1
fi
bash scripts/deps.sh
timeout=30m
if [ -n "$soak" ]; then
	timeout=90m
fi
TANDEM_BENCH_RUNS="$runs" TANDEM_BENCH_SOAK="$soak" \
	go test -run '^$' -bench '^BenchmarkCluster$' -benchtime 1x -timeout "$timeout" -v ./services/cluster |
	grep -E 'median|ratio|false failovers|^Benchmark|^ok|FAIL|PASS'
