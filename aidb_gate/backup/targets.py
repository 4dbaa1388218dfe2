"""backup.targets: the data adapters of running dependencies, chosen by their plug-in's `DATA`.

Guarantees: a dependency whose plug-in has data gets its adapter - Postgres through `exec` in its
own container (client = server version), through the engine's API, never a CLI and a DSN from the host, Qdrant through REST from the
host - with the credentials its plug-in offers; a dependency without data gets none. Nothing is
chosen by a dependency's name, so a compose service called `db` is found as Postgres.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aidb_gate.backup.postgres import PgTarget
from aidb_gate.backup.qdrant import QdrantTarget
from aidb_gate.services import plugin
from aidb_gate.services.lifecycle import Dependency

if TYPE_CHECKING:
    from aidb_gate.core.engine import Engine


def pg_target(engine: Engine, dep: Dependency) -> PgTarget:
    """The Postgres data adapter of a running dependency: commands exec'd in its container through the
    engine's API (no CLI needed), queries over a DSN from the host."""
    user, db = dep.extra["user"], dep.extra["db"]
    dsn = (f"host={dep.host} port={dep.host_port} user={user} password={dep.secrets.get('password', '')} "
           "connect_timeout=10")
    return PgTarget(engine.cli or engine.kind, dep.container_id, user, db, env=engine.env(), dsn=dsn, engine=engine)


def qdrant_target(dep: Dependency) -> QdrantTarget:
    """The Qdrant data adapter of a running dependency (REST from the host)."""
    from aidb_gate.services.qdrant import url

    return QdrantTarget(url(dep), dep.secrets.get("api_key"))


def data_targets(engine: Engine, deps: dict[str, Dependency]) -> tuple[PgTarget | None, QdrantTarget | None]:
    """The data adapters of the dependencies whose plug-in has data (its `DATA`)."""
    by_data = {plugin(d.kind).DATA: d for d in deps.values() if plugin(d.kind).DATA}
    pg = pg_target(engine, by_data["postgres"]) if "postgres" in by_data else None
    q = qdrant_target(by_data["qdrant"]) if "qdrant" in by_data else None
    return pg, q
