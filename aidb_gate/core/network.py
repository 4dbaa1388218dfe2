"""network: one network per run, labelled, so the stack is isolated from every other run."""

from __future__ import annotations

from testcontainers.core.network import Network

from aidb_gate.core.run import Run


def run_network(run: Run) -> Network:
    """Create the run's bridge network (named and labelled after the run)."""
    net = Network(docker_network_kw={"labels": run.labels("network")})
    net.name = run.name("net")
    return net.create()
