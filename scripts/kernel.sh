#!/usr/bin/env bash
# Usage: scripts/kernel.sh run|test [make targets...]
#
# Prepares Debian's linux-source-6.12 with gmem's patches and gmem itself
# in-tree (mm/gmem is a link to this repository), configures it from
# configs/base.config + configs/<flavor>.config and builds it.  The tree and
# the build directory are kept in $GMEM_CACHE and reused while the kernel
# version, the patches and the config fragments stay the same.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

flavor=${1:?usage: kernel.sh run|test [targets]}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(bzImage modules headers)

ksrc_tar=/usr/src/linux-source-6.12.tar.xz
tree=$GMEM_CACHE/linux
out=$(kbuild_dir "$flavor")

tree_stamp=$({
	dpkg-query -W -f='${Version}' linux-source-6.12
	cat "$GMEM_ROOT"/patches/*.patch
} | sha256sum | cut -c1-16)
if [ "$(cat "$tree/.gmem-stamp" 2>/dev/null)" != "$tree_stamp" ]; then
	stage "extracting $(basename "$ksrc_tar") to $tree"
	rm -rf "$tree" "$tree.new"
	mkdir -p "$tree.new"
	tar -C "$tree.new" -xf "$ksrc_tar" --strip-components=1
	for p in "$GMEM_ROOT"/patches/*.patch; do
		stage "applying patches/$(basename "$p")"
		patch -d "$tree.new" -p1 --quiet --no-backup-if-mismatch <"$p"
	done
	echo "$tree_stamp" >"$tree.new/.gmem-stamp"
	mv "$tree.new" "$tree"
	rm -rf "$GMEM_CACHE"/build-* # built from another tree
fi

# gmem sits in the tree as links, remade every time: the clone may have moved.
ln -sfn "$GMEM_ROOT" "$tree/mm/gmem"
ln -sfn "$GMEM_ROOT/include/linux/gmem.h" "$tree/include/linux/gmem.h"
ln -sfn "$GMEM_ROOT/include/uapi/linux/gmem.h" "$tree/include/uapi/linux/gmem.h"
# The design document, listed in Documentation/mm/index.rst by patch 0003.
ln -sfn "$GMEM_ROOT/Documentation/mm/gmem.rst" "$tree/Documentation/mm/gmem.rst"
# The selftests are copied, not linked: their Makefile includes ../lib.mk,
# which make resolves from the physical directory.
[ -L "$tree/tools/testing/selftests/gmem" ] && rm "$tree/tools/testing/selftests/gmem"
# By content, stamped now: a file older than a binary built from an
# earlier copy must still rebuild it.
rsync -rl --checksum --delete "$GMEM_ROOT/tools/testing/selftests/gmem/" "$tree/tools/testing/selftests/gmem/"

frags=("$GMEM_ROOT/configs/base.config" "$GMEM_ROOT/configs/$flavor.config")
cfg_stamp=$(cat "${frags[@]}" | sha256sum | cut -c1-16)
if [ ! -f "$out/.config" ] || [ "$(cat "$out/.gmem-config-stamp" 2>/dev/null)" != "$cfg_stamp" ]; then
	stage "configuring the $flavor kernel (tinyconfig + ${frags[*]##*/})"
	mkdir -p "$out"
	kmake "$flavor" tinyconfig >/dev/null
	"$tree/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "${frags[@]}" >/dev/null
	kmake "$flavor" olddefconfig >/dev/null
	# merge_config drops what Kconfig refuses; refuse to build without it.
	dropped=$(grep -hE '^(CONFIG_|# CONFIG_)' "${frags[@]}" | sort -u | grep -vxFf "$out/.config" || true)
	if [ -n "$dropped" ]; then
		echo "kernel config: these settings did not take:" >&2
		echo "$dropped" >&2
		exit 1
	fi
	echo "$cfg_stamp" >"$out/.gmem-config-stamp"
fi

# gmem's sources are linked, and make goes by time: a checkout whose files
# are older than what an earlier checkout built would keep the old objects.
# Each group whose contents differ from what was last built is dated now
# (the headers apart: touching them rebuilds much of the kernel).
stamp_group() { # NAME FILE...
	local name=$1 sum
	shift
	sum=$(cat "$@" | sha256sum | cut -c1-16)
	if [ "$(cat "$out/.gmem-$name-stamp" 2>/dev/null)" != "$sum" ]; then
		touch "$@"
	fi
	stamps+=("$name=$sum")
}
stamps=()
stamp_group src "$GMEM_ROOT"/*.rs "$GMEM_ROOT"/*.c "$GMEM_ROOT"/*.h "$GMEM_ROOT"/Makefile "$GMEM_ROOT"/Kconfig
stamp_group hdr "$GMEM_ROOT"/include/linux/gmem.h "$GMEM_ROOT"/include/uapi/linux/gmem.h

stage "building the $flavor kernel: ${targets[*]} (build dir $out)"
kmake "$flavor" "${targets[@]}"
# Only a build of the modules has built what the stamps describe.
if [[ " ${targets[*]} " == *" modules "* ]]; then
	for st in "${stamps[@]}"; do
		echo "${st#*=}" >"$out/.gmem-${st%%=*}-stamp"
	done
fi
stage "kernel ($flavor) built"
