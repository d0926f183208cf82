# test/lib/common.sh: shared pieces of the test harness (sourced, never run).
#
# Constants (each can be overridden from the environment, e.g. to run two harnesses
# side by side): HI_PG_PORT, HI_MOCK_PORT, HI_RECEIVER_PORT, HI_LISTEN_PORT, HI_RUN_DIR, HI_PGBIN.
# Functions:
#   hi_setup                      install missing Debian packages, build and install
#   hi_cluster_start [conf...]    fresh initdb + start of the test cluster, extra conf lines
#   hi_cluster_stop               stop the test cluster (if running)
#   hi_cluster_log                print the server log's path
#   hi_psql DB SQL                run SQL in DB, unaligned tuples-only output
#   hi_mock_start [args...]       start the mock Halo server in the background
#   hi_mock_stop                  stop it
#   hi_cleanup_on_exit            trap: stop mock and cluster on exit unless HI_KEEP=1
#   hi_cleanup                    the same, now
# Servers run as the `postgres` OS user when the caller is root (PostgreSQL refuses root).

HI_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

PGBIN=${HI_PGBIN:-/usr/lib/postgresql/15/bin}
PG_CONFIG=$PGBIN/pg_config
PG_PORT=${HI_PG_PORT:-54329}
MOCK_PORT=${HI_MOCK_PORT:-18080}
RECEIVER_PORT=${HI_RECEIVER_PORT:-18081}
LISTEN_PORT=${HI_LISTEN_PORT:-18082}     # the webhook listener inside the extension
HI_DB=halo                  # the database where the background worker runs
HI_DB_MANUAL=halo_manual    # no worker: tests of manual delivery
HI_RUN=${HI_RUN_DIR:-/tmp/halo_itsm-run}
HI_PGDATA=$HI_RUN/pgdata
HI_PG_LOG=$HI_RUN/postgres.log
HI_MOCK_LOG=$HI_RUN/mock.log
HI_MOCK_PID=$HI_RUN/mock.pid
HI_SOCKET_DIR=/tmp
HI_PYTHON=/usr/bin/python3

HI_PACKAGES="postgresql-15 postgresql-server-dev-15 libcurl4-openssl-dev libssl-dev
postgresql-15-cron python3 python3-psycopg2 make gcc clang libclang-rt-14-dev curl
openssl wrk gnuplot-nox dpkg-dev debhelper postgresql-server-dev-all libmicrohttpd-dev
patroni etcd-server"

# What clients and the Python helpers (test/integration/halo_test.py) use.
export PGHOST=$HI_SOCKET_DIR PGPORT=$PG_PORT PGUSER=postgres
export HI_PG_LOG HI_PGDATA HI_PGBIN=$PGBIN HI_MOCK_PORT=$MOCK_PORT
export HI_RECEIVER_PORT=$RECEIVER_PORT HI_LISTEN_PORT=$LISTEN_PORT HI_ROOT

hi_log() { echo "[harness] $*" >&2; }

# The harness's PostgreSQL ports (the test cluster 54329, its standbys 54330 and 54339,
# the benchmark comparison 54369, the Patroni nodes from 54371) lie inside Linux's
# ephemeral range (32768-60999): an outgoing connection of the tests (the worker's HTTP
# to the mock) can hold one as its local port, and a server started on it then fails with
# "could not bind ... Address already in use" (seen once in test_listener_standby). As
# root, take them out of the range (net.ipv4.ip_local_reserved_ports; kept as it was
# otherwise, and nothing is done where /proc/sys is read-only).
hi_reserve_ports() {
    local f=/proc/sys/net/ipv4/ip_local_reserved_ports lo=$((PG_PORT)) hi=$((PG_PORT + 70)) cur
    [ "$(id -u)" -eq 0 ] && [ -w "$f" ] || return 0
    cur=$(cat "$f" 2>/dev/null) || return 0
    case ",$cur," in *",$lo-$hi,"*) return 0 ;; esac
    echo "${cur:+$cur,}$lo-$hi" > "$f" 2>/dev/null ||
        hi_log "could not reserve ports $lo-$hi from the ephemeral range (servers may find them taken)"
}
hi_reserve_ports

