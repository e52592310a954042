# Runs in the test VM (busybox sh): every gmem selftest, the kernel's mm
# selftests as is and MAP_PEER_SHARED (mm-conformance.sh, prepended), and
# the upstream hmm-tests against test_hmm and gmem_dmirror.  Markers let the host count the results.
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
	mm_knobs_put "$name"
	echo "GMEM-TEST-END $name rc=$rc"
done
if [ -z "${GMEM_TESTS:-}" ] || echo " $GMEM_TESTS " | grep -q " mm_conformance "; then
	mm_conformance
fi
# The upstream hmm-tests, unmodified, against gmem_dmirror (test_hmm's
# interface on gmem: ours, counted) here, with gmem loaded, and against
# test_hmm (the reference, printed) at the end, after the leak check:
# test_hmm.ko leaks its device names on unload.  A case of ours passes if
# it passes, or fails against test_hmm too; a difference by design
# (Documentation/mm/gmem.rst, "The HMM test device on gmem") is a skip with
# its reason.
HMM=/tmp/hmmconf
hmm_by_design() {
	case $1 in
	*.mixedmap) echo "gmem gives devices no VM_MIXEDMAP memory (pages without a struct page, or P2PDMA BARs), so the snapshot reads PROT_ERROR" ;;
	esac
}
# The memory and THP settings a run of hmm-tests starts with: a
# migration fails for want of memory, or on large folios mTHP made.
hmm_state() {
	local f t=
	for f in $THP/enabled $THP/hugepages-*/enabled; do
		t="$t ${f#$THP/}=$(mm_knob $f)"
	done
	echo "# memory (kB):$(awk '/^(MemFree|MemAvailable|AnonPages|Shmem|HugePages_Free):/ { printf " %s %s", $1, $2 }' /proc/meminfo)"
	echo "# THP:$t" | sed 's/\/enabled=/=/g'
}
hmm_ours() {
	mkdir -p $HMM
	mm_knobs_put "the tests before" >$HMM/state.ours
	hmm_state >>$HMM/state.ours
	if ! insmod $GMEM_MODDIR/gmem_dmirror.ko; then
		echo "not ok 0 gmem_dmirror.ko loads" >$HMM/ours
		return
	fi
	/opt/gmem/ref/hmm-tests >$HMM/ours 2>&1
	echo "exit $?" >>$HMM/ours
	rmmod gmem_dmirror || echo "not ok 0 gmem_dmirror.ko unloads" >>$HMM/ours
}
hmm_compare() {
	mm_knobs_put "the tests before" >$HMM/ref
	hmm_state >>$HMM/ref
	if insmod $GMEM_MODDIR/test_hmm.ko; then
		/opt/gmem/ref/hmm-tests >>$HMM/ref 2>&1
		echo "exit $?" >>$HMM/ref
		rmmod test_hmm
	fi
	echo "GMEM-REF-BEGIN hmm-tests"
	cat $HMM/ref
	echo "GMEM-REF-END hmm-tests"
	echo "GMEM-TEST-BEGIN hmm_tests_gmem"
	cat $HMM/state.ours
	grep -v '^\(not \)\?ok ' $HMM/ours | sed 's/^/# ours: /'
	grep '^not ok 0 ' $HMM/ours
	i=0
	grep '^\(not \)\?ok [1-9][0-9]* ' $HMM/ours | while read -r line; do
		i=$((i + 1))
		name=$(echo "$line" | sed 's/^\(not \)\?ok [0-9]* \([^ ]*\).*/\2/')
		case $line in
		"not ok "*)
			why=$(hmm_by_design "$name")
			if grep -q "^not ok [0-9]* $name\( \|$\)" $HMM/ref; then
				echo "ok $i $name # SKIP fails against test_hmm too"
			elif [ -n "$why" ]; then
				echo "ok $i $name # SKIP differs by design: $why"
			else
				echo "not ok $i $name"
			fi ;;
		*) echo "$line" | sed "s/^ok [0-9]* /ok $i /" ;;
		esac
	done
	nref=$(grep -c '^\(not \)\?ok [0-9]* ' $HMM/ref)
	nours=$(grep -c '^\(not \)\?ok [1-9][0-9]* ' $HMM/ours)
	[ "$nours" -ge "$nref" ] && echo "ok $((nours + 1)) every_case_ran # $nours cases" ||
		echo "not ok $((nours + 1)) every_case_ran # $nours of the reference's $nref"
	echo "GMEM-TEST-END hmm_tests_gmem rc=0"
}
hmm_wanted() {
	[ -z "${GMEM_TESTS:-}" ] || echo " $GMEM_TESTS " | grep -q " hmm_tests_gmem "
}
hmm_wanted && hmm_ours
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
hmm_wanted && hmm_compare
exit 0
