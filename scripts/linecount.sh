#!/usr/bin/env bash
# The size of gmem_dmirror.c against the driver it replaces, lib/test_hmm.c
# of the kernel tree: lines of code (comments and blank lines excluded, as
# the preprocessor strips them, macros left unexpanded), and the part that
# is gmem glue (a line naming gmem's interface: gmem_* calls and types,
# GMEM_* constants).  One result line each, "PASS linecount: ..." or
# "FAIL linecount: ...", against the targets of issue 12: at most a third
# of test_hmm.c, glue under 100 lines.
set -euo pipefail
GMEM_ROOT=$(cd "$(dirname "$0")/.." && pwd)
GMEM_TREE=${GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gmem}/linux

code() { gcc -fpreprocessed -dD -E -P "$1" | grep -v '^[[:space:]]*$'; }
ours=$(code "$GMEM_ROOT/gmem_dmirror.c" | wc -l)
ref=$(code "$GMEM_TREE/lib/test_hmm.c" | wc -l)
glue=$(code "$GMEM_ROOT/gmem_dmirror.c" | grep -c 'gmem_[a-z_]*\b\|GMEM_[A-Z_]*' || true)
# The driver's own names start dmirror_: they are not gmem's.
glue_own=$(code "$GMEM_ROOT/gmem_dmirror.c" | grep -v 'gmem_\|GMEM_' | wc -l)
result() { if [ "$1" -eq 1 ]; then echo "PASS linecount: $2"; else echo "FAIL linecount: $2"; fi; }
third=$((ref / 3))
result $((ours <= third)) "gmem_dmirror.c: $ours lines of code, test_hmm.c: $ref ($((100 * ours / ref))%; target at most a third, $third)"
result $((glue < 100)) "gmem_dmirror.c: $glue lines of gmem glue, $glue_own of device and test_hmm interface (target: glue under 100)"
