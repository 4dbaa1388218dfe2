"""The address watch tells a captured address from a slow dependency, on a real container: while
the published port reaches the container, the watch says nothing (the container sees the gate's
connection); once a real firewall rule sends that port to another server, as a dead run's stale
port-forward does, it says so and names neither the dependency nor its readiness."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading

import pytest

from aidb_gate.services.lifecycle import _AddressWatch

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.geteuid() != 0 or shutil.which("iptables") is None,
                                 reason="plants a real nat rule: needs root and iptables")]


class _Impatient(_AddressWatch):
    FIRST_S = EVERY_S = HOLD_S = 0.0


def _other_server():
    """A server on loopback that accepts and holds connections and never speaks: another owner."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return server, held


def test_a_port_captured_by_another_server_is_said_and_a_reachable_one_is_not(deps_session) -> None:
    dep = deps_session.stack().deps["postgres"]
    watch = _Impatient(dep)
    assert watch.problem() is None and watch.problem() is None and watch.verdict == ""

    server, held = _other_server()
    rule = ["OUTPUT", "-p", "tcp", "-d", dep.host, "--dport", str(dep.host_port), "-j", "DNAT",
            "--to-destination", f"127.0.0.1:{server.getsockname()[1]}"]
    subprocess.run(["iptables", "-t", "nat", "-I", *rule], check=True)
    try:
        captured = _Impatient(dep)
        first, second = captured.problem(), captured.problem()
    finally:
        subprocess.run(["iptables", "-t", "nat", "-D", *rule], check=True)
        server.close()
        for conn in held:
            conn.close()
    assert first is None, "one look is not enough: the verdict waits for a second one"
    assert second is not None and "answered by another server" in second
    assert f"{dep.host}:{dep.host_port}" in second and "not of postgres" in second and "doctor" in second
    assert held, "the gate's connections went to the other server"
    # The rule is gone: the same address reaches the container again.
    assert _Impatient(dep).problem() is None
