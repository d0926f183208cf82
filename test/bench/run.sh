#!/usr/bin/env bash
# test/bench/run.sh: the halo_itsm benchmarks, one command (see test/bench/README.md).
#
#   bash test/bench/run.sh            all figures, 3 repetitions (about 45 minutes)
#   bash test/bench/run.sh --quick    tiny sizes, one repetition (under 2 minutes)
#   bash test/bench/run.sh --only 3,4 some figures (mock, 1, 2, 3, 4, 5, 6, 7, 8)
#   HI_BENCH_<SIZE>=N                 override a size of bench.py (e.g. HI_BENCH_F4_CASES=5000)
#
# Installs what is missing, builds and installs halo_itsm, builds the fast mock
# (test/bench/fast_mock.c), starts its own cluster and mock on HI_PG_PORT / HI_MOCK_PORT
# (test/lib/common.sh), runs test/bench/bench.py, and stops both. Prints the Markdown
# table; writes results/latest.md, raw.json, *.tsv and the charts throughput.png and
# latency.png (results/quick/ for --quick). HI_KEEP=1 leaves the servers running.
set -uo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$HI_ROOT" || exit 1

# gnuplot draws the charts, wrk measures the mock, gcc builds it (common.sh has them too).
HI_PACKAGES="$HI_PACKAGES wrk gnuplot-nox gcc"
# Only halo_itsm is preloaded: nothing else runs in the background of the measurements.
export HI_PRELOAD=halo_itsm
FAST_MOCK=$HI_RUN/fast_mock

# Start the fast mock on MOCK_PORT in the background (its pid in HI_MOCK_PID, so that
# hi_cleanup stops it).
bench_mock_start() {
    local pid i
    hi_mock_stop
    if hi_mock_answers || curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$MOCK_PORT/_bench/stats"; then
        hi_log "ERROR: port $MOCK_PORT is already taken by another server"
        return 1
    fi
    hi_without_fds "$FAST_MOCK" --port "$MOCK_PORT" >"$HI_MOCK_LOG" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$HI_MOCK_PID"
    for ((i = 0; i < 50; i++)); do
        grep -q 'fast_mock listening on' "$HI_MOCK_LOG" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    cat "$HI_MOCK_LOG" >&2
    hi_log "ERROR: the fast mock did not start"
    return 1
}

mkdir -p "$HI_RUN"
hi_cleanup_on_exit
hi_setup || exit 1
gcc -O2 -Wall -Wextra -Wno-unused-parameter -Werror -o "$FAST_MOCK" test/bench/fast_mock.c \
    || { hi_log "ERROR: building the fast mock failed"; exit 1; }
# figure 5b: the signature check of src/core against raw OpenSSL HMAC
gcc -O2 -Wall -Werror -Isrc/core -o "$HI_RUN/sig_bench" test/bench/sig_bench.c src/core/hi_signature.c \
    -lcrypto || { hi_log "ERROR: building sig_bench failed"; exit 1; }
export HI_BENCH_BIN=$HI_RUN

# Production defaults except what a local mock needs and the benchmarks prescribe:
# http to 127.0.0.1, no request budget (figures 3, 4), the default concurrency limit, the
# webhook listener on 127.0.0.1 without a rate limit (figure 8).
hi_cluster_start \
    "halo_itsm.allow_private_addresses = on" \
    "halo_itsm.request_budget = 0" \
    "halo_itsm.max_concurrent_requests = 64" \
    "halo_itsm.request_timeout = 10s" \
    "halo_itsm.listen_addresses = '127.0.0.1'" \
    "halo_itsm.listen_port = $LISTEN_PORT" \
    "halo_itsm.listen_rate_limit = 0" \
    || exit 1
bench_mock_start || exit 1

"$HI_PYTHON" test/bench/bench.py "$@"
