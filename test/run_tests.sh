#!/usr/bin/env bash
# test/run_tests.sh: the project's test command (bash test/run_tests.sh).
#
# Installs what is missing, builds and installs halo_itsm, starts a fresh cluster and the
# mock Halo server, then runs in order: unit tests and the code checks of test/lint (no
# function in src/ over 80 lines, static prototypes, names), pg_regress, integration tests, fuzzers (briefly). A stage whose files do not exist yet is reported as skipped.
# Environment:
#   HI_ONLY=unit,regress,integration,fuzz,bench,release,ha   run only these stages
#   (unit runs the lint stage too; HI_ONLY=lint runs it alone)
#   (ha: a Patroni cluster (test/ha/cluster.sh) through switchovers and failovers;
#    HI_HA_TESTS="test_a test_b" picks tests; HI_LONG=1: 2,000 cases instead of 200)
#   (bench: the benchmark harness once with tiny sizes, to keep it working; no timing is asserted)
#   (release: META.json and versions, the Debian package built, installed and regress-tested)
#   HI_KEEP=1                               leave cluster and mock running afterwards
#   HI_FUZZ_SECONDS=N                       fuzzing time (default 5)
#   HI_FAST=1                               fsync=off, synchronous_commit=off
#   HI_LONG=1                               full sizes of the fault tests (5,000 cases):
#       HI_LONG=1 HI_ONLY=integration HI_TESTS=test_faults bash test/run_tests.sh
# The last line of output is `N passed, N failed`; exit 0 iff failed == 0 and passed > 0.
set -uo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$HI_ROOT" || exit 1

PASSED=0
FAILED=0
REPORT=()
STARTED=""     # which servers this run started: "cluster", "cluster mock"
OUT=$HI_RUN/stage.out

# stage_wanted NAME: true when HI_ONLY is unset or lists NAME.
stage_wanted() {
    [ -z "${HI_ONLY:-}" ] && return 0
    [[ ",${HI_ONLY// /}," == *",$1,"* ]]
}

# record NAME PASSED FAILED [NOTE]: add a stage's counts to the totals.
record() {
    PASSED=$((PASSED + $2))
    FAILED=$((FAILED + $3))
    REPORT+=("$(printf '%-12s %4d passed %4d failed  %s' "$1" "$2" "$3" "${4:-}")")
}

skip() {
    REPORT+=("$(printf '%-12s skipped: %s' "$1" "$2")")
    echo "=== $1: skipped ($2)"
}

# run_stage CMD...: run CMD with its output shown and kept in $OUT; returns its status.
# It runs as a background job in its own process group, so that a signal to this script
# interrupts the wait at once and the cleanup ends the whole stage (HI_STAGE_PID).
run_stage() {
    local rc
    set -m
    { "$@" </dev/null 2>&1 | tee "$OUT"; } &
    HI_STAGE_PID=$!
    set +m
    wait "$HI_STAGE_PID"
    rc=$?
    HI_STAGE_PID=
    return $rc
}

# count_summary NAME RC: counts from the last `N passed, N failed` line of $OUT;
# without that line, or with a non-zero exit and no failure counted, one failure more.
count_summary() {
    local line p=0 f=0
    line=$(grep -E '^([A-Za-z]+: )?[0-9]+ passed, [0-9]+ failed' "$OUT" | tail -n 1)
    if [ -n "$line" ]; then
        p=$(sed -E 's/^([A-Za-z]+: )?([0-9]+) passed.*/\2/' <<<"$line")
        f=$(sed -E 's/^([A-Za-z]+: )?[0-9]+ passed, ([0-9]+) failed.*/\2/' <<<"$line")
    fi
    if [ "$2" -ne 0 ] && [ "$f" -eq 0 ]; then
        record "$1" "$p" 1 "(exit code $2)"
    else
        record "$1" "$p" "$f"
    fi
}

stage_unit() {
    if [ ! -f test/unit/Makefile ]; then skip unit "test/unit/Makefile not found"; return; fi
    echo "=== unit tests"
    run_stage make -C test/unit check
    count_summary unit $?
}

# The code checks of test/lint: every C function in src/ at most 80 lines; static
# prototypes at the top of each file and the naming convention.
stage_lint() {
    if [ ! -f test/lint/function_length.py ]; then skip lint "test/lint/function_length.py not found"; return; fi
    echo "=== lint: function length"
    run_stage "$HI_PYTHON" test/lint/function_length.py --max 80 src
    count_summary lint $?
    echo "=== lint: prototypes and names"
    run_stage "$HI_PYTHON" test/lint/conventions.py src
    count_summary conventions $?
}

stage_regress() {
    if ! compgen -G 'test/regress/sql/*.sql' >/dev/null; then
        skip regress "no test/regress/sql/*.sql"; return
    fi
    echo "=== pg_regress"
    local rc p f
    rm -rf test/regress/out
    run_stage make installcheck PG_CONFIG="$PG_CONFIG" PGHOST="$HI_SOCKET_DIR" \
        PGPORT="$PG_PORT" PGUSER=postgres
    rc=$?
    # PG15: "test name ... ok  12 ms" / "... FAILED"; PG16+: "ok 1 - name" / "not ok 1 - name".
    p=$(grep -cE '\.\.\. ok( |$)|^ok [0-9]+ ' "$OUT")
    f=$(grep -cE '\.\.\. FAILED|^not ok [0-9]+ ' "$OUT")
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        record regress "$p" 1 "(make installcheck exit code $rc)"
    else
        record regress "$p" "$f"
    fi
    if [ "$rc" -ne 0 ] && [ -f test/regress/out/regression.diffs ]; then
        echo "--- test/regress/out/regression.diffs"
        cat test/regress/out/regression.diffs
    fi
}

