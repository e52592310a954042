#!/usr/bin/env bash
# make lint: the kernel's own tools over gmem's kernel code, one result line
# per tool ("PASS lint: ..." or "FAIL lint: ..."), then "lint: N failed".
#
#  rustfmt      every .rs file, with the kernel tree's .rustfmt.toml
#  clippy       gmem.ko's and gmem_npu.ko's crates, with the kernel's clippy
#               lints: the exact rustc command kbuild saved for each object,
#               run by clippy-driver into a scratch directory (the build
#               directory is not touched)
#  rustdoc      both crates' documentation, private items included (a
#               module has no public API), from the same saved commands
#  checkpatch   the kernel C files and headers, and patches/*.patch
#  kernel-doc   the headers and C files, -Wall
#  htmldocs     make htmldocs SPHINXDIRS=mm of the tree, where patch 0003
#               lists Documentation/mm/gmem.rst: no warning may name it
#
# A remaining warning passes only if scripts/lint-accepted.txt names its
# file, its type and how many times it occurs, with a reason; accepted ones
# are printed as well, and an entry whose count no longer matches fails.
# Exit status 1 if any tool failed.  Alone it builds the test kernel first
# (cached); check.sh, which has built it, sets GMEM_LINT_BUILT=1 and counts
# the result lines with the tests.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

tree=$GMEM_TREE
out=$(kbuild_dir test)
accepted=$GMEM_ROOT/scripts/lint-accepted.txt
cd "$GMEM_ROOT"
rs=(gmem_*.rs)
kernel_c=(gmem_dmirror.c gmem_glue.c gmem_hook.c gmem_trace.c gmem_glue.h gmem_trace.h include/linux/gmem.h include/uapi/linux/gmem.h)
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
failed=0

[ -n "${GMEM_LINT_BUILT:-}" ] || bash "$GMEM_ROOT/scripts/kernel.sh" test >&2

# Lines of $1 ("file:line: TYPE: message") that lint-accepted.txt does not
# account for, plus one line per entry whose count differs from what $1
# holds; the accounted-for lines go to stderr.
unexplained() {
	grep -vE '^(#|$)' "$accepted" >"$log/accepted"
	awk -F'|' '
		FNR == NR { want[$1 "|" $2] = $3; next }
		{
			f = $0; sub(/:[0-9]+: .*/, "", f)
			t = $0; sub(/^[^:]*:[0-9]+: /, "", t); sub(/: .*/, "", t)
			key = f "|" t
			if (!(key in want)) { print; next }
			seen[key]++
			held[key] = held[key] $0 "\n"
			print "#   accepted: " $0 >"/dev/stderr"
		}
		END {
			for (key in want)
				if (seen[key] + 0 != want[key] + 0) {
					split(key, k, "|")
					printf "%s: %s: lint-accepted.txt counts %d, found %d\n", k[1], k[2], want[key], seen[key]
					printf "%s", held[key]
				}
		}' "$log/accepted" "$1"
}

result() {
	local name=$1 bad=$2
	if [ -s "$bad" ]; then
		sed 's/^/#   /' "$bad"
		echo "FAIL lint: $name"
		failed=$((failed + 1))
	else
		echo "PASS lint: $name"
	fi
}

# rustfmt: Debian's, the toolchain's own version (not a rustup one on PATH).
/usr/bin/rustfmt --check --config-path "$tree/.rustfmt.toml" --edition 2021 \
	"${rs[@]}" >"$log/rustfmt" 2>&1 || true
result "rustfmt (${#rs[@]} files)" "$log/rustfmt"

# kbuild's saved rustc command for mm/gmem/$1.o, its objtool step dropped,
# with the source read from $GMEM_ROOT; fails with a message if there is
# none (the test kernel is not built).
saved_rustc() {
	local obj=$1 cmd
	cmd=$(sed -n "s|^savedcmd_mm/gmem/$obj.o := ||p" "$out/mm/gmem/.$obj.o.cmd" | sed 's| ; .*||')
	case $cmd in
	*/usr/bin/rustc\ *--emit=obj=*) ;;
	*) echo "error: no rustc command saved for mm/gmem/$obj.o (build the test kernel)"; return 1 ;;
	esac
	echo "$cmd" | sed -E "s| [^ ]*/mm/gmem/$obj.rs| $GMEM_ROOT/$obj.rs|"
}

