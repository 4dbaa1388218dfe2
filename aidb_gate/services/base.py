"""base: what a dependency kind is - its spec, what it offers the service, and its contract.

Guarantees: `DependencyConfig` is one dependency as the configuration (or a compose service)
specifies it; `Offer` is how its container runs and what it hands the service under test;
`DependencyKind` is the one typed contract every plug-in (a module of this package, or one named
by an `aidb_gate.dependencies` entry point) satisfies - mypy checks this package's plug-ins
against it (services/__init__.py), and `registry()` checks an installed one's names when it
loads it, so a plug-in missing a name fails with one paragraph, not later in a run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from aidb_gate.compose import Healthcheck, Mount

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class DependencyConfig:
    """One backing service: which image to prefer, which recipe builds it, how it is judged."""

    name: str
    enabled: bool
    image: str
    recipe: str
    port: int
    critical: bool
    db: str = ""
    user: str = ""
    #: The service's readiness lists it by this name (the health and faults stages check that).
    reported: bool = True
    #: The plug-in that runs it (services/<kind>.py); "generic" for any other compose service.
    kind: str = ""
    #: Read from a compose file: the container runs with the service's own environment and
    #: command, and its plug-in reads what it offers from them.
    from_compose: bool = False
    environment: dict[str, str] = field(default_factory=dict, repr=False)
    command: tuple[str, ...] | None = field(default=None, repr=False)
    healthcheck: Healthcheck | None = None
    #: The compose depends_on condition the target waits for.
    condition: str = "service_started"
    mounts: tuple[Mount, ...] = ()


@dataclass(frozen=True)
class Offer:
    """How a dependency container runs, and what it offers the service under test."""

    environment: dict[str, str] = field(default_factory=dict, repr=False)
    command: list[str] | tuple[str, ...] | None = None  # an argv: testcontainers forwards one, though its hint says str
    #: Secret endpoint fields (password, api_key): redacted everywhere.
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    #: Other endpoint fields (db, user, url).
    extra: dict[str, str] = field(default_factory=dict)
    #: Files mounted read-only into the container ({container path: content}): how a plug-in
    #: hands over a secret, which then shows neither in `ps` nor in `inspect`.
    files: dict[str, str] = field(default_factory=dict, repr=False)


class Running(Protocol):
    """What a plug-in may read of its running dependency (lifecycle.Dependency is one)."""

    @property
    def config(self) -> DependencyConfig: ...
    @property
    def host(self) -> str: ...
    @property
    def host_port(self) -> int: ...
    @property
    def secrets(self) -> dict[str, str]: ...
    @property
    def extra(self) -> dict[str, str]: ...


class DependencyKind(Protocol):
    """One kind of dependency (postgres, redis, qdrant, generic...): a plug-in module's names, read-only."""

    #: Its name: "postgres".
    @property
    def KIND(self) -> str: ...
    #: The image repositories it stands for: ("postgres", "pgvector/pgvector").
    @property
    def IMAGES(self) -> tuple[str, ...]: ...
    #: The official image used when the configuration names none.
    @property
    def IMAGE(self) -> str: ...
    #: The local recipe under fixtures/images/ ("" = none).
    @property
    def RECIPE(self) -> str: ...
    #: The port it serves on (0: the compose service's first port).
    @property
    def PORT(self) -> int: ...
    #: Whether a service's readiness should fail while it is down.
    @property
    def CRITICAL(self) -> bool: ...
    #: The fault actions the faults stage may inject (stop, pause, kill).
    @property
    def FAULTS(self) -> tuple[str, ...]: ...
    #: Its backup/restore/fingerprint adapter ("" = it holds no data).
    @property
    def DATA(self) -> str: ...
    #: (regex, endpoint field, meaning): how a refused client shows in the service's log.
    @property
    def REFUSALS(self) -> tuple[tuple[str, str | None, str], ...]: ...

    def offer(self, dep: DependencyConfig, secret: Callable[[], str]) -> Offer: ...

    def is_ready(self, dependency: Running) -> bool: ...


#: The names a plug-in must define (checked when an installed one is loaded).
CONTRACT = ("KIND", "IMAGES", "IMAGE", "RECIPE", "PORT", "CRITICAL", "FAULTS", "DATA", "REFUSALS", "offer", "is_ready")
