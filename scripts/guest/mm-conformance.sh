# Sourced by check-job.sh (busybox sh, gmem.ko and gmem_npu.ko loaded):
# the kernel's own mm selftests, each run twice in this VM, as is and with
# every private anonymous mmap() made MAP_PEER_SHARED and a device context
# attached (tools/testing/peer_shared).  One TAP line per suite: ok when
# both runs give the same outcome, case by case, and the same exit status.
# Both results are printed.
MM=/opt/gmem/mm
SHIM=/opt/gmem/lib/peer_shared.so
MM_TIMEOUT=${MM_TIMEOUT:-15}

# name|command line|why it cannot run here (empty: it runs)|the per-run
# limit below which it finishes no case here (TCG, KASAN), so is skipped
mm_suites() {
	cat <<'EOF'
cow|cow||
mremap_test|mremap_test||
mremap_dontunmap|mremap_dontunmap||
madv_populate|madv_populate||
mlock2-tests|mlock2-tests||
mlock-random-test|mlock-random-test||
ksm_functional_tests|ksm_functional_tests||120
soft-dirty|soft-dirty||120
pagemap_ioctl|pagemap_ioctl||
uffd-unit-tests|uffd-unit-tests||120
uffd-stress-anon|uffd-stress anon 20 16||
split_huge_page_test|split_huge_page_test||
transhuge-stress|transhuge-stress -d 5 64||
mkdirty|mkdirty||
mseal_test|mseal_test||
map_fixed_noreplace|map_fixed_noreplace||
map_populate|map_populate||
virtual_address_range|virtual_address_range||120
migration|migration||
gup_test|gup_test -ct -F 0x1 0 19 0x1000||
gup_longterm|gup_longterm||
memfd_secret|memfd_secret||
hugepage-mmap|hugepage-mmap||
hugepage-shm|hugepage-shm||
map_hugetlb|map_hugetlb||
hugepage-mremap|hugepage-mremap||
hugetlb-madvise|hugetlb-madvise||
hugetlb_fault_after_madv|hugetlb_fault_after_madv||
hugetlb_madv_vs_map|hugetlb_madv_vs_map||
khugepaged|khugepaged|Debian's 6.12 source of khugepaged.c does not build (KSFT_SKIP undeclared)|
EOF
}

# The suites with a limit in mm_suites: the ones make bench runs on the run
# kernel instead.
mm_slow_suites() {
	mm_suites | awk -F'|' '$4 != "" { printf "%s ", $1 }'
}

# mm_run OUT CMD...: runs CMD in a session of its own, output to OUT,
# stopped (SIGTERM, then SIGKILL) with everything it started after
# $MM_TIMEOUT seconds: a forked child left behind would keep the shim's NPU
# file open (and gmem_npu.ko loaded).  Returns CMD's exit status (143 if
# stopped).
mm_run() {
	local out=$1 i
	shift
	# Both runs of a suite start with the whole hugetlb pool free: the
	# processes of the run before may still be giving theirs back, and a
	# suite skips its hugetlb cases when too few are free.
	for i in 1 2 3 4 5 6 7 8 9 10; do
		[ "$(cat /proc/sys/vm/nr_hugepages)" = \
			"$(cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages)" ] && break
		sleep 0.5
	done
	setsid "$@" >"$out" 2>&1 </dev/null &
	local pid=$! watcher rc
	(sleep $MM_TIMEOUT; kill -TERM -$pid 2>/dev/null; sleep 2; kill -KILL -$pid 2>/dev/null) &
	watcher=$!
	wait $pid
	rc=$?
	kill $watcher 2>/dev/null
	wait $watcher 2>/dev/null
	kill -KILL -$pid 2>/dev/null
	return $rc
}

# The outcome of one run: its TAP case lines without their numbers, and
# its exit status ("exit cut" if the time limit stopped it).  $1: output
# file, $2: status.
mm_outcome() {
	# TAP lines, and uffd-unit-tests' "Testing NAME on MEM... RESULT".
	# The shim's own message, printed by a forked child in the middle of
	# a line of its parent's, is taken out and the line joined again.
	tr -d '\r' <"$1" | awk '
		match($0, /peer_shared: (turning mappings|[0-9]+ mappings made MAP_PEER_SHARED)$/) {
			held = held substr($0, 1, RSTART - 1)
			next
		}
		{ print held $0; held = "" }' | sed -n -e 's/^\(not ok\|ok\) [0-9][0-9]* /\1 /p' \
		-e 's/^Testing \(.*\)\.\.\. done$/ok \1/p' \
		-e 's/^Testing \(.*\)\.\.\. skipped.*/ok \1 # SKIP/p' \
		-e 's/^Testing \(.*\)\.\.\. failed.*/not ok \1/p'
	case $2 in
	124 | 137 | 143) echo "exit cut" ;;
	*) echo "exit $2" ;;
	esac
}

