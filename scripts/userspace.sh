#!/usr/bin/env bash
# Usage: scripts/userspace.sh run|test
#
# Builds what runs in the guest against the FLAVOR kernel's uapi headers
# into $GMEM_CACHE/guest-<flavor>/: the gmem selftests (through the
# kernel's selftests build), the upstream hmm-tests as a reference, libgmem
# and gmem-run (installed under the guest's /opt/gmem), the samples and the
# tools.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

flavor=${1:?usage: userspace.sh run|test}
out=$(kbuild_dir "$flavor")
guest=$GMEM_CACHE/guest-$flavor
hdrs="-isystem $out/usr/include"
rm -rf "$guest"
mkdir -p "$guest"/{selftests,ref,samples,tools,mm,lib,bin,include}

# libgmem, installed into the guest as into a system: /opt/gmem/{lib,include,bin}.
stage "building libgmem (make -C tools/lib/gmem)"
libout=$out/libgmem
stagedir=$(mktemp -d)
trap 'rm -rf "$stagedir"' EXIT
make -s -C "$GMEM_ROOT/tools/lib/gmem" O="$libout" PREFIX=/opt/gmem \
	UAPI_INCLUDE="$out/usr/include" >/dev/null
make -s -C "$GMEM_ROOT/tools/lib/gmem" O="$libout" PREFIX=/opt/gmem \
	UAPI_INCLUDE="$out/usr/include" DESTDIR="$stagedir" install >/dev/null
cp -a "$stagedir/opt/gmem/." "$guest/"
rm -rf "$stagedir"
libgmem=(-I "$GMEM_ROOT/tools/lib/gmem" -L "$libout" -lgmem -Wl,-rpath,/opt/gmem/lib)

stage "building selftests (make -C tools/testing/selftests TARGETS=gmem)"
make -s -C "$GMEM_TREE/tools/testing/selftests" TARGETS=gmem O="$out" \
	GMEM_LIB="$libout" GMEM_LIB_INC="$GMEM_ROOT/tools/lib/gmem" >/dev/null
find "$out/kselftest/gmem" -maxdepth 1 -type f -perm -u+x -exec cp {} "$guest/selftests/" \;

stage "building the reference hmm-tests"
sel=$GMEM_TREE/tools/testing/selftests
gcc -O2 -pthread -I "$GMEM_TREE" $hdrs -o "$guest/ref/hmm-tests" "$sel/mm/hmm-tests.c"

if [ "$flavor" = test ] || [ -n "${GMEM_WITH_MM:-}" ]; then
	# The kernel's own mm selftests (core-MM conformance, run as is and
	# MAP_PEER_SHARED; make bench runs on the run kernel the suites too slow
	# for the debug one); -k: one that does not build from this source
	# (mm-conformance.sh says which) does not stop the others.
	stage "building the mm selftests (make -C tools/testing/selftests TARGETS=mm)"
	make -k -s -C "$GMEM_TREE/tools/testing/selftests" TARGETS=mm O="$out" >"$out/mm-selftests.log" 2>&1 || true
	find "$out/kselftest/mm" -maxdepth 1 -type f -perm -u+x -exec cp {} "$guest/mm/" \;
	gcc -O2 -Wall -Werror -shared -fPIC $hdrs -o "$guest/lib/peer_shared.so" \
		"$GMEM_ROOT/tools/testing/peer_shared/peer_shared.c"
	chmod -x "$guest/lib/peer_shared.so"
fi

stage "building samples"
for c in "$GMEM_ROOT"/samples/*.c; do
	[ -e "$c" ] || continue
	gcc -O2 -Wall -Werror -pthread $hdrs -I "$GMEM_ROOT/samples" \
		-o "$guest/samples/$(basename "$c" .c)" "$c" "${libgmem[@]}"
done

stage "building tools"
for c in "$GMEM_ROOT"/tools/gmem/*.c; do
	[ -e "$c" ] || continue
	# -I the tree: the benchmark includes <lib/test_hmm_uapi.h>.
	gcc -O2 -Wall -Werror -pthread $hdrs -I "$GMEM_TREE" \
		-o "$guest/tools/$(basename "$c" .c)" "$c"
done
