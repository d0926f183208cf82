#!/usr/bin/env bash
# test/release/check_dist.sh WORKDIR: `make dist` gives source archives that build (run by
# test/release/run.sh as one check; exits 0 when every part holds, else names what failed).
#
# Makes the archives of the tracked files as they are in the working tree (git stash create:
# HEAD plus uncommitted changes of tracked files; HEAD when there are none) into WORKDIR and
# checks that
#   - halo_itsm-<version>.zip and halo_itsm-<version>.tar.gz hold the same files, every one
#     under halo_itsm-<version>/ (PGXN takes the zip, Debian the tar.gz);
#   - they hold every file git tracks at that commit (no file left out);
#   - the unpacked zip builds with make (PGXS, -Werror) into halo_itsm.so and the install
#     script sql/halo_itsm--<version>.sql, without git and outside the clone.
set -uo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"
cd "$HI_ROOT" || exit 1

WORK=${1:?usage: check_dist.sh WORKDIR}
VERSION=$(sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" halo_itsm.control)
NAME=halo_itsm-$VERSION

fail() { echo "check_dist: $*"; exit 1; }

rm -rf "$WORK"
mkdir -p "$WORK"
REF=$(git stash create 2>/dev/null)
REF=${REF:-HEAD}
make -s dist DIST_REF="$REF" DIST_DIR="$WORK" PG_CONFIG="$PG_CONFIG" >"$WORK/dist.log" 2>&1 \
    || { cat "$WORK/dist.log"; fail "make dist failed"; }
[ -f "$WORK/$NAME.zip" ] || fail "make dist wrote no $NAME.zip"
[ -f "$WORK/$NAME.tar.gz" ] || fail "make dist wrote no $NAME.tar.gz"

# the members of both archives, and the files git tracks, as sorted lists of paths
"$HI_PYTHON" - "$WORK/$NAME.zip" >"$WORK/zip.list" <<'EOF' || fail "cannot read $NAME.zip"
import sys, zipfile
for n in sorted(zipfile.ZipFile(sys.argv[1]).namelist()):
    if not n.endswith("/"):
        print(n)
EOF
tar -tzf "$WORK/$NAME.tar.gz" | grep -v '/$' | LC_ALL=C sort >"$WORK/tar.list" \
    || fail "cannot read $NAME.tar.gz"
LC_ALL=C sort -o "$WORK/zip.list" "$WORK/zip.list"
git ls-tree -r --name-only "$REF" | sed "s|^|$NAME/|" | LC_ALL=C sort >"$WORK/git.list"

outside=$(grep -v "^$NAME/" "$WORK/zip.list" | head -n 5)
[ -z "$outside" ] || fail "files outside $NAME/ in the zip: $outside"
diff -u "$WORK/zip.list" "$WORK/tar.list" >"$WORK/zip-tar.diff" \
    || { head -n 20 "$WORK/zip-tar.diff"; fail "the zip and the tar.gz hold different files"; }
diff -u "$WORK/git.list" "$WORK/zip.list" >"$WORK/git-zip.diff" \
    || { head -n 20 "$WORK/git-zip.diff"; fail "the zip does not hold exactly the tracked files"; }

# the unpacked zip builds on its own
"$HI_PYTHON" -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' \
    "$WORK/$NAME.zip" "$WORK/unpacked" || fail "cannot unpack $NAME.zip"
make -s -C "$WORK/unpacked/$NAME" -j2 PG_CONFIG="$PG_CONFIG" \
    >"$WORK/build.log" 2>&1 || { tail -n 30 "$WORK/build.log"; fail "the unpacked $NAME.zip does not build"; }
[ -f "$WORK/unpacked/$NAME/halo_itsm.so" ] || fail "the build of $NAME.zip made no halo_itsm.so"
[ -s "$WORK/unpacked/$NAME/sql/halo_itsm--$VERSION.sql" ] \
    || fail "the build of $NAME.zip made no sql/halo_itsm--$VERSION.sql"
echo "check_dist: $NAME.zip and $NAME.tar.gz hold the $(wc -l <"$WORK/git.list") tracked files under $NAME/ and build"
