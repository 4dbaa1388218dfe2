"""redis: Redis for the stack, through testcontainers' RedisContainer (ready when PING answers).

Guarantees: the server requires a per-run random password, as production should.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from testcontainers.community.redis import RedisContainer

from aidb_gate.config import DependencyConfig
from aidb_gate.core.run import Run
from aidb_gate.images import ImageInfo
from aidb_gate.services import Dependency, labelled_kwargs, start_container


def start(run: Run, network: Any, image: ImageInfo, dep: DependencyConfig, log_dir: Path) -> Dependency:
    password = run.secret()
    container = RedisContainer(image.ref, port=dep.port, password=password, **labelled_kwargs(run, dep.name))
    return start_container(container, run, network, dep, image, log_dir, secrets={"password": password})
