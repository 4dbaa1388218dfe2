"""backup: the verified backup procedure - Postgres dumps, Qdrant snapshots, one manifest.

Guarantees: `take_backup` dumps Postgres inside its own container (client and server versions
always match), snapshots every Qdrant collection through the REST API and checks each download
against the checksum Qdrant lists, and writes `manifest.json` last and atomically, so an
interrupted backup never looks complete. Its folder is resolved once (`backup_folder`: a link as
the folder itself is refused) and must be new or empty; a refused folder is left exactly as it
was, and with `remove_on_failure` a failed backup removes only what it created (the folders it
made, the entries it wrote into an empty folder it was given, whose mode and times it restores).
Every file name under it comes from the gate or is an encoded, contained name (see
`backup.qdrant`), never a server's name as it was sent. `verify_backup` re-reads every artifact
against the manifest (see `backup.manifest`: safe relative names only, no links, no hard links,
no more bytes read than listed) and never trusts an exit code alone. `restore_backup` refuses a
backup that does not verify, and one that holds nothing to restore. Names from a server or a
manifest are escaped in every message. Restore and the loss-proving comparisons live in
`aidb_gate.stages.restore`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aidb_gate import __version__
from aidb_gate.backup import archive
from aidb_gate.backup import commands as user_commands
from aidb_gate.backup import postgres as pg_backup
from aidb_gate.backup import qdrant as q_backup
from aidb_gate.backup.manifest import FORMAT, MANIFEST, BackupError, artifact_problems, fsync_tree, read_manifest, write_manifest
from aidb_gate.backup.postgres import PgTarget
from aidb_gate.backup.qdrant import QdrantTarget
from aidb_gate.core import http
from aidb_gate.core.names import escape

__all__ = ["BackupError", "PgTarget", "QdrantTarget", "backup_folder", "restore_backup", "take_backup", "verify_backup"]

PG_DUMP = "postgres.dump"
PG_GLOBALS = "postgres-globals.sql"


def _now() -> str:
    return datetime.now(UTC).isoformat()


def take_backup(dest: Path, pg: PgTarget | None, q: QdrantTarget | None,
                commands: dict[str, str] | None = None, cwd: Path | None = None,
                command_timeout_s: float = user_commands.DEFAULT_TIMEOUT_S,
                remove_on_failure: bool = False) -> dict[str, Any]:
    """Back up Postgres and/or Qdrant into dest (a new folder, or an empty one).

    `dest` is resolved once (`backup_folder`): a link as `dest` itself is refused, links among
    its parents are followed once and the backup then goes into that real folder. A refused
    `dest` is left exactly as it was. With `remove_on_failure`, a backup that fails (or is
    interrupted) removes what this call created - the folders it made, the entries it wrote into
    the empty folder it was given, whose mode and times it then puts back - and nothing else.

    `commands` ({"postgres": ..., "qdrant": ...}) replaces the gate's own procedure for a part
    with the user's command, run from `cwd`; the manifest records what it wrote.
    """
    commands = commands or {}
    claim = _claim(dest)
    dest = claim.folder
    try:
        return _take_backup(dest, pg, q, commands, cwd, command_timeout_s)
    except BaseException:
        if remove_on_failure:
            claim.undo()
        raise


def _take_backup(dest: Path, pg: PgTarget | None, q: QdrantTarget | None, commands: dict[str, str], cwd: Path | None,
                 command_timeout_s: float) -> dict[str, Any]:
    begin = time.monotonic()
    manifest: dict[str, Any] = {"format": FORMAT, "tool": f"aidb-gate {__version__}", "started_at": _now()}
    if pg is not None:
        if commands.get("postgres"):
            manifest["postgres"] = user_commands.postgres_with_command(commands["postgres"], cwd or Path.cwd(), dest, pg,
                                                                       command_timeout_s)
        else:
            manifest["postgres"] = pg_backup.dump(pg, dest / PG_DUMP)
            manifest["postgres"]["globals"] = pg_backup.dump_globals(pg, dest / PG_GLOBALS)
    if q is not None:
        manifest["qdrant"] = (user_commands.qdrant_with_command(commands["qdrant"], cwd or Path.cwd(), dest, q,
                                                                command_timeout_s)
                              if commands.get("qdrant") else q_backup.backup(q, dest / "qdrant"))
    manifest["finished_at"] = _now()
    manifest["duration_s"] = round(time.monotonic() - begin, 3)
    if isinstance(manifest.get("qdrant"), dict) and manifest["qdrant"].get("url"):
        manifest["qdrant"]["url"] = _without_credentials(manifest["qdrant"]["url"])
    _private(dest)
    fsync_tree(dest)  # the data first, so the manifest never vouches for bytes still in cache
    write_manifest(dest, manifest)  # last: its presence means the backup is complete
    (dest / "manifest.json").chmod(0o600)
    return manifest


def backup_folder(dest: Path) -> Path:
    """`dest` resolved once: links among its parents followed, `..` folded; `dest` itself must not
    be a link (a BackupError naming where it points). Changes nothing on disk."""
    given = Path(dest)
    try:
        if given.is_symlink():
            raise BackupError(f"{escape(given)} is a symbolic link (to {escape(os.readlink(given))}); a backup goes "
                              "into a folder of its own: give that folder itself, or a new folder, as --out.")
        return Path(os.path.realpath(given))
    except OSError as err:
        raise BackupError(f"cannot use {escape(given)} as the backup folder ({err.strerror}): choose a folder you can "
                          "write to, with a name of at most 255 bytes per part.") from None


@dataclass
class _Claim:
    """The folder a backup goes into, and what making it changed (so a failure can undo just that)."""

    folder: Path
    made: list[Path] = field(default_factory=list)  # folders this call created, outermost first
    given: os.stat_result | None = None  # the empty folder as it was given, when it existed

    def undo(self) -> None:
        """Remove what this call created; an empty folder it was given gets its mode and times back."""
        if self.given is None:
            if self.made:
                shutil.rmtree(self.made[-1], ignore_errors=True)
            for folder in reversed(self.made[:-1]):
                try:
                    folder.rmdir()
                except OSError:
                    break  # someone else's entries: not ours to remove
            return
        with contextlib.suppress(OSError):
            for name in os.listdir(self.folder):  # it was empty: every entry is this backup's
                path = self.folder / name
                if stat.S_ISDIR(os.lstat(path).st_mode):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            if stat.S_ISDIR(os.lstat(self.folder).st_mode):  # still that folder, not a link put in its place
                os.chmod(self.folder, stat.S_IMODE(self.given.st_mode))
                os.utime(self.folder, ns=(self.given.st_atime_ns, self.given.st_mtime_ns))


def _claim(dest: Path) -> _Claim:
    """Check `dest` (new, or an empty folder that is no link) and make it, 0700. A refusal changes nothing."""
    folder = backup_folder(dest)
    shown = escape(folder)
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        st = None
    except OSError as err:
        raise BackupError(f"cannot use {shown} as the backup folder ({err.strerror}): choose a folder you can write to, "
                          "with a name of at most 255 bytes per part.") from None
    if st is not None:
        if not stat.S_ISDIR(st.st_mode):
            raise BackupError(f"{shown} is not a folder; a backup goes into a new or empty folder of its own.")
        try:
            entries = os.listdir(folder)
        except OSError as err:
            raise BackupError(f"cannot read the folder {shown} ({err.strerror}): choose a folder you can write to."
                              ) from None
        if MANIFEST in entries:
            raise BackupError(f"{shown} already holds a backup (manifest.json); choose a new folder so nothing is "
                              "overwritten.")
        if entries:
            raise BackupError(f"{shown} is not a new or empty folder (it holds {len(entries)} entries, left as they "
                              "are); a backup goes into a folder of its own, so that nothing planted there (a link, a "
                              "stale file) is written through or mistaken for the backup.")
    claim = _Claim(folder, given=st)
    try:
        missing = []
        parent = folder
        while not os.path.lexists(parent):
            missing.append(parent)
            parent = parent.parent
        for path in reversed(missing):
            os.mkdir(path, 0o700 if path == folder else 0o777)
            claim.made.append(path)
        os.chmod(folder, 0o700)
    except OSError as err:
        claim.undo()
        raise BackupError(f"cannot create the backup folder {shown} ({err.strerror}): choose a folder you can write "
                          "to, on a file system with room for the backup.") from None
    return claim


def _private(dest: Path) -> None:
    """A backup holds the whole database: readable by its owner only (files 0600, folders 0700)."""
    for path in [dest, *dest.rglob("*")]:
        if path.is_symlink():
            continue
        path.chmod(0o700 if path.is_dir() else 0o600)


def _without_credentials(url: str) -> str:
    """A URL as the manifest may keep it: `http://user:pw@host:6333` -> `http://host:6333`."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    return urlunsplit(parts._replace(netloc=netloc + (f":{parts.port}" if parts.port else "")))


