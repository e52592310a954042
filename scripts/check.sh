#!/usr/bin/env bash
# make check: the test kernel (KASAN, lockdep, DEBUG_VM...), every selftest
# in the VM, a result line per test and the totals as the last line.
# GMEM_TESTS="mmap_test module_test" limits the run to those programs
# (mm_conformance: the kernel's mm selftests; MM_SUITES="cow mkdirty" limits
# those).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# gnuplot draws the migration sample's timeline after the VM.
bash "$GMEM_ROOT/scripts/setup.sh" gnuplot-nox

# First, in seconds: the policy core's unit and property tests on the host.
lint=$(mktemp)
trap 'rm -f "$lint"' EXIT
stage "policy core: cargo test (tools/testing/gmem-policy)"
bash "$GMEM_ROOT/scripts/policy-test.sh" | tee "$lint" || true
grep -q '^\(PASS\|FAIL\) policy: ' "$lint" || echo "FAIL policy: scripts/policy-test.sh did not finish" >>"$lint"

bash "$GMEM_ROOT/scripts/kernel.sh" test

# make lint's tools, counted with the tests.
stage "lint: rustfmt, clippy, checkpatch, kernel-doc"
GMEM_LINT_BUILT=1 bash "$GMEM_ROOT/scripts/lint.sh" | tee -a "$lint" || true
grep -q '^lint: ' "$lint" || echo "FAIL lint: scripts/lint.sh did not finish" >>"$lint"
# gmem_dmirror.c's size against test_hmm.c's (issue 12's targets).
stage "line counts: gmem_dmirror.c, test_hmm.c"
bash "$GMEM_ROOT/scripts/linecount.sh" | tee -a "$lint" || true
bash "$GMEM_ROOT/scripts/userspace.sh" test

job=$(mktemp)
{
	printf 'export GMEM_TESTS="%s"\n' "${GMEM_TESTS:-}"
	printf 'export MM_SUITES="%s"\n' "${MM_SUITES:-}"
	[ -n "${MM_TIMEOUT:-}" ] && printf 'export MM_TIMEOUT=%s\n' "$MM_TIMEOUT"
	cat "$GMEM_ROOT/scripts/guest/mm-conformance.sh" "$GMEM_ROOT/scripts/guest/check-job.sh"
} >"$job"
set +e
bash "$GMEM_ROOT/scripts/vm.sh" test "$job"
vm_status=$?
set -e
rm -f "$job"

# The migration sample's trace, drawn on the host: the timeline must show
# what the sample did on npu0 (8 MiB in by faults, 8 by prefetch; 8 home
# by CPU faults, 8 by prefetch).
timeline() {
	local trace=$GMEM_CACHE/check-migrate.trace png=$GMEM_CACHE/check-migrate-timeline.png sum
	tr -d '\r' <"$GMEM_CACHE/vm-test.log" | awk '
		$0 == "GMEM-TRACE-BEGIN gmem_migrate" { on = 1; next }
		on && $0 == "GMEM-TRACE-END" { on = 0; done = 1; next }
		on
		END { exit !done }' >"$trace" || { echo "FAIL timeline: no trace of the migration sample"; return; }
	rm -f "$png"
	if ! sum=$("$GMEM_ROOT/tools/gmem/gmem-timeline" "$trace" "$png" 2>&1); then
		echo "FAIL timeline: gmem-timeline failed: $sum"
		return
	fi
	[ "$(stat -c %s "$png" 2>/dev/null || echo 0)" -gt 10000 ] &&
		echo "PASS timeline: picture drawn ($png)" || echo "FAIL timeline: no picture"
	if grep -q "^dev 0: .*to device 16.0 MiB (fault 8.0, prefetch 8.0), to host 16.0 MiB (prefetch 8.0, cpu_fault 8.0)" <<<"$sum"; then
		echo "PASS timeline: npu0's migrations by cause"
	else
		echo "FAIL timeline: npu0's migrations by cause: $sum"
	fi
}
if [ -z "${GMEM_TESTS:-}" ] || [[ " $GMEM_TESTS " == *" gmemstat_trace "* ]]; then
	timeline | tee -a "$lint"
fi

stage "results"
tr -d '\r' <"$GMEM_CACHE/vm-test.log" | cat "$lint" - | awk -v vm_status="$vm_status" '
	/^PASS (lint|policy|timeline|linecount): / { print; passed++; next }
	/^FAIL (lint|policy|timeline|linecount): / { print; failed++; next }
	/^GMEM-SETUP-FAILED/ { print "FAIL setup: " $0; failed++ }
	/^GMEM-TEST-BEGIN / { prog = $2; fails_here = 0; next }
	/^GMEM-TEST-END / {
		rc = $3; sub("rc=", "", rc)
		if (rc != 0 && fails_here == 0) {
			print "FAIL " prog ": exited with status " rc " before reporting a failure"
			failed++
		}
		prog = ""; next
	}
	prog != "" && /^ok [0-9]+ .*# SKIP/ { sub(/^ok [0-9]+ /, ""); print "SKIP " prog ": " $0; skipped++; next }
	prog != "" && /^ok [0-9]+ / { sub(/^ok [0-9]+ /, ""); print "PASS " prog ": " $0; passed++; next }
	prog != "" && /^not ok [0-9]+ / { sub(/^not ok [0-9]+ /, ""); print "FAIL " prog ": " $0; failed++; fails_here++; next }
	/^GMEM-REF-BEGIN / { ref = $2; next }
	/^GMEM-REF-END / { print "reference (not counted): " ref " " reftotals; ref = ""; next }
	ref != "" && /^# Totals:/ { reftotals = $0 }
	END {
		if (vm_status == 125) { print "FAIL kernel: splat in dmesg or VM died (see above)"; failed++ }
		else if (vm_status != 0) { print "FAIL vm: exit status " vm_status; failed++ }
		printf "%d passed, %d failed, %d skipped\n", passed, failed, skipped
		exit failed > 0
	}'
