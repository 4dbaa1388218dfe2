"""A restore folder is input, fuzzed: hypothesis throws malformed manifests and crafted folders at
`verify_backup` and `restore_backup`. Each one is accepted or gets one clear `BackupError`, never a
traceback, and nothing outside the backup folder (nor in it) changes. Also: a backup is fsynced
before its manifest vouches for it."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import lzma
import os
import random
import signal
import socket
import stat
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from aidb_gate.backup import QdrantTarget, restore_backup, verify_backup
from aidb_gate.backup.manifest import BackupError, fsync_tree, write_atomic

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HANG_S = 10  # one example that takes this long is reading something it should not (a FIFO, a device)

# ---- what a folder may hold ---------------------------------------------------------------------


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


SQL = b"CREATE TABLE t (i int);\n-- PostgreSQL database dump complete\n"
GOOD_TAR = _tar({"collection.json": b"{}", "segments/0": b"\0" * 64})
GOOD_GZ = gzip.compress(SQL, mtime=0)
# Big enough that xz corruption past the first block is met only in getmembers(), as lzma's own error.
BIG_TAR_XZ = lzma.compress(_tar({f"segments/{i}": random.Random(i).randbytes(3000) for i in range(20)}))
CONTENTS = {
    "custom dump": b"PGDMP\x01\x0e\x00" + b"\0" * 40,
    "sql": SQL,
    "sql without marker": b"CREATE TABLE t (i int);\n",
    "sql.gz": GOOD_GZ,
    "truncated gzip": GOOD_GZ[: len(GOOD_GZ) // 2],
    "gzip, corrupt deflate": GOOD_GZ[:10] + b"\xff" * 20 + GOOD_GZ[-8:],
    "gzip header only": b"\x1f\x8b",
    "tar": GOOD_TAR,
    "tar.gz": gzip.compress(GOOD_TAR, mtime=0),
    "tar.gz, corrupt deflate": gzip.compress(GOOD_TAR, mtime=0)[:10] + b"\x00\xff" * 30,
    "tar.xz, corrupt inside": BIG_TAR_XZ[: len(BIG_TAR_XZ) // 2] + bytes(b ^ 0xA5 for b in BIG_TAR_XZ[len(BIG_TAR_XZ) // 2:]),
    "truncated tar": GOOD_TAR[:700],
    "tar, bad checksum": GOOD_TAR[:148] + b"99999999" + GOOD_TAR[156:],
    "empty": b"",
}
DRAWN = sorted(CONTENTS)
KINDS = ["file", "dir", "symlink out (file)", "symlink out (dir)", "symlink loop", "dangling symlink", "fifo",
         "symlink in"]

NAMES = ["docs", "%2F", "a%2F..%2Fb", "a/../b", "/", "..", ".", "", "Zürich", "\U0001F680", "a:b", "x\ny", "\x00",
         "\udc80", "\ud800", " ", "manifest.json"]
PATHS = ["postgres.dump", "postgres-globals.sql", "qdrant/docs.snapshot", "dump.sql.gz", "qdrant",
         "qdrant/", "./postgres.dump", "link", "loop", "fifo", "outlink/secret", "a:b", "sub/deep/file"]
EVIL_PATHS = ["/etc/passwd", "../x", "a/../../b", "", "..", ".", "%2F..%2Foutside%2Fsecret", "../outside/secret",
              "qdrant/../../outside/secret", "a\nb", "nul\x00byte", "\udc80", "\ud800", "é/ü.dump", "//x", "x" * 5000,
              "~/.ssh/id_rsa", "C:\\Windows", "a/" * 200 + "b"]

TEXT = st.text(max_size=20)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT | st.sampled_from(EVIL_PATHS),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT | st.sampled_from(NAMES), inner, max_size=4),
    max_leaves=20,
)
WRONG = st.none() | st.booleans() | st.integers(-3, 10**30) | st.floats() | TEXT | st.sampled_from(EVIL_PATHS) \
    | st.lists(st.integers(), max_size=2) | st.dictionaries(TEXT, st.integers(), max_size=2)


@st.composite
def folders(draw: st.DrawFn) -> dict[str, Any]:
    """A folder spec: {"name", "files": {relpath: (kind, content name)}, "manifest": JSON value or raw bytes}."""
    files: dict[str, tuple[str, str]] = {}
    for path in draw(st.lists(st.sampled_from(PATHS), max_size=5, unique=True)):
        files[path.rstrip("/") or path] = (draw(st.sampled_from(["file"] * 4 + KINDS)), draw(st.sampled_from(DRAWN)))
    if draw(st.sampled_from([False] * 9 + [True])):  # now and then the manifest itself is a link, folder, FIFO...
        files["manifest.json"] = (draw(st.sampled_from(KINDS)), draw(st.sampled_from(DRAWN)))
    # An operator's timestamped folder name holds colons, which a "path: problem" message also does.
    name = draw(st.sampled_from(["backup", "backup-2024-01-01T10:00:00"]))
    how = draw(st.sampled_from(["well-formed", "mutated", "mutated", "tampered", "tampered", "tampered", "any JSON",
                                "raw bytes"]))
    if how == "any JSON":
        return {"name": name, "files": files, "manifest": draw(ANY_JSON | st.fixed_dictionaries({"format": st.just(1)}, optional={
            "postgres": ANY_JSON, "qdrant": ANY_JSON}))}
    if how == "raw bytes":
        raw = draw(st.binary(max_size=200) | st.sampled_from([
            b"\xff\xfe{", b'{"format": 1, "postgres": "\xff"}', b"[" * 50000, b"{" * 3000, b'{"format": 1}' + b"\x00",
            b'{"format": 1e999}', b'{"format": NaN}', b'{"format": 1, "qdrant": {"collections": {"\\ud800": 1}}}',
            b"1" * 5000, b"",
        ]))
        return {"name": name, "files": files, "manifest": raw}
    manifest = draw(_well_formed(files))
    if how == "mutated":
        for _ in range(draw(st.integers(1, 4))):
            _mutate(draw, manifest)
        return {"name": name, "files": files, "manifest": manifest}
    listed = [e for e in [manifest.get("postgres"), manifest.get("postgres", {}).get("globals"),
                          *manifest.get("qdrant", {}).get("collections", {}).values()] if e]
    if how == "tampered" and listed:  # the manifest is right, the folder changed after it was written
        entry = draw(st.sampled_from(listed))
        change = draw(st.sampled_from(["bytes", "kind", "size", "sha256"]))
        kind, content = files[entry["file"]]
        if change == "bytes":
            files[entry["file"]] = (kind, draw(st.sampled_from(DRAWN)))
        elif change == "kind":
            files[entry["file"]] = (draw(st.sampled_from(KINDS)), content)
        elif change == "size":
            entry["size"] = draw(st.integers(-1, 1 << 40))
        else:
            entry["sha256"] = draw(st.sampled_from(["", "0" * 64, entry["sha256"].upper(), entry["sha256"][:16]]))
    return {"name": name, "files": files, "manifest": manifest}


@st.composite
def _well_formed(draw: st.DrawFn, files: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """What take_backup writes, with files that really are there (and whose checksums match)."""

    def entry(default_path: str, content: str) -> dict[str, Any]:
        path = draw(st.sampled_from([default_path, *files]) if files else st.just(default_path))
        if path not in files:  # mostly the file itself; sometimes a folder, link or FIFO in its place
            files[path] = (draw(st.sampled_from(["file"] * len(KINDS) + KINDS)), content)
        data = CONTENTS[files[path][1]]
        return {"file": path, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    manifest: dict[str, Any] = {"format": 1, "tool": "aidb-gate 0.1.0", "started_at": "2024-01-01T00:00:00+00:00"}
    parts = draw(st.sampled_from(["postgres", "qdrant", "postgres qdrant"]))
    if "postgres" in parts:
        fmt = draw(st.sampled_from([None, "custom", "plain", "plain.gz"]))
        content = {None: "custom dump", "custom": "custom dump", "plain": "sql", "plain.gz": "sql.gz"}[fmt]
        pg = entry("postgres.dump", content)
        if fmt:
            pg["format"] = fmt
        if draw(st.booleans()):
            pg["globals"] = entry("postgres-globals.sql", "sql")
        manifest["postgres"] = pg
    if "qdrant" in parts:
        names = draw(st.lists(st.sampled_from(NAMES) | TEXT, max_size=3, unique=True))
        manifest["qdrant"] = {"url": "http://127.0.0.1:6333", "collections": {
            name: {**entry(f"qdrant/{name}.snapshot", "tar"), "points": draw(st.integers(0, 10))} for name in names}}
    return manifest


def _mutate(draw: st.DrawFn, manifest: dict[str, Any]) -> None:
    """Drop a field, or give it a wrong type, an escaping path or any JSON."""
    spots: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
        for key, value in items:
            spots.append((node, key))
            walk(value)

    walk(manifest)
    # The top level's format and stamps are the any-JSON case's: mutate what describes the data.
    spots = [(node, key) for node, key in spots if node is not manifest or key in ("postgres", "qdrant")]
    if not spots:
        return
    node, key = draw(st.sampled_from(spots))
    op = draw(st.sampled_from(["drop", "wrong type", "evil path", "any JSON", "rename"]))
    if op == "drop" and isinstance(node, dict):
        del node[key]
    elif op == "rename" and isinstance(node, dict):
        node[draw(st.sampled_from(NAMES))] = node.pop(key)
    elif op == "evil path":
        node[key] = draw(st.sampled_from(EVIL_PATHS))
    elif op == "any JSON":
        node[key] = draw(ANY_JSON)
    else:
        node[key] = draw(WRONG)


def _build(root: Path, spec: dict[str, Any]) -> Path:
    """The backup folder at root/<name>, and outside it what a crafted folder would reach for."""
    outside = root / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret").write_bytes(b"outside, must not change")
    (outside / "dir" / "file").write_bytes(b"also outside")
    (root / "postgres.dump").write_bytes(CONTENTS["custom dump"])  # what "../postgres.dump" would find
    folder = root / spec.get("name", "backup")
    folder.mkdir()
    (folder / "outlink").symlink_to(outside)
    for rel, (kind, content) in spec["files"].items():
        path = folder / rel
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except (OSError, ValueError):
            continue  # a file already sits where its folder would go, or no file system takes the name
        if path.exists() or path.is_symlink() or path.parent.resolve() != path.parent:
            continue  # taken, or under a symlink (out of the folder, where the setup must not write either)
        with contextlib.suppress(OSError, ValueError):  # a name no file system takes (NUL, too long)
            _make(path, kind, CONTENTS[content], outside)
    manifest = spec["manifest"]
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode("utf-8", "surrogatepass")
    if not os.path.lexists(folder / "manifest.json"):  # else the folder already holds one: a link, a FIFO, a tar...
        (folder / "manifest.json").write_bytes(raw)
    return folder


def _make(path: Path, kind: str, data: bytes, outside: Path) -> None:
    if kind == "file":
        path.write_bytes(data)
    elif kind == "dir":
        path.mkdir()
    elif kind == "symlink out (file)":
        path.symlink_to(outside / "secret")
    elif kind == "symlink out (dir)":
        path.symlink_to(outside)
    elif kind == "symlink loop":
        path.symlink_to(path.name)
    elif kind == "dangling symlink":
        path.symlink_to(outside / "nowhere")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "symlink in":
        target = path.with_name(f".{path.name}.target")
        target.write_bytes(data)
        path.symlink_to(target.name)


def _snapshot(root: Path) -> dict[str, tuple[Any, ...]]:
    """Everything under root, read without following a link or opening a FIFO."""
    seen = {}
    for top, dirs, files in os.walk(root, followlinks=False):
        for name in [*dirs, *files]:
            path = Path(top, name)
            st_ = path.lstat()
            if stat.S_ISLNK(st_.st_mode):
                what: Any = os.readlink(path)
            elif stat.S_ISREG(st_.st_mode):
                what = path.read_bytes()
            else:
                what = None
            seen[str(path.relative_to(root))] = (stat.S_IFMT(st_.st_mode), st_.st_mode, st_.st_mtime_ns, what)
    return seen


@contextlib.contextmanager
def _no_hang() -> Iterator[None]:
    """A hang (a FIFO opened, a device read) becomes a failure instead of a stuck run."""

    def hung(signum: int, frame: Any) -> None:
        raise TimeoutError(f"took over {HANG_S}s: something reads what it should not (a FIFO?)")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(HANG_S)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _one_clear_error(err: BackupError) -> str:
    message = str(err)
    assert message.strip(), "a BackupError with no message"
    assert "\n" not in message and "Traceback" not in message, message
    message.encode("utf-8")  # printable as it is (no lone surrogate from a crafted name)
    return message


@pytest.fixture(scope="module")
def unreachable() -> Iterator[QdrantTarget]:
    """A Qdrant that refuses at once (a port this process holds but does not listen on), so a restore that
    gets as far as asking it stops there. Module-scoped: hypothesis reuses it across examples safely."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        yield QdrantTarget(url=f"http://127.0.0.1:{held.getsockname()[1]}", timeout_s=5)


