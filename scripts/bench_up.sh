#!/usr/bin/env bash
# `veil up --once` cold start: the wall time from the command to its exit
# 0, i.e. three servers started (one veil-node with the default model,
# veil-gateway, veil-proxy), a fresh database, admin token, API key and
# policy, every attestation verified, one verified chat through the proxy,
# the receipts log re-verified offline, and every process stopped again.
# Never a pass/fail test: a run that fails prints "n/a".
#
#   scripts/bench_up.sh [--build] DIR      (default build)
#
# Three runs, each with a fresh --state-dir (nothing cached: a cold start)
# on a free port; prints the median and the three times on stderr, and on
# stdout one line in the BENCH|figure|ours|unit|reference|ratio format of
# scripts/bench.sh, ratio = ours / goal (at most 1 meets the goal of 3 s).
# Env: VEIL_MODEL (default: veil's own lookup, ./models/ then
# ../shared/models/stories260K.gguf), BENCH_RUNS (3).
set -uo pipefail

BUILD=build
while [ $# -gt 0 ]; do
	case "$1" in
	--build) BUILD="$2"; shift 2 ;;
	-h|--help) sed -n '2,17p' "$0"; exit 0 ;;
	-*) echo "bench_up: unknown argument $1" >&2; exit 2 ;;
	*) BUILD="$1"; shift ;;
	esac
done

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
VEIL="$BUILD/bin/veil"
RUNS="${BENCH_RUNS:-3}"
GOAL=3.0
FIG="veil up --once cold start (median of $RUNS)"

say() { echo "bench_up: $*" >&2; }

if [ ! -x "$VEIL" ]; then
	say "$VEIL not built (make all BUILD=$BUILD)"
	echo "BENCH|$FIG|n/a|s|goal $GOAL s|n/a"
	exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

times=()
for i in $(seq 1 "$RUNS"); do
	port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
	t0=$(date +%s%N)
	if "$VEIL" up --once --port "$port" --state-dir "$tmp/state-$i" >"$tmp/run-$i.log" 2>&1; then
		t1=$(date +%s%N)
		t="$(python3 -c "print('%.3f' % (($t1 - $t0) / 1e9))")"
		say "run $i: $t s"
		times+=("$t")
	else
		say "run $i failed; its output:"
		tail -n 20 "$tmp/run-$i.log" >&2
	fi
done

if [ ${#times[@]} -eq 0 ]; then
	echo "BENCH|$FIG|n/a|s|goal $GOAL s|n/a"
	exit 0
fi
python3 - "$FIG" "$GOAL" "${times[@]}" <<'PY'
import statistics, sys
fig, goal, ts = sys.argv[1], float(sys.argv[2]), [float(x) for x in sys.argv[3:]]
med = statistics.median(ts)
print("BENCH|%s|%.2f|s|goal %.1f s (runs: %s)|%.2f"
      % (fig, med, goal, " ".join("%.2f" % t for t in ts), med / goal))
PY
exit 0
