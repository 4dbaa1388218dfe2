"""manifest: what a backup holds, with checksums, written atomically.

Guarantees: `read_manifest` accepts only a manifest that is a regular file (not a link) whose shape
is what `take_backup` writes, whose `format` is exactly the integer 1 (not `true`, not `1.0`), whose
collection names hold no control character, and whose every file is a relative path of safe
components (see `aidb_gate.core.names`: no `..`, NUL, control, bidi or line-separator character,
at most 255 bytes each) that lies inside the backup folder (no symlink out or loop), so a crafted
folder gets one clear, one-line error instead of a traceback or a read elsewhere. A manifest that
cannot be read (its 0600 file belongs to another user) is such an error too, naming the owner.
`check_artifacts` opens each listed file once, without following a link and without blocking on
a FIFO, and judges what it opened: a symlink, FIFO, device or folder, a file with more than one
hard link (its data is shared with a file outside the backup), an unreadable file, or a size
other than the listed one is a problem; the checksum reads at most the listed size plus one
byte, so a file that grows while it is read is named as larger without being read to its end.
Every name from the manifest or the folder is escaped in messages.
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

from aidb_gate.core.names import component_problem, escape
from aidb_gate.errors import GateError
from aidb_gate.pipeline import StageName

MANIFEST = "manifest.json"
FORMAT = 1
DUMP_FORMATS = ("custom", "plain", "plain.gz")  # what postgres.dump_format names


class BackupError(GateError):
    """A backup or restore problem the operator must act on; names the file at fault."""

    stage = StageName.BACKUP


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _sha256_fd(fd: int, limit: int, chunk: int = 1 << 20) -> tuple[str, int]:
    """(sha256, bytes read) of what `fd` holds, reading at most `limit` bytes."""
    h = hashlib.sha256()
    seen = 0
    while seen < limit and (block := os.read(fd, min(chunk, limit - seen))):
        h.update(block)
        seen += len(block)
    return h.hexdigest(), seen


def unreadable(path: Path, err: OSError) -> str:
    """Why `path` could not be read, and what to do: for a permission error, whose file it is."""
    shown = escape(path)
    if isinstance(err, PermissionError):
        try:
            st = os.lstat(path)
            owner = f"it belongs to uid {st.st_uid} (mode {stat.S_IMODE(st.st_mode):04o})"
        except OSError:
            owner = "its folder cannot be searched"
        return (f"{shown} cannot be read ({err.strerror}): {owner}; a backup is readable by its owner only, so run "
                "this as the user that took the backup (or root)")
    return f"{shown} cannot be read ({err.strerror or type(err).__name__})"


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
    shown = escape(path)
    try:
        mode = os.lstat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise BackupError(f"{shown} does not exist: {escape(folder)} is not a complete backup (an interrupted backup "
                          "has no manifest). Take the backup again.") from None
    except OSError as err:
        raise BackupError(f"{unreadable(path, err)}. Name the backup folder (the one holding manifest.json).") from None
    if not stat.S_ISREG(mode):
        raise BackupError(f"{shown} is a symlink, folder, FIFO or device, not the file a backup writes: the manifest is "
                          "not aidb-gate's, and nothing it points to is read. Take the backup again.")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
                raise BackupError(f"{shown} is no longer a regular file: the backup folder changed while it was read.")
            raw = fh.read()
    except OSError as err:
        raise BackupError(unreadable(path, err) + ".") from None
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as err:
        raise BackupError(f"{shown} is not valid JSON ({type(err).__name__}): the manifest is damaged.") from None
    if not isinstance(data, dict):
        raise BackupError(f"{shown} holds a JSON {type(data).__name__}, not the object a backup writes: the manifest is "
                          "damaged or not aidb-gate's.")
    fmt = data.get("format")
    # Exactly the integer: JSON's true and 1.0 compare equal to 1 in Python, and neither is what take_backup writes.
    if type(fmt) is not int or fmt != FORMAT:
        raise BackupError(f"{shown} has format {escape(repr(fmt))}; this aidb-gate reads format {FORMAT} (the integer).")
    problems = manifest_problems(folder, data)
    if problems:
        raise BackupError(f"{shown} is not a manifest this gate can trust: " + "; ".join(problems[:5]))
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
            entries.append((f"qdrant.collections.{escape(name)}", e))
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
        if rel.is_absolute() or ".." in file.split("/"):
            problems.append(f"`{where}.file` ('{escape(file)}') points outside the backup folder")
            continue
        # Every part a name take_backup could have written: no empty or `.` part, no bidi or line separator,
        # none over 255 bytes (which the file system would refuse with a traceback-shaped ENAMETOOLONG).
        bad = next(((part, why) for part in file.split("/") if (why := component_problem(part))), None)
        if bad:
            problems.append(f"`{where}.file` ('{escape(file)}') has the part '{escape(bad[0])}', which is not a safe "
                            f"file name: {bad[1]}")
            continue
        try:
            inside = (folder / rel).resolve().is_relative_to(root)
        except (OSError, RuntimeError, ValueError) as err:  # a symlink loop, a NUL byte, an unencodable name
            problems.append(f"`{where}.file` ('{escape(file)}') cannot be resolved inside the backup folder "
                            f"({escape(err)})")
            continue
        if not inside:
            problems.append(f"`{where}.file` ('{escape(file)}') points outside the backup folder")
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
    """Problems with the files against the manifest: missing, not a file of its own, unreadable,
    wrong size, wrong sha256."""
    return list(artifact_problems(folder, manifest).values())


def artifact_problems(folder: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """{listed file: its problem} for every listed file that does not match the manifest; a file
    named here is not to be opened again by a later check."""
    problems: dict[str, str] = {}
    for entry in artifacts(manifest):
        problem = artifact_problem(folder / entry["file"], entry["size"], entry["sha256"])
        if problem:
            problems.setdefault(entry["file"], problem)
    return problems


def artifact_problem(path: Path, size: int, sha256: str) -> str | None:
    """What is wrong with the file at `path` against its listed size and checksum, or None.

    The file is opened once (no link followed, no FIFO waited on) and judged by what was opened;
    at most `size` + 1 bytes are read."""
    shown = escape(path)
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except (FileNotFoundError, NotADirectoryError):
        return f"{shown}: missing"
    except OSError as err:
        if err.errno == errno.ELOOP:
            return f"{shown}: a symbolic link, not a file of the backup (nothing it points to is read)"
        return unreadable(path, err)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return f"{shown}: missing (a folder, FIFO or device is in its place, not a file of the backup)"
        if st.st_nlink > 1:
            return (f"{shown}: has {st.st_nlink} hard links, so its data is shared with a file elsewhere that can change "
                    "it; a backup's files must be its own: copy the backup without hard links (cp -a, not cp -al)")
        if st.st_size != size:
            return f"{shown}: {st.st_size} bytes, the manifest says {size} (truncated or altered)"
        try:
            digest, seen = _sha256_fd(fd, size + 1)
        except OSError as err:
            return unreadable(path, err)
        if seen > size:
            return f"{shown}: larger than the {size} bytes the manifest lists (it grew while it was read)"
        if seen < size:
            return f"{shown}: {seen} bytes could be read, the manifest says {size} (truncated while it was read)"
        if digest != sha256:
            return f"{shown}: sha256 {digest[:16]}..., the manifest says {escape(sha256[:16])}... (corrupted)"
        return None
    finally:
        os.close(fd)
