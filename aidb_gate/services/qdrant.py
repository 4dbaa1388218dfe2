"""qdrant: Qdrant for the stack, real `qdrant/qdrant` or the local Qdrant-API recipe.

Guarantees: the server requires a per-run API key (as a production Qdrant should), and the
container is ready when `GET /readyz` answers 200 - a wait on HTTP, never on a log line, so the
real image and the recipe are judged alike.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import requests
from testcontainers.community.qdrant import QdrantContainer
from testcontainers.core.wait_strategies import HttpWaitStrategy

from aidb_gate.config import DependencyConfig
from aidb_gate.core.run import Run
from aidb_gate.images import ImageInfo
from aidb_gate.services import Dependency, container_kwargs, start_container


def start(run: Run, network: Any, image: ImageInfo, dep: DependencyConfig, log_dir: Path,
          role: str | None = None) -> Dependency:
    role = role or dep.name
    api_key = run.secret()
    ip, kwargs = container_kwargs(run, network, role)
    container = QdrantContainer(image.ref, rest_port=dep.port, api_key=api_key, **kwargs)
    # Only REST is published: the recipe has no gRPC, and the gate never uses it.
    container.ports.clear()
    container.waiting_for(HttpWaitStrategy(dep.port, "/readyz").for_status_code(200).with_startup_timeout(120))
    return start_container(
        container, run, ip, dep, image, log_dir, role, check=is_ready,
        secrets={"api_key": api_key},
        extra={"url": f"http://{role}:{dep.port}"},
    )


def url(dependency: Dependency) -> str:
    """The REST URL from the host."""
    return f"http://{dependency.host}:{dependency.host_port}"


def is_ready(dependency: Dependency) -> bool:
    return requests.get(url(dependency) + "/readyz", timeout=2).status_code == 200
