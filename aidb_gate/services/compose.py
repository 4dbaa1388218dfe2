"""compose: the user's compose services as the gate's dependencies.

Guarantees: `compose_dependencies` turns the closure of the target's `depends_on` into one
DependencyConfig per service, each with the plug-in that stands for its image (generic
otherwise) and that plug-in's defaults; the strictest condition anyone waits for wins; the
user's `dependencies.<name>` keys still win. It lives beside the plug-ins, so configuration
loading asks them and they never import the loader.
"""

from __future__ import annotations

from typing import Any

from aidb_gate.compose import ComposeStack, qualified_image
from aidb_gate.errors import ConfigError
from aidb_gate.services import kind_for_image, plugin
from aidb_gate.services.base import DependencyConfig


def compose_dependencies(compose: ComposeStack, chosen: dict[str, Any]) -> dict[str, DependencyConfig]:
    """The closure of the target's depends_on as dependencies: each with the plug-in that stands
    for its image (generic otherwise); `dependencies.<name>` keys the user set still win."""
    # The strictest condition anyone waits for wins: a healthy wait is never weakened to "started"
    # because another service lists the same dependency in the short syntax.
    strictness = ["service_started", "service_completed_successfully", "service_healthy"]
    conditions: dict[str, str] = {}
    for svc in [compose.target, *compose.dependencies.values()]:
        for name, cond in svc.depends_on.items():
            conditions[name] = max(conditions.get(name, cond), cond, key=strictness.index)
    deps: dict[str, DependencyConfig] = {}
    for name, svc in compose.dependencies.items():
        if not svc.image:
            raise ConfigError(
                f"{compose.path}: `{name}` is a dependency of the gated service but has no `image:` (only `build:`). "
                "The gate starts dependencies from images: build it once (`podman build -t <name> ...`), name that "
                "image in the compose file, and run the gate again.")
        kind = kind_for_image(svc.image)
        module = plugin(kind)
        user = chosen.get(name, {})
        port = module.PORT or (svc.ports[0] if svc.ports else 0)
        deps[name] = DependencyConfig(
            name=name, enabled=user.get("enabled", True), image=user.get("image") or qualified_image(svc.image),
            recipe=user.get("recipe", module.RECIPE), port=user.get("port", port),
            critical=user.get("critical", module.CRITICAL), reported=user.get("reported", kind != "generic"),
            kind=kind, from_compose=True,
            environment=dict(svc.environment), command=tuple(svc.command) if svc.command else None,
            healthcheck=svc.healthcheck, condition=conditions.get(name, "service_started"), mounts=svc.mounts,
        )
    return {name: d for name, d in deps.items() if d.enabled}