stage_integration() {
    if [ ! -f test/integration/run.py ]; then skip integration "run.py not found"; return; fi
    echo "=== integration tests"
    run_stage "$HI_PYTHON" test/integration/run.py ${HI_TESTS:-}
    count_summary integration $?
}

# The benchmark harness with tiny sizes, on its own cluster and mock: passes when it could
# measure every figure (targets are reported, never asserted).
stage_bench() {
    if [ ! -f test/bench/run.sh ]; then skip bench "test/bench/run.sh not found"; return; fi
    echo "=== benchmarks, quick"
    if HI_PG_PORT=$((PG_PORT + 20)) HI_MOCK_PORT=$((MOCK_PORT + 20)) HI_RECEIVER_PORT=$((RECEIVER_PORT + 20)) HI_LISTEN_PORT=$((LISTEN_PORT + 20)) \
        HI_RUN_DIR="$HI_RUN-bench" run_stage bash test/bench/run.sh --quick; then
        record bench 1 0
    else
        record bench 0 1 "(the quick benchmark run failed)"
    fi
}

# The release checks (test/release/run.sh), on their own cluster and mock: it installs the
# Debian package, tests it, and installs this tree's build again.
stage_release() {
    if [ ! -f test/release/run.sh ]; then skip release "test/release/run.sh not found"; return; fi
    echo "=== release: metadata and the Debian package"
    HI_PG_PORT=$((PG_PORT + 30)) HI_MOCK_PORT=$((MOCK_PORT + 30)) HI_RECEIVER_PORT=$((RECEIVER_PORT + 30)) \
        HI_RUN_DIR="$HI_RUN-release" run_stage bash test/release/run.sh
    count_summary release $?
}

stage_fuzz() {
    if [ ! -f test/fuzz/run.sh ]; then skip fuzz "test/fuzz/run.sh not found"; return; fi
    echo "=== fuzzers (${HI_FUZZ_SECONDS:-5} s)"
    local rc p f
    run_stage bash test/fuzz/run.sh "${HI_FUZZ_SECONDS:-5}"
    rc=$?
    p=$(grep -cE '^[[:space:]]*(ok|OK|PASS|pass)([[:space:]:-]|$)' "$OUT")
    f=$(grep -cE '^[[:space:]]*(FAIL|FAILED|fail|failed|not ok)([[:space:]:-]|$)' "$OUT")
    if [ $((p + f)) -eq 0 ]; then
        if [ "$rc" -eq 0 ]; then record fuzz 1 0; else record fuzz 0 1 "(exit code $rc)"; fi
    elif [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        record fuzz "$p" 1 "(exit code $rc)"
    else
        record fuzz "$p" "$f"
    fi
}

# The high-availability tests (test/ha): a Patroni cluster of two nodes with etcd and a mock
# of their own (test/ha/cluster.sh), through switchovers and failovers; torn down after.
stage_ha() {
    if [ ! -f test/ha/run.py ]; then skip ha "test/ha/run.py not found"; return; fi
    echo "=== high availability (Patroni)"
    HA_STARTED=1
    if ! run_stage bash test/ha/cluster.sh start; then
        record ha 0 1 "(test/ha/cluster.sh start failed)"
    else
        run_stage "$HI_PYTHON" test/ha/run.py ${HI_HA_TESTS:-}
        count_summary ha $?
    fi
    bash test/ha/cluster.sh stop
    HA_STARTED=
}

# finish: stop servers (quietly), print the report and the summary line, exit.
finish() {
    trap - EXIT
    [ -n "${HA_STARTED:-}" ] && bash test/ha/cluster.sh stop 2>&1
    if [ "$FAILED" -gt 0 ] || [ "$PASSED" -eq 0 ]; then
        if [ -n "$STARTED" ] && [ -s "$HI_PG_LOG" ]; then
            echo "--- last 80 lines of the server log ($HI_PG_LOG)"
            tail -n 80 "$HI_PG_LOG"
        fi
        if [[ "$STARTED" == *mock* ]] && [ -s "$HI_MOCK_LOG" ]; then
            echo "--- last 20 lines of the mock log ($HI_MOCK_LOG)"
            tail -n 20 "$HI_MOCK_LOG"
        fi
    fi
    hi_cleanup 2>&1
    echo "=== summary"
    printf '%s\n' "${REPORT[@]}"
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
    exit $?
}

mkdir -p "$HI_RUN"
hi_cleanup_on_exit

echo "=== setup"
if ! hi_setup; then
    record setup 0 1 "(hi_setup failed)"
    finish
fi

if stage_wanted regress || stage_wanted integration; then
    STARTED=cluster
    mapfile -t TEST_CONF < <(grep -v '^\s*\(#\|$\)' test/lib/test.conf)
    TEST_CONF+=("halo_itsm.webhook_base_url = 'http://127.0.0.1:$RECEIVER_PORT/halo/'")
    TEST_CONF+=("halo_itsm.listen_port = $LISTEN_PORT")
    if ! hi_cluster_start "${TEST_CONF[@]}"; then
        record cluster 0 1 "(hi_cluster_start failed)"
        finish
    fi
    if [ -f test/mock/mock_halo.py ]; then
        STARTED="cluster mock"
        if ! hi_mock_start; then
            record mock 0 1 "(hi_mock_start failed)"
            finish
        fi
    else
        hi_log "test/mock/mock_halo.py not found: mock not started"
    fi
fi

stage_wanted unit && stage_unit
{ stage_wanted unit || stage_wanted lint; } && stage_lint
stage_wanted regress && stage_regress
stage_wanted integration && stage_integration
stage_wanted fuzz && stage_fuzz
stage_wanted bench && stage_bench
stage_wanted release && stage_release
stage_wanted ha && stage_ha
finish
