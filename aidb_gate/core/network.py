"""network: one network per run, labelled, with a fixed address for every container on it.

Guarantees: the run's containers are isolated from every other run. Each container gets a
static IPv4 address on the run's subnet (it survives restarts, which fault injection does), so
the target can resolve its dependencies through /etc/hosts entries. That matters because
aardvark-dns before 1.11 tears down its listeners whenever any container starts or stops on
the host (containers/aardvark-dns#389), and a name lookup at that moment fails: a flake the
gate must never turn into a verdict.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass, field
from typing import Any

from docker import version as docker_version
from docker.types import EndpointConfig
from testcontainers.core.network import Network

from aidb_gate.core.container import client_kw
from aidb_gate.core.run import Run

#: Static addresses start here, above the engine's own dynamic allocations.
FIRST_HOST = 100


@dataclass
class RunNetwork:
    """The run's network and the static addresses handed out on it."""

    tc: Network
    subnet: ipaddress.IPv4Network
    _next: int = FIRST_HOST
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def name(self) -> str:
        return self.tc.name

    def allocate(self) -> str:
        with self._lock:
            address = self.subnet.network_address + self._next
            self._next += 1
        if address not in self.subnet or address == self.subnet.broadcast_address:
            raise RuntimeError(f"the run's subnet {self.subnet} has no free static address left")
        return str(address)

    def attach_kwargs(self, alias: str) -> tuple[str, dict[str, Any]]:
        """(address, create() kwargs) that put a container on this network at a fixed address."""
        ip = self.allocate()
        config = EndpointConfig(docker_version.__version__, aliases=[alias], ipv4_address=ip, mac_address=mac_for(ip))
        return ip, {"network": self.name, "networking_config": {self.name: config}}

    def remove(self) -> None:
        self.tc.remove()


def mac_for(ip: str) -> str:
    """A fixed, locally administered MAC derived from the address.

    A restarted container gets a new veth; with a new MAC behind the same IP, its peers' ARP
    caches point at nothing for up to a minute. The same MAC keeps them valid.
    """
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def run_network(run: Run) -> RunNetwork:
    """Create the run's bridge network (named and labelled after the run)."""
    net = Network(docker_client_kw=client_kw(), docker_network_kw={"labels": run.labels("network")})
    net.name = run.name("net")
    net.create()
    docker_net = net._network  # testcontainers keeps the docker-py object here
    docker_net.reload()
    subnet = ipaddress.ip_network(docker_net.attrs["IPAM"]["Config"][0]["Subnet"])
    return RunNetwork(net, subnet)
