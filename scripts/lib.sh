# Shared helpers for gmem's scripts. Sourced, not run.
# shellcheck shell=bash

GMEM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Kernel tree and build output live outside the repository so a fresh clone
# reuses them; override with GMEM_CACHE.
GMEM_CACHE=${GMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gmem}
export PATH="$HOME/.cargo/bin:$PATH"

_stage_t0=$(date +%s)
stage() {
	printf '\033[1m==> [%4ss] %s\033[0m\n' "$(($(date +%s) - _stage_t0))" "$*" >&2
}

# One make target at a time per cache: two (make vm while make check runs)
# would build into the same tree or initramfs.  The first script of a target
# takes the lock; the scripts it runs inherit the descriptor and the
# variable, and the lock goes when the target's last process exits.
if [ -z "${GMEM_CACHE_LOCKED:-}" ]; then
	mkdir -p "$GMEM_CACHE"
	exec 9>"$GMEM_CACHE/.lock"
	if ! flock -n 9; then
		stage "waiting for another gmem make target using $GMEM_CACHE"
		flock 9
	fi
	export GMEM_CACHE_LOCKED=1
fi

have_bindgen() {
	command -v bindgen >/dev/null 2>&1 &&
		[ "$(bindgen --version 2>/dev/null | awk '{print $2}')" = "$1" ]
}

GMEM_TREE=$GMEM_CACHE/linux

kbuild_dir() {
	echo "$GMEM_CACHE/build-$1"
}

# make in the kernel tree for one flavor.  LLVM=1: Rust objects need clang as
# the C compiler once KASAN is on (init/Kconfig: RUST depends on !KASAN ||
# CC_IS_CLANG), and one toolchain for both flavors keeps them comparable.
kmake() {
	local flavor=$1
	shift
	make -C "$GMEM_TREE" O="$(kbuild_dir "$flavor")" ARCH=x86_64 LLVM=1 \
		RUSTC=/usr/bin/rustc BINDGEN=bindgen \
		-j"$(($(nproc) + 1))" "$@"
}
