"""redis: Redis for the stack, through testcontainers' RedisContainer (ready when PING answers).

Guarantees: the server requires a per-run random password, as production should.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis
from testcontainers.community.redis import RedisContainer

from aidb_gate.config import DependencyConfig
from aidb_gate.core.run import Run
from aidb_gate.images import ImageInfo
from aidb_gate.services import Dependency, container_kwargs, start_container


def start(run: Run, network: Any, image: ImageInfo, dep: DependencyConfig, log_dir: Path,
          role: str | None = None) -> Dependency:
    role = role or dep.name
    password = run.secret()
    ip, kwargs = container_kwargs(run, network, role)
    container = RedisContainer(image.ref, port=dep.port, password=password, **kwargs)
    return start_container(container, run, ip, dep, image, log_dir, role, check=is_ready, secrets={"password": password})


def is_ready(dependency: Dependency) -> bool:
    client = redis.Redis(host=dependency.host, port=dependency.host_port, password=dependency.secrets["password"],
                         socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    finally:
        client.close()
