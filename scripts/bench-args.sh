# Sourced by the bench scripts: parses -runs N and -soak DURATION into
# $runs and $soak (the caller sets the default of runs first), prints the
# caller's header comment for -h, and stops unless run as root.
#   . scripts/bench-args.sh NAME HELP_LINES WHY_ROOT "$@"
bench_name=$1 bench_help=$2 bench_root=$3
shift 3
soak=""
while [ $# -gt 0 ]; do
	case "$1" in
	-runs) runs="$2"; shift 2 ;;
	-soak) soak="$2"; shift 2 ;;
	-h|--help) sed -n "$bench_help" "$0"; exit 0 ;;
	*) echo "$bench_name: unknown argument $1" >&2; exit 2 ;;
	esac
done
if [ "$(id -u)" -ne 0 ]; then
	echo "$bench_name: needs root ($bench_root)" >&2
	exit 1
fi
