"""services: one module per backing service, each starting it with testcontainers.

Every module exposes `start(run, network, image, dep, log_dir, role=None) -> Dependency`; `role`
(default: the dependency's name) names the container, its network alias and its log, so a
stage can start a second, fresh instance (a restore target) beside the first. The returned
`Dependency` gives the in-network endpoint the target's environment is rendered from, the
host-side port for the tests, and the log follower for the report.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aidb_gate.config import DependencyConfig
from aidb_gate.core.container import LOOPBACK, LogFollower, client_kw, host_port, publish_on_loopback
from aidb_gate.core.network import RunNetwork
from aidb_gate.core.run import Run
from aidb_gate.core.wait import PollResult, poll_until
from aidb_gate.errors import GateError
from aidb_gate.images import ImageInfo


@dataclass
class Dependency:
    """A running backing service of the stack."""

    name: str
    container: Any  # a testcontainers DockerContainer
    image: ImageInfo
    config: DependencyConfig
    log: LogFollower
    ready_s: float
    secrets: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    #: One readiness check from the host (the service module's own); used after a fault.
    check: Callable[[Dependency], bool] | None = None
    #: The fixed address on the run's network (see core/network.py for why it is fixed).
    ip: str = ""

    def wait_ready(self, deadline_s: float = 60.0) -> PollResult:
        """Poll the service's own readiness check until it passes or the deadline passes."""
        assert self.check is not None
        return poll_until(lambda: self.check(self), deadline_s, interval_s=0.2)

    @property
    def alias(self) -> str:
        return self.name

    @property
    def container_id(self) -> str:
        return self.container.get_container_id()

    @property
    def host(self) -> str:
        return LOOPBACK

    @property
    def host_port(self) -> int:
        return host_port(self.container, self.config.port)

    def endpoint(self) -> dict[str, str]:
        """What the target's env templates may name: `{postgres.host}` and friends."""
        values = {
            "host": self.alias,
            "port": str(self.config.port),
            "critical": "true" if self.config.critical else "false",
            **self.extra,
            **self.secrets,
        }
        return values


def start_container(container: Any, run: Run, ip: str, dep: DependencyConfig, image: ImageInfo,
                    log_dir: Path, role: str, **fields: Any) -> Dependency:
    """Start a testcontainers container made with `container_kwargs` (static address and alias on
    the run's network) with its port on loopback and its own wait strategy; follow its logs."""
    publish_on_loopback(container, dep.port)
    begin = time.monotonic()
    try:
        container.start()
    except Exception as err:
        wrapped = container.get_wrapped_container()
        tail = ""
        if wrapped is not None:
            tail = LogFollower(wrapped, log_dir / f"{role}.log", run.redactor).snapshot()[-2000:]
        raise GateError(
            f"The {role} dependency ({image.ref}, {image.source}) did not become ready: "
            f"{run.redactor(str(err)).strip()[:500]}. Its log ends with:\n{tail or '(no output)'}",
            stage="dependencies",
        ) from None
    follower = LogFollower(container.get_wrapped_container(), log_dir / f"{role}.log", run.redactor).start()
    return Dependency(role, container, image, dep, follower, time.monotonic() - begin, ip=ip, **fields)


def container_kwargs(run: Run, network: RunNetwork, role: str) -> tuple[str, dict[str, Any]]:
    """(static address, constructor kwargs) of a dependency's testcontainers container: the run's
    labels and name, the pinned client, and its place on the run's network."""
    ip, attach = network.attach_kwargs(role)
    return ip, {"labels": run.labels(role), "name": run.name(role), "docker_client_kw": client_kw(), **attach}
