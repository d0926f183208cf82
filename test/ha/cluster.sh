#!/usr/bin/env bash
# test/ha/cluster.sh: a Patroni cluster on this machine's loopback, for the HA tests and
# for anyone who wants to try halo_itsm under Patroni.
#
#   bash test/ha/cluster.sh start        etcd, two Patroni nodes (a primary and a streaming
#                                        replica, both preloading halo_itsm and pg_cron), the
#                                        mock Halo; waits until the replica streams
#   bash test/ha/cluster.sh stop         stops all of it (Patroni stops its PostgreSQL)
#   bash test/ha/cluster.sh status       patronictl list
#   bash test/ha/cluster.sh kill NODE    kill -9 of NODE's Patroni and postmaster (the
#                                        machine dies: the replica takes over at the TTL)
#   bash test/ha/cluster.sh crash NODE   kill -9 of NODE's postmaster only (Patroni restarts
#                                        it in place when it still holds the leader key)
#   bash test/ha/cluster.sh up NODE      start NODE's Patroni again (pg_rewind, then replica)
#   bash test/ha/cluster.sh switchover   patronictl switchover to the replica
#   bash test/ha/cluster.sh env          the ports and paths, as shell assignments
#
# Its own ports and directory (each can be overridden from the environment):
#   HI_HA_RUN (/tmp/halo_itsm-run-ha), HI_HA_ETCD_PORT (23790, peers +10),
#   HI_HA_PG_PORT (54371: node1, +1 node2), HI_HA_REST_PORT (18131: node1, +1 node2),
#   HI_HA_LISTEN_PORT (18141: node1's webhook listener, +1 node2), HI_HA_PUBLIC_PORT (18140:
#   the listener's public address in halo_itsm.webhook_base_url), HI_HA_MOCK_PORT (18120).
# Servers run as the postgres OS user when the caller is root. The Debian packages
# patroni and etcd-server are in test/lib/common.sh's HI_PACKAGES.
set -uo pipefail

HA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HI_RUN_DIR=${HI_HA_RUN:-/tmp/halo_itsm-run-ha}
HI_MOCK_PORT=${HI_HA_MOCK_PORT:-18120}
. "$HA_ROOT/test/lib/common.sh"

HA_RUN=$HI_RUN
ETCD_PORT=${HI_HA_ETCD_PORT:-23790}
ETCD_PEER_PORT=$((ETCD_PORT + 10))
HA_PG_PORT=${HI_HA_PG_PORT:-54371}
HA_REST_PORT=${HI_HA_REST_PORT:-18131}
HA_LISTEN_PORT=${HI_HA_LISTEN_PORT:-18141}
# the public address of the webhook listener (a proxy in front of the primary, as HAProxy
# with Patroni's REST check would be): what Halo signs as Host; the tests post to the
# nodes' listeners directly with that Host
HA_PUBLIC_PORT=${HI_HA_PUBLIC_PORT:-18140}
HA_SCOPE=halo_itsm_ha
NODES="node1 node2"
ETCD_BIN=$(command -v etcd || echo /usr/bin/etcd)
PATRONI_BIN=$(command -v patroni || echo /usr/bin/patroni)
PATRONICTL_BIN=$(command -v patronictl || echo /usr/bin/patronictl)

ha_log() { echo "[ha] $*" >&2; }

# Runs a daemon in the background, as the postgres OS user when we are root (its pid in $!),
# with no file descriptor above 2: none of them (nor the
# PostgreSQL Patroni starts) may keep the harness's lock file open (flock) should it
# outlive this script.
daemon() {
    (
        for fd in $(ls /proc/$BASHPID/fd); do
            [ "$fd" -gt 2 ] && eval "exec $fd>&-"
        done 2>/dev/null
        cd / || exit 1
        if [ "$(id -u)" -eq 0 ]; then exec runuser -u postgres -- "$@"; else exec "$@"; fi
    ) &
}

