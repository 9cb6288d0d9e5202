#!/usr/bin/env bash
# Runs veil's test suites and ends with one line "N passed, N failed[, N
# skipped]".  Exits non-zero when anything failed.
#
#   scripts/run-tests.sh --build DIR [--only unit|asan|integration|fuzz]...
#                        [--fuzz-seconds N]
#
# Suites: unit (cmocka binaries), integration (tests/integration/test_*.sh,
# TAP-like "ok -"/"not ok -" lines), asan (the unit binaries built with
# AddressSanitizer + UBSan), fuzz (each libFuzzer harness for a few seconds
# on a copy of its seed corpus).  Logs go to DIR/test-logs/.
set -uo pipefail

BUILD=build
ONLY=()
FUZZ_SECONDS=5
while [ $# -gt 0 ]; do
	case "$1" in
	--build) BUILD="$2"; shift 2 ;;
	--only) ONLY+=("$2"); shift 2 ;;
	--fuzz-seconds) FUZZ_SECONDS="$2"; shift 2 ;;
	*) echo "run-tests: unknown argument $1" >&2; exit 2 ;;
	esac
done
[ ${#ONLY[@]} -eq 0 ] && ONLY=(integration unit asan fuzz)

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
case "$BUILD" in /*) ABS_BUILD="$BUILD" ;; *) ABS_BUILD="$ROOT/$BUILD" ;; esac
export VEIL_SHARED="${VEIL_SHARED:-$ROOT/../shared}"
export VEIL_CACHE="${VEIL_CACHE:-$ABS_BUILD/cache}"
export VEIL_BIN="${VEIL_BIN:-$ABS_BUILD/bin}"
LOGS="$BUILD/test-logs"
mkdir -p "$LOGS" "$VEIL_CACHE"
if [ ! -d "$VEIL_SHARED" ]; then
	echo "run-tests: NOTE: $VEIL_SHARED is absent; tests that need the shared" \
		"models and vectors will be skipped"
fi

PASS=0 FAIL=0 SKIP=0
FAILED_NAMES=()

note_fail() { FAILED_NAMES+=("$1"); }

# cmocka prints "[  PASSED  ] N test(s)." etc.; a crash prints none of them.
run_cmocka() {
	local suite="$1" bin="$2" name log rc p f s
	name="$(basename "$bin")"
	log="$LOGS/$suite-$name.log"
	local t0=$SECONDS
	"$bin" >"$log" 2>&1
	rc=$?
	p=$(grep -oE '^\[  PASSED  \] [0-9]+' "$log" | awk '{s+=$NF} END {print s+0}')
	f=$(grep -oE '^\[  FAILED  \] [0-9]+' "$log" | awk '{s+=$NF} END {print s+0}')
	s=$(grep -oE '^\[  SKIPPED \] [0-9]+' "$log" | awk '{s+=$NF} END {print s+0}')
	if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
		f=1  # crashed or exited early
	fi
	PASS=$((PASS + p)); FAIL=$((FAIL + f)); SKIP=$((SKIP + s))
	printf '%-6s %-28s %3d passed, %d failed, %d skipped (%ds)\n' \
		"$suite" "$name" "$p" "$f" "$s" $((SECONDS - t0))
	if [ "$f" -ne 0 ]; then
		note_fail "$suite/$name"
		echo "------ $log (last 40 lines) ------"
		tail -n 40 "$log"
		echo "------"
	fi
}

suite_unit() {
	local b
	for b in $(ls "$BUILD"/tests/test_* 2>/dev/null | sort); do
		[ -x "$b" ] && run_cmocka unit "$b"
	done
}

suite_asan() {
	local b
	# Heavy model cases check VEIL_SANITIZED and skip themselves.
	export VEIL_SANITIZED=1
	export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}"
	export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
	for b in $(ls "$BUILD"/asan/tests/test_* 2>/dev/null | sort); do
		[ -x "$b" ] && run_cmocka asan "$b"
	done
	unset VEIL_SANITIZED
}

suite_integration() {
	local t name log rc p f s
	for t in $(ls tests/integration/test_*.sh 2>/dev/null | sort); do
		name="$(basename "$t" .sh)"
		log="$LOGS/integration-$name.log"
		local t0=$SECONDS
		bash "$t" >"$log" 2>&1
		rc=$?
		p=$(grep -cE '^ok - ' "$log" | tr -d ' ')
		s=$(grep -cE '^ok - .*# SKIP' "$log" | tr -d ' ')
		p=$((p - s))
		f=$(grep -cE '^not ok - ' "$log" | tr -d ' ')
		if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
		PASS=$((PASS + p)); FAIL=$((FAIL + f)); SKIP=$((SKIP + s))
		printf '%-6s %-28s %3d passed, %d failed, %d skipped (%ds)\n' \
			integ "$name" "$p" "$f" "$s" $((SECONDS - t0))
		if [ "$f" -ne 0 ]; then
			note_fail "integration/$name"
			echo "------ $log (last 40 lines) ------"
			tail -n 40 "$log"
			echo "------"
		fi
	done
}

suite_fuzz() {
	local h name log work rc
	for h in $(ls "$BUILD"/fuzz/fuzz_* 2>/dev/null | sort); do
		[ -x "$h" ] || continue
		name="$(basename "$h")"
		log="$LOGS/fuzz-$name.log"
		work="$(mktemp -d)"
		# Fuzz a copy: new inputs must not land in the repository.
		if [ -d "tests/fuzz/corpus/$name" ]; then
			cp -r "tests/fuzz/corpus/$name/." "$work/"
		fi
		local t0=$SECONDS dict=()
		# a harness's dictionary (tokens of its format), when it has one
		[ -f "tests/fuzz/dict/$name.dict" ] && dict=("-dict=tests/fuzz/dict/$name.dict")
		"$h" "${dict[@]}" -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 \
			-print_final_stats=1 -artifact_prefix="$BUILD/test-logs/$name-" \
			"$work" >"$log" 2>&1
		rc=$?
		rm -rf "$work"
		if [ "$rc" -eq 0 ]; then
			PASS=$((PASS + 1))
			printf '%-6s %-28s ok, %s runs (%ds)\n' fuzz "$name" \
				"$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$')" \
				$((SECONDS - t0))
		else
			FAIL=$((FAIL + 1))
			note_fail "fuzz/$name"
			printf '%-6s %-28s FAILED (exit %d)\n' fuzz "$name" "$rc"
			tail -n 40 "$log"
		fi
	done
}

for s in "${ONLY[@]}"; do
	case "$s" in
	unit) suite_unit ;;
	asan) suite_asan ;;
	integration) suite_integration ;;
	fuzz) suite_fuzz ;;
	*) echo "run-tests: unknown suite $s" >&2; exit 2 ;;
	esac
done

if [ ${#FAILED_NAMES[@]} -gt 0 ]; then
	echo "failed: ${FAILED_NAMES[*]}"
fi
if [ "$SKIP" -gt 0 ]; then
	echo "$PASS passed, $FAIL failed, $SKIP skipped"
else
	echo "$PASS passed, $FAIL failed"
fi
[ "$FAIL" -eq 0 ]
