#!/usr/bin/env bash
# Installs what the gate needs on the host where it is missing: Podman (with runc) and
# debootstrap, from the distribution's packages. Only on Debian/Ubuntu as root; anywhere else it
# prints exactly what to install and fails, because guessing a package manager is worse.
set -euo pipefail
need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
if [ ${#need[@]} -eq 0 ]; then
  echo "[aidb-gate] engine: $(podman --version) (installed)"
  exit 0
fi
if [ -f /etc/debian_version ] && [ "$(id -u)" = 0 ]; then
  echo "[aidb-gate] installing ${need[*]} with apt-get (about a minute)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # With recommends: that brings netavark and aardvark-dns, the network stack the gate is tested on
  # (without them apt would settle for the CNI plugins).
  apt-get install -y -qq podman runc debootstrap uidmap slirp4netns fuse-overlayfs netavark aardvark-dns \
    ca-certificates curl >/dev/null
  echo "[aidb-gate] engine: $(podman --version)"
  exit 0
fi
cat >&2 <<MSG
aidb-gate needs: ${need[*]}.
  Debian/Ubuntu (as root):  apt-get install -y podman runc debootstrap
  Fedora/RHEL:              sudo dnf install -y podman runc debootstrap
  Other systems:            install Podman (https://podman.io/docs/installation) or set DOCKER_HOST to a
                            running Docker/Podman engine; debootstrap is only needed where no registry is
                            reachable.
Then run this command again.
MSG
exit 1