# "P pass, F fail, S skip, exit R" of one run.
mm_summary() {
	p=$(grep -c '^ok ' "$1.o")
	s=$(grep -c '^ok .*# SKIP' "$1.o")
	f=$(grep -c '^not ok ' "$1.o")
	echo "$((p - s)) pass, $f fail, $s skip, exit $(tail -n1 "$1.o" | cut -d' ' -f2)"
}

# Compares two outcomes; prints how.  A run the time limit stopped is
# compared on the cases both runs finished: 0 if they agree there and at
# least one was compared, 2 if none was, 1 if they differ.
mm_compare() {
	local a=$1 b=$2 ca cb cn
	if ! grep -q '^exit cut' $a && ! grep -q '^exit cut' $b; then
		cmp -s $a $b && echo "every case and the exit status" && return 0
		return 1
	fi
	# Case lines are printed when a case ends (line buffered): a cut run's
	# lines are the cases it finished.
	ca=$(($(wc -l <$a) - 1))
	cb=$(($(wc -l <$b) - 1))
	cn=$ca
	[ $cb -lt $cn ] && cn=$cb
	[ $cn -gt 0 ] || return 2
	head -n $cn $a >$a.p
	head -n $cn $b >$b.p
	cmp -s $a.p $b.p && echo "the first $cn cases (cut at ${MM_TIMEOUT}s)" && return 0
	return 1
}

mm_setup() {
	mkdir -p /sys/fs/cgroup
	mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null
	# 2 MiB pages for the hugetlb suites (their default mapping is 256 MiB).
	echo 160 >/proc/sys/vm/nr_hugepages
	mkdir -p /mnt/huge
	mount -t hugetlbfs none /mnt/huge 2>/dev/null
	echo 262144 >/proc/sys/vm/max_map_count
	mm_knobs_save
}

# Both runs of a suite get the same address-space layout: with ASLR a
# suite that picks fixed addresses near its mappings (mremap_test's
# preamble) can collide in one run and not the other.
mm_aslr() {
	echo "$1" >/proc/sys/kernel/randomize_va_space
}

# Free hugetlb pages now.
mm_free_huge() {
	awk '/^HugePages_Free:/ { print $2 }' /proc/meminfo
}

# mm_huge_settle N: waits (up to 10 s) until N hugetlb pages are free
# again: pages a run's io_uring buffers pinned go back only when its ring's
# exit work runs, after the process, and the next run must start from the
# same pool (gup_longterm skips a case when one page short).
mm_huge_settle() {
	local i=0
	while [ $i -lt 50 ] && [ "$(mm_free_huge)" -lt "$1" ]; do
		sleep 0.2
		i=$((i + 1))
	done
}

# The settings a test changes and puts back when it ends (cow's THP
# sizes, the hugetlb pool): one the time limit stops leaves them changed
# for every later test, and hmm-tests' migrations fail on the large folios
# mTHP then makes.  mm_setup saves them; check-job.sh puts them back after
# each test.
THP=/sys/kernel/mm/transparent_hugepage
KSM=/sys/kernel/mm/ksm
KNOBS=/tmp/mm-knobs
mm_knobs() {
	ls -d $THP/enabled $THP/defrag $THP/shmem_enabled $THP/use_zero_page \
		$THP/hugepages-*/enabled $THP/hugepages-*/shmem_enabled \
		$THP/khugepaged/defrag $THP/khugepaged/max_ptes_* \
		$THP/khugepaged/pages_to_scan $THP/khugepaged/*_sleep_millisecs \
		$KSM/run $KSM/use_zero_pages $KSM/merge_across_nodes \
		$KSM/max_page_sharing $KSM/pages_to_scan $KSM/sleep_millisecs \
		$KSM/smart_scan /sys/kernel/mm/hugepages/hugepages-*/nr_hugepages \
		/sys/kernel/mm/hugepages/hugepages-*/nr_overcommit_hugepages \
		/proc/sys/vm/overcommit_memory /proc/sys/vm/max_map_count 2>/dev/null
}

