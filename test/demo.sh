#!/usr/bin/env bash
# test/demo.sh: the README's demo. Installs and builds, starts a fresh cluster and the
# mock Halo server, then tells the story below. Servers are stopped at the end unless
# HI_KEEP=1 (then psql -h /tmp -p 54329 -U postgres halo to look around).
set -euo pipefail

. "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
cd "$HI_ROOT"
hi_cleanup_on_exit

hi_setup
hi_cluster_start
hi_mock_start

# --- demo body ---
hi_psql "$HI_DB" "CREATE EXTENSION halo_itsm CASCADE" \
    && echo "demo: CREATE EXTENSION halo_itsm: done" \
    || echo "demo: CREATE EXTENSION halo_itsm failed (see above)"
echo "demo: the demo story is not written yet"
# --- end of demo body ---
