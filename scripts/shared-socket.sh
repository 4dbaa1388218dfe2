#!/usr/bin/env bash
# Runs a command as a CI job container beside the engine would: the engine's API socket is shared
# with it, but the command lives in mount and PID namespaces of its own (it cannot see the host's
# /run/netns, its processes or its mounts) and has no engine CLI. A Podman API service is started
# on a socket of its own for the command, in the host's namespaces, and stopped afterwards.
#   usage: shared-socket.sh COMMAND [ARGS...]     (root: namespaces need it)
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "shared-socket.sh makes mount and PID namespaces, which needs root" >&2; exit 1; }
here=$(cd "$(dirname "$0")/.." && pwd)
dir=$(mktemp -d /run/aidb-gate-shared.XXXXXX)
sock="$dir/podman.sock"
# The project's containers.conf where the host needs it (runc, ulimits), as the gate applies it itself.
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/fixtures/engine/containers.conf}
podman system service --time=0 "unix://$sock" >"$dir/service.log" 2>&1 &
service=$!
trap 'kill "$service" 2>/dev/null; wait "$service" 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do curl -fsS --max-time 1 --unix-socket "$sock" http://d/_ping >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS --max-time 2 --unix-socket "$sock" http://d/_ping >/dev/null || { cat "$dir/service.log" >&2; exit 1; }
echo "[aidb-gate] shared socket $sock; the command runs in mount and PID namespaces of its own, without engine CLIs"
# --fork --pid --mount-proc: the command's /proc shows only its own processes, as in a job container.
DOCKER_HOST="unix://$sock" unshare --mount --propagation private --pid --fork --mount-proc \
  bash "$here/scripts/without-engine-clis.sh" "$@"