def _listed(content: str, file: str = "postgres.dump", **extra: Any) -> dict[str, Any]:
    data = CONTENTS[content]
    return {"file": file, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), **extra}


# What the fuzz found, kept as examples so every run tries them.
FOUND = [
    # A symlink loop at a listed file: Path.resolve() raised RuntimeError.
    {"files": {"postgres.dump": ("symlink loop", "sql")}, "manifest": {"format": 1, "postgres": _listed("sql")}},
    # A snapshot that is no tar: tarfile's message spans lines, and so did the problem.
    {"files": {"qdrant/docs.snapshot": ("file", "truncated tar")}, "manifest": {"format": 1, "qdrant": {
        "url": "http://127.0.0.1:6333", "collections": {"docs": _listed("truncated tar", "qdrant/docs.snapshot")}}}},
    # A collection named with a newline: the name went into the message as it was.
    {"files": {"qdrant/docs.snapshot": ("file", "tar")}, "manifest": {"format": 1, "qdrant": {
        "url": "http://127.0.0.1:6333", "collections": {"x\ny": _listed("tar", "qdrant/docs.snapshot")}}}},
    # A `qdrant` without `collections` verified, then restore_backup raised KeyError given a target.
    {"files": {}, "manifest": {"format": 1, "qdrant": {"url": "http://127.0.0.1:6333"}}},
    # A colon in the folder's name hid a FIFO from the damaged set: check_plain opened it and hung.
    {"name": "backup-2024-01-01T10:00:00", "files": {"postgres.dump": ("fifo", "sql")},
     "manifest": {"format": 1, "postgres": _listed("sql", format="plain")}},
    # manifest.json a symlink out of the folder: it was read.
    {"files": {"manifest.json": ("symlink out (file)", "sql")}, "manifest": {"format": 1}},
    # A sha256 with a newline (or a lone surrogate) went into the "corrupted" message as it was.
    {"files": {"postgres.dump": ("file", "sql")}, "manifest": {"format": 1, "postgres": {**_listed("sql"),
                                                                                         "sha256": "a\nb"}}},
    # An xz snapshot corrupt past its first block: lzma.LZMAError out of tarfile's getmembers().
    {"files": {"qdrant/docs.snapshot": ("file", "tar.xz, corrupt inside")}, "manifest": {"format": 1, "qdrant": {
        "url": "http://127.0.0.1:6333", "collections": {
            "docs": _listed("tar.xz, corrupt inside", "qdrant/docs.snapshot")}}}},
]


