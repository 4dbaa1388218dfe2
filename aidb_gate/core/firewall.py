"""firewall: what a dead run left in the engine's firewall and links, found and explained.

Guarantees: `host_leftovers` names every port-forward rule and bridge whose network the engine
no longer has - Podman's (netavark: `NETAVARK-HOSTPORT-DNAT` jumps, `podmanN` bridges, matched by
network name) and Docker's (`DOCKER` DNAT rules and `br-<id>` bridges, matched by bridge). A run
whose network teardown never happened (killed, or run in a mount namespace without the host's
/run/netns) leaves them, and a stale DNAT rule then captures the same host port when the engine
hands it to a later run's container. Each finding carries the exact commands that remove it,
in the engine's own network namespace (found from the process behind its socket). Nothing is
removed here: the rules belong to the host, and the operator decides. Reading needs root and a
local engine; otherwise the check says why it could not run. The parsing is pure
(`stale_forwards`, `stale_bridges`, `stale_docker_forwards`, `stale_docker_bridges`) and
unit-tested.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aidb_gate.core.engine import Engine

#: netavark's per-port jump, e.g. `-A NETAVARK-HOSTPORT-DNAT -p tcp -m tcp --dport 42325 -m comment
#: --comment "dnat name: NET id: ID" -j NETAVARK-DN-HASH`
_DNAT = re.compile(r'^-A NETAVARK-HOSTPORT-DNAT (?P<spec>.*?--dport (?P<port>\d+).*?--comment "dnat name: (?P<name>\S+) '
                   r'id: (?P<id>[0-9a-f]+)".*-j (?P<chain>NETAVARK-DN-[0-9A-F]+))\s*$')
_BRIDGE = re.compile(r"^(podman|cni-podman)\d+$")
#: Docker's per-port rule, e.g. `-A DOCKER -d 127.0.0.1/32 ! -i br-1a2b3c4d5e6f -p tcp -m tcp --dport
#: 49153 -j DNAT --to-destination 172.18.0.2:5432`
_DOCKER_DNAT = re.compile(r"^-A DOCKER (?P<spec>.*?! -i (?P<bridge>\S+) .*?--dport (?P<port>\d+) .*?-j DNAT "
                          r"--to-destination (?P<to>\S+).*)$")
_DOCKER_BRIDGE = re.compile(r"^br-[0-9a-f]{12}$")


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


def _docker_bridge(network: dict[str, Any]) -> str:
    options = network.get("Options") or {}
    return str(options.get("com.docker.network.bridge.name") or f"br-{str(network.get('Id') or '')[:12]}")


def stale_docker_forwards(nat_rules: str, live_bridges: set[str]) -> list[Leftover]:
    """Docker's port-forward rules (`iptables -t nat -S` text, chain DOCKER) whose bridge belongs to
    no network of the engine. Docker names a network's bridge `br-<first 12 of its id>` (or its
    `com.docker.network.bridge.name` option) and every DNAT rule of a published port excludes it."""
    found: list[Leftover] = []
    for line in nat_rules.splitlines():
        match = _DOCKER_DNAT.match(line.strip())
        if not match or match["bridge"] in live_bridges:
            continue
        found.append(Leftover(f"host port {match['port']} is forwarded to {match['to']} by a rule of bridge "
                              f"{match['bridge']}, whose network the engine no longer has: a container given port "
                              f"{match['port']} later is unreachable through it",
                              (f"iptables -t nat -D DOCKER {match['spec']}",)))
    return found


def stale_docker_bridges(bridges: list[str], live_bridges: set[str]) -> list[Leftover]:
    """Docker's network bridges (`br-<id>`) that no network of the engine names."""
    return [Leftover(f"bridge {name} belongs to no network of the engine", (f"ip link delete {name}",))
            for name in bridges if _DOCKER_BRIDGE.match(name) and name not in live_bridges]


def engine_pid(docker_host: str) -> int | None:
    """The pid of the process that listens on a local engine socket (SO_PEERCRED), else None. For a
    socket-activated service it is the activator's (systemd, pid 1), which shares its network."""
    import socket
    import struct

    if not docker_host.startswith("unix://"):
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(5)
            sock.connect(docker_host.removeprefix("unix://"))
            pid, _uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    except OSError:
        return None
    return pid or None


