# Runs in the run VM (busybox sh): load gmem, two NPUs with 160 MiB of
# device memory each (the migration measurements move 64 MiB at a time) and
# the HMM test driver, then the benchmark; exits with its status.
m=/lib/modules/gmem
if ! insmod $m/gmem.ko || ! insmod $m/gmem_npu.ko num_devices=2 dram_mib=160; then
	echo "bench: loading gmem.ko and gmem_npu.ko failed"
	exit 1
fi
insmod $m/test_hmm.ko || echo "bench: test_hmm.ko did not load; the HMM driver lines are skipped"
/opt/gmem/tools/gmem_bench
exit $?
