# Runs in the run VM (busybox sh, mm-conformance.sh prepended): load gmem,
# two NPUs with 160 MiB of
# device memory each (the migration measurements move 64 MiB at a time) and
# the HMM test driver, then the benchmarks (gmem_bench; gmem_hmmbench
# through test_hmm and gmem_dmirror; gmem_policy, gmem_mapscale;
# gmem_faultscale with eight NPUs) and
# the slow mm suites; exits with 1 if any failed.
m=/lib/modules/gmem
if ! insmod $m/gmem.ko || ! insmod $m/gmem_npu.ko num_devices=2 dram_mib=160; then
	echo "bench: loading gmem.ko and gmem_npu.ko failed"
	exit 1
fi
insmod $m/test_hmm.ko || echo "bench: test_hmm.ko did not load; the HMM driver lines are skipped"
/opt/gmem/tools/gmem_bench
rc=$?
# hmm-tests' operations through test_hmm, then through gmem_dmirror (the
# same device files, so one at a time): ratios of their times.
ops=/tmp/hmmops
/opt/gmem/tools/gmem_hmmbench measure test_hmm >$ops || rc=1
rmmod test_hmm
if insmod $m/gmem_dmirror.ko; then
	/opt/gmem/tools/gmem_hmmbench measure gmem_dmirror >>$ops || rc=1
	rmmod gmem_dmirror
else
	echo "bench: gmem_dmirror.ko did not load"
	rc=1
fi
grep '^HMMOP' $ops | /opt/gmem/tools/gmem_hmmbench ratio test_hmm gmem_dmirror || rc=1
/opt/gmem/tools/gmem_policy || rc=1
# Mapping scale: 100,000 mappings per process, twice over.
echo 262144 >/proc/sys/vm/max_map_count
/opt/gmem/tools/gmem_mapscale || rc=1
# gmem's cost per fault by batch size and by devices attached: eight NPUs.
if rmmod gmem_npu && insmod $m/gmem_npu.ko num_devices=8 dram_mib=32; then
	/opt/gmem/tools/gmem_faultscale || rc=1
else
	echo "bench: reloading gmem_npu.ko with 8 NPUs failed"
	rc=1
fi
# The mm suites the debug kernel of make check finishes no case of in its
# time limit (a distribution-like kernel runs each in seconds), both ways.
MM_TIMEOUT=120 MM_SUITES="$(mm_slow_suites)" mm_setup
# A suite that differs, could not run, or finished no case here fails the
# bench, as does a conformance run that printed nothing.
MM_TIMEOUT=120 MM_SUITES="$(mm_slow_suites)" mm_conformance | tee /tmp/mm-slow.out
grep -q '^ok ' /tmp/mm-slow.out || rc=1
grep -q -e '^not ok ' -e '# SKIP no case finished' /tmp/mm-slow.out && rc=1
exit $rc
