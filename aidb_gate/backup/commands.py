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
import signal
import subprocess
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aidb_gate.backup import archive
from aidb_gate.backup import postgres as pg_backup
from aidb_gate.backup import qdrant as q_backup
from aidb_gate.backup.manifest import BackupError, sha256_file
from aidb_gate.backup.postgres import PgTarget
from aidb_gate.backup.qdrant import QdrantTarget
from aidb_gate.core.text import clip

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


#: Sourced by every bash the command starts (BASH_ENV): records the command that failed, with its
#: file and line, in a file of the gate's own - the script's output and behaviour stay as they are.
ERR_TRACE = r"""[ -n "${AIDB_GATE_USER_BASH_ENV:-}" ] && . "$AIDB_GATE_USER_BASH_ENV"
trap '__aidb_gate_status=$?; printf "%s\t%s\t%s\t%s\n" "$__aidb_gate_status" "${BASH_SOURCE[0]:-$0}" "$LINENO" \
  "$BASH_COMMAND" >> "$AIDB_GATE_ERR_TRACE" 2>/dev/null; (exit "$__aidb_gate_status")' ERR
"""


def run_command(command: str, cwd: Path, env: dict[str, str], what: str, timeout_s: float = DEFAULT_TIMEOUT_S,
                pg: PgTarget | None = None) -> None:
    """Run `command` as a shell would (`sh -c`, so `VAR=$PGHOST script` maps names); a failure or
    a timeout is a BackupError that says where the command stopped and, where the output shows
    it, why."""
    begin = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aidb-gate-command-") as scratch:
        trace, bash_env = Path(scratch) / "err-trace", Path(scratch) / "bash-env"
        bash_env.write_text(ERR_TRACE)
        env = {**env, "BASH_ENV": str(bash_env), "AIDB_GATE_ERR_TRACE": str(trace),
               "AIDB_GATE_USER_BASH_ENV": env.get("BASH_ENV", "")}
        # A session of its own, so a timeout stops the whole process group: a child that keeps the
        # output pipe open would otherwise hold the gate after the script itself has ended.
        proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace", start_new_session=True)
        try:
            output, _ = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop_group(proc)
            output, _ = proc.communicate()
            raise BackupError(f"your {what} command `{command}` was still running after {timeout_s:g} s "
                              f"(backup.command_timeout_s) and was stopped with its process group; its output ends "
                              f"with: {clip((output or '').strip(), 800, tail=True) or '(nothing)'}") from None
        failed_at = trace.read_text(errors="replace").splitlines() if trace.exists() else []
    if proc.returncode != 0:
        said = clip((output or "").strip(), 1500, tail=True)
        hints = failure_hints(said, failed_at, pg, proc.returncode)
        raise BackupError(f"your {what} command `{command}` exited {proc.returncode} after "
                          f"{time.monotonic() - begin:.1f} s" + "".join(f" - {h}" for h in hints)
                          + f". Its output ends with: {said or '(nothing)'}")


