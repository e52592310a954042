#!/usr/bin/env bash
# Usage: scripts/vm.sh FLAVOR JOB [HOST_FILE...]
#
# Boots the FLAVOR (run|test) kernel under QEMU (2 CPUs, 4 GiB in two NUMA
# nodes of one CPU socket and 2 GiB each: one socket per node, else the
# kernel warns that CPUs sharing a cache sit on different nodes) with a
# busybox initramfs
# holding gmem's modules, test_hmm.ko, the built programs of $GMEM_CACHE/
# guest-<flavor>/ (in /opt/gmem) and every HOST_FILE (in /host), runs the
# shell script JOB as root, prints the guest's dmesg and powers off.
#
# Exit status: JOB's; 124 if the VM did not finish in $GMEM_VM_TIMEOUT
# seconds (default 3600); 125 if the kernel printed a splat (BUG, WARNING,
# KASAN, lockdep, Oops, ...), which is printed too.  The console log is
# kept in $GMEM_CACHE/vm-<flavor>.log.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

flavor=${1:?usage: vm.sh run|test JOB [FILES...]}
job=${2:?usage: vm.sh run|test JOB [FILES...]}
shift 2
out=$(kbuild_dir "$flavor")
root=$GMEM_CACHE/initramfs-$flavor
log=$GMEM_CACHE/vm-$flavor.log

stage "assembling the initramfs"
rm -rf "$root"
mkdir -p "$root"/{bin,sbin,etc,proc,sys,dev,tmp,root,host,opt/gmem,lib/modules/gmem}
cp /bin/busybox "$root/bin/busybox"
cp "$job" "$root/job.sh"
find "$out/mm/gmem" "$out/lib" -maxdepth 1 -name '*.ko' -exec cp {} "$root/lib/modules/gmem/" \;
[ -d "$GMEM_CACHE/guest-$flavor" ] && cp -a "$GMEM_CACHE/guest-$flavor/." "$root/opt/gmem/"
for f in "$@"; do
	cp -a "$f" "$root/host/"
done
# Dynamically linked programs run as they would on the host: copy in the
# shared libraries (and loader) every ELF file needs.
# One file per ldd call: given several, ldd prints a "path:" header for
# each (a header naming a *.so is no library to copy); a static program
# makes ldd fail, which only means it needs none.
find "$root/opt" "$root/host" -type f -perm -u+x -print0 |
	while IFS= read -r -d '' f; do ldd "$f" 2>/dev/null || true; done |
	{ grep -o '/[^ ]*\.so[^ ]*' || true; } | sort -u |
	while read -r lib; do
		mkdir -p "$root$(dirname "$lib")"
		cp -L "$lib" "$root$lib"
	done
cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/opt/gmem:/host
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t debugfs debugfs /sys/kernel/debug
mount -t tmpfs tmp /tmp
echo "GMEM-VM: up after $(cut -d' ' -f1 /proc/uptime)s"
cd /root
sh /job.sh
rc=$?
echo "GMEM-DMESG-BEGIN"
dmesg
echo "GMEM-DMESG-END"
echo "GMEM-EXIT: $rc"
reboot -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet) >"$root.cpio"

stage "booting the $flavor kernel under QEMU (TCG)"
cmdline="console=ttyS0 quiet loglevel=4 panic=-1 oops=panic=0 rdinit=/init"
set +e
timeout --foreground "${GMEM_VM_TIMEOUT:-3600}" \
	qemu-system-x86_64 -machine q35 -cpu max -smp 2,sockets=2,cores=1,threads=1 -m 4G \
	-object memory-backend-ram,id=node0,size=2G -numa node,nodeid=0,cpus=0,memdev=node0 \
	-object memory-backend-ram,id=node1,size=2G -numa node,nodeid=1,cpus=1,memdev=node1 \
	-kernel "$out/arch/x86/boot/bzImage" -initrd "$root.cpio" \
	-append "$cmdline" -nographic -no-reboot -monitor none -serial stdio \
	</dev/null 9>&- 2>&1 | tee "$log" | sed -u '/^GMEM-DMESG-BEGIN/,/^GMEM-DMESG-END/d'
status=${PIPESTATUS[0]}
set -e

dmesg_of() { sed -n '/^GMEM-DMESG-BEGIN/,/^GMEM-DMESG-END/p' "$log" | tr -d '\r'; }
splat_re='BUG:|WARNING:|KASAN:|Oops|general protection fault|Call Trace:|possible (recursive|circular) locking|inconsistent lock state|bad unlock balance|DEBUG_LOCKS_WARN_ON|suspicious RCU usage|irq lock inversion|list_(add|del) corruption|UBSAN:|panicked at|blocked for more than|soft lockup|refcount_t:|Kernel panic'
if [ "$status" = 124 ]; then
	stage "the VM did not finish within ${GMEM_VM_TIMEOUT:-3600}s; last lines:"
	tail -n 40 "$log" >&2
	exit 124
fi
if ! grep -q '^GMEM-EXIT:' "$log"; then
	stage "the VM stopped without finishing the job (qemu status $status); last lines:"
	tail -n 60 "$log" >&2
	exit 125
fi
# An OOM kill's report has a call trace too; mmfeat_test causes one on
# purpose, so the lines from "invoked oom-killer" to its "Killed process"
# are not searched.  No grep -q: with pipefail, its early exit would fail
# the producer (SIGPIPE) and hide a splat in a long dmesg.
if dmesg_of | sed '/invoked oom-killer/,/Killed process/d' | grep -E "$splat_re" >/dev/null; then
	stage "KERNEL SPLAT in the guest; its dmesg:"
	dmesg_of >&2
	exit 125
fi
exit "$(grep -a '^GMEM-EXIT:' "$log" | tail -n1 | tr -dc '0-9')"