def verify_backup(folder: Path, pg: PgTarget | None = None) -> list[str]:
    """Every problem with a backup: manifest, sizes, checksums, and whether each artifact reads.

    `pg_restore --list` runs in pg's container when one is given; without one only the
    checksums vouch for the dump.
    """
    try:
        manifest = read_manifest(folder)
    except BackupError as err:
        return [str(err)]
    faulted = artifact_problems(folder, manifest)
    problems = list(faulted.values())
    # What artifact_problems faulted (a link, FIFO, unreadable or altered file): no later check opens it.
    damaged = {str(folder / file) for file in faulted}
    entry = manifest.get("postgres")
    roles = (entry or {}).get("globals")
    if roles and roles.get("format") and str(folder / roles["file"]) not in damaged:
        problems += user_commands.check_plain(folder / roles["file"], gz=roles["format"] == "plain.gz")
    if entry and entry.get("format", "custom") != "custom" and str(folder / entry["file"]) not in damaged:
        problems += user_commands.check_plain(folder / entry["file"], gz=entry["format"] == "plain.gz")
    elif entry and pg is not None and str(folder / entry["file"]) not in damaged:
        try:
            if not pg_backup.list_dump(pg, folder / entry["file"]):
                problems.append(f"{escape(folder / entry['file'])}: pg_restore lists no objects in this dump")
        except BackupError as err:
            problems.append(str(err))
    for name, coll in ((manifest.get("qdrant") or {}).get("collections") or {}).items():
        path = folder / coll["file"]
        if str(path) in damaged or not path.is_file():
            continue
        # The strict reader, never tarfile.getmembers() (which loops forever on a negative member size,
        # CVE-2025-8194) nor tarfile's compression guessing (a 9 KB bz2 file expands to gigabytes).
        try:
            archive.scan(path)
        except archive.ArchiveError as err:
            problems.append(f"{escape(path)}: the snapshot of {escape(name)} is not a readable tar archive ({err})")
        except OSError as err:
            problems.append(f"{escape(path)}: the snapshot of {escape(name)} cannot be read ({escape(err.strerror or err)})")
    return problems


