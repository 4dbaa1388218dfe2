"""manifest: what a backup holds, with checksums, written atomically.

Guarantees: `write_atomic` writes to a temporary file in the same folder, fsyncs and renames,
so readers see the old file or the complete new one, never a torn one. `sha256_file` streams,
so large dumps need no memory.
"""

from __future__ import annotations

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


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tmp.open("wb") as fh:
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
    except ValueError as err:
        raise BackupError(f"{path} is not valid JSON ({err}): the manifest is damaged.") from None
    if data.get("format") != FORMAT:
        raise BackupError(f"{path} has format {data.get('format')!r}; this aidb-gate reads format {FORMAT}.")
    return data


def artifacts(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every file entry ({file, sha256, size}) the manifest lists."""
    found = []
    pg = manifest.get("postgres")
    if pg:
        found.append(pg)
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