def _in_netns(netns: str | None, argv: list[str]) -> list[str]:
    return ["nsenter", f"--net={netns}", *argv] if netns else argv


def in_namespace(found: list[Leftover], netns: str | None) -> list[Leftover]:
    """The leftovers with their removal commands run in `netns` (None: as they are)."""
    if not netns:
        return found
    return [Leftover(f.what, tuple(shlex.join(_in_netns(netns, [])) + " " + c for c in f.remove)) for f in found]


def leftovers(engine: Engine, netns: str | None = None) -> tuple[list[Leftover], str]:
    """(stale rules and bridges of the engine's network namespace, why the check could not run or "")
    for a local engine: its live networks from its own API, its rules and bridges read in `netns`
    (None: this process's own)."""
    iptables = shutil.which("iptables") or shutil.which("iptables", path="/usr/sbin:/sbin")
    if iptables is None:
        return [], "iptables is not installed here"
    try:
        live = _live_networks(engine)
    except Exception as err:
        return [], f"the engine did not list its networks ({type(err).__name__})"
    rules = subprocess.run(_in_netns(netns, [iptables, "-t", "nat", "-S"]), capture_output=True, text=True, timeout=30,
                           check=False)
    if rules.returncode != 0:
        return [], f"`iptables -t nat -S` failed ({rules.stderr.strip()[:200] or rules.returncode}): it needs root"
    links = subprocess.run(_in_netns(netns, ["ip", "-o", "link", "show", "type", "bridge"]), capture_output=True,
                           text=True, timeout=30, check=False)
    bridges = [ln.split(":")[1].strip().split("@")[0] for ln in links.stdout.splitlines() if ln.count(":") >= 2]
    names, interfaces = live
    if engine.kind == "podman":
        found = stale_forwards(rules.stdout, names) + stale_bridges(bridges, interfaces)
    else:
        found = stale_docker_forwards(rules.stdout, interfaces) + stale_docker_bridges(bridges, interfaces)
    return in_namespace(found, netns), ""


def _live_networks(engine: Engine) -> tuple[set[str], set[str]]:
    """(network names, bridge interfaces) the engine has now, from its own API: libpod names each
    network's bridge; Docker's is derived from the network's id or option."""
    if engine.kind == "podman":
        client = engine.podman_client(30)
        try:
            networks = client.networks.list()
        finally:
            client.close()
        names = {n.name for n in networks}
        return names, {str((n.attrs or {}).get("network_interface") or "") for n in networks} - {""}
    listed = engine.shared.api.networks()
    return {str(n.get("Name")) for n in listed}, {_docker_bridge(n) for n in listed if n.get("Driver") == "bridge"}


def host_leftovers(engine: Engine) -> tuple[list[Leftover], str]:
    """`leftovers` for the run's engine where this host can read its firewall: a local engine (a
    unix socket), as root, in the network namespace of the process behind the socket (a dockerd
    beside Podman often has one of its own). Elsewhere ([], why the check does not apply)."""
    import os

    if not engine.docker_host.startswith("unix://"):
        return [], f"the engine ({engine.kind} at {engine.docker_host}) keeps its firewall rules where this host cannot read them"
    if os.geteuid() != 0:
        return [], "reading the host's firewall rules needs root (rootless Podman keeps its own in a namespace)"
    try:
        netns = engine_netns(engine.docker_host)
    except OSError as err:
        return [], f"the engine's process is not visible here ({err.strerror}: another PID namespace?)"
    return leftovers(engine, netns)


def engine_netns(docker_host: str) -> str | None:
    """The network namespace (a /proc path) of the process behind a local engine socket when it is
    not this process's own, else None (ours, or not found). OSError: its /proc entry is hidden."""
    import os

    pid = engine_pid(docker_host)
    if pid is None:
        return None
    theirs = f"/proc/{pid}/ns/net"
    return theirs if os.readlink(theirs) != os.readlink("/proc/self/ns/net") else None
