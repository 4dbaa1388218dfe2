"""lifecycle: a dependency started, watched until ready, and what the stages hold of it.

Guarantees: `start` is the one way every dependency starts: labelled, named, at a fixed address
and alias on the run's network, its port published where the engine publishes (core/container.py),
its compose mounts made, and ready when its plug-in says so and, under `service_healthy`, when
its compose healthcheck passes (with compose's own timing). A container that exits fails at
once; an address that does not reach the container (refused, or answered by another server)
is a verdict on the machine, said within about 25 s, never blamed on the dependency.
"""


from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aidb_gate.compose import Healthcheck
from aidb_gate.core.container import (
    LogFollower,
    captured_address,
    client_kw,
    connections_from_outside,
    host_port,
    listening_inside,
    listens_on,
    proc_net_tcp,
    publish,
    reach,
    unreachable_address,
)
from aidb_gate.core.mounts import MountPlan
from aidb_gate.core.network import RunNetwork
from aidb_gate.core.run import Run
from aidb_gate.core.text import clip
from aidb_gate.core.wait import PollResult, poll_until, run_healthcheck
from aidb_gate.errors import GateError
from aidb_gate.images import ImageInfo
from aidb_gate.pipeline import StageName
from aidb_gate.services import plugin
from aidb_gate.services.base import DependencyConfig, DependencyKind, Offer, Running

#: Seconds a dependency may take to become ready (its healthcheck's own timing may ask for more).
READY_DEADLINE_S = 120.0


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
    #: One readiness check from the host (the plug-in's own); used after a fault.
    check: Callable[[Dependency], bool] | None = None
    #: The fixed address on the run's network (see core/network.py for why it is fixed).
    ip: str = ""

    def wait_ready(self, deadline_s: float = 60.0) -> PollResult:
        """Poll the plug-in's readiness check until it passes or the deadline passes."""
        assert self.check is not None
        return poll_until(functools.partial(self.check, self), deadline_s, interval_s=0.2)

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def alias(self) -> str:
        return self.name

    @property
    def container_id(self) -> str:
        return str(self.container.get_container_id())

    @property
    def host(self) -> str:
        return reach().host

    @property
    def host_port(self) -> int:
        return host_port(self.container, self.config.port)

    def endpoint(self) -> dict[str, str]:
        """What the target's env templates may name: `{postgres.host}` and friends."""
        return {
            "host": self.alias,
            "port": str(self.config.port),
            "critical": "true" if self.config.critical else "false",
            **self.extra,
            **self.secrets,
        }


def start(run: Run, network: RunNetwork, image: ImageInfo, dep: DependencyConfig, log_dir: Path,
          role: str | None = None, mounts: MountPlan | None = None) -> Dependency:
    """Start one dependency and wait until it is ready (see the module docstring)."""
    from testcontainers.core.container import DockerContainer

    role = role or dep.name
    kind = plugin(dep.kind)
    offer: Offer = kind.offer(dep, run.secret)
    for value in offer.secrets.values():
        run.redactor.add(value)
    ip, attach = network.attach_kwargs(role)
    if offer.files and mounts is None:
        raise GateError(f"The {role} dependency needs secret files mounted, and no mount plan was given.",
                        stage=StageName.DEPENDENCIES)
    runtime = mounts.kwargs(role, dep.mounts, files=offer.files) if mounts is not None else {}
    container = DockerContainer(image.ref, env=offer.environment, command=offer.command, labels=run.labels(role),  # type: ignore[arg-type]
                                name=run.name(role), docker_client_kw=client_kw(), **attach, **runtime)
    if dep.port:
        publish(container, dep.port)
    begin = time.monotonic()
    log_path = log_dir / f"{role}.log"
    try:
        container.start()
    except Exception as err:
        raise GateError(f"The {role} dependency ({image.ref}, {image.source}) did not start: "
                        f"{clip(run.redactor(str(err)).strip(), 500)}", stage=StageName.DEPENDENCIES) from None
    follower = LogFollower(container.get_wrapped_container(), log_path, run.redactor).start()
    dependency = Dependency(role, container, image, dep, follower, 0.0, secrets=dict(offer.secrets),
                            extra=dict(offer.extra), check=kind.is_ready, ip=ip)
    _wait(dependency, kind, run)
    dependency.ready_s = time.monotonic() - begin
    return dependency


def _stopped(container: Any) -> str | None:
    wrapped = container.get_wrapped_container()
    wrapped.reload()
    if wrapped.status not in ("running", "created"):
        return f"the container is {wrapped.status}"
    return None