# clippy: the saved command (RUSTC_BOOTSTRAP as kbuild exports it) run by
# clippy-driver, metadata into $log instead of the object.
clippy_one() {
	local obj=$1 cmd
	cmd=$(saved_rustc "$obj") || { echo "$cmd"; return; }
	cmd=$(echo "$cmd" | sed -E "s|/usr/bin/rustc |/usr/bin/clippy-driver --error-format=short |; s|--out-dir [^ ]+|--out-dir $log/|; s|--emit=dep-info=[^ ]+ --emit=obj=[^ ]+|--emit=metadata=$log/$obj.rmeta|")
	(cd "$out" && RUSTC_BOOTSTRAP=1 CLIPPY_CONF_DIR="$tree" eval "$cmd") 2>&1 || echo "error: clippy-driver failed on mm/gmem/$obj.o"
}
if [ "$(/usr/bin/clippy-driver --rustc --version 2>&1)" != "$(/usr/bin/rustc --version)" ]; then
	echo "error: /usr/bin/clippy-driver is not the clippy of /usr/bin/rustc ($(/usr/bin/rustc --version))" >"$log/clippy"
else
	for obj in gmem_core gmem_npu; do clippy_one "$obj"; done >"$log/clippy.out"
	grep -E '(^|: )(warning|error)' "$log/clippy.out" | grep -vE 'warnings? emitted' >"$log/clippy" || true
fi
result "clippy (gmem.ko, gmem_npu.ko)" "$log/clippy"

# rustdoc: the same saved command run by rustdoc, into $log/doc.  Links
# from the crate docs to private items are what a module's docs are made
# of, so that one lint is off.
rustdoc_one() {
	local obj=$1 cmd
	cmd=$(saved_rustc "$obj") || { echo "$cmd"; return; }
	cmd=$(echo "$cmd" | sed -E "s|/usr/bin/rustc |/usr/bin/rustdoc --document-private-items -Arustdoc::private_intra_doc_links -o $log/doc |; s|--out-dir [^ ]+||; s|--emit=dep-info=[^ ]+ --emit=obj=[^ ]+||; s|-Cembed-bitcode=n ||; s|-Zbinary_dep_depinfo=y ||; s|-Zfunction-sections=n ||")
	(cd "$out" && RUSTC_BOOTSTRAP=1 eval "$cmd") 2>&1 || echo "error: rustdoc failed on mm/gmem/$obj.o"
}
for obj in gmem_core gmem_npu; do rustdoc_one "$obj"; done >"$log/rustdoc.out"
grep -E '^(warning|error)' "$log/rustdoc.out" | grep -vE 'warnings? emitted' >"$log/rustdoc" || true
result "rustdoc (gmem.ko, gmem_npu.ko, private items)" "$log/rustdoc"

# checkpatch: from a directory outside any git work tree, where it reads a
# patch as a patch (inside one it took the .patch files for source files).
# FILE_PATH_CHANGES (MAINTAINERS for new files) means nothing for a series
# kept outside the kernel's tree.
for f in "${kernel_c[@]}"; do
	(cd / && perl "$tree/scripts/checkpatch.pl" --no-tree -q --terse --show-types \
		-f "$GMEM_ROOT/$f") | sed "s|^$GMEM_ROOT/||" || true
done | grep -E '^[^ ]+:[0-9]+: (ERROR|WARNING|CHECK)' >"$log/checkpatch.raw" || true
for p in patches/*.patch; do
	(cd / && perl "$tree/scripts/checkpatch.pl" --no-tree -q --terse --show-types \
		--ignore FILE_PATH_CHANGES - <"$GMEM_ROOT/$p") | sed "s|^-:|$p:|" || true
done | grep -E '^[^ ]+:[0-9]+: (ERROR|WARNING|CHECK)' >>"$log/checkpatch.raw" || true
unexplained "$log/checkpatch.raw" >"$log/checkpatch"
result "checkpatch (${#kernel_c[@]} files, $(ls patches/*.patch | wc -l) patches)" "$log/checkpatch"

perl "$tree/scripts/kernel-doc" -none -Wall "${kernel_c[@]}" >"$log/kerneldoc" 2>&1 || true
result "kernel-doc (${#kernel_c[@]} files)" "$log/kerneldoc"

# The mm book, into a scratch directory; only gmem.rst's warnings count
# (those of the tree's own documents are not gmem's to fix).
make -s -C "$tree" O="$log/htmldocs" SPHINXDIRS=mm htmldocs >"$log/htmldocs.out" 2>&1 ||
	echo "htmldocs: make htmldocs failed: $(tail -n 5 "$log/htmldocs.out")" >>"$log/htmldocs.out"
if [ ! -s "$log/htmldocs/Documentation/output/mm/gmem.html" ]; then
	echo "Documentation/mm/gmem.rst:0: ERROR: not built into the mm book ($(tail -n 3 "$log/htmldocs.out"))" >"$log/htmldocs.bad"
else
	# With a line number or without (a toctree warning has none).
	grep -E 'gmem\.rst(:[0-9]+)?: (WARNING|ERROR|SEVERE|CRITICAL)' "$log/htmldocs.out" >"$log/htmldocs.bad" || true
fi
result "htmldocs (Documentation/mm, gmem.rst)" "$log/htmldocs.bad"

echo "lint: $failed failed"
[ "$failed" = 0 ]
