#!/usr/bin/env bash
# test/bench/compare.sh: figures 1 and 5 (or others) of two commits, measured in one session,
# interleaved, so that the machine's drift and other load fall on both alike.
#
#   bash test/bench/compare.sh BASE [HEAD] [FIGURES] [REPS]   e.g. compare.sh c445811 HEAD 1,5 3
#
# Exports both commits (git archive) to temporary folders, builds them, and runs each one's own
# test/bench/run.sh --only FIGURES with one repetition, in turn: base, head; then head, base;
# ... (ABBA), each run under the test lock (make install writes the shared PostgreSQL lib
# dir; other sessions' test runs can go between two runs). Sizes come from the environment
# as for run.sh (HI_BENCH_F5_DELIVERIES=...). Writes test/bench/results/compare/BASE-HEAD/
# (each run's raw.json and log, and summary.md: every run's ratio and head/base per
# repetition, from compare.py). Ports: HI_PG_PORT etc. of test/lib/common.sh plus 40.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
BASE=${1:?usage: compare.sh BASE [HEAD] [FIGURES] [REPS]}
HEAD=${2:-HEAD}
FIGURES=${3:-1,5}
REPS=${4:-3}
LOCK=${HI_TEST_LOCK:-/tmp/halo_itsm-test.lock}

base_id=$(git -C "$ROOT" rev-parse --short "$BASE") || exit 1
head_id=$(git -C "$ROOT" rev-parse --short "$HEAD") || exit 1
OUT=$ROOT/test/bench/results/compare/$base_id-$head_id
TMP=$(mktemp -d /tmp/halo_itsm-compare.XXXXXX)
chmod 755 "$TMP"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$OUT"

for side in base head; do
    id=${side}_id
    mkdir -p "$TMP/$side"
    git -C "$ROOT" archive "${!id}" | tar -x -C "$TMP/$side" || exit 1
    # built here, outside the lock (only make install, in run.sh, writes the shared lib dir)
    make -C "$TMP/$side" -s -j2 >"$TMP/$side.build.log" 2>&1 || { cat "$TMP/$side.build.log"; exit 1; }
done

export HI_BENCH_REPS=1
export HI_PG_PORT=$(( ${HI_PG_PORT:-54329} + 40 )) HI_MOCK_PORT=$(( ${HI_MOCK_PORT:-18080} + 40 ))
export HI_RECEIVER_PORT=$(( ${HI_RECEIVER_PORT:-18081} + 40 )) HI_LISTEN_PORT=$(( ${HI_LISTEN_PORT:-18082} + 40 ))
export HI_RUN_DIR=$TMP/run

# run_side SIDE REP: one run of SIDE's harness under the lock; its raw.json and log kept.
run_side() {
    local side=$1 rep=$2 dir=$OUT/$1-$2
    mkdir -p "$dir"
    echo "=== $(date -u +%H:%M:%S) repetition $rep: $side (load $(cut -d' ' -f1 /proc/loadavg))"
    (cd "$TMP/$side" && flock "$LOCK" bash test/bench/run.sh --only "$FIGURES" --outdir "$dir") \
        >"$dir/log" 2>&1
    local rc=$?
    grep -E 'rep 1:' "$dir/log" | sed 's/^/    /'
    [ "$rc" -eq 0 ] || { echo "    FAILED (exit $rc): see $dir/log"; return 1; }
}

failed=0
for ((rep = 1; rep <= REPS; rep++)); do
    if ((rep % 2)); then order="base head"; else order="head base"; fi
    for side in $order; do
        run_side "$side" "$rep" || failed=1
    done
done
python3 "$HERE/compare.py" "$OUT" "$base_id" "$head_id" | tee "$OUT/summary.md"
exit $failed
