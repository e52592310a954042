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
DEBS=(linux-source-6.12 rustc-web rust-web-src rust-web-clippy rustfmt-web clang libclang-dev lld llvm flex bison bc
      libelf-dev libssl-dev cpio qemu-system-x86 busybox-static make gcc python3 xz-utils
      kmod rsync libcap-dev libnuma-dev liburing-dev python3-sphinx)
# bindgen-cli is built with cargo: the machine's (rustup) if there is one,
# else Debian's, which matches rustc-web.
command -v cargo >/dev/null 2>&1 || DEBS+=(cargo-web)
DEBS+=("$@")

missing=()
for p in "${DEBS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
		missing+=("$p")
done
installed_version() {
	dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null |
		awk '$1 == "install" && $3 == "installed" { print $4 }'
}

# QEMU's packages must agree on one version: a machine may already have
# qemu-utils from bookworm-backports, which bookworm's qemu-system-x86 would
# remove.  Then QEMU and the dependencies of its version come from backports
# (the suite is added at its default priority and targeted only by QEMU's own
# apt-get run, so nothing else moves to it).
qemu_from_backports() {
	[[ $(installed_version qemu-utils) == *~bpo12* ]] || return 1
	if [ ! -e /etc/apt/sources.list.d/gmem-backports.sources ] &&
		! apt-cache policy qemu-system-x86 | grep -q bookworm-backports; then
		stage "qemu-utils is from bookworm-backports: adding that suite for qemu-system-x86"
		# Called as a condition, where set -e does not apply: exit here.
		$SUDO tee /etc/apt/sources.list.d/gmem-backports.sources >/dev/null <<-EOF || exit 1
			Types: deb
			URIs: http://deb.debian.org/debian
			Suites: bookworm-backports
			Components: main
			Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
		EOF
		$SUDO apt-get update -q >&2 || exit 1
	fi
}

# apt_install [APT_OPTION...] -- PACKAGE...: install, but never remove what
# the machine has: say what would go, and stop.
apt_install() {
	local opts=() sim removed
	while [ "$1" != -- ]; do opts+=("$1"); shift; done
	shift
	if ! sim=$(LC_ALL=C apt-get install -s -q --no-install-recommends "${opts[@]}" "$@" 2>&1); then
		printf '%s\n' "$sim" >&2
		echo "setup: apt-get cannot install $* (above)" >&2
		exit 1
	fi
	removed=$(printf '%s\n' "$sim" | awk '/^Remv / { print $2 }' | tr '\n' ' ')
	if [ -n "$removed" ]; then
		echo "setup: installing $* would remove: $removed" >&2
		echo "setup: nothing was changed; remove or replace these yourself, then rerun" >&2
		exit 1
	fi
	stage "apt-get install ${opts[*]} $*"
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends \
		"${opts[@]}" "$@"
}

# Clippy and rustfmt must be the installed rustc's own version.
rust_pick() {
	local v
	v=$(installed_version rustc-web)
	if [ -n "$v" ] && apt-cache madison "$1" | awk '{ print $3 }' | grep -qxF "$v"; then
		echo "$1=$v"
	else
		echo "$1"
	fi
}

if ((${#missing[@]})); then
	SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
	$SUDO apt-get update -q
	qemu=()
	for i in "${!missing[@]}"; do
		case ${missing[$i]} in
		qemu-system-x86)
			if qemu_from_backports; then
				qemu=(qemu-system-x86)
				unset 'missing[i]'
			fi ;;
		rust-web-clippy | rustfmt-web) missing[$i]=$(rust_pick "${missing[$i]}") ;;
		esac
	done
	if ((${#missing[@]})); then
		apt_install -- "${missing[@]}"
	fi
	if ((${#qemu[@]})); then
		apt_install -t bookworm-backports -- "${qemu[@]}"
	fi
fi

if ! have_bindgen "$BINDGEN_VERSION"; then
	stage "cargo install bindgen-cli $BINDGEN_VERSION"
	cargo install bindgen-cli --version "$BINDGEN_VERSION" --locked
fi
