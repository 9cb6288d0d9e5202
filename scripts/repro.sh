#!/usr/bin/env bash
# `make repro`: copies the source tree into two different directories,
# builds each, and compares every binary byte for byte.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
COMMIT="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
TMP="$(mktemp -d /tmp/veil-repro.XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
A="$TMP/one"
B="$TMP/second/tree-with-a-longer-path"
for d in "$A" "$B"; do
	mkdir -p "$d"
	# Tracked and new (not ignored) files: what a commit would hold.
	git ls-files -z --cached --others --exclude-standard |
		xargs -0 -I{} cp --parents -- {} "$d"/ 2>/dev/null || true
	echo "repro: building in $d"
	make -C "$d" -j"$(nproc)" --no-print-directory GIT_COMMIT="$COMMIT" all bench-bins >/dev/null
done
fail=0 n=0
while IFS= read -r -d '' f; do
	rel="${f#$A/}"
	n=$((n + 1))
	if cmp -s "$f" "$B/$rel"; then
		printf 'same  %s  %s\n' "$(sha256sum "$f" | cut -c1-16)" "$rel"
	else
		printf 'DIFF  %s\n' "$rel"
		fail=1
	fi
done < <(find "$A/build/bin" "$A/build/lib" "$A/build/bench" -type f -print0 2>/dev/null | sort -z)
if [ "$fail" -ne 0 ] || [ "$n" -eq 0 ]; then
	echo "repro: FAILED ($n files compared)"
	exit 1
fi
echo "repro: $n files byte-identical across two build directories"
