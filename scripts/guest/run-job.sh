# Runs in the run VM: load gmem and the NPU, run the samples, show stats.
cd /lib/modules/gmem
echo "### insmod gmem.ko; insmod gmem_npu.ko"
insmod gmem.ko && insmod gmem_npu.ko || exit 1
echo "### gmem devices (debugfs gmem/devices)"
cat /sys/kernel/debug/gmem/devices
for s in /opt/gmem/samples/*; do
	echo "### sample ${s##*/}"
	$s || exit 1
done
echo "### gmem counters (tools/gmemstat, then per device)"
/opt/gmem/tools/gmemstat || exit 1
/opt/gmem/tools/gmemstat -d 0.2 2 || exit 1
echo "### kernel log"
dmesg | grep -E 'gmem|npu'
rmmod gmem_npu
rmmod gmem 2>/dev/null || { sleep 1; rmmod gmem; }