@FUZZ
@given(folders())
@example(FOUND[0])
@example(FOUND[1])
@example(FOUND[2])
@example(FOUND[3])
@example(FOUND[4])
@example(FOUND[5])
@example(FOUND[6])
@example(FOUND[7])
def test_verify_and_restore_accept_or_refuse_clearly_and_change_nothing(unreachable, spec) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp).resolve()
        folder = _build(root, spec)
        before = _snapshot(root)
        with _no_hang():
            problems = verify_backup(folder)
        assert isinstance(problems, list) and all(isinstance(p, str) and p.strip() for p in problems), problems
        for problem in problems:
            assert "\n" not in problem and "Traceback" not in problem, problem
            problem.encode("utf-8")
        for q in (None, unreachable):
            try:
                with _no_hang():
                    timings = restore_backup(folder, None, q)
            except BackupError as err:
                message = _one_clear_error(err)
                if problems:
                    assert message.startswith("refusing to restore a backup that does not verify"), message
            else:
                assert not problems, "restored a backup that does not verify"
                assert isinstance(timings, dict)
        assert _snapshot(root) == before


@pytest.mark.parametrize(("spec", "says"), [
    (FOUND[0], "postgres.dump"),  # "cannot be resolved ... (Symlink loop ...)" up to 3.12, "missing" after
    (FOUND[1], "the snapshot of docs is not a readable tar archive"),
    (FOUND[2], "`qdrant.collections` holds the name 'x\\ny', with a control character"),
    (FOUND[3], "`qdrant.collections` must be an object, got NoneType"),
    (FOUND[4], "postgres.dump: missing"),
    (FOUND[5], "is a symlink, folder, FIFO or device, not the file a backup writes"),
    (FOUND[6], "`postgres.sha256` ('a\\nb') holds a control character"),
    (FOUND[7], "the snapshot of docs is not a readable tar archive (the file is xz-compressed, not a plain tar archive"),
    ({"files": {}, "manifest": {"format": 1, "postgres": _listed("sql", format="plain.bz2")}},
     "`postgres.format` is 'plain.bz2'; a dump is one of custom, plain, plain.gz"),
])
def test_what_the_fuzz_found_is_one_clear_problem(tmp_path, unreachable, spec, says) -> None:
    folder = _build(tmp_path, spec)
    with _no_hang():
        problems = verify_backup(folder)
    assert len(problems) == 1 and says in problems[0], problems
    with pytest.raises(BackupError, match="refusing to restore a backup that does not verify") as err:
        restore_backup(folder, None, unreachable)
    assert says in _one_clear_error(err.value)


