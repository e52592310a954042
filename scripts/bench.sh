#!/usr/bin/env bash
# make bench: build the run kernel, boot it, load gmem, two NPUs and the HMM
# test driver, and run tools/gmem/gmem_bench (a table and ratios vs targets).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

bash "$GMEM_ROOT/scripts/kernel.sh" run
bash "$GMEM_ROOT/scripts/userspace.sh" run
bash "$GMEM_ROOT/scripts/vm.sh" run "$GMEM_ROOT/scripts/guest/bench-job.sh"
stage "done"
