#!/usr/bin/env bash
# The p1 gate where users' CI runs it (`make engines`, part of `make test`), as root:
#   1. the bench's smoke (bench/gate_bench.py --smoke --docker): p1 on this Podman and on Docker
#      (Debian's docker.io, in a network namespace of its own) reached over TCP from here, as a
#      GitLab job reaches docker:dind - it builds whatever that engine lacks (base, recipes,
#      target) - and a small backup at scale; it fails on any failed run, so the bench never
#      silently breaks;
#   2. the same, with every podman/docker CLI masked: every engine call must go through the API;
#   3. doctor on that engine through its local socket: a dead network's rule and bridge in the
#      engine's own network namespace are named, with commands that remove them (tests/engines);
#      and execs on it stream exactly and end at their deadlines (test_engine_deadlines.py);
#   4. a Podman socket shared with a run in mount and PID namespaces of its own (a CI job container
#      beside the engine), CLIs masked: backup and restore exec through the API.
# A dockerd this script started is stopped at the end (its images stay in /var/lib/aidb-dk).
#   usage: engines-selftest.sh PYTEST   (its venv's python runs the bench)
set -euo pipefail
pytest=$1
here=$(cd "$(dirname "$0")/.." && pwd)
if [ "$(id -u)" != 0 ]; then
  echo "[aidb-gate] engines: Docker and the shared socket need root (network, mount and PID namespaces); not run." >&2
  echo "[aidb-gate] engines: the bench's smoke on this engine only (p1, a small backup at scale)" >&2
  cd "$here" && exec "$(dirname "$pytest")/python" bench/gate_bench.py --smoke
fi
started=
if ! curl -fsS --max-time 2 --unix-socket /run/aidb-dk/docker.sock http://d/_ping >/dev/null 2>&1; then started=1; fi
bash "$here/scripts/docker-netns.sh" start
if [ -n "$started" ]; then trap 'bash "$here/scripts/docker-netns.sh" stop' EXIT; fi
tcp=$(bash "$here/scripts/docker-netns.sh" env)
cd "$here"
echo "[aidb-gate] engines 1/4: the bench's smoke: p1 on Podman and on Docker over TCP ($tcp), a small backup at scale"
"$(dirname "$pytest")/python" bench/gate_bench.py --smoke --docker
echo "[aidb-gate] engines 2/4: p1 on Docker over TCP, engine CLIs masked"
env "$tcp" bash scripts/without-engine-clis.sh "$pytest" -m p1 suites --html=reports/gate-docker-nocli.html \
  --junitxml=reports/junit-docker-nocli.xml
echo "[aidb-gate] engines 3/4: doctor finds a dead network's firewall rule and bridge in Docker's namespace;"
echo "[aidb-gate]               execs on Docker stream and end at their deadlines"
env "$tcp" SELFTEST_DOCKER_SOCKET=/run/aidb-dk/docker.sock "$pytest" tests/engines tests/integration/test_engine_deadlines.py \
  -p no:cacheprovider --html=reports/selftest-engines.html --junitxml=reports/selftest-engines-junit.xml
echo "[aidb-gate] engines 4/4: p1 on a shared Podman socket, own mount and PID namespaces, engine CLIs masked"
bash scripts/shared-socket.sh "$pytest" -m p1 suites --html=reports/gate-shared-socket.html \
  --junitxml=reports/junit-shared-socket.xml
