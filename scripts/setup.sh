#!/usr/bin/env bash
# Usage: scripts/setup.sh [DEBIAN_PACKAGE...]
#
# Install what building and booting gmem needs on a Debian 12 machine, and
# the packages named, which a step needs only for itself (bench.sh:
# gnuplot-nox).  Idempotent: prints what it installs, does nothing when
# everything is present.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

BINDGEN_VERSION=0.73.2   # 6.12 wants >= 0.65.1; Debian's 0.60 is too old
DEBS=(linux-source-6.12 rustc-web rust-web-src clang libclang-dev lld llvm flex bison bc
      libelf-dev libssl-dev cpio qemu-system-x86 busybox-static make gcc python3 xz-utils
      kmod rsync libcap-dev libnuma-dev liburing-dev)
# bindgen-cli is built with cargo: the machine's (rustup) if there is one,
# else Debian's, which matches rustc-web.
command -v cargo >/dev/null 2>&1 || DEBS+=(cargo-web)
DEBS+=("$@")

missing=()
for p in "${DEBS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
if ((${#missing[@]})); then
	stage "apt-get install ${missing[*]}"
	SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -q
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! have_bindgen "$BINDGEN_VERSION"; then
	stage "cargo install bindgen-cli $BINDGEN_VERSION"
	cargo install bindgen-cli --version "$BINDGEN_VERSION" --locked
fi
