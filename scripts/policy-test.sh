#!/usr/bin/env bash
# Usage: scripts/policy-test.sh
#
# gmem's policy core (gmem_policy.rs, the same file gmem.ko compiles) on
# the host: cargo test of tools/testing/gmem-policy, unit and property
# tests (proptest, fetched by cargo, versions pinned by Cargo.lock), one
# "PASS policy: NAME" or "FAIL policy: NAME" line per test.  Seconds.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
CARGO_TARGET_DIR="$GMEM_CACHE/gmem-policy-target" cargo test --locked \
	--manifest-path "$GMEM_ROOT/tools/testing/gmem-policy/Cargo.toml" >"$log" 2>&1
status=$?
set -e
# Exit 2: no test line at all; 1: some test failed.
set +e
awk '
	/^test .* \.\.\. ok$/ { sub(/^test (tests::)?/, ""); sub(/ \.\.\. ok$/, ""); print "PASS policy: " $0; n++ }
	/^test .* \.\.\. FAILED$/ { sub(/^test (tests::)?/, ""); sub(/ \.\.\. FAILED$/, ""); print "FAIL policy: " $0; n++; bad++ }
	END { exit n == 0 ? 2 : bad > 0 }' "$log"
parsed=$?
set -e
if [ "$parsed" = 2 ]; then
	sed 's/^/# /' "$log"
	echo "FAIL policy: cargo test ran no test (status $status, output above)"
elif [ "$status" != 0 ]; then
	grep -A30 -- '---- ' "$log" | sed 's/^/# /' || true
	# A test binary that crashed, or a build that failed, after some passed.
	[ "$parsed" = 1 ] || echo "FAIL policy: cargo test exited with status $status"
fi