# node_index NODE: 0 for node1, 1 for node2.
node_index() { echo $((${1#node} - 1)); }

# Writes NODE's Patroni configuration.
write_config() {
    local node=$1 i pg rest listen
    i=$(node_index "$node")
    pg=$((HA_PG_PORT + i)); rest=$((HA_REST_PORT + i)); listen=$((HA_LISTEN_PORT + i))
    cat >"$HA_RUN/$node.yml" <<YML
scope: $HA_SCOPE
name: $node
restapi:
  listen: 127.0.0.1:$rest
  connect_address: 127.0.0.1:$rest
etcd3:
  hosts: 127.0.0.1:$ETCD_PORT
bootstrap:
  dcs:
    ttl: 10
    loop_wait: 1
    retry_timeout: 3
    maximum_lag_on_failover: 1048576
    postgresql:
      use_pg_rewind: true
      use_slots: true
      parameters:
        shared_preload_libraries: 'halo_itsm, pg_cron'
        cron.database_name: halo
        cron.use_background_workers: 'on'
        max_worker_processes: 32
        wal_level: replica
        hot_standby: 'on'
        wal_log_hints: 'on'
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 128MB
        halo_itsm.database: halo
        halo_itsm.allow_http: 'on'
        halo_itsm.allow_private_addresses: 'on'
        halo_itsm.poll_interval: 100ms
        halo_itsm.backoff_base: 100ms
        halo_itsm.backoff_max: 2s
        halo_itsm.request_timeout: 3s
        halo_itsm.connect_timeout: 1s
        halo_itsm.listen_addresses: 127.0.0.1
        halo_itsm.listen_rate_limit: 0
        # the long variant sends 400 tickets an integration within minutes (the mock has
        # no rate limit unless a test sets one): no request budget, as in test_faults
        halo_itsm.request_budget: 0
        halo_itsm.webhook_base_url: 'http://127.0.0.1:$HA_PUBLIC_PORT/halo/'
        logging_collector: 'off'
        log_line_prefix: '%m [%p] '
  initdb:
    - encoding: UTF8
    - locale: C.UTF-8
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
  post_bootstrap: $HA_RUN/post_bootstrap.sh
postgresql:
  listen: 127.0.0.1:$pg
  connect_address: 127.0.0.1:$pg
  data_dir: $HA_RUN/$node
  bin_dir: $PGBIN
  pgpass: $HA_RUN/$node.pgpass
  authentication:
    superuser:
      username: postgres
    replication:
      username: postgres
    rewind:
      username: postgres
  parameters:
    unix_socket_directories: '$HA_RUN'
    halo_itsm.listen_port: $listen
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication all 127.0.0.1/32 trust
YML
}

# psql on NODE: ha_psql NODE DB SQL.
ha_psql() {
    local i
    i=$(node_index "$1")
    "$PGBIN/psql" -X -q -A -t -h 127.0.0.1 -p $((HA_PG_PORT + i)) -U postgres -d "$2" -c "$3"
}

# Runs Patroni for NODE in the background, its output in NODE-patroni.out.
start_node() {
    local node=$1
    daemon setsid "$PATRONI_BIN" "$HA_RUN/$node.yml" \
        >>"$HA_RUN/$node-patroni.out" 2>&1 </dev/null
    echo $! >"$HA_RUN/$node-patroni.pid"
}

# The pid of NODE's Patroni itself (the python process; not the runuser or subshell that
# started it, whose command lines name the same file), or nothing.
patroni_pid() {
    pgrep -f "python3 $PATRONI_BIN $HA_RUN/$1.yml" | head -n 1
}

# The pid of NODE's postmaster, or nothing.
postmaster_pid() {
    local f="$HA_RUN/$1/postmaster.pid" pid
    [ -f "$f" ] || return 0
    pid=$(head -n 1 "$f")
    kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# The REST role of NODE (primary, replica; Patroni 3.0 says master) or nothing when it does not answer.
node_role() {
    local i
    i=$(node_index "$1")
    curl -s --max-time 1 "http://127.0.0.1:$((HA_REST_PORT + i))/patroni" \
        | "$HI_PYTHON" -c 'import json,sys; r = json.load(sys.stdin).get("role", ""); print("primary" if r == "master" else r)' 2>/dev/null
}

# Waits up to $2 s until node $1 has role $3 (and for a replica: streams).
wait_role() {
    local node=$1 secs=$2 role=$3 k
    for ((k = 0; k < secs * 10; k++)); do
        if [ "$(node_role "$node")" = "$role" ]; then
            [ "$role" != replica ] && return 0
            [ "$(ha_psql "$node" postgres "SELECT status FROM pg_stat_wal_receiver" 2>/dev/null)" = streaming ] \
                && return 0
        fi
        sleep 0.1
    done
    ha_log "ERROR: $node is not $role after $secs s"
    return 1
}

start_etcd() {
    local k
    mkdir -p "$HA_RUN/etcd"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$HA_RUN/etcd"
    daemon setsid "$ETCD_BIN" --name hi-etcd --data-dir "$HA_RUN/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "hi-etcd=http://127.0.0.1:$ETCD_PEER_PORT" \
        >"$HA_RUN/etcd.log" 2>&1 </dev/null
    echo $! >"$HA_RUN/etcd.pid"
    for ((k = 0; k < 100; k++)); do
        curl -sf --max-time 1 "http://127.0.0.1:$ETCD_PORT/health" >/dev/null && return 0
        sleep 0.1
    done
    tail -n 20 "$HA_RUN/etcd.log" >&2
    ha_log "ERROR: etcd not healthy after 10 s"
    return 1
}

# Kills the process in pid file $1 and what it started (SIGTERM, then SIGKILL after $2 s).
stop_pidfile() {
    local f=$1 secs=$2 pid k
    pid=$(cat "$f" 2>/dev/null) || return 0
    rm -f "$f"
    kill -0 "$pid" 2>/dev/null || return 0
    pkill -TERM -P "$pid" 2>/dev/null; kill -TERM "$pid" 2>/dev/null
    for ((k = 0; k < secs * 10; k++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    pkill -KILL -P "$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null
}

cmd_stop() {
    local node
    for node in $NODES; do stop_pidfile "$HA_RUN/$node-patroni.pid" 30; done
    # a Patroni whose starter is gone (its pid file removed by `kill`, or a run killed)
    for node in $NODES; do
        pp=$(patroni_pid "$node")
        [ -n "$pp" ] || continue
        kill -TERM "$pp" 2>/dev/null
        for ((k = 0; k < 300; k++)); do
            kill -0 "$pp" 2>/dev/null || break
            sleep 0.1
        done
    done
    for node in $NODES; do
        [ -f "$HA_RUN/$node/postmaster.pid" ] || continue
        hi_as_postgres "$PGBIN/pg_ctl" -D "$HA_RUN/$node" -m immediate -w stop >/dev/null 2>&1 || true
    done
    stop_pidfile "$HA_RUN/etcd.pid" 10
    hi_mock_stop
    ha_log "stopped"
}

cmd_start() {
    local node
    hi_install_packages || return 1
    cmd_stop 2>/dev/null
    rm -rf "$HA_RUN"
    mkdir -p "$HA_RUN"
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$HA_RUN"
    chmod 755 "$HA_RUN"
    cat >"$HA_RUN/post_bootstrap.sh" <<'SH'
#!/bin/sh
# Patroni's post_bootstrap: the database of the delivery worker and pg_cron.
exec psql -X -q -d "$1" -c "CREATE DATABASE halo"
SH
    chmod 755 "$HA_RUN/post_bootstrap.sh"
    for node in $NODES; do write_config "$node"; done
    [ "$(id -u)" -eq 0 ] && chown -R postgres:postgres "$HA_RUN"
    start_etcd || return 1
    start_node node1
    wait_role node1 90 primary || { tail -n 30 "$HA_RUN/node1-patroni.out" >&2; return 1; }
    for ((k = 0; k < 300; k++)); do
        ha_psql node1 halo "SELECT 1" >/dev/null 2>&1 && break
        sleep 0.1
    done
    start_node node2
    wait_role node2 120 replica || { tail -n 30 "$HA_RUN/node2-patroni.out" >&2; return 1; }
    hi_mock_start || return 1
    ha_log "up: node1 primary (port $HA_PG_PORT), node2 replica (port $((HA_PG_PORT + 1))), etcd $ETCD_PORT, mock $HI_MOCK_PORT"
}

cmd_env() {
    echo "HA_RUN=$HA_RUN HA_PG_PORT=$HA_PG_PORT HA_REST_PORT=$HA_REST_PORT"
    echo "HA_LISTEN_PORT=$HA_LISTEN_PORT HA_MOCK_PORT=$HI_MOCK_PORT ETCD_PORT=$ETCD_PORT"
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) "$PATRONICTL_BIN" -c "$HA_RUN/node1.yml" list ;;
    kill)
        pp=$(patroni_pid "$2"); pm=$(postmaster_pid "$2")
        [ -n "$pp" ] && kill -KILL "$pp"
        [ -n "$pm" ] && kill -KILL "$pm"
        rm -f "$HA_RUN/$2-patroni.pid"
        ha_log "killed $2 (patroni ${pp:-none}, postmaster ${pm:-none})" ;;
    crash)
        pm=$(postmaster_pid "$2")
        [ -n "$pm" ] && kill -KILL "$pm"
        ha_log "killed $2's postmaster ${pm:-none}" ;;
    up) start_node "$2" ;;
    role) node_role "$2" ;;
    wait-role) wait_role "$2" "$3" "$4" ;;
    switchover)
        leader=${2:-node1}; cand=${3:-node2}
        "$PATRONICTL_BIN" -c "$HA_RUN/node1.yml" switchover --leader "$leader" \
            --candidate "$cand" --force ;;
    env) cmd_env ;;
    *) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
