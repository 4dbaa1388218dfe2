"""Where the gate reaches published ports: loopback for a local engine, the engine's host for a
remote one; and an address that does not reach a listening container is said to be the address."""

from __future__ import annotations

import pytest

from aidb_gate.core.container import (
    Reach,
    captured_address,
    connections_from_outside,
    listens_on,
    reach_for,
    unreachable_address,
)


@pytest.mark.parametrize(("docker_host", "publish", "host", "remote"), [
    ("unix:///run/podman/podman.sock", "127.0.0.1", "127.0.0.1", False),
    ("unix:///var/run/docker.sock", "127.0.0.1", "127.0.0.1", False),
    ("npipe:////./pipe/docker_engine", "127.0.0.1", "127.0.0.1", False),
    ("tcp://127.0.0.1:2375", "127.0.0.1", "127.0.0.1", False),
    ("tcp://localhost:2375", "127.0.0.1", "127.0.0.1", False),
    ("tcp://docker:2375", "0.0.0.0", "docker", True),  # GitLab's docker:dind service
    ("tcp://10.250.0.2:2375", "0.0.0.0", "10.250.0.2", True),
    ("https://build-host.example:2376", "0.0.0.0", "build-host.example", True),
    ("ssh://ci@build-host.example", "0.0.0.0", "build-host.example", True),
    ("tcp://[fd00::2]:2375", "0.0.0.0", "fd00::2", True),
])
def test_published_ports_are_reached_where_the_engine_publishes_them(docker_host, publish, host, remote):
    where = reach_for(docker_host)
    assert (where.publish, where.host, where.remote, where.docker_host) == (publish, host, remote, docker_host)


def test_an_ipv6_engine_host_is_bracketed_in_urls():
    assert reach_for("tcp://[fd00::2]:2375").url_host() == "[fd00::2]"
    assert reach_for("tcp://10.0.0.5:2375").url_host() == "10.0.0.5"


# /proc/net/tcp as a Postgres container shows it (5432 = 0x1538 listening on all addresses), with an
# established connection to another port that must not count as listening.
PROC_NET_TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 31337 1 0 0 100 0 0 10 0
   1: 0100007F:A2B4 0100007F:18EB 01 00000000:00000000 00:00000000 00000000     0        0 0 1 0 20 4 30 10 -1
"""
PROC_NET_TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue
   0: 00000000000000000000000000000000:18EB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000
"""


def test_listening_is_read_from_proc_net_tcp_in_listen_state_only():
    assert listens_on(PROC_NET_TCP, 5432)
    assert not listens_on(PROC_NET_TCP, 6379)  # 0x18EB is only a remote port in an established row
    assert listens_on(PROC_NET_TCP6, 6379)
    assert not listens_on("garbage\n0: zz:zz 0A", 5432)


def test_an_unreachable_address_is_the_engines_not_the_dependencys():
    local = unreachable_address("postgres", Reach(docker_host="unix:///run/other/docker.sock"), 33133, 5432,
                                "Connection refused")
    assert "127.0.0.1:33133" in local and "unix:///run/other/docker.sock" in local and "not of postgres" in local
    assert "DOCKER_HOST=tcp://" in local and "did not become ready" not in local
    remote = unreachable_address("qdrant", reach_for("tcp://docker:2375"), 40000, 6333, "timed out")
    assert "docker:40000" in remote and "0.0.0.0" in remote and "reachable from where the gate runs" in remote


def test_a_server_bound_to_loopback_inside_is_not_an_address_problem():
    """A service listening on 127.0.0.1 (or ::1) inside its container is its own fault (the corpus's
    loopback-bind): only a socket other containers and published ports reach counts."""
    v4_loopback = "   0: 0100007F:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999 0 1 1"
    v6_loopback = "   0: 00000000000000000000000001000000:1538 00000000000000000000000000000000:0000 0A 0"
    mapped_loopback = "   0: 0000000000000000FFFF00000100007F:1538 00000000000000000000000000000000:0000 0A 0"
    container_ip = "   0: 640A590A:1538 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999 0 1 1"
    assert not listens_on(v4_loopback, 5432) and not listens_on(v6_loopback, 5432)
    assert not listens_on(mapped_loopback, 5432)
    assert listens_on(container_ip, 5432)


def test_connections_from_outside_count_established_rows_to_the_port_from_other_addresses():
    """The captured-address check counts what reached the server from outside its container: an
    established row to its port from a non-loopback address; its own loopback clients (a
    healthcheck) and rows of other ports do not count."""
    rows = """  sl  local_address rem_address   st
   0: 00000000:1538 00000000:0000 0A 0
   1: 640A590A:1538 010A590A:D431 01 0
   2: 0100007F:1538 0100007F:D432 01 0
   3: 640A590A:A2B4 010A590A:1538 01 0
   4: 640A590A:1538 010A590A:D433 06 0
"""
    assert connections_from_outside(rows, 5432) == 1
    assert connections_from_outside(rows.replace(" 01 0\n", " 06 0\n", 1), 5432) == 0
    six = "   0: 0000000000000000FFFF0000640A590A:18EB 0000000000000000FFFF0000010A590A:D431 01 0"
    assert connections_from_outside(six, 6379) == 1
    assert connections_from_outside("garbage\n1: zz:zz yy:yy 01", 5432) == 0


def test_a_captured_address_is_the_machines_not_the_dependencys():
    said = captured_address("postgres", reach_for("tcp://docker:2375"), 33133, 5432)
    assert "docker:33133" in said and "another server" in said and "not of postgres" in said
    assert "doctor" in said and "did not become ready" not in said
