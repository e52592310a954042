#!/usr/bin/env bash
# make run: build the run kernel, boot it, load gmem and the NPU, run the
# samples and print the stats.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

bash "$GMEM_ROOT/scripts/kernel.sh" run
bash "$GMEM_ROOT/scripts/userspace.sh" run
bash "$GMEM_ROOT/scripts/vm.sh" run "$GMEM_ROOT/scripts/guest/run-job.sh"
stage "done"
