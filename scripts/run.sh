#!/usr/bin/env bash
# make run: build the run kernel, boot it, load gmem and the NPU, run the
# samples and print the stats; then draw the trace of the migration sample
# (recorded in the VM by gmemstat -t, printed to the console between
# GMEM-TRACE-BEGIN gmem_migrate and GMEM-TRACE-END) as a timeline:
# $GMEM_CACHE/gmem_migrate.trace and gmem_migrate-timeline.png.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# The migration sample's trace out of the VM's console log into $1; fails
# if the log has no complete block.  The serial console ends lines with
# \r\n.
extract_trace() {
	tr -d '\r' <"$GMEM_CACHE/vm-run.log" | awk '
		$0 == "GMEM-TRACE-BEGIN gmem_migrate" { on = 1; next }
		on && $0 == "GMEM-TRACE-END" { on = 0; done = 1; next }
		on
		END { exit !done }' >"$1"
}

# First, as bench.sh: an apt failure should not wait for the kernel build.
bash "$GMEM_ROOT/scripts/setup.sh" gnuplot-nox
bash "$GMEM_ROOT/scripts/kernel.sh" run
bash "$GMEM_ROOT/scripts/userspace.sh" run
bash "$GMEM_ROOT/scripts/vm.sh" run "$GMEM_ROOT/scripts/guest/run-job.sh"

trace=$GMEM_CACHE/gmem_migrate.trace
png=$GMEM_CACHE/gmem_migrate-timeline.png
rm -f "$trace" "$png"
if ! extract_trace "$trace"; then
	stage "no trace of the migration sample (GMEM-TRACE-BEGIN gmem_migrate ... GMEM-TRACE-END) in $GMEM_CACHE/vm-run.log"
	exit 1
fi
stage "drawing the migration sample's trace ($(wc -l <"$trace") lines)"
"$GMEM_ROOT/tools/gmem/gmem-timeline" "$trace" "$png"
stage "trace of the migration sample: $trace"
stage "timeline of the migration sample: $png"
stage "done"
