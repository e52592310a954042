# Runs in the test VM (busybox sh): every gmem selftest, the kernel's mm
# selftests as is and MAP_PEER_SHARED (mm-conformance.sh, prepended), then
# the upstream hmm-tests as a reference.  Markers let the host count the results.
export GMEM_MODDIR=/lib/modules/gmem
# kmemleak (test kernel, auto scan off): forget what boot leaked, so that
# only objects leaked from here on are reported at the end (two scans:
# objects freshly unreferenced at boot are reported only by the second).
KMEMLEAK=/sys/kernel/debug/kmemleak
if [ -e $KMEMLEAK ]; then
	echo scan > $KMEMLEAK
	sleep 5
	echo scan > $KMEMLEAK
	echo clear > $KMEMLEAK
fi
if ! insmod $GMEM_MODDIR/gmem.ko || ! insmod $GMEM_MODDIR/gmem_npu.ko num_devices=2 dram_mib=16; then
	echo "GMEM-SETUP-FAILED loading gmem.ko and gmem_npu.ko"
	exit 1
fi
# cgroup2, hugetlb pages and room for many mappings, for mmfeat_test and
# the mm selftests.
mm_setup
# First, on a fresh system as make run has it (later tests change THP,
# KSM and hugetlb settings): gmemstat -t around the migration sample: it
# exits as the sample does,
# records gmem's events, and puts tracefs back.  The trace goes to the host
# (GMEM-TRACE markers), where check.sh draws it with gmem-timeline.
if [ -z "${GMEM_TESTS:-}" ] || echo " $GMEM_TESTS " | grep -q " gmemstat_trace "; then
	echo "GMEM-TEST-BEGIN gmemstat_trace"
	ev=/sys/kernel/debug/tracing/events/gmem/enable
	[ -e $ev ] || ev=/sys/kernel/tracing/events/gmem/enable
	/opt/gmem/tools/gmemstat -t /tmp/migrate.trace -- /opt/gmem/samples/gmem_migrate >/tmp/migrate.out 2>&1
	rc=$?
	[ $rc = 0 ] && echo "ok 1 sample_exit_status" || { sed 's/^/# /' /tmp/migrate.out; echo "not ok 1 sample_exit_status # $rc"; }
	n=$(grep -c ': gmem_migrate: ' /tmp/migrate.trace)
	[ "$n" -gt 0 ] && echo "ok 2 migrations_recorded # $n" || echo "not ok 2 migrations_recorded"
	[ "$(cat $ev)" = 0 ] && echo "ok 3 events_off_again" || echo "not ok 3 events_off_again # $(cat $ev)"
	echo "GMEM-TRACE-BEGIN gmem_migrate"
	head -n 5000 /tmp/migrate.trace
	echo "GMEM-TRACE-END"
	echo "GMEM-TEST-END gmemstat_trace rc=0"
fi
for t in /opt/gmem/selftests/*; do
	name=${t##*/}
	[ -n "${GMEM_TESTS:-}" ] && ! echo " $GMEM_TESTS " | grep -q " $name " && continue
	echo "GMEM-TEST-BEGIN $name"
	t0=$(cut -d' ' -f1 /proc/uptime)
	$t
	rc=$?
	echo "# $name: ${t0}s to $(cut -d' ' -f1 /proc/uptime)s"
	echo "GMEM-TEST-END $name rc=$rc"
done
if [ -z "${GMEM_TESTS:-}" ] || echo " $GMEM_TESTS " | grep -q " mm_conformance "; then
	mm_conformance
fi
# Everything a test created must be gone: both modules unload cleanly.
echo "GMEM-TEST-BEGIN final_unload"
ok=1
rmmod gmem_npu || ok=0
for i in 1 2 3 4 5 6 7 8 9 10; do rmmod gmem 2>/dev/null && break; sleep 0.2; done
[ -d /sys/module/gmem ] && ok=0
[ $ok = 1 ] && echo "ok 1 final_unload" || echo "not ok 1 final_unload"
echo "GMEM-TEST-END final_unload rc=0"
# libgmem with gmem gone: clear errors, no crash (its one case for this).
if [ -z "${GMEM_TESTS:-}" ] || echo " $GMEM_TESTS " | grep -q " libgmem_test "; then
	echo "GMEM-TEST-BEGIN libgmem_unloaded"
	/opt/gmem/selftests/libgmem_test -t no_module
	echo "GMEM-TEST-END libgmem_unloaded rc=$?"
fi
# Nothing gmem allocated may be left: kmemleak reports an object only once
# it has been unreferenced for a while, so scan twice, 5 s apart.
if [ -e $KMEMLEAK ]; then
	echo "GMEM-TEST-BEGIN kmemleak"
	echo scan > $KMEMLEAK
	sleep 5
	echo scan > $KMEMLEAK
	leaks=$(cat $KMEMLEAK)
	if [ -z "$leaks" ]; then
		echo "ok 1 kmemleak"
	else
		echo "$leaks" | sed 's/^/# /'
		echo "not ok 1 kmemleak"
	fi
	echo "GMEM-TEST-END kmemleak rc=0"
fi
if [ -z "${GMEM_TESTS:-}" ]; then
	insmod $GMEM_MODDIR/test_hmm.ko
	echo "GMEM-REF-BEGIN hmm-tests"
	/opt/gmem/ref/hmm-tests
	echo "GMEM-REF-END hmm-tests rc=$?"
	rmmod test_hmm
fi
exit 0
