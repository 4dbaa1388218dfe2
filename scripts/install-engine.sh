#!/usr/bin/env bash
# Makes sure the host has a working container engine, installing one only where none works.
#
#   install-engine.sh               Podman with what it needs to run containers on a network
#   install-engine.sh --debootstrap debootstrap only (needed only to build the base image where
#                                   no registry is reachable; the Makefile asks for it then)
#
# Guarantees: where `podman info` or `docker info` already succeeds, nothing is installed (any
# user, any distribution). Otherwise it installs from the distribution's packages on
# Debian/Ubuntu, as root or through sudo; anywhere else it prints exactly what to install and
# exits 1, because guessing a package manager is worse. apt's output goes to a log that is shown
# only when apt fails.
set -euo pipefail

say() { echo "[aidb-gate] $*"; }

mode=engine
case "${1:-}" in
  "") ;;
  --debootstrap) mode=debootstrap ;;
  *) echo "usage: $0 [--debootstrap]" >&2; exit 2 ;;
esac

works() { command -v "$1" >/dev/null 2>&1 && timeout 30 "$1" info >/dev/null 2>&1; }

has_firewall_tool() { command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || [ -x /sbin/iptables ]; }

if [ "$mode" = engine ]; then
  # A Podman installed earlier without its "Suggests" answers `podman info` yet cannot start a
  # container on a network: netavark 1.4 needs the iptables command. Only that piece is added.
  if works podman && ! has_firewall_tool && command -v apt-get >/dev/null 2>&1 \
      && { [ -x /usr/lib/podman/netavark ] || [ -x /usr/libexec/podman/netavark ]; }; then
    packages=(iptables)
    what="iptables (netavark, Podman's network backend here, calls it)"
  elif works podman; then say "engine: $(podman --version) (already works; nothing installed)"; exit 0
  fi
fi
if [ "$mode" = engine ] && [ -z "${packages+x}" ]; then
  if works docker; then say "engine: $(docker --version) (already works; nothing installed)"; exit 0; fi
  # runc: crun (Podman's default) refuses hybrid cgroups. netavark 1.4 sets up every network with
  # the `iptables` command, which Debian only "Suggests": without it the first container on a
  # network fails with "netavark: No such file or directory (os error 2)". aardvark-dns (names on
  # a network), uidmap/slirp4netns/fuse-overlayfs (rootless Podman) are only "Recommends".
  packages=(podman runc iptables uidmap slirp4netns fuse-overlayfs ca-certificates)
  what="a working Podman"
elif [ "$mode" = debootstrap ]; then
  if command -v debootstrap >/dev/null 2>&1; then say "debootstrap: $(command -v debootstrap) (installed)"; exit 0; fi
  packages=(debootstrap)
  what="debootstrap (it builds the base image where no registry is reachable)"
fi

sudo_cmd=()
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo_cmd=(sudo); fi

if ! command -v apt-get >/dev/null 2>&1 || { [ "$(id -u)" != 0 ] && [ ${#sudo_cmd[@]} -eq 0 ]; }; then
  if [ "$mode" = engine ]; then
    debian="${packages[*]} netavark aardvark-dns" fedora="podman runc iptables"
    other="install Podman (https://podman.io/docs/installation) or Docker, and make sure
                            \`podman info\` or \`docker info\` works for this user (or set DOCKER_HOST)."
  else
    debian="debootstrap" fedora="debootstrap"
    other="install debootstrap, or configure images that can be pulled (no base image is built then)."
  fi
  cat >&2 <<MSG
aidb-gate needs $what, and this script installs it only with apt-get, as root or through sudo.
Install it yourself, then run this again:
  Debian/Ubuntu (as root):  apt-get install -y $debian
  Fedora/RHEL:              sudo dnf install -y $fedora
  Other systems:            $other
MSG
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
log=$(mktemp "${TMPDIR:-/tmp}/aidb-gate-apt.XXXXXX")
trap 'rm -f "$log"' EXIT
apt_quiet() {
  if ! "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive "$@" >>"$log" 2>&1; then
    echo "[aidb-gate] \`$*\` failed; its last lines:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
}

if [ "$mode" = engine ] && [ "${packages[0]}" = podman ]; then
  # netavark and aardvark-dns are Debian 12's network stack (older releases only have the CNI
  # plugins, which podman then pulls in itself); name them only where the release has them.
  for pkg in netavark aardvark-dns; do
    if apt-cache show "$pkg" >/dev/null 2>&1; then packages+=("$pkg"); fi
  done
fi

say "installing ${packages[*]} with apt-get${sudo_cmd[*]:+ through sudo} (about a minute)"
apt_quiet apt-get update -qq
apt_quiet apt-get install -y -qq "${packages[@]}"

if [ "$mode" = debootstrap ]; then
  say "debootstrap: $(command -v debootstrap)"
  exit 0
fi
say "engine: $(podman --version)"
if [ "$(id -u)" != 0 ] && ! grep -qE "^($(id -un)|$(id -u)):" /etc/subuid 2>/dev/null; then
  # Rootless Podman maps the image's users into this range; without one, images fail to unpack.
  say "note: /etc/subuid has no range for $(id -un); rootless Podman needs one:"
  say "  sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $(id -un) && podman system migrate"
fi
