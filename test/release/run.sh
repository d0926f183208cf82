#!/usr/bin/env bash
# test/release/run.sh: the release checks (bash test/release/run.sh; run_tests.sh's
# "release" stage). Ends with "N passed, N failed".
#
#   1. the release metadata agree: one version (halo_itsm.control's default_version) in
#      META.json, debian/changelog, CHANGELOG.md and the built install script; META.json
#      follows the PGXN Meta Spec 1.0.0 (check_meta.py)
#   2. the Debian package builds with dpkg-buildpackage (debian/, pg_buildext)
#   3. it installs with dpkg, and owns the library and the extension files
#   4. pg_regress passes against the installed package, on a cluster of its own that
#      preloads the package's library
#   5. once a release exists (test/release/previous-release), the upgrade from it
#      (test/release/upgrade.sh: ALTER EXTENSION UPDATE with data and the worker running)
# Afterwards the package is removed and the working tree's build installed again, so
# that the machine is as the other stages expect it. Needs root (dpkg).
set -uo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$HI_ROOT" || exit 1

PASSED=0
FAILED=0
PKG=postgresql-15-halo-itsm
WORK=$HI_RUN/package
LOG=$WORK/build.log

# check NAME CMD...: run CMD; one "ok"/"FAIL" line and a count.
check() {
    local name=$1
    shift
    if "$@"; then
        echo "ok - $name"
        PASSED=$((PASSED + 1))
    else
        echo "FAIL - $name"
        FAILED=$((FAILED + 1))
        return 1
    fi
}

# Builds the .deb from a copy of the tracked and new files (the clone stays clean).
build_package() {
    rm -rf "$WORK"
    mkdir -p "$WORK/halo-itsm"
    git ls-files -co --exclude-standard | tar -cf - -T - | tar -xf - -C "$WORK/halo-itsm" || return 1
    (cd "$WORK/halo-itsm" && dpkg-buildpackage -us -uc -b) >"$LOG" 2>&1 \
        || { tail -n 40 "$LOG"; return 1; }
    ls "$WORK"/"$PKG"_*.deb >/dev/null
}

# Installs the built package and checks that it owns what the server loads.
install_package() {
    local f
    dpkg -i "$WORK"/"$PKG"_*.deb >>"$LOG" 2>&1 || { tail -n 20 "$LOG"; return 1; }
    for f in "$($PG_CONFIG --pkglibdir)/halo_itsm.so" \
             "$($PG_CONFIG --sharedir)/extension/halo_itsm.control"; do
        dpkg -S "$f" 2>/dev/null | grep -q "^$PKG:" || { echo "$f is not from $PKG"; return 1; }
    done
}

# pg_regress against the installed package, on its own cluster and mock (other ports).
regress_on_package() {
    local rc version
    mapfile -t conf < <(grep -v '^\s*\(#\|$\)' test/lib/test.conf)
    hi_cluster_start "${conf[@]}" || return 1
    hi_mock_start || return 1
    version=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" halo_itsm.control)
    rm -rf test/regress/out
    make -s installcheck PG_CONFIG="$PG_CONFIG" PGHOST="$HI_SOCKET_DIR" PGPORT="$PG_PORT" \
        PGUSER=postgres
    rc=$?
    [ "$rc" -ne 0 ] && [ -f test/regress/out/regression.diffs ] && head -n 100 test/regress/out/regression.diffs
    [ "$rc" -eq 0 ] || return 1
    [ "$(hi_psql "$HI_DB_MANUAL" "CREATE EXTENSION IF NOT EXISTS halo_itsm;
          SELECT halo_itsm.library_version() OPERATOR(pg_catalog.=) extversion
          FROM pg_catalog.pg_extension WHERE extname = 'halo_itsm'")" = t ] \
        || { echo "library_version() is not $version"; return 1; }
}

# Removes the package and installs the working tree's build again.
restore_build() {
    hi_mock_stop
    hi_cluster_stop
    dpkg -r "$PKG" >>"$LOG" 2>&1
    make -s install PG_CONFIG="$PG_CONFIG" >/dev/null
}

if [ "$(id -u)" -ne 0 ]; then
    echo "FAIL - release checks need root (dpkg)"
    echo "0 passed, 1 failed"
    exit 1
fi
mkdir -p "$HI_RUN"
[ "$(id -u)" -eq 0 ] && chown postgres:postgres "$HI_RUN"
check "release metadata (META.json, versions, CHANGELOG.md, LICENSE)" \
    "$HI_PYTHON" test/release/check_meta.py
check "check_meta.py rejects each broken release file" "$HI_PYTHON" test/release/test_check_meta.py
# make dist: the source archives (zip for PGXN, tar.gz) hold every tracked file and build
check "make dist: the source archives hold the tracked files and build" bash test/release/check_dist.sh "$WORK-dist"
if check "Debian package builds (dpkg-buildpackage)" build_package; then
    if check "package installs and owns the extension's files" install_package; then
        check "pg_regress against the installed package" regress_on_package
    fi
fi
restore_build || { echo "FAIL - reinstalling the working tree's build"; FAILED=$((FAILED + 1)); }
# the upgrade from the previous release, once there is one (test/release/previous-release)
if [ -f test/release/previous-release ]; then
    out=$(bash test/release/upgrade.sh 2>&1)
    rc=$?
    echo "$out"
    PASSED=$((PASSED + $(grep -c '^ok - ' <<<"$out")))
    FAILED=$((FAILED + $(grep -c '^FAIL - ' <<<"$out")))
    if [ "$rc" -ne 0 ] && ! grep -q '^FAIL - ' <<<"$out"; then
        echo "FAIL - test/release/upgrade.sh exited $rc"
        FAILED=$((FAILED + 1))
    fi
fi
echo "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
