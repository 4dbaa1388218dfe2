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
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from docker import version as docker_version
from docker.types import EndpointConfig, IPAMConfig, IPAMPool
from testcontainers.core.network import Network

from aidb_gate.core.container import client_kw
from aidb_gate.core.run import Run

#: Static addresses start here, above the engine's own dynamic allocations.
FIRST_HOST = 100
#: Run networks take a /24 from here. The gate names the subnet itself because Docker grants
#: fixed addresses only on networks created with an explicit subnet (moby/moby#45806); Podman
#: accepts the same request, so both engines run one code path.
SUBNET_POOL = ipaddress.IPv4Network("10.213.0.0/16")
#: Another run may take the same free subnet between our look and our create: try again.
CREATE_TRIES = 6
T = TypeVar("T")


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
        """(address, testcontainers constructor kwargs) that put a container on this network at a
        fixed address: `network` and `network_aliases` are DockerContainer's own parameters, and the
        extra `networking_config` (the address and MAC) overrides the one it derives from them."""
        ip = self.allocate()
        return ip, {"network": self.tc, "network_aliases": [alias], "networking_config": {self.name: fixed_endpoint(alias, ip)}}

    def remove(self) -> None:
        self.tc.remove()


def mac_for(ip: str) -> str:
    """A fixed, locally administered MAC derived from the address.

    A restarted container gets a new veth; with a new MAC behind the same IP, its peers' ARP
    caches point at nothing for up to a minute. The same MAC keeps them valid.
    """
    return "02:42:" + ":".join(f"{b:02x}" for b in ipaddress.IPv4Address(ip).packed)


def fixed_endpoint(alias: str, ip: str) -> EndpointConfig:
    """A container's place on a network: its alias, a fixed address and the MAC derived from it."""
    return EndpointConfig(docker_version.__version__, aliases=[alias], ipv4_address=ip, mac_address=mac_for(ip))


def used_subnets(client: Any) -> list[ipaddress.IPv4Network]:
    """The IPv4 subnets of every network the engine has."""
    used = []
    for network in client.networks.list():
        for config in ((network.attrs or {}).get("IPAM") or {}).get("Config") or []:
            try:
                subnet = ipaddress.ip_network(config.get("Subnet", ""), strict=False)
            except ValueError:
                continue
            if isinstance(subnet, ipaddress.IPv4Network):
                used.append(subnet)
    return used


def free_subnet(used: list[ipaddress.IPv4Network], rng: random.Random | None = None,
                pool: ipaddress.IPv4Network = SUBNET_POOL) -> ipaddress.IPv4Network:
    """A /24 of the pool that overlaps no used subnet, picked at random so that runs starting
    together rarely pick the same one."""
    free = [s for s in pool.subnets(new_prefix=24) if not any(s.overlaps(u) for u in used)]
    if not free:
        raise RuntimeError(f"every /24 of {pool} is in use by another network; remove old networks "
                           "(`aidb-gate clean`) and run again")
    return (rng or random).choice(free)


def ipam_for(subnet: ipaddress.IPv4Network) -> IPAMConfig:
    return IPAMConfig(pool_configs=[IPAMPool(subnet=str(subnet), gateway=str(subnet.network_address + 1))])


def taken_meanwhile(err: Exception) -> bool:
    """A concurrent run took the subnet between our look and our create: Docker says "overlaps",
    Podman "already used"."""
    return any(word in str(err).lower() for word in ("overlap", "already used", "in use"))


def on_free_subnet(client: Any, name: str, create: Callable[[ipaddress.IPv4Network], T]) -> tuple[T, ipaddress.IPv4Network]:
    """`create(subnet)` on a free subnet, tried again on another while a concurrent run takes it."""
    last: Exception | None = None
    for _ in range(CREATE_TRIES):
        subnet = free_subnet(used_subnets(client))
        try:
            return create(subnet), subnet
        except Exception as err:
            if not taken_meanwhile(err):
                raise
            last = err
    raise RuntimeError(f"no free subnet for network {name} after {CREATE_TRIES} tries: {last}")


def create_bridge(client: Any, name: str, labels: dict[str, str]) -> tuple[Any, ipaddress.IPv4Network]:
    """A bridge network on a free subnet of its own, through docker-py: (network, subnet)."""
    return on_free_subnet(client, name, lambda subnet: client.networks.create(
        name, driver="bridge", labels=labels, ipam=ipam_for(subnet)))


def run_network(run: Run) -> RunNetwork:
    """Create the run's bridge network (named and labelled after the run) on a subnet of its own,
    through testcontainers' public Network API."""
    import docker

    def create(subnet: ipaddress.IPv4Network) -> Network:
        net = Network(docker_client_kw=client_kw(),
                      docker_network_kw={"labels": run.labels("network"), "ipam": ipam_for(subnet)})
        net.name = run.name("net")
        return net.create()

    client = docker.from_env(**client_kw())  # as testcontainers makes its own: DOCKER_HOST, pinned version
    try:
        net, subnet = on_free_subnet(client, run.name("net"), create)
    finally:
        client.close()
    return RunNetwork(net, subnet)
