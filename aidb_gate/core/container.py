"""container: the container helpers every service module uses.

Guarantees: the testcontainers client is configured once for the engine the gate found (no
Ryuk - clean-up is by label). Published ports are reached where the engine publishes them
(`reach_for`): a local engine (a unix socket) publishes on 127.0.0.1 only and is reached there; a
remote one (`tcp://H:P`, `ssh://user@H`, the shape of docker:dind) publishes on its host's
interfaces and is reached at H, because that engine's 127.0.0.1 is not the gate's. A
container's logs are followed into a file from its first byte, with secrets redacted, so a
container that dies in 100 ms still leaves everything it printed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aidb_gate.core.text import Redactor

LOOPBACK = "127.0.0.1"
ALL_INTERFACES = "0.0.0.0"

# docker-py client settings for every testcontainers object; see client_kw().
_CLIENT_KW: dict[str, Any] = {}


@dataclass(frozen=True)
class Reach:
    """Where the engine publishes a container's ports (`publish`, an address of the engine's
    host) and where the gate connects to them (`host`, as the gate resolves it)."""

    publish: str = LOOPBACK
    host: str = LOOPBACK
    remote: bool = False
    docker_host: str = ""

    def url_host(self) -> str:
        return url_host(self.host)


def url_host(host: str) -> str:
    """A host as a URL's authority needs it (an IPv6 address in brackets)."""
    return f"[{host}]" if ":" in host else host


def reach_for(docker_host: str) -> Reach:
    """How the gate reaches what the engine at `docker_host` publishes.

    A unix socket (or a Windows pipe) means the engine shares this host's loopback: publish on
    127.0.0.1, never on all interfaces, and connect there. `tcp://`, `http(s)://` and `ssh://`
    name another host (or a namespace with its own loopback): its published ports answer on that
    host's interfaces only, so the gate connects to the host the URL names and the engine binds
    every interface (the client's route to it is unknown: dind's `docker` is a service name)."""
    parts = urlsplit(docker_host)
    if parts.scheme in ("tcp", "http", "https", "ssh") and parts.hostname:
        host = parts.hostname
        if host in ("localhost", "127.0.0.1", "::1"):
            return Reach(LOOPBACK, LOOPBACK, docker_host=docker_host)  # a TCP socket on this machine: its loopback is ours
        return Reach(ALL_INTERFACES, host, remote=True, docker_host=docker_host)
    return Reach(docker_host=docker_host)


_REACH = Reach()


def reach() -> Reach:
    """The run's `Reach`, set by configure_testcontainers (loopback until then)."""
    return _REACH


def configure_testcontainers(docker_host: str, api_version: str | None = None) -> None:
    """Point testcontainers at the run's engine; called once, before any container starts."""
    import os

    global _REACH

    from testcontainers.core.config import ConnectionMode, testcontainers_config

    os.environ["DOCKER_HOST"] = docker_host
    testcontainers_config.ryuk_disabled = True
    # This machine may look like it runs inside a container (/.dockerenv); testcontainers then
    # asks for a gateway IP, which Podman 4.3 cannot give. The host is where reach_for says.
    _REACH = reach_for(docker_host)
    testcontainers_config.connection_mode_override = ConnectionMode.docker_host
    testcontainers_config.tc_host_override = _REACH.host
    _CLIENT_KW.clear()
    if api_version:
        _CLIENT_KW["version"] = api_version


def client_kw() -> dict[str, Any]:
    """`docker_client_kw` for testcontainers: each container and network makes its own docker-py
    client, and an unpinned one first asks the engine's `/version` (~0.4 s on Podman)."""
    return dict(_CLIENT_KW)


def publish(container: Any, *ports: int) -> None:
    """Publish ports with an engine-chosen host port, on the run's `reach().publish` address
    (127.0.0.1 for a local engine: never all interfaces of the machine the gate runs on)."""
    for port in ports:
        container.ports[f"{port}/tcp"] = (_REACH.publish, None)
        container.ports.pop(str(port), None)


def proc_net_tcp(wrapped: Any) -> str | None:
    """The container's own /proc/net/tcp and tcp6 text, read through an exec; None when the image
    cannot say (no `cat`, exec refused)."""
    try:
        code, output = wrapped.exec_run(["cat", "/proc/net/tcp", "/proc/net/tcp6"], demux=False)
    except Exception:
        return None
    text = (output or b"").decode(errors="replace")
    if code not in (0, 1) or "local_address" not in text:  # 1: one of the two files is missing (no IPv6)
        return None
    return text


def listening_inside(wrapped: Any, port: int) -> bool | None:
    """Whether a process in the container listens on TCP `port` (see `listens_on`); None when the
    image cannot say."""
    text = proc_net_tcp(wrapped)
    return None if text is None else listens_on(text, port)


