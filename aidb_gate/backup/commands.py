"""commands: a user's own backup commands, run against the test stack and judged like the gate's.

Guarantees: a configured command (e.g. `scripts/backup-postgresql.sh backup`) runs with the
stack's coordinates in its environment and a folder to write into; whatever it leaves there is
checksummed into the same manifest as the gate's own backup, restored the same way (custom
dumps with pg_restore, plain and gzipped SQL with psql), and judged by the same invariants.
A command that exits 0 but writes nothing usable is a failure that says so.
"""

from __future__ import annotations

import gzip
import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

from aidb_gate.backup import postgres as pg_backup
from aidb_gate.backup import qdrant as q_backup
from aidb_gate.backup.manifest import BackupError, sha256_file
from aidb_gate.backup.postgres import PgTarget
from aidb_gate.backup.qdrant import QdrantTarget


def command_env(out: Path, pg: PgTarget | None, q: QdrantTarget | None) -> dict[str, str]:
    """What a user's script is told: where to write, and how to reach each dependency."""
    env = {**os.environ, "BACKUP_DIR": str(out)}
    if pg is not None:
        env.update(CONTAINER_ENGINE=pg.cli, POSTGRES_CONTAINER=pg.container, POSTGRES_USER=pg.user, POSTGRES_DB=pg.db)
        env.update(pg.env or {})
    if q is not None:
        env.update(QDRANT_URL=q.url, QDRANT_API_KEY=q.api_key or "")
    return env


def run_command(command: str, cwd: Path, env: dict[str, str], what: str) -> None:
    begin = time.monotonic()
    proc = subprocess.run(shlex.split(command), cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr).strip()[-1500:]
        raise BackupError(f"your {what} backup command `{command}` exited {proc.returncode} after "
                          f"{time.monotonic() - begin:.1f} s: {tail}")


def dump_format(path: Path) -> str:
    head = path.read_bytes()[:5]
    if head == b"PGDMP":
        return "custom"
    if head[:2] == b"\x1f\x8b":
        return "plain.gz"
    return "plain"


def postgres_with_command(command: str, cwd: Path, dest: Path, pg: PgTarget) -> dict[str, Any]:
    out = dest / "postgres"
    out.mkdir(parents=True, exist_ok=True)
    begin = time.monotonic()
    tables = pg_backup.row_counts(pg)
    run_command(command, cwd, command_env(out, pg, None), "Postgres")
    files = [p for p in out.rglob("*") if p.is_file()]
    if len(files) != 1:
        raise BackupError(f"your Postgres backup command `{command}` exited 0 but left {len(files)} files in $BACKUP_DIR "
                          f"({out}); it must write exactly one dump (custom format, .sql or .sql.gz).")
    path = files[0]
    return {"file": str(path.relative_to(dest)), "sha256": sha256_file(path), "size": path.stat().st_size,
            "database": pg.db, "format": dump_format(path), "tables": tables, "command": command,
            "duration_s": round(time.monotonic() - begin, 3)}


def qdrant_with_command(command: str, cwd: Path, dest: Path, q: QdrantTarget) -> dict[str, Any]:
    out = dest / "qdrant"
    out.mkdir(parents=True, exist_ok=True)
    begin = time.monotonic()
    counts = {name: q_backup.count(q, name) for name in q_backup.collections(q)}
    run_command(command, cwd, command_env(out, None, q), "Qdrant")
    entries = {}
    for name, points in counts.items():
        found = sorted(p for p in out.rglob("*") if p.is_file() and p.name.startswith(name))
        if not found:
            raise BackupError(f"your Qdrant backup command `{command}` wrote no snapshot for collection {name} into "
                              f"$BACKUP_DIR ({out}); name each file after its collection, e.g. {name}.snapshot.")
        path = found[0]
        entries[name] = {"file": str(path.relative_to(dest)), "sha256": sha256_file(path), "size": path.stat().st_size,
                         "points": points, "command": command}
    return {"url": q.url, "collections": entries, "duration_s": round(time.monotonic() - begin, 3)}


def restore_plain(pg: PgTarget, path: Path, gz: bool, force: bool = False) -> float:
    """Restore a plain-SQL dump with psql in one transaction; refuses a non-empty database unless forced."""
    if not pg_backup.is_empty(pg) and not force:
        raise BackupError(f"refusing to restore {path} into database {pg.db} in {pg.container}: it is not empty. "
                          "Restore into a fresh database, or pass --force.")
    begin = time.monotonic()
    data = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    proc = subprocess.run([pg.cli, "exec", "-i", pg.container, "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                           "--single-transaction", "-U", pg.user, "-d", pg.db], input=data, env=pg.env,
                          capture_output=True, check=False)
    if proc.returncode != 0:
        raise BackupError(f"{path}: psql could not restore this dump: {proc.stderr.decode(errors='replace')[-800:]}")
    return time.monotonic() - begin


def check_plain(path: Path, gz: bool) -> list[str]:
    try:
        text = gzip.decompress(path.read_bytes()) if gz else path.read_bytes()
    except (OSError, EOFError) as err:
        return [f"{path}: not a readable gzip file ({err})"]
    if b"PostgreSQL database dump complete" not in text[-4096:]:
        return [f"{path}: the SQL dump does not end with pg_dump's completion marker (truncated?)"]
    return []
