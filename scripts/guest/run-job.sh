# Runs in the run VM: load gmem and the NPU, run the samples, show stats.
# gmem_migrate runs with gmem's trace events recorded (gmemstat -t); the
# trace follows between GMEM-TRACE-BEGIN/END lines, which run.sh takes out
# of the console log and draws (tools/gmem/gmem-timeline).
cd /lib/modules/gmem
echo "### insmod gmem.ko; insmod gmem_npu.ko"
insmod gmem.ko && insmod gmem_npu.ko || exit 1
echo "### gmem devices (debugfs gmem/devices)"
cat /sys/kernel/debug/gmem/devices
for s in /opt/gmem/samples/*; do
	echo "### sample ${s##*/}"
	if [ "${s##*/}" != gmem_migrate ]; then
		$s || exit 1
		continue
	fi
	/opt/gmem/tools/gmemstat -t /tmp/gmem_migrate.trace -- "$s" || exit 1
	# A few hundred lines for its 8 MiB; the cap keeps a runaway trace
	# from flooding the console (the picture then ends early).
	max=5000
	n=$(wc -l </tmp/gmem_migrate.trace)
	echo "### trace of gmem_migrate: $n lines (gmem trace events)"
	echo "GMEM-TRACE-BEGIN gmem_migrate"
	head -n "$max" /tmp/gmem_migrate.trace
	echo "GMEM-TRACE-END"
	[ "$n" -le "$max" ] || echo "### (only its first $max lines shown)"
done
echo "### gmem counters (tools/gmemstat, then per device)"
/opt/gmem/tools/gmemstat || exit 1
/opt/gmem/tools/gmemstat -d 0.2 2 || exit 1
echo "### kernel log"
dmesg | grep -E 'gmem|npu'
rmmod gmem_npu
rmmod gmem 2>/dev/null || { sleep 1; rmmod gmem; }
