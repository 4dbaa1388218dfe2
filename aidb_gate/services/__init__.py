"""services: every dependency kind is one plug-in module behind one small interface.

A plug-in is a module (in this package, or named by an `aidb_gate.dependencies` entry point) that
satisfies `base.DependencyKind`: its names (KIND, IMAGES, IMAGE, RECIPE, PORT, CRITICAL, FAULTS,
DATA, REFUSALS) and two functions, `offer(dep, secret) -> Offer` and `is_ready(dependency)`.
Any compose service whose image no plug-in stands for is the `generic` kind: started from its
image, ready when its healthcheck passes (or its port answers), without data. Adding a kind means
adding its module (and, if it needs one, its recipe); nothing else changes.

This package's face is light - the registry and the contract - so that loading the pytest
plugin or the configuration imports no container or database client; a plug-in module is
imported when the registry is first asked. Starting and watching a dependency is lifecycle.py.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from types import ModuleType
from typing import TYPE_CHECKING

from aidb_gate.compose import repository
from aidb_gate.errors import GateError
from aidb_gate.pipeline import StageName
from aidb_gate.services.base import CONTRACT, DependencyConfig, DependencyKind, Offer

__all__ = ["ENTRY_POINT_GROUP", "GENERIC", "DependencyConfig", "DependencyKind", "Offer", "kind_for_image", "plugin",
           "registry"]

GENERIC = "generic"
ENTRY_POINT_GROUP = "aidb_gate.dependencies"


@functools.cache
def registry() -> dict[str, DependencyKind]:
    """{kind: plug-in}: this package's modules, then installed entry points, each checked
    against the contract (base.py) as it loads."""
    from importlib.metadata import entry_points

    found: dict[str, DependencyKind] = {}
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "KIND"):
            found[module.KIND] = _checked(module, f"{__name__}.{info.name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        module = ep.load()
        found[getattr(module, "KIND", ep.name)] = _checked(module, f"the entry point {ep.name} = {ep.value}")
    return found


def _checked(module: ModuleType, where: str) -> DependencyKind:
    missing = [name for name in CONTRACT if not hasattr(module, name)]
    if missing:
        raise GateError(f"The dependency plug-in {where} lacks {', '.join(missing)}: a plug-in defines every name of "
                        "aidb_gate.services.base.DependencyKind (see docs/ARCHITECTURE.md, Dependency plug-ins).",
                        stage=StageName.CONFIG)
    kind: DependencyKind = module  # checked by name just above
    return kind


def plugin(kind: str) -> DependencyKind:
    kinds = registry()
    if kind not in kinds:
        raise GateError(f"No dependency plug-in of kind {kind!r} is installed (known: {', '.join(sorted(kinds))}).",
                        stage=StageName.CONFIG)
    return kinds[kind]


def kind_for_image(ref: str) -> str:
    """The plug-in that stands for an image (`pgvector/pgvector:0.8.1-pg18` -> postgres), else generic."""
    repo = repository(ref)
    for kind, module in registry().items():
        if repo in getattr(module, "IMAGES", ()):
            return kind
    return GENERIC


if TYPE_CHECKING:  # mypy checks that this package's plug-ins keep the contract
    from aidb_gate.services import generic, postgres, qdrant, redis

    _KINDS: tuple[DependencyKind, ...] = (generic, postgres, qdrant, redis)

