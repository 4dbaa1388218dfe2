"""On a real Docker engine in a network namespace of its own, reached by its local socket: doctor
names a dead network's port-forward rule and bridge in that namespace (not this host's), with
commands that remove them, and leaves a live network's rules alone. Run by
scripts/engines-selftest.sh, which starts that engine and sets SELFTEST_DOCKER_SOCKET."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from aidb_gate.core import firewall

SOCKET = os.environ.get("SELFTEST_DOCKER_SOCKET", "")
pytestmark = pytest.mark.skipif(not SOCKET, reason="needs scripts/engines-selftest.sh's Docker engine")


def _doctor() -> str:
    env = {**os.environ, "DOCKER_HOST": f"unix://{SOCKET}"}
    done = subprocess.run([str(Path(sys.executable).with_name("aidb-gate")), "doctor"], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    return done.stdout + done.stderr


def test_doctor_names_a_dead_networks_rule_and_bridge_in_the_engines_namespace_and_how_to_remove_them():
    import docker

    client = docker.DockerClient(base_url=f"unix://{SOCKET}", timeout=120)
    suffix = uuid.uuid4().hex[:12]
    dead_bridge = f"br-{suffix}"
    network = client.networks.create(f"aidb-gate-selftest-{suffix}", labels={"aidb-gate.selftest": "1"})
    image = next(tag for img in client.images.list() for tag in img.tags if tag.startswith("localhost/aidb-gate/redis:"))
    live = client.containers.run(image, detach=True, network=network.name, ports={"6379/tcp": ("127.0.0.1", None)},
                                 labels={"aidb-gate.selftest": "1"})
    pid = firewall.engine_pid(f"unix://{SOCKET}")
    assert pid is not None and firewall.engine_netns(f"unix://{SOCKET}"), "the engine runs in a namespace of its own"
    inside = ["nsenter", f"--net=/proc/{pid}/ns/net"]
    rule = ["DOCKER", "-d", "127.0.0.1/32", "!", "-i", dead_bridge, "-p", "tcp", "-m", "tcp", "--dport", "33133", "-j",
            "DNAT", "--to-destination", "172.31.0.3:5432"]
    subprocess.run([*inside, "iptables", "-t", "nat", "-A", *rule], check=True)
    subprocess.run([*inside, "ip", "link", "add", dead_bridge, "type", "bridge"], check=True)
    try:
        said = _doctor()
        errors = [line for line in said.splitlines() if line.startswith("ERR host firewall")]
        assert len(errors) == 2, said
        assert "host port 33133" in errors[0] and dead_bridge in errors[0] and "172.31.0.3:5432" in errors[0]
        assert f"bridge {dead_bridge} belongs to no network" in errors[1]
        live_bridge = f"br-{network.id[:12]}"
        assert live_bridge not in "\n".join(errors), "a live network's rules are not leftovers"
        for line in errors:  # the commands doctor gives do remove them
            fix = re.search(r"Fix: (.*)$", line)
            assert fix and fix[1].startswith(f"nsenter --net=/proc/{pid}/ns/net "), line
            subprocess.run(shlex.split(fix[1]), check=True)
        assert "ERR host firewall" not in _doctor()
        rules = subprocess.run([*inside, "iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout
        assert dead_bridge not in rules and live_bridge in rules
    finally:
        subprocess.run([*inside, "iptables", "-t", "nat", "-D", *rule], capture_output=True)
        subprocess.run([*inside, "ip", "link", "delete", dead_bridge], capture_output=True)
        live.remove(force=True)
        network.remove()
        client.close()
