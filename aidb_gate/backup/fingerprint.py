"""fingerprint: what a stack's data is, taken before a backup and after its restore.

Guarantees: `take_fingerprint` reads every Postgres table, sequence and object and every Qdrant
collection, point, payload and vector through the data adapters; `compare_stacks` names every
one that was lost or changed (see backup/postgres.py and backup/qdrant.py for what is compared
bit for bit). Shared by the backup stage (before) and the restore stage (after).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aidb_gate.backup import postgres as pg_backup
from aidb_gate.backup import qdrant as q_backup
from aidb_gate.backup.postgres import PgTarget
from aidb_gate.backup.qdrant import QdrantTarget


@dataclass
class Fingerprint:
    postgres: dict[str, dict[str, str]] = field(default_factory=dict)
    qdrant: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        tables = self.postgres.get("tables", {})
        rows = sum(int(v.split(" rows ")[0]) for v in tables.values())
        points = sum(len(c["points"]) for c in self.qdrant.values())
        exact = self.postgres.get("binary values", {})
        # "bit for bit" but for NaN payloads, which no dump keeps (pg_backup.NAN_SENDS).
        bits = f" ({len(exact)} float/vector columns compared bit for bit, every NaN as NaN)" if exact else ""
        return f"{len(tables)} tables, {rows} rows{bits}; {len(self.qdrant)} collections, {points} points"


def take_fingerprint(pg: PgTarget | None, q: QdrantTarget | None) -> Fingerprint:
    return Fingerprint(pg_backup.fingerprint(pg) if pg else {}, q_backup.fingerprint(q) if q else {})


def compare_stacks(original: Fingerprint, restored: Fingerprint) -> list[str]:
    return pg_backup.compare(original.postgres, restored.postgres) + q_backup.compare(original.qdrant, restored.qdrant)
