"""backup.stage: the backup stage's steps - seed the running stack, then back it up and verify.

Guarantees: `SEEDED` writes documents through the service's API and rows straight into every
table, once per run; `BACKUP` fingerprints the seeded data, takes the backup (the gate's own
procedure, or the user's commands), verifies every artifact against its manifest and
fingerprints again, so the restore stage can prove nothing was lost and the backup changed
nothing. The data adapters come from the dependencies' plug-ins (`DATA`), never from names.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aidb_gate.backup import seed, take_backup, verify_backup
from aidb_gate.backup.fingerprint import Fingerprint, take_fingerprint
from aidb_gate.backup.targets import data_targets
from aidb_gate.core.steps import Pipeline, Step
from aidb_gate.pipeline import StageName
from aidb_gate.report import run_folder
from aidb_gate.stages.boot import BOOT


@dataclass
class BackupRun:
    """A backup of the seeded stack: where it is, what it holds, and the data it was taken from."""

    folder: Path
    manifest: dict[str, Any]
    before: Fingerprint
    after: Fingerprint
    seconds: float
    problems: list[str]
    seeded: dict[str, Any]


def _seed(session: Pipeline) -> dict[str, Any]:
    url, stack = session.service_url(), session.stack()
    begin = time.monotonic()
    pg, _ = data_targets(session.connect(), stack.deps)
    data = session.cfg.data
    written = seed.seed_via_api(url, data, session.api_key, data["count"]) if data["documents"] else []
    tables = {}
    if pg is not None:
        seed.create_probe_objects(pg)
        tables = seed.seed_every_table(pg, data["rows_per_table"])
    session.work["seed"] = time.monotonic() - begin
    # `documents` are the service's own answers (what restore compares), `written` the round trips.
    return {"documents": [w.created for w in written], "written": written, "tables": tables}


def _backup(session: Pipeline) -> BackupRun:
    seeded, stack, cfg = session.seeded(), session.stack(), session.cfg
    started = time.monotonic()
    pg, q = data_targets(session.connect(), stack.deps)
    before = take_fingerprint(pg, q)
    folder = run_folder(cfg.reports_dir, session.run.id) / "backup"
    session.progress(f"backup: {before.summary} into {folder}")
    begin = time.monotonic()
    manifest = take_backup(folder, pg, q, cfg.backup_commands, cwd=cfg.root, command_timeout_s=cfg.backup_timeout_s)
    seconds = time.monotonic() - begin
    problems = verify_backup(folder, pg)
    after = take_fingerprint(pg, q)
    session.work["backup"] = time.monotonic() - started
    return BackupRun(folder, manifest, before, after, seconds, problems, seeded)


#: Data written through the service's API and straight into every table.
SEEDED: Step[dict[str, Any]] = Step("seeded", StageName.BACKUP, _seed, needs=(BOOT,))
#: The seeded stack backed up and verified.
BACKUP: Step[BackupRun] = Step("backup", StageName.BACKUP, _backup, needs=(SEEDED,))


def backup_facts(backup: BackupRun, restore_timings: dict[str, float] | None) -> dict[str, dict[str, Any]]:
    """Per dependency: backup size and time, restore time, and the invariants that were checked."""
    facts: dict[str, dict[str, Any]] = {}
    pg = backup.manifest.get("postgres")
    if pg:
        facts["postgres"] = {"size_bytes": pg["size"], "backup_s": pg["duration_s"],
                             "restore_s": round(restore_timings.get("postgres", 0), 3) if restore_timings else None,
                             "invariants": "row count and ordered content hash of every table in every schema; "
                                           "float and vector (pgvector) columns bit for bit; sequences; views; "
                                           "types; constraints; indexes; triggers; functions; "
                                           "comments; large objects; privileges of every schema, table, view, "
                                           "sequence, function and type; owners; default privileges; row-level "
                                           "security and policies; extensions and versions; roles and memberships"}
    q = backup.manifest.get("qdrant")
    if q:
        facts["qdrant"] = {"size_bytes": sum(c["size"] for c in q["collections"].values()), "backup_s": q["duration_s"],
                           "restore_s": round(restore_timings.get("qdrant", 0), 3) if restore_timings else None,
                           "invariants": "collections; vector config; every point's id, payload and vector; "
                                         "sha256 against the server's checksum"}
    return facts