def _wait(dependency: Dependency, kind: DependencyKind, run: Run) -> None:
    """Ready = the plug-in's check passes and, under service_healthy, the compose healthcheck too.

    The healthcheck gets the time compose gives it before it calls a container unhealthy
    (start_period + retries x interval), so a check that never passes fails as soon as it would
    in production, and one that passes late but within that time is not failed."""
    dep, container = dependency.config, dependency.container
    address = _AddressWatch(dependency)
    result = poll_until(lambda: kind.is_ready(dependency), READY_DEADLINE_S, interval_s=0.25,
                        stop=lambda: _stopped(container) or address.problem())
    if address.verdict:
        raise GateError(address.verdict, stage=StageName.ENGINE)
    problem = "" if result.ok else (f"its readiness check did not pass within {READY_DEADLINE_S:.0f} s "
                                    f"({result.last_error or 'no answer'})")
    hc: Healthcheck | None = dep.healthcheck
    if not problem and hc is not None and dep.condition == "service_healthy":
        budget = max(5.0, hc.start_period_s + hc.retries * hc.interval_s)
        health = run_healthcheck(container, hc, budget, stop=lambda: _stopped(container))
        if not health.ok:
            problem = (f"its compose healthcheck `{hc.quoted()}` never passed within {health.elapsed_s:.0f} s "
                       f"(start_period + retries x interval), so a service that waits for it (condition: "
                       f"service_healthy) never starts; last result: "
                       f"{clip(run.redactor(str(health.value or health.last_error)).strip(), 400) or '(none)'}")
    if problem:
        tail = clip(dependency.log.snapshot(), 2000, tail=True)
        raise GateError(f"The {dependency.name} dependency ({dependency.image.ref}, {dependency.image.source}) did not "
                        f"become ready: {problem}. Its log ends with:\n{tail or '(no output)'}", stage=StageName.DEPENDENCIES)


class _AddressWatch:
    """While a dependency is not ready, checks now and then that its published address reaches it,
    and says at once (instead of after the whole wait) when it does not:

    - refused or silent while the server listens inside its container: the engine's address is
      not where the gate connects (or a stale rule sends the port nowhere);
    - answered, the server listening inside, the readiness check still failing, yet the
      container sees no connection from outside while the gate holds one open (twice in a row):
      another server owns the address (a stale port-forward rule of a dead run, a proxy)."""

    #: The first look, the pause between looks, and how long the address must keep failing while
    #: the server listens. Podman on a loaded 2-core machine was seen refusing a published port for
    #: 2-5 s after the server inside listened (its port forwarding lags the start): a wrong or
    #: captured address fails for ever, so the verdict waits 20 s, not the whole 120 s deadline.
    FIRST_S, EVERY_S, HOLD_S = 2.0, 2.0, 20.0
    #: How long a held connection may take to show inside (a userland proxy connects on accept).
    SEEN_WITHIN_S = 1.5

    def __init__(self, dependency: Dependency):
        self.dependency = dependency
        self.begin = time.monotonic()
        self.next_at = self.begin + self.FIRST_S
        self.since: float | None = None
        self.answered_since: float | None = None
        self.unseen = 0
        self.verdict = ""

    def problem(self) -> str | None:
        import socket

        dep = self.dependency
        if not dep.config.port or time.monotonic() < self.next_at:
            return None
        self.next_at = time.monotonic() + self.EVERY_S
        try:
            with socket.create_connection((dep.host, dep.host_port), timeout=2) as held:
                self.since = None
                return self._answered(held)
        except OSError as err:
            said = err.strerror or type(err).__name__
        except Exception:  # no published port yet: the engine has not finished starting it
            return None
        self.answered_since, self.unseen = None, 0
        if not listening_inside(dep.container.get_wrapped_container(), dep.config.port):
            self.since = None
            return None
        self.since = self.since or time.monotonic()
        if time.monotonic() - self.since < self.HOLD_S:
            return None
        self.verdict = unreachable_address(dep.name, reach(), dep.host_port, dep.config.port, said)
        return self.verdict

    def _answered(self, held: Any) -> str | None:
        """The address answers and the dependency is still not ready: whose answer is it?"""
        dep = self.dependency
        self.answered_since = self.answered_since or time.monotonic()
        if time.monotonic() - self.answered_since < self.HOLD_S:
            return None
        wrapped = dep.container.get_wrapped_container()

        def sees_the_gate() -> bool:  # or cannot say: then whatever is not ready is the dependency's own
            text = proc_net_tcp(wrapped)
            return (text is None or not listens_on(text, dep.config.port)
                    or connections_from_outside(text, dep.config.port) > 0)

        if poll_until(sees_the_gate, self.SEEN_WITHIN_S, interval_s=0.3).ok:
            self.unseen = 0
            return None
        self.unseen += 1
        if self.unseen < 2:
            return None
        self.verdict = captured_address(dep.name, reach(), dep.host_port, dep.config.port)
        return self.verdict


def tcp_answers(dependency: Running) -> bool:
    """The dependency's port accepts a TCP connection from the host."""
    import socket

    with socket.create_connection((dependency.host, dependency.host_port), timeout=2):
        return True
