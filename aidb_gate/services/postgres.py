"""postgres: PostgreSQL for the stack, through testcontainers' PostgresContainer.

Guarantees: database and user come from the configuration (default `mcp`, as the seed
found), the password is random per run, and the container is ready when `psql` inside it
answers - the official image and the local recipe behave the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
from testcontainers.community.postgres import PostgresContainer

from aidb_gate.config import DependencyConfig
from aidb_gate.core.run import Run
from aidb_gate.images import ImageInfo
from aidb_gate.services import Dependency, container_kwargs, start_container


def start(run: Run, network: Any, image: ImageInfo, dep: DependencyConfig, log_dir: Path,
          role: str | None = None) -> Dependency:
    role = role or dep.name
    password = run.secret()
    ip, kwargs = container_kwargs(run, network, role)
    container = PostgresContainer(
        image.ref, port=dep.port, username=dep.user, password=password, dbname=dep.db, driver=None, **kwargs,
    )
    return start_container(container, run, ip, dep, image, log_dir, role, check=is_ready,
                           secrets={"password": password}, extra={"db": dep.db, "user": dep.user})


def is_ready(dependency: Dependency) -> bool:
    with psycopg.connect(dsn(dependency)) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def dsn(dependency: Dependency, dbname: str | None = None) -> str:
    """A libpq connection string from the host, through the loopback port."""
    cfg = dependency.config
    return (f"host={dependency.host} port={dependency.host_port} dbname={dbname or cfg.db} user={cfg.user} "
            f"password={dependency.secrets['password']} connect_timeout=5")
