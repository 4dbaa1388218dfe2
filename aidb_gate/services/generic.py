"""generic: any compose service no plug-in stands for (an embeddings server, a tracer, ...).

Guarantees: it runs from its own image with its compose environment and command; it is ready
when its port (the first of its compose `ports`/`expose`) accepts a connection, or, without a
port, once it runs - its compose healthcheck is judged under `service_healthy` like every
dependency's. It has no data adapter and no fault actions: the gate cannot know what the
service under test should report while it is down.
"""

from __future__ import annotations

from collections.abc import Callable

from aidb_gate.services.base import DependencyConfig, Offer, Running
from aidb_gate.services.lifecycle import tcp_answers

KIND = "generic"
IMAGES: tuple[str, ...] = ()
IMAGE = ""
RECIPE = ""
PORT = 0
CRITICAL = False
FAULTS: tuple[str, ...] = ()
DATA = ""
REFUSALS: tuple[tuple[str, str | None, str], ...] = ()


def offer(dep: DependencyConfig, secret: Callable[[], str]) -> Offer:
    return Offer(dict(dep.environment), dep.command, {}, {})


def is_ready(dependency: Running) -> bool:
    return tcp_answers(dependency) if dependency.config.port else True
