"""manifest: what a backup holds, with checksums, written atomically.

Guarantees: `read_manifest` accepts only a manifest that is a regular file (not a link) whose shape
is what `take_backup` writes, whose names hold no control character, and whose every file lies
inside the backup folder (no absolute path, no `..`, no symlink out or loop), so a crafted folder
gets one clear, one-line error instead of a traceback or a read elsewhere.
`write_atomic` writes to a temporary file in the same folder, fsyncs, renames and fsyncs the
folder, so readers see the old file or the complete new one, never a torn one, and the rename
survives a power loss. `fsync_tree` fsyncs every file and folder of a backup (symlinks are not
followed), so once its manifest is written the data it vouches for is on disk. `sha256_file`
streams, so large dumps need no memory.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import stat
import unicodedata
from pathlib import Path
from typing import Any

from aidb_gate.errors import GateError

MANIFEST = "manifest.json"
FORMAT = 1
DUMP_FORMATS = ("custom", "plain", "plain.gz")  # what postgres.dump_format names


class BackupError(GateError):
    """A backup or restore problem the operator must act on; names the file at fault."""

    stage = "backup"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def open_private(path: Path) -> Any:
    """A new file opened for writing, 0600, that cannot be a link planted beforehand: whatever
    sits at `path` (a stale temporary file, or a symlink to a victim) is removed, not followed."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
    return os.fdopen(fd, "wb")


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open_private(tmp) as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Make a folder's entries (a rename, a new file) durable. A file system that cannot fsync a
    folder (EINVAL) has nothing more to offer, so that is not an error."""
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every regular file under `folder`, then every folder in it (deepest first), the folder
    itself and its parent (which holds its name). Symlinks are neither followed nor synced: what
    they point to is not part of the backup."""
    folders = []
    for top, _dirs, files in os.walk(folder, followlinks=False):
        folders.append(Path(top))
        for name in files:
            path = Path(top, name)
            if not stat.S_ISREG(path.lstat().st_mode):
                continue  # a symlink, FIFO or socket: nothing of the backup's own to flush
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for path in reversed(folders):
        fsync_dir(path)
    fsync_dir(folder.resolve().parent)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    path = folder / MANIFEST
    write_atomic(path, json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())
    return path


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
    if path.is_symlink() or (os.path.lexists(path) and not path.is_file()):
        raise BackupError(f"{path} is a symlink, folder, FIFO or device, not the file a backup writes: the manifest is "
                          "not aidb-gate's, and nothing it points to is read. Take the backup again.")
    if not path.is_file():
        raise BackupError(f"{path} does not exist: {folder} is not a complete backup (an interrupted backup has "
                          "no manifest). Take the backup again.")
    try:
        data = json.loads(path.read_text())
    except (ValueError, RecursionError) as err:
        raise BackupError(f"{path} is not valid JSON ({type(err).__name__}): the manifest is damaged.") from None
    if not isinstance(data, dict):
        raise BackupError(f"{path} holds a JSON {type(data).__name__}, not the object a backup writes: the manifest is "
                          "damaged or not aidb-gate's.")
    if data.get("format") != FORMAT:
        raise BackupError(f"{path} has format {data.get('format')!r}; this aidb-gate reads format {FORMAT}.")
    problems = manifest_problems(folder, data)
    if problems:
        raise BackupError(f"{path} is not a manifest this gate can trust: " + "; ".join(problems[:5]))
    return data


def manifest_problems(folder: Path, data: dict[str, Any]) -> list[str]:
    """Shape and containment problems of a parsed manifest, in words."""
    problems: list[str] = []
    pg = data.get("postgres")
    if pg is not None and not isinstance(pg, dict):
        problems.append(f"`postgres` must be an object, got {type(pg).__name__}")
    q = data.get("qdrant")
    collections: Any = {}
    if q is not None:
        if not isinstance(q, dict):
            problems.append(f"`qdrant` must be an object, got {type(q).__name__}")
        else:
            collections = q.get("collections")
            if not isinstance(collections, dict):
                problems.append(f"`qdrant.collections` must be an object, got {type(collections).__name__}")
                collections = {}
    if isinstance(pg, dict) and pg.get("format", "custom") not in DUMP_FORMATS:
        problems.append(f"`postgres.format` is {pg['format']!r}; a dump is one of {', '.join(DUMP_FORMATS)}")
    entries = [("postgres", pg)] if isinstance(pg, dict) else []
    if isinstance(pg, dict) and pg.get("globals") is not None:
        entries.append(("postgres.globals", pg["globals"]))
    for name, e in collections.items():
        if _unprintable(name):
            problems.append(f"`qdrant.collections` holds the name {name!r}, with a control character or a byte that "
                            "is not text")
        else:
            entries.append((f"qdrant.collections.{name}", e))
    root = folder.resolve()
    for where, entry in entries:
        if not isinstance(entry, dict):
            problems.append(f"`{where}` must be an object")
            continue
        file, size, digest = entry.get("file"), entry.get("size"), entry.get("sha256")
        if not isinstance(file, str) or not file:
            problems.append(f"`{where}.file` is missing")
            continue
        if not isinstance(size, int) or isinstance(size, bool) or not isinstance(digest, str):
            problems.append(f"`{where}` needs a whole-number `size` and a `sha256` string")
        elif _unprintable(digest):
            problems.append(f"`{where}.sha256` ({digest!r}) holds a control character or a byte that is not text")
        if _unprintable(file):
            problems.append(f"`{where}.file` ({file!r}) holds a control character or a byte that is not text")
            continue
        rel = Path(file)
        try:
            inside = not rel.is_absolute() and ".." not in rel.parts and (folder / rel).resolve().is_relative_to(root)
        except (OSError, RuntimeError, ValueError) as err:  # a symlink loop, a NUL byte, an unencodable name
            problems.append(f"`{where}.file` ({file!r}) cannot be resolved inside the backup folder ({err})")
            continue
        if not inside:
            problems.append(f"`{where}.file` ({file!r}) points outside the backup folder")
    return problems


def _unprintable(text: str) -> bool:
    """A control character (a newline would split the one-paragraph error) or a lone surrogate (a
    byte that is not UTF-8: no message prints it): take_backup never writes either in a name."""
    return any(unicodedata.category(c) in ("Cc", "Cs") for c in text)


def artifacts(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every file entry ({file, sha256, size}) the manifest lists."""
    found = []
    pg = manifest.get("postgres")
    if pg:
        found.append(pg)
        if pg.get("globals"):
            found.append(pg["globals"])
    for entry in (manifest.get("qdrant") or {}).get("collections", {}).values():
        found.append(entry)
    return found


def check_artifacts(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """Problems with the files against the manifest: missing, wrong size, wrong sha256."""
    problems = []
    for entry in artifacts(manifest):
        path = folder / entry["file"]
        if not path.is_file():
            problems.append(f"{path}: missing")
            continue
        size = path.stat().st_size
        if size != entry["size"]:
            problems.append(f"{path}: {size} bytes, the manifest says {entry['size']} (truncated or altered)")
            continue
        digest = sha256_file(path)
        if digest != entry["sha256"]:
            problems.append(f"{path}: sha256 {digest[:16]}..., the manifest says {entry['sha256'][:16]}... (corrupted)")
    return problems
