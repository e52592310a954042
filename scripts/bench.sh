#!/usr/bin/env bash
# make bench: build the run kernel, boot it, load gmem, two NPUs and the HMM
# test driver, and run tools/gmem/gmem_bench (a table and ratios vs targets),
# tools/gmem/gmem_policy (the placement policies against the baselines and
# the optimum) and tools/gmem/gmem_mapscale (the cost of mappings as they
# grow in number); then plot gmem_policy's curves into
# $GMEM_CACHE/bench/oversub.png, with the data in oversub.dat beside it.  Last, on the same kernel, the mm
# selftests that make check's debug kernel cannot finish, as is and
# MAP_PEER_SHARED (mm-conformance.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# The curves of gmem_policy's "policy <workload> <factor> <mode> <modelled
# MiB/s>" lines in the VM's console log: one panel per workload, the
# optimum dashed.
plot_oversub() {
	local out=$GMEM_CACHE/bench
	local dat=$out/oversub.dat png=$out/oversub.png

	mkdir -p "$out"
	rm -f "$dat" "$png"
	# The serial console ends lines with \r\n.  Sorted by workload, mode,
	# then factor: the plot joins the points of a mode only when they are
	# consecutive.
	tr -d '\r' <"$GMEM_CACHE/vm-run.log" | grep '^policy ' |
		sort -k2,2 -k4,4 -k3,3g >"$dat" || true
	if [ ! -s "$dat" ]; then
		stage "no policy lines in the benchmark's output: no curve"
		return
	fi
	stage "plotting the oversubscription curves"
	gnuplot <<EOF
if (strstrt(GPVAL_TERMINALS, "pngcairo") > 0) {
	set terminal pngcairo size 1500,900
} else {
	set terminal png size 1500,900
}
set output "$png"
set multiplot layout 2,3 title "gmem NPU workloads vs oversubscription, modelled device time behind a PCIe link"
set xlabel "working set / NPU device memory"
set ylabel "MiB/s (log)"
set logscale x 2
set logscale y 10
set xrange [0.4:5]
set grid
set key top right font ",9"
# Right of the dashed line the working set no longer fits.
set arrow from 1, graph 0 to 1, graph 1 nohead dashtype 2
# Columns: "policy" workload factor mode modelled-MiB/s.
do for [w in "stream rand4k rand64k hotcold share2 cpu_alt"] {
	set title w noenhanced
	plot for [m in "default hints naive_lru in_place"] "$dat" \
		using 3:(strcol(2) eq w && strcol(4) eq m ? \$5 : NaN) \
		with linespoints lw 2 pt 7 title m noenhanced, \
		"$dat" using 3:(strcol(2) eq w && strcol(4) eq "optimal" ? \$5 : NaN) \
		with lines lw 2 dashtype 2 lc rgb "black" title "optimal"
}
unset multiplot
EOF
	stage "oversubscription data: $dat"
	stage "oversubscription curves: $png"
}

bash "$GMEM_ROOT/scripts/setup.sh" gnuplot-nox
bash "$GMEM_ROOT/scripts/kernel.sh" run
GMEM_WITH_MM=1 bash "$GMEM_ROOT/scripts/userspace.sh" run
# The bench job ends with the mm suites the debug kernel of make check is
# too slow for (mm-conformance.sh, prepended).
job=$(mktemp)
trap 'rm -f "$job"' EXIT
cat "$GMEM_ROOT/scripts/guest/mm-conformance.sh" "$GMEM_ROOT/scripts/guest/bench-job.sh" >"$job"
# The curve is plotted from what ran even if something failed.
rc=0
bash "$GMEM_ROOT/scripts/vm.sh" run "$job" || rc=$?
plot_oversub
if [ "$rc" -ne 0 ]; then
	stage "the benchmark job failed (exit $rc): see the RATIO and mm conformance lines above"
	exit "$rc"
fi
stage "done"
