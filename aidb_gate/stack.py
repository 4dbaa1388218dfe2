"""stack: the run's images, network and dependencies, started concurrently.

Guarantees: every enabled dependency's image is provisioned (independent builds run side by
side; the base image is built at most once), one labelled network is made for the run, and
the dependencies start at the same time, each with its own testcontainers wait strategy. The
target's environment is rendered from the running dependencies' endpoints.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from aidb_gate import services
from aidb_gate.config import GateConfig
from aidb_gate.core.engine import Engine
from aidb_gate.core.mounts import MountPlan
from aidb_gate.core.network import RunNetwork, run_network
from aidb_gate.core.run import Run
from aidb_gate.core.steps import Pipeline, Step
from aidb_gate.errors import GateError
from aidb_gate.images import ImageInfo, Progress, ensure_base, provision
from aidb_gate.pipeline import StageName
from aidb_gate.services import lifecycle
from aidb_gate.services.lifecycle import Dependency


class BaseImage:
    """The debootstrap base, built at most once per run even when several builds ask at once."""

    def __init__(self, engine: Engine, cfg: GateConfig, log_dir: Path, progress: Progress | None):
        self._args = (engine, cfg.base_image, log_dir, progress)
        self._lock = threading.Lock()
        self._info: ImageInfo | None = None

    def __call__(self) -> ImageInfo:
        with self._lock:
            if self._info is None:
                self._info = ensure_base(*self._args)
            return self._info


def provision_images(engine: Engine, cfg: GateConfig, log_dir: Path, base: BaseImage,
                     progress: Progress | None = None) -> dict[str, ImageInfo]:
    """An image for every enabled dependency, provisioned concurrently."""
    deps = cfg.enabled_dependencies
    kinds = services.registry()
    for dep in deps:
        if dep.kind not in kinds:
            raise GateError(f"`dependencies.{dep.name}` is not a service the gate knows "
                            f"({', '.join(k for k in kinds if k != services.GENERIC)}); remove it or set enabled = false.",
                            stage=StageName.CONFIG)
    with ThreadPoolExecutor(max_workers=max(1, len(deps))) as pool:
        futures = {
            d.name: pool.submit(provision, engine, d.name, d.image, d.recipe, base, log_dir, cfg.ca_bundle, progress)
            for d in deps
        }
        return {name: f.result() for name, f in futures.items()}


@dataclass
class Stack:
    """The running dependencies of one run, on the run's network."""

    run: Run
    network: RunNetwork
    deps: dict[str, Dependency] = field(default_factory=dict)
    #: Further instances started by later stages (restore targets), by role.
    extra: dict[str, Dependency] = field(default_factory=dict)

    def of_kind(self, kind: str) -> Dependency | None:
        """The first running dependency a plug-in of this kind runs (e.g. the stack's Postgres)."""
        return next((d for d in self.deps.values() if d.kind == kind), None)

    def endpoints(self) -> dict[str, dict[str, str]]:
        return {name: dep.endpoint() for name, dep in self.deps.items()}

    def hosts(self) -> dict[str, str]:
        """{alias: fixed address} of every dependency instance, for the target's /etc/hosts."""
        return {d.alias: d.ip for d in [*self.deps.values(), *self.extra.values()] if d.ip}


def start_stack(run: Run, cfg: GateConfig, images: dict[str, ImageInfo], log_dir: Path,
                mounts: MountPlan, progress: Progress | None = None) -> Stack:
    """Make the run's network and start the dependencies: side by side, except that one that
    depends on another (compose depends_on) starts once that one is ready."""
    stack = Stack(run, run_network(run))
    deps = {d.name: d for d in cfg.enabled_dependencies}
    after = _depends_on(cfg, set(deps))
    if progress and deps:
        progress("starting " + ", ".join(f"{name} ({images[name].source})" for name in deps))
    pending = dict(deps)
    with ThreadPoolExecutor(max_workers=max(1, len(deps))) as pool:
        while pending:
            wave = [d for name, d in pending.items() if not after.get(name, set()) & set(pending)]
            if not wave:  # load_compose refuses cycles; this only guards the loop
                raise GateError(f"depends_on among {', '.join(pending)} never resolves", stage=StageName.DEPENDENCIES)
            futures = {d.name: pool.submit(lifecycle.start, run, stack.network, images[d.name], d, log_dir,
                                           mounts=mounts) for d in wave}
            errors = []
            for name, fut in futures.items():
                pending.pop(name)
                try:
                    stack.deps[name] = fut.result()
                except Exception as err:
                    errors.append(err)
            if errors:
                raise errors[0]
    return stack


def _depends_on(cfg: GateConfig, names: set[str]) -> dict[str, set[str]]:
    if cfg.compose is None:
        return {}
    return {name: set(svc.depends_on) & names for name, svc in cfg.compose.dependencies.items()}


def _images(session: Pipeline) -> dict[str, ImageInfo]:
    return provision_images(session.connect(), session.cfg, session.log_dir, session.base(), session.progress)


def _stack(session: Pipeline) -> Stack:
    images = session.dependency_images()
    return start_stack(session.run, session.cfg, images, session.log_dir, session.mounts, session.progress)


def _base_ref(session: Pipeline) -> str | None:
    if session.cfg.image:  # a prebuilt target: no build needs a base
        return None
    return session.base()().ref


#: An image for every enabled dependency.
IMAGES: Step[dict[str, ImageInfo]] = Step("images", StageName.IMAGES, _images)
#: The base image targets that declare `ARG BASE_IMAGE` build on (None for a prebuilt target).
BASE: Step[str | None] = Step("base", StageName.IMAGES, _base_ref)
#: The run's network and every dependency on it, ready.
STACK: Step[Stack] = Step("stack", StageName.DEPENDENCIES, _stack, needs=(IMAGES,))