def failure_hints(output: str, failed_at: list[str], pg: PgTarget | None = None, exit_status: int | None = None) -> list[str]:
    """Why a user's command failed, in words: where a bash script stopped (from the ERR trace),
    and what its output shows - a server that refused the credentials the script chose, a client
    older than the server, a method Qdrant does not take."""
    hints = []
    if failed_at:
        status, source, line, cmd = [*failed_at[-1].split("\t", 3), "", "", "", ""][:4]
        where = f"{Path(source).name}:{line}" if source else f"line {line}"
        if status == str(exit_status):  # `set -e` ended the script there
            hint = f"it stopped at {where} (`{cmd.strip()}`, status {status})"
        else:
            hint = f"the last command that failed before it exited was `{cmd.strip()}` ({where}, status {status})"
        if re.match(r"\(\(|let\s", cmd.strip()) and status == "1" and exit_status == 1:
            hint += (" - under `set -e`, an arithmetic command whose value is 0 returns 1 and ends the script "
                     "(`((count++))` does so when count is 0); write `count=$((count + 1))`")
        hints.append(hint)
    if pg is not None:
        from aidb_gate.services import postgres as pg_plugin

        for pattern, key, meaning in pg_plugin.REFUSALS:
            m = re.search(pattern, output)
            if not m or not key:
                continue
            value, expected = m.group(1), getattr(pg, key, "")
            if value != expected:
                names = {"user": ("user", "PGUSER"), "db": ("database", "PGDATABASE")}[key]
                hints.append(f"Postgres answered: {meaning.format(value)}. The command used {names[0]} `{value}`; "
                             f"the stack's is `{expected}` (given as ${names[1]}): a default in the script differs "
                             f"from the stack - pass the script the stack's value, e.g. its own variable set to "
                             f"${names[1]}")
                break
    mismatch = re.search(r"server version: (\d+)[.\d]*; (pg_\w+) version: (\d+)[.\d]*", output)
    if mismatch:
        server, tool, client = mismatch.groups()
        hints.append(f"the host's {tool} ({client}) is older than the server ({server}) and refuses to run: install "
                     f"PostgreSQL {server} client tools on the host, or run {tool} inside the container")
    if re.search(r"\b405\b", output):
        hints.append("HTTP 405 (method not allowed): Qdrant takes a snapshot upload as POST "
                     "/collections/{name}/snapshots/upload (multipart), not PUT")
    return hints


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


def newest_for(out: Path, name: str, accept: Callable[[Path], bool] = lambda _: True) -> Path | None:
    """The newest file anywhere under `out` whose name is `name` followed by a character that
    cannot continue a name (`docs-20261130.snapshot` for `docs`, not `docs_v2.snapshot`), among
    those `accept` takes."""
    pattern = re.compile(rf"{re.escape(name)}(?![A-Za-z0-9_])")
    found = [p for p in out.rglob("*") if p.is_file() and not p.is_symlink() and pattern.match(p.name) and accept(p)]
    return max(found, key=lambda p: p.stat().st_mtime, default=None)


def dump_kind(path: Path) -> tuple[str, str] | None:
    """(format, what) of a file a Postgres backup command wrote: what is "database" (pg_dump) or
    "globals" (pg_dumpall --globals-only); None for anything else (a log, a metrics file)."""
    fmt = pg_backup.dump_format(path)
    if fmt == "custom":
        return fmt, "database"
    try:
        with (gzip.open(path, "rb") if fmt == "plain.gz" else path.open("rb")) as fh:
            head = fh.read(4096)
    except (OSError, EOFError, zlib.error):
        return None
    if b"-- PostgreSQL database cluster dump" in head:
        return fmt, "globals"
    if b"-- PostgreSQL database dump" in head:
        return fmt, "database"
    return None


def _entry(path: Path, dest: Path, **extra: Any) -> dict[str, Any]:
    return {"file": str(path.relative_to(dest)), "sha256": sha256_file(path), "size": path.stat().st_size, **extra}