# Run a command as the postgres OS user (directly when we are not root), from a
# directory that user can read.
hi_as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        (cd / && runuser -u postgres -- "$@")
    else
        (cd / && "$@")
    fi
}

# hi_without_fds CMD...: closes every file descriptor above 2 of the CURRENT shell, then
# runs CMD (exec'd if it is a command, called if it is a function). Only ever call it in a
# subshell: `hi_without_fds cmd ... &` ($! is then CMD's pid) or `(hi_without_fds f ...)`.
# For servers that may outlive the caller: a server that inherited the fd of the caller's
# `flock /tmp/halo_itsm-test.lock` would hold the lock for as long as it runs (HI_KEEP=1).
hi_without_fds() {
    local fd
    for fd in $(ls /proc/$BASHPID/fd); do
        [ "$fd" -gt 2 ] && eval "exec $fd>&-"
    done 2>/dev/null
    if declare -F "$1" >/dev/null; then "$@"; else exec "$@"; fi
}

# Install whichever of HI_PACKAGES is missing.
hi_install_packages() {
    local p missing=()
    for p in $HI_PACKAGES; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    hi_log "installing missing packages: ${missing[*]}"
    if [ "$(id -u)" -ne 0 ]; then
        hi_log "ERROR: packages missing and not root: ${missing[*]}"
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || { hi_log "ERROR: apt-get update failed"; return 1; }
    apt-get install -y -qq "${missing[@]}" </dev/null \
        || { hi_log "ERROR: apt-get install failed: ${missing[*]}"; return 1; }
}

# Install missing packages, then build and install the extension.
hi_setup() {
    hi_install_packages || return 1
    hi_log "building halo_itsm"
    make -s -C "$HI_ROOT" PG_CONFIG="$PG_CONFIG" \
        || { hi_log "ERROR: make failed"; return 1; }
    make -s -C "$HI_ROOT" PG_CONFIG="$PG_CONFIG" install \
        || { hi_log "ERROR: make install failed"; return 1; }
}

hi_cluster_log() { echo "$HI_PG_LOG"; }

# Stop the test cluster: ours, and any other cluster still holding our port.
hi_cluster_stop() {
    local lock=$HI_SOCKET_DIR/.s.PGSQL.$PG_PORT.lock dir
    for dir in "$HI_PGDATA" "$(sed -n 2p "$lock" 2>/dev/null)"; do
        [ -n "$dir" ] && [ -f "$dir/postmaster.pid" ] || continue
        hi_as_postgres "$PGBIN/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null 2>&1 \
            || hi_as_postgres "$PGBIN/pg_ctl" -D "$dir" -m immediate -w stop >/dev/null 2>&1 \
            || true
    done
}

# Fresh cluster on PG_PORT with the extension preloaded; extra args are conf lines.
hi_cluster_start() {
    local locale=C.UTF-8 line
    hi_cluster_stop
    mkdir -p "$HI_RUN"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$HI_RUN"
    chmod 755 "$HI_RUN"
    rm -rf "$HI_PGDATA"
    rm -f "$HI_PG_LOG"
    locale -a 2>/dev/null | grep -qix 'c\.utf-\?8' || locale=C
    hi_as_postgres "$PGBIN/initdb" -D "$HI_PGDATA" --auth=trust -U postgres \
        -E UTF8 --locale="$locale" >"$HI_RUN/initdb.log" 2>&1 \
        || { cat "$HI_RUN/initdb.log" >&2; hi_log "ERROR: initdb failed"; return 1; }
    # Create the databases before the workers that connect to them first start.
    printf 'CREATE DATABASE %s\nCREATE DATABASE %s\n' "$HI_DB" "$HI_DB_MANUAL" \
        | hi_as_postgres "$PGBIN/postgres" --single -D "$HI_PGDATA" postgres \
        >"$HI_RUN/createdb.log" 2>&1
    if grep -q 'ERROR' "$HI_RUN/createdb.log"; then
        cat "$HI_RUN/createdb.log" >&2; hi_log "ERROR: creating databases failed"; return 1
    fi
    {
        echo "# --- halo_itsm test harness ---"
        echo "port = $PG_PORT"
        echo "listen_addresses = '127.0.0.1'"
        echo "unix_socket_directories = '$HI_SOCKET_DIR'"
        echo "shared_preload_libraries = '${HI_PRELOAD:-halo_itsm, pg_cron}'"
        echo "cron.database_name = '$HI_DB'"
        echo "cron.use_background_workers = on"
        echo "max_worker_processes = 32"
        echo "halo_itsm.database = '$HI_DB'"
        echo "halo_itsm.allow_http = on"
        echo "logging_collector = off"
        echo "log_line_prefix = '%m [%p] '"
        if [ "${HI_FAST:-0}" = 1 ]; then
            echo "fsync = off"
            echo "synchronous_commit = off"
        fi
        for line in "$@"; do echo "$line"; done
    } >>"$HI_PGDATA/postgresql.conf"
    (hi_without_fds hi_as_postgres "$PGBIN/pg_ctl" -D "$HI_PGDATA" -l "$HI_PG_LOG" -w -t 60 start) >/dev/null \
        || { tail -n 40 "$HI_PG_LOG" >&2; hi_log "ERROR: cluster failed to start"; return 1; }
    hi_psql "$HI_DB_MANUAL" "SELECT 1" >/dev/null \
        || { cat "$HI_RUN/createdb.log" >&2; hi_log "ERROR: databases missing"; return 1; }
    hi_log "cluster up: port $PG_PORT, data $HI_PGDATA, log $HI_PG_LOG"
}

