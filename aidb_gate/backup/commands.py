"""commands: a user's own backup commands, run against the test stack and judged like the gate's.

Guarantees: a configured command (e.g. `scripts/backup-postgresql.sh backup`) runs unchanged,
with the stack's coordinates in its environment under the names scripts use (libpq's `PG*`, the
official images' `POSTGRES_*`, `QDRANT_HOST`/`QDRANT_PORT`/`QDRANT_URL`) and a folder to write
into (`BACKUP_DIR`, searched at any depth); a command that runs past its timeout is stopped with
its whole process group (a child holding the output pipe cannot hang the gate); whatever it leaves there is
checksummed into the same manifest as the gate's own backup, restored the same way (custom
dumps with pg_restore, plain and gzipped SQL with psql), and judged by the same invariants.
A command that exits 0 but writes nothing usable is a failure that says so.
"""

from __future__ import annotations

import gzip
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aidb_gate.backup import postgres as pg_backup
from aidb_gate.backup import qdrant as q_backup
from aidb_gate.backup.manifest import BackupError, sha256_file
from aidb_gate.backup.postgres import PgTarget
from aidb_gate.backup.qdrant import QdrantTarget

#: Seconds a user's backup command may run (`backup.command_timeout_s`).
DEFAULT_TIMEOUT_S = 600.0


def command_env(out: Path, pg: PgTarget | None, q: QdrantTarget | None) -> dict[str, str]:
    """What a user's script is told: where to write, and how to reach each dependency - under
    the names scripts already read, so a production script runs unchanged."""
    env = {**os.environ, "BACKUP_DIR": str(out)}
    if pg is not None:
        env.update(CONTAINER_ENGINE=pg.cli, POSTGRES_CONTAINER=pg.container, POSTGRES_USER=pg.user, POSTGRES_DB=pg.db)
        env.update(pg.env or {})
        if pg.dsn:
            from psycopg.conninfo import conninfo_to_dict

            conn = conninfo_to_dict(pg.dsn)
            host, port, password = str(conn.get("host", "")), str(conn.get("port", "")), str(conn.get("password", ""))
            env.update(PGHOST=host, PGPORT=port, PGUSER=pg.user, PGPASSWORD=password, PGDATABASE=pg.db,
                       POSTGRES_HOST=host, POSTGRES_PORT=port, POSTGRES_PASSWORD=password)
    if q is not None:
        parts = urlsplit(q.url)
        env.update(QDRANT_URL=q.url, QDRANT_API_KEY=q.api_key or "", QDRANT_HOST=parts.hostname or "",
                   QDRANT_PORT=str(parts.port or 6333))
    return env


