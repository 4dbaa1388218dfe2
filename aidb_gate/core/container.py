"""container: the container helpers every service module uses.

Guarantees: the testcontainers client is configured once for the engine the gate found (no
Ryuk - clean-up is by label; the host is 127.0.0.1, never a gateway address); published ports
bind 127.0.0.1 only; a container's logs are followed into a file from its first byte, with
secrets redacted, so a container that dies in 100 ms still leaves everything it printed.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from aidb_gate.report import Redactor

LOOPBACK = "127.0.0.1"

# docker-py client settings for every testcontainers object; see client_kw().
_CLIENT_KW: dict[str, Any] = {}


def configure_testcontainers(docker_host: str, api_version: str | None = None) -> None:
    """Point testcontainers at the run's engine; called once, before any container starts."""
    import os

    from testcontainers.core.config import ConnectionMode, testcontainers_config

    os.environ["DOCKER_HOST"] = docker_host
    testcontainers_config.ryuk_disabled = True
    # This machine may look like it runs inside a container (/.dockerenv); testcontainers then
    # asks for a gateway IP, which Podman 4.3 cannot give. Published ports bind 127.0.0.1.
    testcontainers_config.connection_mode_override = ConnectionMode.docker_host
    testcontainers_config.tc_host_override = LOOPBACK
    _CLIENT_KW.clear()
    if api_version:
        _CLIENT_KW["version"] = api_version


def client_kw() -> dict[str, Any]:
    """`docker_client_kw` for testcontainers: each container and network makes its own docker-py
    client, and an unpinned one first asks the engine's `/version` (~0.4 s on Podman)."""
    return dict(_CLIENT_KW)


def publish_on_loopback(container: Any, *ports: int) -> None:
    """Publish ports on 127.0.0.1 with an engine-chosen host port (never on all interfaces)."""
    for port in ports:
        container.ports[f"{port}/tcp"] = (LOOPBACK, None)
        container.ports.pop(str(port), None)


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