def test_a_gzip_dump_with_corrupt_deflate_data_is_a_problem(tmp_path) -> None:
    folder = _build(tmp_path, {"files": {"dump.sql.gz": ("file", "gzip, corrupt deflate")}, "manifest": {
        "format": 1, "postgres": _listed("gzip, corrupt deflate", "dump.sql.gz", format="plain.gz")}})
    problems = verify_backup(folder)
    assert len(problems) == 1 and "not a readable gzip file" in problems[0], problems


def test_a_verified_backup_with_data_and_no_target_is_refused(tmp_path) -> None:
    folder = _build(tmp_path, {"files": {"postgres.dump": ("file", "custom dump")}, "manifest": {
        "format": 1, "postgres": {"file": "postgres.dump", "size": len(CONTENTS["custom dump"]),
                                  "sha256": hashlib.sha256(CONTENTS["custom dump"]).hexdigest()}}})
    assert verify_backup(folder) == []
    with pytest.raises(BackupError, match=r"holds Postgres data but no .*target was given.* nothing was restored") as err:
        restore_backup(folder, None, None)
    _one_clear_error(err.value)


# ---- fsync --------------------------------------------------------------------------------------


def _record_fsync(monkeypatch, also: Any = None) -> list[Path]:
    """os.fsync, recording the path of every fd it syncs (and `also()` at that moment, if given)."""
    synced: list[Path] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        if also:
            also(synced[-1])
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