def restore_backup(folder: Path, pg: PgTarget | None, q: QdrantTarget | None, force: bool = False,
                   commands: dict[str, str] | None = None, cwd: Path | None = None,
                   command_timeout_s: float = user_commands.DEFAULT_TIMEOUT_S) -> dict[str, float]:
    """Verify, then restore into pg and q. Refuses (and changes nothing) when verification fails.

    `commands` ({"postgres": ..., "qdrant": ...}) replaces the gate's own restore of a part with
    the user's procedure, run from `cwd` against the same targets and judged the same way."""
    commands = commands or {}
    problems = verify_backup(folder, pg)
    if problems:
        raise BackupError("refusing to restore a backup that does not verify: " + "; ".join(problems))
    manifest = read_manifest(folder)
    if not manifest.get("postgres") and not (manifest.get("qdrant") or {}).get("collections"):
        raise BackupError(f"{escape(folder)} holds nothing to restore: its manifest lists no Postgres dump and no Qdrant "
                          "collection, so nothing was restored. Name the folder of a backup that holds data.")
    missing = [(what, flag) for what, flag, have, target in (
        ("Postgres", "--postgres-container", manifest.get("postgres"), pg),
        ("Qdrant", "--qdrant-url", manifest.get("qdrant"), q)) if have and target is None]
    if missing:
        raise BackupError(f"{escape(folder)} holds {' and '.join(w for w, _ in missing)} data but no target was given for it "
                          f"({' and '.join(f'{w}: {f}' for w, f in missing)}); nothing was restored. Name every target, "
                          "so a partial restore never looks complete.")
    timings: dict[str, float] = {}
    # Check every target before touching any, so a refusal leaves everything as it was.
    if pg is not None and manifest.get("postgres") and not commands.get("postgres") and not force \
            and not pg_backup.is_empty(pg):
        raise BackupError(f"refusing to restore into database {pg.db} in {pg.container}: it is not empty. Restore "
                          "into a fresh database, or pass --force to replace it.")
    if q is not None and manifest.get("qdrant"):
        for name in manifest["qdrant"]["collections"]:
            if not force and name in q_backup.collections(q) and q_backup.count(q, name) > 0:
                raise BackupError(f"refusing to restore into Qdrant collection '{escape(name)}' at {http.shown(q.url)}: it is "
                                  "not empty. "
                                  "Restore into a fresh Qdrant, or pass --force.")
    entry = manifest.get("postgres")
    if pg is not None and entry:
        if commands.get("postgres"):
            timings["postgres"] = user_commands.restore_postgres_with_command(
                commands["postgres"], cwd or Path.cwd(), folder, entry["file"], pg, command_timeout_s)
        else:
            timings["postgres"] = _restore_postgres(pg, folder, entry, force)
    if q is not None and manifest.get("qdrant"):
        begin = time.monotonic()
        for name, entry in manifest["qdrant"]["collections"].items():
            try:
                if commands.get("qdrant"):
                    user_commands.restore_collection_with_command(
                        commands["qdrant"], cwd or Path.cwd(), folder, entry["file"], name, entry.get("points"), q,
                        command_timeout_s)
                else:
                    q_backup.restore_collection(q, name, folder / entry["file"], force=force)
            except BackupError as err:
                if "postgres" in timings:  # not all-or-nothing: say what already changed
                    raise BackupError(f"{err} - and Postgres was already restored into {pg.db if pg else '?'}: the "
                                      "Qdrant restore did not complete, so the two no longer match; restore both "
                                      "again into fresh targets.") from None
                raise
        timings["qdrant"] = time.monotonic() - begin
    return timings


def _restore_postgres(pg: PgTarget, folder: Path, entry: dict[str, Any], force: bool) -> float:
    """The roles first, then the dump in one transaction. When the dump fails, the roles this
    restore created are dropped again, so a failed restore leaves the server as it found it."""
    roles = entry.get("globals")
    before = pg_backup.role_names(pg) if roles else set()
    try:
        if roles:
            pg_backup.restore_globals(pg, folder / roles["file"])
        if entry.get("format", "custom") == "custom":
            return pg_backup.restore(pg, folder / entry["file"], force=force)
        return user_commands.restore_plain(pg, folder / entry["file"], entry["format"] == "plain.gz", force=force)
    except BackupError as err:
        if not roles:
            raise
        created = pg_backup.role_names(pg) - before
        left = pg_backup.drop_roles(pg, created)
        undone = (f"; the roles it had created ({', '.join(sorted(created))}) were dropped again" if created and not left
                  else f"; it created roles it could not drop again: {', '.join(left)} - drop them by hand" if left
                  else "")
        raise BackupError(f"{err} - the database restore rolled back{undone}.") from None
