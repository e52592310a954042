# SPDX-License-Identifier: GPL-2.0
#
# Two makefiles in one.  Included by Kbuild (as mm/gmem/Makefile), it builds
# gmem; run by a person in the repository, it offers the developer targets.

ifneq ($(KERNELRELEASE),)

# The core-MM hook is built in; the subsystem and drivers are modules.
obj-y			+= gmem_hook.o
CFLAGS_gmem_hook.o	:= -I$(srctree)/mm
obj-$(CONFIG_GMEM)	+= gmem.o
gmem-y			:= gmem_core.o gmem_glue.o gmem_trace.o
# The trace header is included from here by <trace/define_trace.h>.
CFLAGS_gmem_trace.o	:= -I$(src)
obj-$(CONFIG_GMEM_NPU)	+= gmem_npu.o
obj-$(CONFIG_GMEM_DMIRROR) += gmem_dmirror.o
# test_hmm's user interface, lib/test_hmm_uapi.h.
CFLAGS_gmem_dmirror.o	:= -I$(srctree)/lib

else

SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help setup run check bench vm lint kernel clean

help:
	@echo "make run     set up, build and boot; load gmem and the NPU, run a sample"
	@echo "make check   set up, build the debug kernel and run every test"
	@echo "make bench   set up, build the run kernel and run the benchmark (tools/gmem)"
	@echo "make lint    rustfmt, clippy, checkpatch and kernel-doc over gmem (make check runs it too)"
	@echo "make vm      boot a VM and run CMD='...' with FILES='...' copied in"
	@echo "make setup   install what is missing (apt-get, cargo install)"

setup:
	@bash scripts/setup.sh

run: setup
	@bash scripts/run.sh

check: setup
	@bash scripts/check.sh

bench: setup
	@bash scripts/bench.sh

vm: setup
	@bash scripts/vm-cmd.sh

lint: setup
	@bash scripts/lint.sh

# Waits, as every target does, for one that is using the cache.
clean:
	@d="$${GMEM_CACHE:-$${XDG_CACHE_HOME:-$$HOME/.cache}/gmem}"; \
	if [ -d "$$d" ]; then flock "$$d/.lock" rm -rf "$$d"; fi

endif
