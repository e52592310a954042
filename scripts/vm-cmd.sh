#!/usr/bin/env bash
# make vm CMD='...' [FILES='a b'] [FLAVOR=test|run] [LOAD=0]
#
# Boots a VM and runs CMD as root in /root, with the FILES copied to /host
# (also on PATH), the built selftests, samples and hmm-tests under
# /opt/gmem, and the modules in /lib/modules/gmem, loaded first unless
# LOAD=0.  Dynamically linked programs built on the host run as they are.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

flavor=${FLAVOR:-test}
: "${CMD:?set CMD, e.g. make vm CMD='cat /sys/kernel/debug/gmem/stats'}"
bash "$GMEM_ROOT/scripts/kernel.sh" "$flavor"
bash "$GMEM_ROOT/scripts/userspace.sh" "$flavor"
job=$(mktemp)
{
	echo 'export PATH=$PATH:/opt/gmem/selftests:/opt/gmem/samples:/opt/gmem/ref GMEM_MODDIR=/lib/modules/gmem'
	if [ "${LOAD:-1}" = 1 ]; then
		echo 'insmod /lib/modules/gmem/gmem.ko && insmod /lib/modules/gmem/gmem_npu.ko || exit 1'
	fi
	printf '%s\n' "$CMD"
} >"$job"
# shellcheck disable=SC2086 # FILES is a list
bash "$GMEM_ROOT/scripts/vm.sh" "$flavor" "$job" ${FILES:-}