#: Loopback in /proc/net/tcp's hex (127.0.0.0/8 little-endian ends in 7F; ::1; ::ffff:127.x).
_LOOPBACK_HEX = ("00000000000000000000000001000000",)


def listens_on(proc_net_tcp: str, port: int) -> bool:
    """Whether /proc/net/tcp text has a socket in LISTEN state (0A) on `port` on an address other
    containers and published ports reach: a server bound to loopback only is the service's own
    fault (the corpus has one), never an address problem of the engine."""
    return any(not _is_loopback(local) for local, _remote in _sockets(proc_net_tcp, port, "0A"))


def _sockets(proc_net_tcp: str, port: int, state: str) -> Iterator[tuple[str, str]]:
    """(local address hex, remote address hex) of each socket in `state` whose local port is `port`."""
    for line in proc_net_tcp.splitlines():
        fields = line.split()
        if len(fields) > 3 and ":" in fields[1] and ":" in fields[2] and fields[3] == state:
            address, _, hex_port = fields[1].rpartition(":")
            try:
                if int(hex_port, 16) == port:
                    yield address, fields[2].rpartition(":")[0]
            except ValueError:
                continue


def _is_loopback(address_hex: str) -> bool:
    v4 = (address_hex[-8:] if len(address_hex) == 32 and address_hex[:24] in ("0" * 24, "0000000000000000FFFF0000")
          else address_hex)
    return (len(v4) == 8 and v4.upper().endswith("7F")) or address_hex in _LOOPBACK_HEX


def connections_from_outside(proc_net_tcp: str, port: int) -> int:
    """How many established connections to `port` came from outside the container (not from its
    own loopback, where a healthcheck or the server's own tooling connects)."""
    return sum(1 for _local, remote in _sockets(proc_net_tcp, port, "01") if not _is_loopback(remote))


def unreachable_address(name: str, where: Reach, host_port: int, port: int, said: str) -> str:
    """The verdict on an address that does not reach a container whose server is up: it names the
    engine, where it publishes and where the gate connected, and never blames the service."""
    return (f"The gate cannot reach the {name} container through its published port, although {name} listens on "
            f"{port} inside it: {where.host}:{host_port} gave \"{said}\". The engine at {where.docker_host} publishes "
            f"ports on {where.publish} of its own host, so this is an address problem of this machine, not of "
            f"{name}: " + ("make that host's published ports reachable from where the gate runs." if where.remote else
                          "if the engine runs elsewhere (another host, a CI service beside this job, another network "
                          "namespace), set DOCKER_HOST=tcp://<its address>:<port> so the gate connects there; if a "
                          "stale port-forward rule captures the port, `aidb-gate doctor` names it."))


def captured_address(name: str, where: Reach, host_port: int, port: int) -> str:
    """The verdict on an address that answers, but not from the container: a stale port-forward
    rule, a proxy or another server owns it. Never blamed on the service."""
    return (f"The gate's connection to the {name} dependency at {where.host}:{host_port} was answered by another "
            f"server, not by the {name} container: {name} listens on {port} inside it, and while the gate held "
            f"that connection open the container saw no connection from outside. Something else owns that address "
            f"on the engine's host ({where.docker_host}): a port-forward rule a dead run left (`aidb-gate doctor` "
            f"names it and how to remove it), or a proxy or tunnel bound to the same port. This is an address "
            f"problem of this machine, not of {name}.")


def host_port(container: Any, port: int) -> int:
    return int(container.get_exposed_port(port))


class LogFollower:
    """Follows one container's stdout+stderr into a file, line by line, redacted."""

    def __init__(self, wrapped: Any, path: Path, redactor: Redactor):
        self.path = path
        self._wrapped = wrapped
        self._redactor = redactor
        self._thread = threading.Thread(target=self._run, name=f"logs-{path.stem}", daemon=True)
        self.lines = 0

    def start(self) -> LogFollower:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_bytes(b"")
        self._thread.start()
        return self

    def _run(self) -> None:
        buffer = b""
        try:
            with self.path.open("ab") as out:
                for chunk in self._wrapped.logs(stream=True, follow=True, stdout=True, stderr=True):
                    buffer += chunk
                    *complete, buffer = buffer.split(b"\n")
                    for line in complete:
                        out.write(self._redactor.bytes(line) + b"\n")
                        self.lines += 1
                    out.flush()
                if buffer:
                    out.write(self._redactor.bytes(buffer) + b"\n")
        except Exception:
            # The stream ends when the container is removed; the final snapshot() covers the rest.
            return

    def snapshot(self) -> str:
        """The complete log as the engine holds it now (redacted), also written to the file."""
        try:
            data = self._wrapped.logs(stdout=True, stderr=True)
        except Exception:
            return self.path.read_text(errors="replace") if self.path.exists() else ""
        text = self._redactor(data.decode("utf-8", errors="replace"))
        self.path.write_text(text)
        return text

    def join(self, timeout: float = 2.0) -> None:
        self._thread.join(timeout)
