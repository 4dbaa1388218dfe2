#!/usr/bin/env bash
# Runs a command with every `podman` and `docker` CLI on this machine masked: a stub that fails
# loudly is bind-mounted over each, in a private mount namespace of this command only, so the
# rest of the machine keeps its CLIs. It proves that the gate reaches the engine through its API
# alone (DOCKER_HOST), as on a machine or a CI job that has no engine CLI.
#   usage: without-engine-clis.sh COMMAND [ARGS...]     (root: mount namespaces need it)
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "without-engine-clis.sh bind-mounts over the engine CLIs, which needs root" >&2; exit 1; }
exec unshare --mount --propagation private bash -c '
  set -euo pipefail
  stub=$(mktemp /tmp/aidb-gate-masked-cli.XXXXXX)
  printf "#!/bin/sh\necho \"aidb-gate self-test: \$0 \$* was called, but the engine CLIs are masked: every engine call must go through the API\" >&2\nexit 127\n" > "$stub"
  chmod 0755 "$stub"
  for cli in $(type -ap podman docker | sort -u); do mount --bind "$stub" "$cli"; done
  exec "$@"' without-engine-clis "$@"