def postgres_with_command(command: str, cwd: Path, dest: Path, pg: PgTarget,
                          timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """Run the user's Postgres backup and record what it wrote: its database dump (custom, .sql or
    .sql.gz) and, when it writes one, its `pg_dumpall --globals-only` file; logs and metrics
    beside them are left out."""
    out = dest / "postgres"
    out.mkdir(parents=True, exist_ok=True)
    begin = time.monotonic()
    tables = pg_backup.row_counts(pg)
    run_command(command, cwd, command_env(out, pg, None), "Postgres backup", timeout_s, pg)
    files = sorted(p for p in out.rglob("*") if p.is_file() and not p.is_symlink())
    kinds = {p: kind for p in files if (kind := dump_kind(p)) is not None}  # in files' order
    dumps = [p for p, kind in kinds.items() if kind[1] == "database"]
    if len(dumps) > 1:
        dumps = [p for p in dumps if p == newest_for(out, pg.db)] or dumps
    if len(dumps) != 1:
        seen = ", ".join(str(p.relative_to(out)) for p in files) or "nothing"
        raise BackupError(f"your Postgres backup command `{command}` exited 0 but left "
                          f"{'no' if not dumps else len(dumps)} database dumps under $BACKUP_DIR ({out}; it holds "
                          f"{seen}); it must write one pg_dump of database {pg.db} (custom format, .sql or .sql.gz), "
                          "named after the database when it writes several.")
    path = dumps[0]
    entry = _entry(path, dest, database=pg.db, format=kinds[path][0], tables=tables, command=command)
    roles = [p for p, kind in kinds.items() if kind[1] == "globals"]
    if roles:
        newest = max(roles, key=lambda p: p.stat().st_mtime)
        entry["globals"] = _entry(newest, dest, format=kinds[newest][0])
    entry["duration_s"] = round(time.monotonic() - begin, 3)
    return entry


def qdrant_with_command(command: str, cwd: Path, dest: Path, q: QdrantTarget,
                        timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    out = dest / "qdrant"
    out.mkdir(parents=True, exist_ok=True)
    begin = time.monotonic()
    counts = {name: q_backup.count(q, name) for name in q_backup.collections(q)}
    run_command(command, cwd, command_env(out, None, q), "Qdrant backup", timeout_s)
    entries = {}
    for name, points in counts.items():
        # A snapshot starts with a tar header; its log beside it does not. One 512-byte read, nothing decompressed
        # (tarfile.is_tarfile guesses compression and inflates a bomb); verify then reads it with the strict reader.
        path = newest_for(out, name, archive.looks_like_tar)
        if path is None:
            raise BackupError(f"your Qdrant backup command `{command}` wrote no snapshot for collection {name} anywhere "
                              f"under $BACKUP_DIR ({out}); name each file after its collection, e.g. "
                              f"{name}.snapshot or daily/{name}-<timestamp>.snapshot.")
        entries[name] = _entry(path, dest, points=points, command=command)
    return {"url": q.url, "collections": entries, "duration_s": round(time.monotonic() - begin, 3)}


def restore_postgres_with_command(command: str, cwd: Path, folder: Path, dump: str, pg: PgTarget,
                                  timeout_s: float = DEFAULT_TIMEOUT_S) -> float:
    """Run the user's own Postgres restore procedure against the fresh target (`BACKUP_DIR` is
    the backup, `BACKUP_FILE` its dump)."""
    begin = time.monotonic()
    run_command(command, cwd, {**command_env(folder, pg, None), "BACKUP_FILE": str(folder / dump)}, "Postgres restore",
                timeout_s, pg)
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
    """Restore a plain-SQL dump with psql in one transaction, streamed (a dump of any size needs no
    memory); refuses a non-empty database unless forced."""
    empty = pg_backup.is_empty(pg)
    if not empty and not force:
        raise BackupError(f"refusing to restore {path} into database {pg.db} in {pg.container}: it is not empty. "
                          "Restore into a fresh database, or pass --force.")
    begin = time.monotonic()
    if force and not empty:
        pg_backup.recreate_database(pg, pg.db)
    status, stderr = pg_backup.feed_sql(pg, path, ["-v", "ON_ERROR_STOP=1", "--single-transaction", "-d", pg.db])
    if status != 0:
        raise BackupError(f"{path}: psql could not restore this dump: {psql_failure(stderr)}")
    return time.monotonic() - begin


def psql_failure(stderr: str) -> str:
    """The error that stopped psql (not the warnings after it), and what it means for a backup."""
    errors = [line.strip() for line in stderr.splitlines() if "ERROR:" in line]
    said = clip(errors[0], 800) if errors else clip(stderr.strip(), 800, tail=True)
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
    except (OSError, EOFError, zlib.error) as err:
        return [f"{path}: not a readable gzip file ({err})"]
    if not re.search(rb"PostgreSQL database (cluster )?dump complete", tail):
        return [f"{path}: the SQL dump does not end with pg_dump's completion marker (truncated?)"]
    return []