# A setting's value ("always [madvise] never" reads as "madvise").
mm_knob() {
	local v
	v=$(cat "$1" 2>/dev/null)
	case $v in *\[*) v=${v#*\[}; v=${v%%\]*} ;; esac
	echo "$v"
}

mm_knobs_save() {
	local f
	for f in $(mm_knobs); do
		echo "$f $(mm_knob $f)"
	done >$KNOBS
}

# mm_knobs_put WHO: puts back, and names, what WHO left changed.  One that
# will not go back (a hugetlb pool that cannot grow again, KSM's
# merge_across_nodes while pages are merged) is named once and taken as
# it is from then on.
mm_knobs_put() {
	local f v now back= stuck=
	[ -e $KNOBS ] || return 0
	while read -r f v; do
		now=$(mm_knob $f)
		if [ "$now" != "$v" ]; then
			echo "$v" 2>/dev/null >"$f"
			now=$(mm_knob $f)
			if [ "$now" = "$v" ]; then
				back="$back ${f#/sys/kernel/mm/}"
			else
				stuck="$stuck ${f#/sys/kernel/mm/}=$now"
			fi
		fi
		echo "$f $now"
	done <$KNOBS >$KNOBS.new
	mv $KNOBS.new $KNOBS
	[ -z "$back" ] || echo "# $1 left changed, put back:$back"
	[ -z "$stuck" ] || echo "# $1 left changed, could not put back:$stuck"
}

mm_conformance() {
	echo "GMEM-TEST-BEGIN mm_conformance"
	aslr=$(cat /proc/sys/kernel/randomize_va_space)
	mm_aslr 0
	n=0
	tmp=/tmp/mmconf
	mkdir -p $tmp
	mm_suites | while IFS='|' read -r name cmd why need; do
		n=$((n + 1))
		[ -n "${MM_SUITES:-}" ] && ! echo " $MM_SUITES " | grep -q " $name " && continue
		if [ -n "$why" ]; then
			echo "ok $n $name # SKIP $why"
			continue
		fi
		if [ -n "$need" ] && [ "$MM_TIMEOUT" -lt "$need" ]; then
			echo "ok $n $name # SKIP finishes no case within ${MM_TIMEOUT}s on this debug kernel (150 s gave 0-4 cases); make bench runs it on the run kernel, MM_TIMEOUT=$need runs it here"
			continue
		fi
		cd $MM || return
		t0=$(cut -d' ' -f1 /proc/uptime)
		huge=$(mm_free_huge)
		mm_run $tmp/plain env LD_PRELOAD=$SHIM GMEM_PEER_OFF=1 ./$cmd
		rc=$?
		mm_outcome $tmp/plain $rc >$tmp/plain.o
		mm_knobs_put "$name (as is)"
		mm_huge_settle "$huge"
		t1=$(cut -d' ' -f1 /proc/uptime)
		mm_run $tmp/peer env LD_PRELOAD=$SHIM GMEM_PEER_VERBOSE=1 ./$cmd
		rc=$?
		mm_outcome $tmp/peer $rc >$tmp/peer.o
		mm_knobs_put "$name (MAP_PEER_SHARED)"
		t2=$(cut -d' ' -f1 /proc/uptime)
		cd /root
		turned=$(sed -n 's/^peer_shared: \([0-9]*\) mappings.*/\1/p' $tmp/peer | awk '{s += $1} END {print s + 0}')
		# A cut run printed no count, only that it began turning.
		[ "$turned" = 0 ] && grep -q '^peer_shared: turning' $tmp/peer && turned="some (cut)"
		echo "# $name: as is: $(mm_summary $tmp/plain) (${t0}s-${t1}s)"
		echo "# $name: MAP_PEER_SHARED: $(mm_summary $tmp/peer), $turned mappings turned (to ${t2}s)"
		prc=$(tail -n1 $tmp/plain.o | cut -d' ' -f2)
		how=$(mm_compare $tmp/plain.o $tmp/peer.o)
		same=$?
		if [ "$prc" = 126 ] || [ "$prc" = 127 ]; then
			tail -n 20 $tmp/plain | sed 's/^/#   as is: /'
			echo "not ok $n $name: could not run (exit $prc)"
		elif [ $same = 2 ]; then
			echo "ok $n $name # SKIP no case finished within ${MM_TIMEOUT}s"
		elif [ $same = 0 ]; then
			note=
			[ "$turned" = 0 ] && note=" (it made no private anonymous mapping to turn)"
			echo "ok $n $name: same outcome as is and MAP_PEER_SHARED: $how$note"
		else
			diff $tmp/plain.o $tmp/peer.o | sed 's/^/# /' | head -n 40
			tail -n 20 $tmp/peer | sed 's/^/#   peer: /'
			echo "not ok $n $name: outcome differs with MAP_PEER_SHARED"
		fi
	done
	mm_aslr "$aslr"
	echo "GMEM-TEST-END mm_conformance rc=0"
}
