"""firewall: what a dead run left in this host's firewall and links, found and explained.

Guarantees: `leftovers` names every Podman (netavark) port-forward rule and bridge whose network
the engine no longer has - a run whose network teardown never happened (killed, or run in a
mount namespace without the host's /run/netns) leaves them, and a stale DNAT rule then captures
the same host port when the engine hands it to a later run's container. Each finding carries
the exact commands that remove it. Nothing is removed here: the rules belong to the host, and
the operator decides. Reading needs root and a local engine; otherwise the check says it could
not run. The parsing is pure (`stale_forwards`, `stale_bridges`) and unit-tested.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

#: netavark's per-port jump, e.g. `-A NETAVARK-HOSTPORT-DNAT -p tcp -m tcp --dport 42325 -m comment
#: --comment "dnat name: NET id: ID" -j NETAVARK-DN-HASH`
_DNAT = re.compile(r'^-A NETAVARK-HOSTPORT-DNAT (?P<spec>.*?--dport (?P<port>\d+).*?--comment "dnat name: (?P<name>\S+) '
                   r'id: (?P<id>[0-9a-f]+)".*-j (?P<chain>NETAVARK-DN-[0-9A-F]+))\s*$')
_BRIDGE = re.compile(r"^(podman|cni-podman)\d+$")


@dataclass(frozen=True)
class Leftover:
    """One stale firewall rule or bridge: what it is, and the commands that remove it."""

    what: str
    remove: tuple[str, ...]

    def line(self) -> str:
        return f"{self.what}; remove it with: {' && '.join(self.remove)}"


def stale_forwards(nat_rules: str, live_networks: set[str]) -> list[Leftover]:
    """Port-forward rules (`iptables -t nat -S` text) of networks whose name is not in `live_networks`.

    Matched by name, which is unique per engine: the id in netavark's comment is neither the id
    the compat API nor the one the libpod API shows for the same network (Podman 4.3)."""
    found: list[Leftover] = []
    chains_done: set[str] = set()
    for line in nat_rules.splitlines():
        match = _DNAT.match(line.strip())
        if not match or match["name"] in live_networks:
            continue
        commands = [f"iptables -t nat -D NETAVARK-HOSTPORT-DNAT {match['spec']}"]
        if match["chain"] not in chains_done:
            chains_done.add(match["chain"])
            commands += [f"iptables -t nat -F {match['chain']}", f"iptables -t nat -X {match['chain']}"]
        found.append(Leftover(f"host port {match['port']} is forwarded by a rule of network {match['name']} "
                              f"({match['id'][:12]}), which the engine no longer has: a container given port "
                              f"{match['port']} later is unreachable through it", tuple(commands)))
    return found


def stale_bridges(bridges: list[str], live_interfaces: set[str]) -> list[Leftover]:
    """Podman bridges (`podmanN`, `cni-podmanN`) that no network of the engine names."""
    return [Leftover(f"bridge {name} belongs to no network of the engine", (f"ip link delete {name}",))
            for name in bridges if _BRIDGE.match(name) and name not in live_interfaces]


def leftovers(podman_client) -> tuple[list[Leftover], str]:
    """(stale rules and bridges on this host, why the check could not run or ""), for a local Podman
    reached with a podman-py client (its libpod API names each network's bridge)."""
    iptables = shutil.which("iptables") or shutil.which("iptables", path="/usr/sbin:/sbin")
    if iptables is None:
        return [], "iptables is not installed here"
    try:
        networks = podman_client.networks.list()
    except Exception as err:
        return [], f"the engine did not list its networks ({type(err).__name__})"
    names = {n.name for n in networks}
    interfaces = {str((n.attrs or {}).get("network_interface") or "") for n in networks} - {""}
    rules = subprocess.run([iptables, "-t", "nat", "-S"], capture_output=True, text=True, timeout=30, check=False)
    if rules.returncode != 0:
        return [], f"`iptables -t nat -S` failed ({rules.stderr.strip()[:200] or rules.returncode}): it needs root"
    links = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True, timeout=30,
                           check=False)
    bridges = [ln.split(":")[1].strip().split("@")[0] for ln in links.stdout.splitlines() if ln.count(":") >= 2]
    return stale_forwards(rules.stdout, names) + stale_bridges(bridges, interfaces), ""


def host_leftovers(engine) -> tuple[list[Leftover], str]:
    """`leftovers` for the run's engine where this host's firewall is the engine's: a local Podman,
    as root. Elsewhere ([], why the check does not apply)."""
    import os

    if engine.kind != "podman" or not engine.docker_host.startswith("unix://"):
        return [], f"the engine ({engine.kind} at {engine.docker_host}) keeps its firewall rules where this host cannot read them"
    if os.geteuid() != 0:
        return [], "reading the host's firewall rules needs root (rootless Podman keeps its own in a namespace)"
    client = engine.podman_client(30)
    try:
        return leftovers(client)
    finally:
        client.close()
