#!/usr/bin/env bash
# test/release/upgrade.sh: the upgrade check (run by test/release/run.sh; needs root).
#
# Installs the previous release (test/release/previous-release: "VERSION COMMIT", built
# from that commit of this repository's history), creates the extension at that version
# and fills it with its worker running (test/release/upgrade_data.py: done, dead and
# pending items, tickets, timeline, webhook deliveries), then installs this tree, restarts
# the server with the new library, runs ALTER EXTENSION halo_itsm UPDATE, and checks:
#   - the extension's schema (test/release/schema.sql: every member with its definition,
#     sorted) is identical to a fresh install of this version,
#   - every row survived, and delivery and ingest work after the update.
# Prints "ok - ..." lines; ends with "N passed, N failed".
set -uo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$HI_ROOT" || exit 1

PASSED=0
FAILED=0
WORK=$HI_RUN/upgrade

ok() { echo "ok - $*"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL - $*"; FAILED=$((FAILED + 1)); }
# data STEP...: test/release/upgrade_data.py STEP, its "ok" lines counted.
data() {
    local out rc
    out=$("$HI_PYTHON" test/release/upgrade_data.py "$@" 2>&1)
    rc=$?
    echo "$out"
    PASSED=$((PASSED + $(grep -c '^ok - ' <<<"$out")))
    return $rc
}
finish() {
    hi_mock_stop
    hi_cluster_stop
    echo "$PASSED passed, $FAILED failed"
    [ "$FAILED" -eq 0 ] && [ "$PASSED" -gt 0 ]
    exit $?
}

read -r OLD_VERSION OLD_COMMIT < test/release/previous-release
NEW_VERSION=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" halo_itsm.control)
if [ "$OLD_VERSION" = "$NEW_VERSION" ]; then
    fail "halo_itsm.control says $NEW_VERSION, the previous release too: bump default_version"
    finish
fi
if [ ! -f "sql/halo_itsm--$OLD_VERSION--$NEW_VERSION.sql" ] && ! make -s "sql/halo_itsm--$OLD_VERSION--$NEW_VERSION.sql" 2>/dev/null; then
    fail "no upgrade script sql/halo_itsm--$OLD_VERSION--$NEW_VERSION.sql"
    finish
fi

# 1. the previous release, built from its commit
rm -rf "$WORK"
mkdir -p "$WORK/old"
if git cat-file -e "$OLD_COMMIT^{commit}" 2>/dev/null \
    && git archive "$OLD_COMMIT" | tar -xf - -C "$WORK/old" \
    && make -s -C "$WORK/old" PG_CONFIG="$PG_CONFIG" >"$WORK/old-build.log" 2>&1 \
    && make -s -C "$WORK/old" PG_CONFIG="$PG_CONFIG" install >>"$WORK/old-build.log" 2>&1; then
    ok "release $OLD_VERSION built and installed from commit ${OLD_COMMIT:0:12}"
else
    tail -n 20 "$WORK/old-build.log" 2>/dev/null
    fail "building release $OLD_VERSION from commit $OLD_COMMIT (is the history there? git fetch --unshallow)"
    make -s install PG_CONFIG="$PG_CONFIG" >/dev/null
    finish
fi

# 2. a cluster running the previous release, filled by its worker
mapfile -t conf < <(grep -v '^\s*\(#\|$\)' test/lib/test.conf)
hi_cluster_start "${conf[@]}" && hi_mock_start || { fail "cluster or mock did not start"; finish; }
hi_psql "$HI_DB" "CREATE EXTENSION halo_itsm VERSION '$OLD_VERSION'" >/dev/null \
    && ok "CREATE EXTENSION halo_itsm VERSION '$OLD_VERSION'" || { fail "CREATE EXTENSION at $OLD_VERSION"; finish; }
data fill "$WORK/snapshot.json" || { fail "filling release $OLD_VERSION"; finish; }

# 3. this tree installed and its library loaded, the SQL still the previous release's
make -s install PG_CONFIG="$PG_CONFIG" >/dev/null || { fail "make install of this tree"; finish; }
hi_as_postgres "$PGBIN/pg_ctl" -D "$HI_PGDATA" -l "$HI_PG_LOG" -m fast -w -t 60 restart >/dev/null \
    || { fail "restart with the new library"; finish; }
data waiting || { fail "the new library on the old SQL"; finish; }

# 4. the update
if hi_psql "$HI_DB" "ALTER EXTENSION halo_itsm UPDATE" >/dev/null \
    && [ "$(hi_psql "$HI_DB" "SELECT extversion FROM pg_extension WHERE extname = 'halo_itsm'")" = "$NEW_VERSION" ]; then
    ok "ALTER EXTENSION halo_itsm UPDATE: $OLD_VERSION -> $NEW_VERSION"
else
    fail "ALTER EXTENSION halo_itsm UPDATE to $NEW_VERSION"
    finish
fi

# 5. the same schema as a fresh install
hi_psql postgres "DROP DATABASE IF EXISTS halo_fresh" >/dev/null
hi_psql postgres "CREATE DATABASE halo_fresh" >/dev/null
hi_psql halo_fresh "CREATE EXTENSION halo_itsm" >/dev/null
for db in "$HI_DB" halo_fresh; do
    "$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h "$HI_SOCKET_DIR" -p "$PG_PORT" -U postgres \
        -d "$db" -f test/release/schema.sql >"$WORK/schema-$db.txt" || fail "describing $db"
done
if diff -u "$WORK/schema-halo_fresh.txt" "$WORK/schema-$HI_DB.txt" >"$WORK/schema.diff"; then
    ok "the updated schema is identical to a fresh install ($(wc -l <"$WORK/schema-$HI_DB.txt") lines)"
else
    head -n 80 "$WORK/schema.diff"
    fail "the updated schema differs from a fresh install (- fresh, + updated; $WORK/schema.diff)"
fi

# 6. the data, delivery and ingest
data verify "$WORK/snapshot.json" || fail "after the update"
finish
