#!/usr/bin/env bash
# Benchmarks of the node services (figures, never pass/fail):
#  - DNS queries per second for the cluster zone: tandem-dns and BIND
#    (named) serve the same zone on loopback, dnsperf drives each in turn,
#    alternating, ROUNDS times; medians and the ratio are printed.
#  - DHCP time to lease: services/network's BenchmarkDHCPLease against
#    dnsmasq in network namespaces (needs root; skipped otherwise).
#  - the mail workload: services/mail's BenchmarkWorkload (start and
#    monitor medians, template and root sizes, idle memory; needs root).
# Traffic stays on loopback and inside namespaces the benchmark creates.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
SECONDS_EACH=${SECONDS_EACH:-10}
CLIENTS=${CLIENTS:-4}
for tool in dnsperf named; do
	command -v "$tool" >/dev/null || { echo "bench-services: needs $tool (make deps installs it)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/tandem-dns" ./cmd/tandem-dns

TANDEM_PORT=55301
BIND_PORT=55302

cat >"$work/node.yaml" <<YAML
hostname: mail-a
cluster:
  name: bench
  domain: mail.example.org
  vip: 192.0.2.10
  nodes:
    - {name: mail-a, address: 192.0.2.11}
    - {name: mail-b, address: 192.0.2.12}
    - {name: arbiter, address: 192.0.2.13}
dns:
  listen: ["127.0.0.1:$TANDEM_PORT"]
YAML

# The same zone for BIND, as a hand-built cluster has it.
cat >"$work/zone" <<'ZONE'
$TTL 60
@        IN SOA mail-a.mail.example.org. hostmaster.mail.example.org. 1 3600 600 86400 60
@        IN NS  mail-a.mail.example.org.
@        IN NS  mail-b.mail.example.org.
@        IN NS  arbiter.mail.example.org.
@        IN MX  10 mail.mail.example.org.
mail     IN A   192.0.2.10
mail-a   IN A   192.0.2.11
mail-b   IN A   192.0.2.12
arbiter  IN A   192.0.2.13
ZONE
cat >"$work/named.conf" <<CONF
options {
	directory "$work";
	pid-file "$work/named.pid";
	listen-on port $BIND_PORT { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	allow-query { any; };
	minimal-responses yes;
	querylog no;
};
controls { };
zone "mail.example.org" { type master; file "$work/zone"; };
CONF

# Queries: the zone's names and types, one NXDOMAIN in eight.
cat >"$work/queries" <<'Q'
mail.mail.example.org A
mail.example.org MX
mail.example.org SOA
mail.example.org NS
mail-a.mail.example.org A
mail-b.mail.example.org A
arbiter.mail.example.org A
nope.mail.example.org A
Q

"$work/tandem-dns" -config "$work/node.yaml" 2>"$work/tandem-dns.log" &
pids+=($!)
named -g -c "$work/named.conf" -u root >"$work/named.log" 2>&1 &
pids+=($!)

ready() { # port
	for _ in $(seq 50); do
		dig +short +tries=1 +time=1 -p "$1" @127.0.0.1 mail.mail.example.org A 2>/dev/null | grep -q 192.0.2.10 && return 0
		sleep 0.2
	done
	echo "bench-services: server on port $1 did not answer" >&2
	cat "$work"/*.log >&2
	return 1
}
ready $TANDEM_PORT
ready $BIND_PORT

qps() { # port
	dnsperf -s 127.0.0.1 -p "$1" -d "$work/queries" -l "$SECONDS_EACH" -c "$CLIENTS" -q 200 2>&1 |
		awk '/Queries per second/ {print $4}'
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "DNS: cluster zone, dnsperf ${SECONDS_EACH}s x $ROUNDS rounds, $CLIENTS clients, loopback, $(nproc) cores"
: >"$work/t"; : >"$work/b"
for r in $(seq "$ROUNDS"); do
	t=$(qps $TANDEM_PORT); b=$(qps $BIND_PORT)
	echo "$t" >>"$work/t"; echo "$b" >>"$work/b"
	printf '  round %d: tandem-dns %10.0f q/s   BIND %10.0f q/s\n' "$r" "$t" "$b"
done
tm=$(median <"$work/t"); bm=$(median <"$work/b")
printf 'DNS median: tandem-dns %.0f q/s, BIND %s %.0f q/s, ratio %.2f\n' "$tm" "$(named -v | awk '{print $2}')" "$bm" "$(echo "$tm $bm" | awk '{print $1/$2}')"

if [ "$(id -u)" -eq 0 ]; then
	echo "DHCP: time to lease from dnsmasq in a namespace"
	go test -run '^$' -bench 'BenchmarkDHCPLease' -benchtime "${DHCP_LEASES:-10}x" ./services/network |
		awk '/^BenchmarkDHCPLease/ {printf "DHCP median time to lease: %s ms (%s leases)\n", $5, $2}'
else
	echo "DHCP: skipped (needs root for network namespaces)"
fi

if [ "$(id -u)" -eq 0 ]; then
	echo "mail workload: Postfix + Dovecot container in a namespace (start, monitor, sizes, idle memory)"
	go test -run '^$' -bench 'BenchmarkWorkload' -benchtime "${MAIL_STARTS:-5}x" ./services/mail | grep '^BenchmarkWorkload'
else
	echo "mail workload: skipped (needs root)"
fi