# hi_psql DB SQL: run SQL in DB; stops at the first error; prints unaligned tuples.
hi_psql() {
    "$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$HI_SOCKET_DIR" -p "$PG_PORT" \
        -U postgres -d "$1" -c "$2"
}

# True when something answers the mock's control API (plain HTTP or TLS).
hi_mock_answers() {
    curl -sf -o /dev/null --max-time 1 "http://127.0.0.1:$MOCK_PORT/_mock/requests" \
        || curl -sfk -o /dev/null --max-time 1 "https://127.0.0.1:$MOCK_PORT/_mock/requests"
}

# Start the mock Halo server in the background; args go to mock_halo.py.
hi_mock_start() {
    local pid i
    hi_mock_stop
    mkdir -p "$HI_RUN"
    if hi_mock_answers; then
        hi_log "ERROR: port $MOCK_PORT is already taken by another server"
        return 1
    fi
    hi_without_fds "$HI_PYTHON" "$HI_ROOT/test/mock/mock_halo.py" --port "$MOCK_PORT" --quiet "$@" \
        >"$HI_MOCK_LOG" 2>&1 </dev/null &
    pid=$!
    echo "$pid" >"$HI_MOCK_PID"
    for ((i = 0; i < 100; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            cat "$HI_MOCK_LOG" >&2
            hi_log "ERROR: mock exited during start"
            rm -f "$HI_MOCK_PID"
            return 1
        fi
        if grep -q 'mock_halo listening on' "$HI_MOCK_LOG" 2>/dev/null || hi_mock_answers; then
            hi_log "mock up: port $MOCK_PORT, pid $pid, log $HI_MOCK_LOG"
            return 0
        fi
        sleep 0.1
    done
    cat "$HI_MOCK_LOG" >&2
    hi_log "ERROR: mock not ready after 10 s"
    hi_mock_stop
    return 1
}

# Stop the mock started by hi_mock_start (by its recorded pid).
hi_mock_stop() {
    local pid i
    [ -f "$HI_MOCK_PID" ] || return 0
    pid=$(cat "$HI_MOCK_PID")
    rm -f "$HI_MOCK_PID"
    kill "$pid" 2>/dev/null || return 0
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

# End the running stage's process group (HI_STAGE_PID, see run_tests.sh); then stop mock
# and cluster unless HI_KEEP=1 (then say what is left running).
hi_cleanup() {
    if [ -n "${HI_STAGE_PID:-}" ]; then
        kill -TERM -- "-$HI_STAGE_PID" 2>/dev/null
        HI_STAGE_PID=
    fi
    if [ "${HI_KEEP:-0}" = 1 ]; then
        hi_log "HI_KEEP=1: cluster (port $PG_PORT, data $HI_PGDATA) and mock (port $MOCK_PORT) left running"
        return 0
    fi
    hi_mock_stop
    hi_cluster_stop
}

# Install the cleanup as an exit trap; INT/TERM exit through it too.
hi_cleanup_on_exit() {
    trap 'hi_cleanup' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}
