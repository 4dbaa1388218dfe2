"""manifest: what a backup holds, with checksums, written atomically.

Guarantees: `read_manifest` accepts only a manifest whose shape is what `take_backup` writes and
whose every file lies inside the backup folder (no absolute path, no `..`, no symlink out), so a
crafted folder gets one clear error instead of a traceback or a read elsewhere.
`write_atomic` writes to a temporary file in the same folder, fsyncs and renames,
so readers see the old file or the complete new one, never a torn one. `sha256_file` streams,
so large dumps need no memory.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from aidb_gate.errors import GateError

MANIFEST = "manifest.json"
FORMAT = 1


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


def write_manifest(folder: Path, manifest: dict[str, Any]) -> Path:
    path = folder / MANIFEST
    write_atomic(path, json.dumps(manifest, indent=2, sort_keys=True, default=str).encode())
    return path


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST
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
            collections = q.get("collections", {})
            if not isinstance(collections, dict):
                problems.append(f"`qdrant.collections` must be an object, got {type(collections).__name__}")
                collections = {}
    entries = [("postgres", pg)] if isinstance(pg, dict) else []
    if isinstance(pg, dict) and pg.get("globals") is not None:
        entries.append(("postgres.globals", pg["globals"]))
    entries += [(f"qdrant.collections.{name}", e) for name, e in collections.items()]
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
        rel = Path(file)
        if rel.is_absolute() or ".." in rel.parts or not (folder / rel).resolve().is_relative_to(root):
            problems.append(f"`{where}.file` ({file!r}) points outside the backup folder")
    return problems


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
