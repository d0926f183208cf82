#!/usr/bin/env bash
# test/fuzz/run.sh -- build and run halo_itsm's libFuzzer harnesses.
#
# Usage: test/fuzz/run.sh [seconds_per_harness]   (default 30)
#
# Each harness test/fuzz/fuzz_*.c is built with
#   clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
# against src/core, then run for that many seconds (-max_total_time) on a
# COPY of its seed corpus test/fuzz/corpus/<harness>/ in a temporary
# directory, so the committed corpus never grows.  Any crash, leak, timeout
# or sanitizer report fails the harness.  One line is printed per harness;
# the exit status is non-zero when any harness failed to build or run
# cleanly.  On failure the temporary directory (logs, crashing inputs) is
# kept and its path printed.
#
# Environment: CLANG (default clang), CORE_DIR (default src/core; point it
# at a patched copy to check that a planted bug is caught), HARNESSES
# (space-separated names, default all), KEEP_TMP=1 (keep the temp dir).
set -u

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
seconds="${1:-30}"
clang="${CLANG:-clang}"
core="${CORE_DIR:-$root/src/core}"

case "$seconds" in
	''|*[!0-9]*|0) echo "usage: $0 [seconds_per_harness > 0]" >&2; exit 2 ;;
esac
if ! command -v "$clang" >/dev/null 2>&1; then
	echo "run.sh: $clang not found" >&2
	exit 2
fi

if [ -n "${HARNESSES:-}" ]; then
	harnesses="$HARNESSES"
else
	harnesses=""
	for f in "$here"/fuzz_*.c; do
		harnesses="$harnesses $(basename "$f" .c)"
	done
fi

tmp="$(mktemp -d "${TMPDIR:-/tmp}/halo_itsm_fuzz.XXXXXX")"
failed=0

cflags=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
	-Wall -Wextra -Werror -I"$core")
core_srcs=("$core"/hi_*.c)

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:allocator_may_return_null=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"

for h in $harnesses; do
	src="$here/$h.c"
	bin="$tmp/$h"
	log="$tmp/$h.log"
	corpus="$tmp/corpus/$h"
	artifacts="$tmp/artifacts/$h"
	mkdir -p "$corpus" "$artifacts"

	if [ ! -f "$src" ]; then
		echo "FAIL $h: no such harness $src"
		failed=1
		continue
	fi
	if ! "$clang" "${cflags[@]}" -o "$bin" "$src" "${core_srcs[@]}" -lcrypto \
		>"$tmp/$h.build.log" 2>&1; then
		echo "FAIL $h: build failed: $(head -n 1 "$tmp/$h.build.log") (log: $tmp/$h.build.log)"
		failed=1
		continue
	fi

	seeds=0
	if [ -d "$here/corpus/$h" ]; then
		cp -R "$here/corpus/$h/." "$corpus/"
		seeds=$(find "$corpus" -type f | wc -l)
	fi
	dict=()
	if [ -f "$here/dict/$h.dict" ]; then
		dict=(-dict="$here/dict/$h.dict")
	fi

	(cd "$artifacts" && "$bin" -max_total_time="$seconds" -timeout=10 \
		-rss_limit_mb=2048 -malloc_limit_mb=1024 -max_len=4096 \
		-print_final_stats=1 -artifact_prefix="$artifacts/" \
		"${dict[@]}" "$corpus") >"$log" 2>&1
	rc=$?

	runs=$(sed -n 's/^Done \([0-9]*\) runs in .*/\1/p' "$log" | tail -n 1)
	files=$(find "$corpus" -type f | wc -l)
	report=$(grep -m 1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|invariant violated|deadly signal|==[0-9]+==ERROR' "$log")
	crashes=$(find "$artifacts" -type f | wc -l)

	if [ "$rc" -ne 0 ] || [ -n "$report" ] || [ "$crashes" -ne 0 ] || [ -z "$runs" ]; then
		echo "FAIL $h: exit $rc: ${report:-no report line} (log: $log; inputs: $artifacts)"
		failed=1
	else
		echo "PASS $h: $runs runs in ${seconds} s, corpus $seeds -> $files inputs"
	fi
done

if [ "$failed" -ne 0 ] || [ "${KEEP_TMP:-0}" = 1 ]; then
	echo "fuzz: temporary directory kept: $tmp"
else
	rm -rf "$tmp"
fi
exit "$failed"
