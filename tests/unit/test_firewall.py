"""A dead run's port-forward rules and bridges are found by network name, with the commands that
remove them; the rules and bridges of live networks are left alone."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import uuid

import pytest

from aidb_gate.core import firewall

# `iptables -t nat -S` as netavark 1.4 left it on this machine: one live run's network (its
# port 42325) and one whose network is gone (port 33133, the shape of the incident in issue 21).
LIVE_ID = "79c06f3b1c045e481056a15ceea9e780e831af720815902a7faa88ee53b14140"
DEAD_ID = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
DNAT = "-A NETAVARK-HOSTPORT-DNAT -p tcp -m tcp --dport"
NAT = f"""-P PREROUTING ACCEPT
-N NETAVARK-DN-E16F3991AECE2
-N NETAVARK-DN-0A1B2C3D4E5F6
-N NETAVARK-HOSTPORT-DNAT
-A PREROUTING -m addrtype --dst-type LOCAL -j NETAVARK-HOSTPORT-DNAT
-A NETAVARK-DN-E16F3991AECE2 -d 127.0.0.1/32 -p tcp -m tcp --dport 42325 -j DNAT --to-destination 10.213.234.100:5432
{DNAT} 42325 -m comment --comment "dnat name: aidb-gate-live-net id: {LIVE_ID}" -j NETAVARK-DN-E16F3991AECE2
{DNAT} 33133 -m comment --comment "dnat name: aidb-gate-dead-net id: {DEAD_ID}" -j NETAVARK-DN-0A1B2C3D4E5F6
{DNAT} 33134 -m comment --comment "dnat name: aidb-gate-dead-net id: {DEAD_ID}" -j NETAVARK-DN-0A1B2C3D4E5F6
"""


def test_rules_of_networks_the_engine_no_longer_has_are_found_with_their_removal():
    found = firewall.stale_forwards(NAT, {"aidb-gate-live-net", "podman"})
    assert [f.what.split(" is ")[0] for f in found] == ["host port 33133", "host port 33134"]
    assert "aidb-gate-dead-net" in found[0].what and "unreachable" in found[0].what
    assert found[0].remove == (
        'iptables -t nat -D NETAVARK-HOSTPORT-DNAT -p tcp -m tcp --dport 33133 -m comment --comment "dnat name: '
        f'aidb-gate-dead-net id: {DEAD_ID}" -j NETAVARK-DN-0A1B2C3D4E5F6',
        "iptables -t nat -F NETAVARK-DN-0A1B2C3D4E5F6", "iptables -t nat -X NETAVARK-DN-0A1B2C3D4E5F6")
    assert len(found[1].remove) == 1  # the chain is flushed and deleted once, after its last jump goes


def test_nothing_is_stale_while_every_network_lives():
    assert firewall.stale_forwards(NAT, {"aidb-gate-live-net", "aidb-gate-dead-net"}) == []
    assert firewall.stale_forwards("garbage\n-A NETAVARK-HOSTPORT-DNAT -j ACCEPT", set()) == []


def test_podman_bridges_without_a_network_are_found_other_bridges_are_not():
    found = firewall.stale_bridges(["podman0", "podman1", "podman7", "cni-podman2", "docker0", "br-1234", "virbr0"],
                                   {"podman0", "podman1"})
    assert [f.remove for f in found] == [("ip link delete podman7",), ("ip link delete cni-podman2",)]


# Docker 20.10's nat rules on this machine: the default bridge, one live user network and one whose
# network is gone (its bridge br-0a1b2c3d4e5f no longer belongs to any network).
DOCKER_NAT = """-N DOCKER
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.18.0.0/16 ! -o br-79c06f3b1c04 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER -i br-79c06f3b1c04 -j RETURN
-A DOCKER -d 127.0.0.1/32 ! -i br-79c06f3b1c04 -p tcp -m tcp --dport 49153 -j DNAT --to-destination 172.18.0.2:5432
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 49154 -j DNAT --to-destination 172.17.0.2:6379
-A DOCKER -d 127.0.0.1/32 ! -i br-0a1b2c3d4e5f -p tcp -m tcp --dport 33133 -j DNAT --to-destination 172.19.0.3:5432
"""


def test_docker_rules_of_bridges_without_a_network_are_found_with_their_removal():
    found = firewall.stale_docker_forwards(DOCKER_NAT, {"docker0", "br-79c06f3b1c04"})
    assert len(found) == 1 and "host port 33133" in found[0].what and "172.19.0.3:5432" in found[0].what
    assert found[0].remove == ("iptables -t nat -D DOCKER -d 127.0.0.1/32 ! -i br-0a1b2c3d4e5f -p tcp -m tcp --dport "
                               "33133 -j DNAT --to-destination 172.19.0.3:5432",)
    assert firewall.stale_docker_forwards(DOCKER_NAT, {"docker0", "br-79c06f3b1c04", "br-0a1b2c3d4e5f"}) == []
    inside = firewall.in_namespace(firewall.stale_docker_forwards(DOCKER_NAT, {"docker0", "br-79c06f3b1c04"}), "/x")
    assert inside[0].remove[0].startswith("nsenter --net=/x iptables -t nat -D DOCKER ")
    assert firewall.in_namespace(found, None) == found


def test_docker_bridges_without_a_network_are_found_other_links_are_not():
    found = firewall.stale_docker_bridges(["docker0", "br-79c06f3b1c04", "br-0a1b2c3d4e5f", "podman3", "br-lan"],
                                          {"docker0", "br-79c06f3b1c04"})
    assert [f.remove for f in found] == [("ip link delete br-0a1b2c3d4e5f",)]


def test_a_docker_networks_bridge_is_named_as_docker_names_it():
    assert firewall._docker_bridge({"Id": "79c06f3b1c045e48", "Options": {}}) == "br-79c06f3b1c04"
    assert firewall._docker_bridge({"Id": "aa", "Options": {"com.docker.network.bridge.name": "docker0"}}) == "docker0"


def test_the_process_behind_a_unix_socket_is_found(tmp_path):
    import socket

    path = tmp_path / "engine.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)
        assert firewall.engine_pid(f"unix://{path}") == os.getpid()
    assert firewall.engine_pid(f"unix://{tmp_path / 'gone.sock'}") is None
    assert firewall.engine_pid("tcp://docker:2375") is None


def test_an_engine_whose_firewall_is_elsewhere_is_not_checked_and_says_why():
    engine = type("E", (), {"kind": "docker", "docker_host": "tcp://docker:2375"})()
    found, why = firewall.host_leftovers(engine)
    assert found == [] and "tcp://docker:2375" in why


class _NoNetworks:
    """A local Podman that has no network at all: every netavark rule is then a dead run's."""

    kind = "podman"

    def podman_client(self, _timeout):
        networks = type("N", (), {"list": staticmethod(lambda: [])})()
        return type("C", (), {"networks": networks, "close": lambda self: None})()


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("iptables") is None, reason="needs root and iptables")
def test_a_real_stale_rule_in_this_hosts_firewall_is_found(monkeypatch):
    """A rule in netavark's shape, planted in the real nat table for a network that never existed."""
    chain = f"NETAVARK-DN-{uuid.uuid4().hex[:13].upper()}"
    name = f"aidb-gate-selftest-{uuid.uuid4().hex[:6]}-net"
    have_dnat = subprocess.run(["iptables", "-t", "nat", "-S", "NETAVARK-HOSTPORT-DNAT"], capture_output=True).returncode == 0
    spec = ["-p", "tcp", "-m", "tcp", "--dport", "1", "-m", "comment", "--comment", f"dnat name: {name} id: {'ab' * 32}",
            "-j", chain]
    subprocess.run(["iptables", "-t", "nat", "-N", chain], check=True)
    if not have_dnat:
        subprocess.run(["iptables", "-t", "nat", "-N", "NETAVARK-HOSTPORT-DNAT"], check=True)
    subprocess.run(["iptables", "-t", "nat", "-A", "NETAVARK-HOSTPORT-DNAT", *spec], check=True)
    try:
        found, why = firewall.leftovers(_NoNetworks())
        mine = [f for f in found if name in f.what]
        assert why == "" and len(mine) == 1 and "host port 1 " in mine[0].what
        for command in mine[0].remove:  # the commands it gives do remove it
            subprocess.run(shlex.split(command), check=True)
        assert name not in subprocess.run(["iptables", "-t", "nat", "-S"], capture_output=True, text=True).stdout
    finally:
        subprocess.run(["iptables", "-t", "nat", "-D", "NETAVARK-HOSTPORT-DNAT", *spec], capture_output=True)
        subprocess.run(["iptables", "-t", "nat", "-F", chain], capture_output=True)
        subprocess.run(["iptables", "-t", "nat", "-X", chain], capture_output=True)
        if not have_dnat:
            subprocess.run(["iptables", "-t", "nat", "-X", "NETAVARK-HOSTPORT-DNAT"], capture_output=True)