def run_command(command: str, cwd: Path, env: dict[str, str], what: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    begin = time.monotonic()
    # A session of its own, so a timeout stops the whole process group: a child that keeps the
    # output pipe open would otherwise hold the gate after the script itself has ended.
    proc = subprocess.Popen(shlex.split(command), cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _stop_group(proc)
        output, _ = proc.communicate()
        raise BackupError(f"your {what} command `{command}` was still running after {timeout_s:g} s "
                          f"(backup.command_timeout_s) and was stopped with its process group; its output ends with: "
                          f"{(output or '').strip()[-800:] or '(nothing)'}") from None
    if proc.returncode != 0:
        said = (output or "").strip()[-1500:]
        hint = ""
        if re.search(r"\b405\b", said):
            hint = (" - HTTP 405 (method not allowed): Qdrant takes a snapshot upload as POST "
                    "/collections/{name}/snapshots/upload (multipart), not PUT")
        raise BackupError(f"your {what} command `{command}` exited {proc.returncode} after "
                          f"{time.monotonic() - begin:.1f} s{hint}: {said}")


def _stop_group(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def newest_for(out: Path, name: str) -> Path | None:
    """The newest file anywhere under `out` whose name is `name` followed by a character that
    cannot continue a name (`docs-20261130.snapshot` for `docs`, not `docs_v2.snapshot`)."""
    pattern = re.compile(rf"{re.escape(name)}(?![A-Za-z0-9_])")
    found = [p for p in out.rglob("*") if p.is_file() and pattern.match(p.name)]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def dump_format(path: Path) -> str:
    head = path.read_bytes()[:5]
    if head == b"PGDMP":
        return "custom"
    if head[:2] == b"\x1f\x8b":
        return "plain.gz"
    return "plain"


def postgres_with_command(command: str, cwd: Path, dest: Path, pg: PgTarget,
                          timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    out = dest / "postgres"
    out.mkdir(parents=True, exist_ok=True)
    begin = time.monotonic()
    tables = pg_backup.row_counts(pg)
    run_command(command, cwd, command_env(out, pg, None), "Postgres backup", timeout_s)
    files = [p for p in out.rglob("*") if p.is_file()]
    if len(files) != 1:
        raise BackupError(f"your Postgres backup command `{command}` exited 0 but left {len(files)} files in $BACKUP_DIR "
                          f"({out}); it must write exactly one dump (custom format, .sql or .sql.gz).")
    path = files[0]
    return {"file": str(path.relative_to(dest)), "sha256": sha256_file(path), "size": path.stat().st_size,
            "database": pg.db, "format": dump_format(path), "tables": tables, "command": command,
            "duration_s": round(time.monotonic() - begin, 3)}


def qdrant_with_command(command: str, cwd: Path, dest: Path, q: QdrantTarget,
                        timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    out = dest / "qdrant"
    out.mkdir(parents=True, exist_ok=True)
    begin = time.monotonic()
    counts = {name: q_backup.count(q, name) for name in q_backup.collections(q)}
    run_command(command, cwd, command_env(out, None, q), "Qdrant backup", timeout_s)
    entries = {}
    for name, points in counts.items():
        path = newest_for(out, name)
        if path is None:
            raise BackupError(f"your Qdrant backup command `{command}` wrote no snapshot for collection {name} anywhere "
                              f"under $BACKUP_DIR ({out}); name each file after its collection, e.g. "
                              f"{name}.snapshot or daily/{name}-<timestamp>.snapshot.")
        entries[name] = {"file": str(path.relative_to(dest)), "sha256": sha256_file(path), "size": path.stat().st_size,
                         "points": points, "command": command}
    return {"url": q.url, "collections": entries, "duration_s": round(time.monotonic() - begin, 3)}


def restore_postgres_with_command(command: str, cwd: Path, folder: Path, dump: str, pg: PgTarget,
                                  timeout_s: float = DEFAULT_TIMEOUT_S) -> float:
    """Run the user's own Postgres restore procedure against the fresh target (`BACKUP_DIR` is
    the backup, `BACKUP_FILE` its dump)."""
    begin = time.monotonic()
    run_command(command, cwd, {**command_env(folder, pg, None), "BACKUP_FILE": str(folder / dump)}, "Postgres restore",
                timeout_s)
    return time.monotonic() - begin


def restore_collection_with_command(command: str, cwd: Path, folder: Path, snapshot: str, name: str,
                                    points: int | None, q: QdrantTarget, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Run the user's own Qdrant restore procedure for one collection (`BACKUP_FILE`,
    `QDRANT_COLLECTION`). A collection that holds points in the backup and none afterwards is
    named, with the usual cause (an upload without `priority=snapshot`)."""
    env = {**command_env(folder, None, q), "BACKUP_FILE": str(folder / snapshot), "QDRANT_COLLECTION": name}
    run_command(command, cwd, env, "Qdrant restore", timeout_s)
    now = q_backup.count(q, name) if name in q_backup.collections(q) else None
    if points and not now:
        raise BackupError(f"your Qdrant restore command `{command}` exited 0 but collection {name} holds "
                          f"{'no points' if now == 0 else 'nothing: it does not exist'} (the backup holds {points}): "
                          "a snapshot uploaded without `priority=snapshot` can restore an empty collection; "
                          "upload with ?priority=snapshot")


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
        raise BackupError(f"{path}: psql could not restore this dump: {psql_failure(proc.stderr.decode(errors='replace'))}")
    return time.monotonic() - begin


def psql_failure(stderr: str) -> str:
    """The error that stopped psql (not the warnings after it), and what it means for a backup."""
    errors = [line.strip() for line in stderr.splitlines() if "ERROR:" in line]
    said = errors[0] if errors else stderr.strip()[-800:]
    missing = re.search(r'role "([^"]+)" does not exist', said)
    if missing:
        said += (f" - the dump names role `{missing.group(1)}`, which the backup does not carry: back up the roles "
                 "too (pg_dumpall --globals-only) and restore them first")
    return said


def check_plain(path: Path, gz: bool) -> list[str]:
    """A plain-SQL dump ends with pg_dump's completion marker; read as a stream, so a small file
    that decompresses to gigabytes costs no memory."""
    tail = b""
    try:
        with (gzip.open(path, "rb") if gz else path.open("rb")) as fh:
            while block := fh.read(1 << 20):
                tail = (tail + block)[-4096:]
    except (OSError, EOFError) as err:
        return [f"{path}: not a readable gzip file ({err})"]
    if b"PostgreSQL database dump complete" not in tail:
        return [f"{path}: the SQL dump does not end with pg_dump's completion marker (truncated?)"]
    return []