NEEDS_PROC = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name an fd's file")


@NEEDS_PROC
def test_every_file_and_folder_of_a_backup_is_fsynced(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "backup"
    (folder / "qdrant" / "deep").mkdir(parents=True)
    files = [folder / "postgres.dump", folder / "qdrant" / "docs.snapshot", folder / "qdrant" / "deep" / "x"]
    for path in files:
        path.write_bytes(b"data")
    (tmp_path / "outside").write_bytes(b"not the backup's")
    (folder / "link").symlink_to(tmp_path / "outside")
    os.mkfifo(folder / "fifo")
    synced = _record_fsync(monkeypatch)
    fsync_tree(folder)
    folders = [folder / "qdrant" / "deep", folder / "qdrant", folder, tmp_path]
    assert sorted(synced) == sorted([*files, *folders])  # each once; not the link's target, not the FIFO
    assert synced[len(files):] == folders  # the data first, then the folders naming it, deepest first


@NEEDS_PROC
def test_write_atomic_fsyncs_the_folder_after_the_rename(tmp_path, monkeypatch) -> None:
    path = tmp_path / "manifest.json"
    renamed: list[bool] = []
    synced = _record_fsync(monkeypatch, also=lambda p: renamed.append(path.exists()))
    write_atomic(path, b"{}")
    assert synced[0].name.startswith(".manifest.json.tmp-") and renamed[0] is False  # the data, before the rename
    assert synced[1:] == [tmp_path] and renamed[1] is True  # then the folder, after it
    assert path.read_bytes() == b"{}"
