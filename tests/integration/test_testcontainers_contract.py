"""What the gate relies on in testcontainers beyond its documented API, checked on real containers.

The public API has no way to bind a published port to 127.0.0.1 only, nor to give a container a
fixed address and MAC on a network. The gate does both through values testcontainers passes
through to docker-py (`ports` and an extra `networking_config`; see core/container.py and
core/network.py). If an upgrade stops passing them through, these fail loudly instead of the gate
publishing services on every interface or losing its /etc/hosts addresses.
"""

from __future__ import annotations

import ipaddress

import pytest

from aidb_gate.core.network import mac_for

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("name", ["postgres", "qdrant"])
def test_published_ports_bind_loopback_only(deps_session, name: str) -> None:
    dep = deps_session.stack().deps[name]
    wrapped = dep.container.get_wrapped_container()
    wrapped.reload()
    bindings = [b for binds in (wrapped.attrs["NetworkSettings"]["Ports"] or {}).values() for b in binds or []]
    assert bindings, f"{name} publishes no port at all"
    assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}, bindings


@pytest.mark.parametrize("name", ["postgres", "qdrant"])
def test_containers_keep_their_fixed_address_alias_and_mac(deps_session, name: str) -> None:
    dep = deps_session.stack().deps[name]
    network = deps_session.stack().network
    wrapped = dep.container.get_wrapped_container()
    wrapped.reload()
    endpoint = wrapped.attrs["NetworkSettings"]["Networks"][network.name]
    assert endpoint["IPAddress"] == dep.ip
    assert endpoint["MacAddress"].lower() == mac_for(dep.ip)
    assert ipaddress.ip_address(dep.ip) in network.subnet
    assert name in (endpoint.get("Aliases") or []), endpoint

