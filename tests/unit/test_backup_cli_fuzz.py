"""Fuzz self-test of `aidb-gate backup`, `verify` and `restore` as a careless user and an attacker
would drive them (issue 20): hypothesis draws crafted `--out` folders, a rogue Qdrant on 127.0.0.1
and crafted backup folders, and runs the real CLI (`aidb_gate.cli.main`) on them.

What every example checks:
- each command finishes within CALL_DEADLINE_S: it runs in a forked child that is killed at the
  deadline, so a hang (or a decompression bomb) is a failure, never a hung suite;
- its exit code is one the CLI documents (0, 1, 2, 4), nothing it printed holds a traceback, an
  unescaped control, bidi or line-separator character, or the API key;
- the second server every redirect points at never receives the `api-key` header;
- nothing outside the example's own folder changed: the victim folder beside it, the victim folder
  above it, the home folder and the working directory the command ran in hold the same entries
  (name, size, mtime_ns, mode) after as before, and no entry appeared beside the example's folder;
- a refused `--out`, and the whole example folder after a failed backup, are left as they were;
  verify and restore change nothing in the folder they read;
- no success is faked: a backup whose listing or download was redirected or failed, or whose
  snapshot is damaged, does not exit 0; a restore whose upload was not answered 200 does not exit
  0, nor one of a folder that does not verify or holds nothing; a folder with a file outside it, a
  link, a hard link, a FIFO, a damaged archive or a manifest of another format does not verify;
  credentials in --qdrant-url and a QDRANT_SNAPSHOT_TIMEOUT_S of inf, nan or 0 are refused.

The issue's findings (FINDINGS) run first as explicit examples; the drawn ones follow. Reproducible
in `make test`: the profile is derandomized (the same examples on every run), with no example
database and no shrinking (a shrink would replay a hanging example many times; the falsifying
example is printed as drawn). CLI_FUZZ_EXAMPLES=N draws N examples instead of 40 (a longer hunt).
"""

from __future__ import annotations

import bz2
import contextlib
import functools
import hashlib
import io
import json
import os
import re
import resource
import shutil
import signal
import stat
import sys
import tarfile
import tempfile
import time
import traceback
import unicodedata
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from http_doubles import Recorder, answer, drain, endless_redirect, handler_from, serving, trickle_headers
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

import aidb_gate.cli  # imported here, so a forked child never imports while a server thread might

#: One CLI call's whole deadline. The rogue Qdrant answers at once but where an example makes it
#: trickle, and the snapshot deadline the CLI is given (QDRANT_SNAPSHOT_TIMEOUT_S=2) is far below this.
CALL_DEADLINE_S = 10.0
#: The exit codes the CLI documents: done, verify found problems, a user error, a bad setting.
DOCUMENTED_EXITS = {0, 1, 2, 4}
#: A child's address space: far more than a backup of these small snapshots needs.
CHILD_MEMORY = 2 << 30
SECRET = "fuzz-api-key-7f3a9c"
ABS = "@ABS@"  # stands for the example's own tmp root in drawn names, so an absolute name stays in it

settings.register_profile(
    "cli-fuzz", max_examples=int(os.environ.get("CLI_FUZZ_EXAMPLES", "40")), derandomize=True,
    database=None, deadline=None, phases=(Phase.explicit, Phase.generate), print_blob=False, report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])


# ---- archives ----------------------------------------------------------------------------------


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


GOOD_TAR = _tar({"config.json": b'{"params": {}}', "0/segments/a": b"\0" * 64, "0/wal/open-1": b"w" * 10})


def _negative_size_tar() -> bytes:
    """A valid member, then one whose size is -512 (base-256) under a valid header checksum: the
    next header is then the same one, and tarfile's getmembers() loops on it for ever with growing
    memory (CVE-2025-8194)."""
    first = tarfile.TarInfo("config.json")
    first.size = 2
    header = bytearray(tarfile.TarInfo("0/wal/x").tobuf(format=tarfile.GNU_FORMAT))
    header[124:136] = b"\xff" * 10 + b"\xfe\x00"
    header[148:156] = b" " * 8
    header[148:155] = b"%06o\0" % sum(header)
    return first.tobuf(format=tarfile.GNU_FORMAT) + b"{}".ljust(512, b"\0") + bytes(header) + b"\0" * 1024


@functools.lru_cache(maxsize=1)
def _bz2_bomb() -> bytes:
    """~10 KB of bz2 that expands to ~8.6 GB: a member header promising 8 GiB, then zeros."""
    info = tarfile.TarInfo("0/wal/big")
    info.size = 8 * 2**30 - 1
    head = info.tobuf(format=tarfile.GNU_FORMAT)
    first = bz2.compress(head + b"\0" * (45_000_000 - len(head)), 9)
    zeros = bz2.compress(b"\0" * 45_000_000, 9)
    return first + zeros * 190


def _pax_sparse_garbage() -> bytes:
    """A PAX 1.0 sparse member whose map is not numbers: tarfile raises ValueError (not TarError)."""
    info = tarfile.TarInfo("0/wal/sparse")
    data = b"zz\n".ljust(1024, b"\0")
    info.size = len(data)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "0/wal/sparse",
                        "GNU.sparse.realsize": "4096"}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _non_utf8_name() -> bytes:
    """A member whose name is the bytes 0xff 0xfe: no text, so a format error for a strict reader."""
    info = tarfile.TarInfo("0/wal/\udcff\udcfe")
    info.size = 2
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT, encoding="utf-8", errors="surrogateescape") as tar:
        tar.addfile(info, io.BytesIO(b"{}"))
    return buf.getvalue()


def body_of(kind: str) -> bytes:
    return {
        "tar": lambda: GOOD_TAR,
        "truncated-tar": lambda: GOOD_TAR[:700],
        "negative-size-tar": _negative_size_tar,
        "bz2-tar": lambda: bz2.compress(GOOD_TAR),
        "bz2-bomb": _bz2_bomb,
        "garbage": lambda: b"<html>not a snapshot</html>",
        "empty": lambda: b"",
        "pax-sparse-garbage": _pax_sparse_garbage,
        "non-utf8-name": _non_utf8_name,
        "dotdot-member": lambda: _tar({"config.json": b"{}", "../../escaped": b"x"}),
    }[kind]()


#: Bodies that are no readable snapshot: verify must say so, whatever else happens.
DAMAGED = {"truncated-tar", "negative-size-tar", "bz2-bomb", "garbage", "empty", "pax-sparse-garbage", "non-utf8-name"}
BODIES = ["tar"] * 5 + ["truncated-tar", "negative-size-tar", "bz2-tar", "garbage", "empty", "pax-sparse-garbage",
                        "non-utf8-name", "dotdot-member"]


# ---- what hypothesis draws ---------------------------------------------------------------------

HOSTILE_NAMES = [
    "docs", "../x", "../../../victim/planted", "../../../../victim/planted", f"{ABS}/victim/abs-planted", "a/b",
    "a%2Fb", "..", ".", "", "x\u202ey", "line\u2028sep", "ctl\x01\x1b[31m", "\x7f", "a" * 300, "\u00e9" * 150,
    ".hidden", "docs.snapshot.partial", ".docs.snapshot.partial", "sp ace", "%2e%2e", "..\\..\\x", "new\nline",
]
#: Plain names, so that drawn examples also reach the deep paths (a download, an upload) often.
PLAIN_NAMES = ["docs", "notes", "v-1.2_b"]
names = st.one_of(
    st.sampled_from(PLAIN_NAMES),
    st.sampled_from(HOSTILE_NAMES),
    st.text(alphabet=st.sampled_from([*"ab./%\\-", "\x01", "\x1b", "\t", "\n", "\u202e", "\u2028", "\u00e9"]),
            min_size=1, max_size=12),
)


@dataclass
class Server:
    """What the rogue Qdrant answers in one example."""

    names: list[str]
    snapshot_suffix: str
    body: str
    list_status: int
    download_status: int
    upload_status: int
    checksum: str
    listed_size: str
    points: int
    location: str = "plain"  # "hostile": the Location also holds U+202E, ESC and U+2028 (sent raw)
    url: str = "plain"  # "credentials": --qdrant-url with user:password@; "slash": with a trailing '/'
    timeout: str = "2"  # QDRANT_SNAPSHOT_TIMEOUT_S
    shape: str = "ok"  # one of SHAPES: an answer whose JSON is not shaped as Qdrant's


#: Answers a rogue may shape its own way; each but "ok" and "size-bogus" leaves nothing a backup can vouch for.
SHAPES = ["count-not-number", "count-null", "snapshot-not-object", "snapshot-list-not-list", "snapshot-entry-no-name",
          "checksum-not-string", "checksum-control", "size-bogus", "html-page"]
servers = st.builds(
    Server,
    names=st.lists(names, min_size=1, max_size=3, unique=True),  # none: an explicit example
    snapshot_suffix=st.sampled_from(["-1.snapshot", "/../../../victim/snap", "\u202e.snapshot", "-" + "s" * 300]),
    body=st.sampled_from([*BODIES, "bz2-bomb"]),
    list_status=st.sampled_from([200] * 5 + [307]),
    download_status=st.sampled_from([200] * 4 + [302, 307, 500]),
    upload_status=st.sampled_from([200] * 3 + [302, 307, 500]),
    checksum=st.sampled_from(["right"] * 4 + ["wrong", "absent"]),
    listed_size=st.sampled_from(["exact"] * 3 + ["absent", "smaller"]),
    points=st.sampled_from([0, 3]),
    location=st.sampled_from(["plain", "hostile"]),
    url=st.sampled_from(["plain"] * 6 + ["credentials", "slash"]),
    timeout=st.sampled_from(["2"] * 12 + ["inf", "nan", "0", "-1", "1e400"]),
    shape=st.sampled_from(["ok"] * 12 + SHAPES),
)
#: QDRANT_SNAPSHOT_TIMEOUT_S values that must be refused: no deadline, or none that can come.
BAD_TIMEOUTS = {"inf", "nan", "0", "-1", "1e400"}

OUT_NAMES = ["out"] * 5 + ["o\u202eut\u2028", "o\nut", "x" * 300]
OUT_KINDS = ["absent", "nested-absent", "empty", "files", "link-to-victim", "link-to-empty", "file"]
#: Files a crafted manifest may list, and what each is on disk.
FILE_KINDS = ["plain"] * 8 + ["sparse-huge", "outside-relative", "outside-absolute", "dotdot-inside", "symlink", "hardlink",
              "fifo", "folder", "missing", "long-name", "bidi-name"]
MUST_REFUSE_FILES = set(FILE_KINDS) - {"plain"}


@dataclass
class Entry:
    name: str
    file_kind: str
    body: str
    size: str


@dataclass
class Crafted:
    """A backup folder to verify and restore."""

    manifest: str
    format: Any
    entries: list[Entry]
    postgres: bool
    force: bool
    folder: str = "crafted"


entries = st.builds(Entry, name=names, file_kind=st.sampled_from(FILE_KINDS),
                    body=st.sampled_from(BODIES),
                    size=st.sampled_from(["right"] * 5 + ["wrong"]))
crafted_folders = st.builds(
    Crafted,
    manifest=st.sampled_from(["file"] * 8 + ["link", "folder", "absent", "fifo"]),
    format=st.sampled_from([1] * 8 + [True, 1.0, "1", 2, None]),
    entries=st.lists(entries, min_size=1, max_size=3, unique_by=lambda e: e.name),  # none: an explicit example
    postgres=st.sampled_from([False, False, False, True]),
    force=st.booleans(),
    folder=st.sampled_from(["crafted"] * 4 + ["cr\u202eafted\u2028", "cr\nafted"]),
)


# ---- the rogue Qdrant --------------------------------------------------------------------------


@dataclass
class Rogue:
    """A Qdrant-like server whose answers follow `scenario`; every redirect points at `other`."""

    other: str = ""
    scenario: Server | None = None
    root: str = ""  # what ABS stands for in this example
    uploads: list[str] = field(default_factory=list)

    def real(self, name: str) -> str:
        return name.replace(ABS, self.root)

    def respond(self, h: BaseHTTPRequestHandler) -> None:
        drain(h)
        sc = self.scenario
        assert sc is not None
        path = urlsplit(h.path).path
        ok = {"status": "ok", "time": 0.001}
        real_names = [self.real(n) for n in sc.names]

        def moved(status: int) -> None:
            # Raw bytes, as a hostile server sends them (http.server would refuse non-Latin-1 text).
            where = self.other + h.path + ("#\u202e\x1b[2J\u2028" if sc.location == "hostile" else "")
            h.wfile.write(b"HTTP/1.0 %d Moved\r\nLocation: %s\r\nContent-Length: 0\r\n\r\n"
                          % (status, where.encode("utf-8")))
            h.close_connection = True

        def failed() -> None:
            answer(h, 500, {"status": {"error": "Service internal error: the disk is full"}, "time": 0.0})

        if path == "/readyz":
            return answer(h, 200, b"all shards are ready", "text/plain")
        if path == "/":
            return answer(h, 200, {"title": "qdrant - vector search engine", "version": "1.12.6"})
        if path == "/collections":
            if sc.list_status != 200:
                return moved(sc.list_status)
            if sc.shape == "html-page":
                return answer(h, 200, b"<html><body>Please log in</body></html>", "text/html")
            return answer(h, 200, {**ok, "result": {"collections": [{"name": n} for n in real_names]}})
        found = re.fullmatch(r"/collections/([^/]+)(/.*)?", path)
        if not found:
            return answer(h, 404, {"status": {"error": f"Not found: {path}"}})
        name, rest = unquote(found.group(1)), found.group(2) or ""
        body = body_of(sc.body)
        snap = self.real(name + sc.snapshot_suffix)
        entry: dict[str, Any] = {"name": snap, "creation_time": "2026-01-01T00:00:00"}
        if sc.checksum != "absent":
            entry["checksum"] = hashlib.sha256(body if sc.checksum == "right" else body + b"!").hexdigest()
        if sc.listed_size != "absent":
            entry["size"] = len(body) if sc.listed_size == "exact" else max(len(body) // 2, 1)
        if sc.shape == "checksum-not-string":
            entry["checksum"] = 12345
        elif sc.shape == "checksum-control":
            entry["checksum"] = "ab\x1b[2J\u202e\u2028" + "0" * 56
        elif sc.shape == "size-bogus":
            entry["size"] = "12"
        if rest == "/snapshots/upload" and h.command == "POST":
            self.uploads.append(name)
            if sc.upload_status == 500:
                return failed()
            if sc.upload_status != 200:
                return moved(sc.upload_status)
            return answer(h, 200, {**ok, "result": True})
        if name not in real_names:
            return answer(h, 404, {"status": {"error": f"Not found: Collection `{name}` doesn't exist!"}})
        if rest == "":
            return answer(h, 200, {**ok, "result": {"config": {"params": {"vectors": {"size": 3, "distance": "Cosine"}}},
                                                    "points_count": sc.points}})
        if rest == "/points/count":
            counted = {"count-not-number": {"count": "many"}, "count-null": None}.get(sc.shape, {"count": sc.points})
            return answer(h, 200, {**ok, "result": counted})
        if rest == "/snapshots" and h.command == "POST":
            return answer(h, 200, {**ok, "result": "done" if sc.shape == "snapshot-not-object" else entry})
        if rest == "/snapshots" and h.command == "GET":
            listed: Any = {"snapshot-list-not-list": {"snapshots": [entry]},
                           "snapshot-entry-no-name": [{"size": 3}]}.get(sc.shape, [entry])
            return answer(h, 200, {**ok, "result": listed})
        if rest.startswith("/snapshots/") and h.command == "GET":
            if sc.download_status == 500:
                return failed()
            if sc.download_status == "trickle-headers":
                return trickle_headers(h, 0.2)
            if sc.download_status == "endless-302":
                return endless_redirect(h, 302, self.other + h.path, [], limit=256 << 20)
            if sc.download_status != 200:
                return moved(sc.download_status)
            return answer(h, 200, body, "application/octet-stream")
        if rest.startswith("/snapshots/") and h.command == "DELETE":
            return answer(h, 200, {**ok, "result": True})
        return answer(h, 404, {"status": {"error": f"Not found: {h.command} {path}"}})


# ---- running the CLI in a child with a deadline ------------------------------------------------


@dataclass
class Run:
    argv: list[str]
    code: int | None
    out: str
    err: str
    seconds: float

    @property
    def hung(self) -> bool:
        return self.code is None


def run_cli(argv: list[str], cwd: Path, env: dict[str, str], logs: Path) -> Run:
    """`aidb_gate.cli.main(argv)` in a forked child, in `cwd` with exactly `env`; killed after
    CALL_DEADLINE_S (then `code` is None). stdout and stderr are written to files in `logs`."""
    out_path, err_path = logs / "stdout", logs / "stderr"
    begin = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 70
        try:
            for fd, path in ((1, out_path), (2, err_path)):
                os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), fd)
            sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115 - the child's whole life
            sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
            os.chdir(cwd)
            os.environ.clear()
            os.environ.update(env)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            # A command that reads without bound (a redirect's endless body) meets MemoryError, not the machine's limit.
            resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
            code = aidb_gate.cli.main(argv)
        except SystemExit as exc:  # argparse's usage error
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
        except BaseException:
            traceback.print_exc()
            code = 70
        finally:
            with contextlib.suppress(BaseException):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code if isinstance(code, int) and 0 <= code < 256 else 70)
    code = None
    while time.monotonic() - begin < CALL_DEADLINE_S:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.01)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    seconds = time.monotonic() - begin
    read = lambda p: p.read_text(encoding="utf-8", errors="backslashreplace") if p.exists() else ""  # noqa: E731
    return Run(argv, code, read(out_path), read(err_path), seconds)


# ---- what must not change ----------------------------------------------------------------------


def tree_state(top: Path) -> dict[str, tuple[int, int, int]]:
    """{relative name: (size, mtime_ns, mode)} of `top` and everything under it (links not followed);
    {} when nothing is at `top`."""
    state: dict[str, tuple[int, int, int]] = {}
    try:
        st = os.lstat(top)
    except OSError:  # nothing there, or a name too long for anything to be there
        return state
    state["."] = (st.st_size, st.st_mtime_ns, st.st_mode)
    if not stat.S_ISDIR(st.st_mode):
        return state
    for here, dirs, files in os.walk(top, followlinks=False):
        for name in dirs + files:
            path = os.path.join(here, name)
            with contextlib.suppress(FileNotFoundError):
                st = os.lstat(path)
                state[os.path.relpath(path, top)] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return state


def changes(before: dict[str, tuple], after: dict[str, tuple]) -> list[str]:
    """What differs between two tree states, in words (at most five)."""
    said = [f"{name!r} appeared" for name in sorted(set(after) - set(before))]
    said += [f"{name!r} vanished" for name in sorted(set(before) - set(after))]
    said += [f"{name!r} changed {before[name]} -> {after[name]}" for name in sorted(set(before) & set(after))
             if before[name] != after[name]]
    return said[:5]


def _fill(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


#: A victim's files; `good.snapshot` is a readable snapshot, so that only containment can refuse a
#: backup that lists it through a path, a link or a hard link.
VICTIM_FILES = {"v1.txt": b"victim one\n", "good.snapshot": GOOD_TAR, "sub/v2.txt": b"victim two\n",
                "planted.snapshot": b"must survive\n"}


def make_out(root: Path, tmp: Path, kind: str, name: str = "out") -> Path:
    out = root / (f"a/b/{name}" if kind == "nested-absent" else name)
    if len(name.encode()) > 255:
        return out  # no such name can exist: the command must say so
    if kind == "empty":
        out.mkdir()
        os.chmod(out, 0o755)
    elif kind == "files":
        _fill(out, {"keep.txt": b"mine\n", "sub/deep.txt": b"mine too\n"})
    elif kind == "link-to-victim":
        out.symlink_to(tmp / "victim")
    elif kind == "link-to-empty":
        (root / "empty-target").mkdir()
        out.symlink_to(root / "empty-target")
    elif kind == "file":
        out.write_bytes(b"a file, not a folder\n")
    return out


def make_crafted(folder: Path, tmp: Path, crafted: Crafted) -> None:
    """Write the backup folder `crafted` describes; files outside it are the example's victims."""
    (folder / "qdrant").mkdir(parents=True)
    victim = tmp / "victim"
    collections: dict[str, Any] = {}
    for i, entry in enumerate(crafted.entries):
        data = body_of(entry.body)
        rel = f"qdrant/c{i}.snapshot"
        if entry.file_kind == "plain":
            (folder / rel).write_bytes(data)
        elif entry.file_kind == "outside-relative":
            rel, data = "../../victim/good.snapshot", GOOD_TAR
        elif entry.file_kind == "outside-absolute":
            rel, data = str(victim / "good.snapshot"), GOOD_TAR
        elif entry.file_kind == "dotdot-inside":
            rel, data = "qdrant/../../../victim/good.snapshot", GOOD_TAR
        elif entry.file_kind == "symlink":
            (folder / rel).symlink_to(victim / "good.snapshot")
            data = GOOD_TAR
        elif entry.file_kind == "hardlink":
            os.link(victim / "good.snapshot", folder / rel)
            data = GOOD_TAR
        elif entry.file_kind == "fifo":
            os.mkfifo(folder / rel)
        elif entry.file_kind == "folder":
            (folder / rel).mkdir()
        elif entry.file_kind == "sparse-huge":  # 10 GiB of holes, listed with the snapshot's size
            with open(folder / rel, "wb") as fh:
                fh.truncate(10 << 30)
        elif entry.file_kind == "long-name":
            rel = "qdrant/" + "l" * 300 + ".snapshot"
        elif entry.file_kind == "bidi-name":
            rel = f"qdrant/c{i}\u202egpj.snapshot"
            (folder / rel).write_bytes(data)
        size = len(data) + (0 if entry.size == "right" else 7)
        collections[entry.name.replace(ABS, str(tmp))] = {"file": rel, "size": size, "points": 3,
                                                          "sha256": hashlib.sha256(data).hexdigest()}
    manifest: dict[str, Any] = {"tool": "aidb-gate fuzz", "qdrant": {"url": "http://127.0.0.1:1",
                                                                    "collections": collections}}
    if crafted.format is not None:
        manifest["format"] = crafted.format
    if crafted.postgres:
        dump = b"PGDMP\x01\x0e\x00" + b"\0" * 40
        (folder / "postgres.dump").write_bytes(dump)
        manifest["postgres"] = {"file": "postgres.dump", "size": len(dump), "sha256": hashlib.sha256(dump).hexdigest(),
                                "format": "custom", "tables": {}}
    text = json.dumps(manifest).encode()
    target = folder / "manifest.json"
    if crafted.manifest == "file":
        target.write_bytes(text)
    elif crafted.manifest == "link":
        (victim / "manifest-copy.json").write_bytes(text)
        target.symlink_to(victim / "manifest-copy.json")
    elif crafted.manifest == "folder":
        target.mkdir()
    elif crafted.manifest == "fifo":
        os.mkfifo(target)


def crafted_must_fail(crafted: Crafted) -> str | None:
    """Why `verify` of this folder must not pass, or None when it may."""
    if crafted.manifest != "file":
        return f"its manifest.json is a {crafted.manifest}"
    if type(crafted.format) is not int or crafted.format != 1:
        return f"its manifest's format is {crafted.format!r}"
    for entry in crafted.entries:
        if entry.file_kind in MUST_REFUSE_FILES:
            return f"it lists a file that is {entry.file_kind}"
        if entry.body in DAMAGED:
            return f"it holds a damaged snapshot ({entry.body})"
        if entry.size == "wrong":
            return "a listed size is wrong"
    return None


UNSAFE = {"Cc", "Cf", "Zl", "Zp", "Cs"}


def output_problems(run: Run, what: str) -> list[str]:
    """A hang, an undocumented exit code, a traceback, raw unsafe characters or the key in the output."""
    if run.hung:
        return [f"{what} did not finish within {CALL_DEADLINE_S:g} s and was killed (argv {run.argv!r})"]
    problems = []
    text = run.out + run.err
    if run.code not in DOCUMENTED_EXITS:
        problems.append(f"{what} exited {run.code}, not one of {sorted(DOCUMENTED_EXITS)}: {run.err[-600:]!r}")
    if "Traceback" in text:
        problems.append(f"{what} printed a traceback: {text[-800:]!r}")
    raw = sorted({c for c in text if c != "\n" and unicodedata.category(c) in UNSAFE})
    if raw:
        problems.append(f"{what} printed unescaped characters {[f'U+{ord(c):04X}' for c in raw]}: {text[-400:]!r}")
    if SECRET in text:
        problems.append(f"{what} printed the API key: {text[-400:]!r}")
    return problems


# ---- one example -------------------------------------------------------------------------------


@dataclass
class Place:
    """The test's folders: victims above the examples, the working directory, home, logs."""

    base: Path
    url: str
    rogue: Rogue
    recorder: Recorder

    def env(self, timeout: str = "2") -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.base / "home"), "LANG": "C.UTF-8",
                "QDRANT_API_KEY": SECRET, "QDRANT_SNAPSHOT_TIMEOUT_S": timeout, "NO_PROXY": "*", "no_proxy": "*"}

    def qdrant_url(self, kind: str) -> str:
        if kind == "credentials":
            return self.url.replace("http://", "http://admin:hunter2@")
        return self.url + "/" if kind == "slash" else self.url


def watched(place: Place, tmp: Path) -> dict[str, Any]:
    """Everything outside the example's root that must stay as it is."""
    return {
        "the victim beside the example": tree_state(tmp / "victim"),
        "the victim above the example": tree_state(place.base / "victim"),
        "the working directory": tree_state(place.base / "cwd"),
        "the home folder": tree_state(place.base / "home"),
        "the example's tmp root": sorted(os.listdir(tmp)),
        "the folder above it": sorted(n for n in os.listdir(place.base) if not n.startswith("ex-")),
    }


def run_example(place: Place, out_kind: str, server: Server, crafted: Crafted, out_name: str = "out") -> list[str]:
    """Every broken guarantee of one example, in words (empty: all held)."""
    tmp = Path(tempfile.mkdtemp(prefix="ex-", dir=place.base))
    try:
        return _run_example(place, tmp, out_kind, server, crafted, out_name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _run_example(place: Place, tmp: Path, out_kind: str, server: Server, crafted: Crafted, out_name: str) -> list[str]:
    root = tmp / "root"
    root.mkdir()
    _fill(tmp / "victim", VICTIM_FILES)
    out = make_out(root, tmp, out_kind, out_name)
    folder = root / crafted.folder
    url = place.qdrant_url(server.url)
    # What makes the Qdrant target itself unusable: every command that names it must fail.
    unusable = ("--qdrant-url holds credentials" if server.url == "credentials" else
                f"QDRANT_SNAPSHOT_TIMEOUT_S={server.timeout}" if server.timeout in BAD_TIMEOUTS else None)
    make_crafted(folder, tmp, crafted)
    place.rogue.scenario, place.rogue.root = server, str(tmp)
    place.rogue.uploads.clear()
    place.recorder.requests.clear()
    before = watched(place, tmp)
    problems: list[str] = []

    def cli(*argv: str) -> Run:
        run = run_cli(list(argv), place.base / "cwd", place.env(server.timeout), place.base / "logs")
        problems.extend(output_problems(run, argv[0]))
        return run

    # -- backup into a drawn --out, from the rogue Qdrant
    # The example folder's own times change when a new --out is made and removed again: only what it holds counts.
    inside = lambda: {k: v for k, v in tree_state(root).items() if k != "."}  # noqa: E731
    root_before, out_before = inside(), tree_state(out)
    backup = cli("backup", "--qdrant-url", url, "--out", str(out))
    if backup.code == 0 and unusable:
        problems.append(f"backup exited 0 although {unusable}")
    if backup.code == 0 and len(out_name.encode()) > 255:
        problems.append("backup exited 0 into an --out whose name is over 255 bytes")
    if backup.code not in (0, 1, None):
        if tree_state(out) != out_before:
            problems.append(f"backup exited {backup.code}, but the --out it was given ({out_kind}) changed: "
                            f"{changes(out_before, tree_state(out))}")
        elif inside() != root_before:
            problems.append(f"backup exited {backup.code}, but left the example folder changed: "
                            f"{changes(root_before, inside())}")
    if backup.code == 0:
        why = ("the collection listing was redirected" if server.list_status != 200 else
               "the collection listing was a web page" if server.shape == "html-page" else None if not server.names else
               f"the snapshot download was answered {server.download_status}" if server.download_status != 200 else
               "the listed checksum was wrong" if server.checksum == "wrong" else
               f"the snapshot was damaged ({server.body})" if server.body in DAMAGED else
               f"Qdrant's answers were not shaped as Qdrant's ({server.shape})" if server.shape not in ("ok", "size-bogus")
               else None)
        if why:
            problems.append(f"backup exited 0 although {why}: {backup.out[-400:]!r}")
    if backup.code == 0:
        made = out.resolve()
        state = tree_state(made)
        verify = cli("verify", str(made))
        if verify.code != 0 and not verify.hung:
            problems.append(f"verify of a backup that just verified exited {verify.code}: {verify.out[-400:]!r}")
        restore = cli("restore", str(made), "--qdrant-url", url, "--force")
        if restore.code == 0 and server.upload_status != 200:
            problems.append(f"restore exited 0 although the upload was answered {server.upload_status}")
        if restore.code == 0 and not server.names:
            problems.append("restore of a backup with no collection exited 0: nothing was restored")
        if tree_state(made) != state:
            problems.append(f"verify or restore changed the backup they read: {changes(state, tree_state(made))}")

    # -- verify and restore a crafted backup folder
    state = tree_state(folder)
    verify = cli("verify", str(folder))
    must_fail = crafted_must_fail(crafted)
    if verify.code == 0 and must_fail:
        problems.append(f"verify passed a folder that must not verify: {must_fail}")
    restore = cli("restore", str(folder), "--qdrant-url", url, *(["--force"] if crafted.force else []))
    if restore.code == 0:
        if unusable:
            problems.append(f"restore exited 0 although {unusable}")
        if must_fail or verify.code != 0:
            problems.append(f"restore exited 0 on a folder that does not verify ({must_fail or 'verify said so'})")
        if not crafted.entries:
            problems.append("restore exited 0 on a folder with nothing to restore")
        if server.upload_status != 200:
            problems.append(f"restore exited 0 although the upload was answered {server.upload_status}")
    if tree_state(folder) != state:
        problems.append(f"verify or restore changed the folder they read: {changes(state, tree_state(folder))}")

    # -- the other host, and everything outside the example
    for method, path, headers, _ in place.recorder.requests:
        leaked = [k for k, v in headers.items() if k.lower() == "api-key" or SECRET in v]
        if leaked:
            problems.append(f"the server a redirect pointed at received {', '.join(leaked)} with {method} {path}")
    after = watched(place, tmp)
    for what in before:
        if before[what] != after[what]:
            said = (changes(before[what], after[what]) if isinstance(before[what], dict)
                    else [f"{before[what]} -> {after[what]}"])
            problems.append(f"{what} changed: {said}")
    return problems


# ---- the test ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("cli-fuzz")
    _fill(base / "victim", VICTIM_FILES)
    _fill(base / "cwd", {"notes.txt": b"the user's own\n", "x.snapshot": b"not the gate's\n"})
    _fill(base / "home", {".profile": b"# home\n"})
    (base / "logs").mkdir()
    recorder = Recorder()
    rogue = Rogue()
    with recorder.running() as other, serving(handler_from(rogue.respond)) as url:
        rogue.other = other
        yield Place(base, url, rogue, recorder)


def _server(names: list[str], body: str = "tar", list_status: int = 200, download: int = 200, upload: int = 200,
            checksum: str = "right") -> Server:
    return Server(names, "-1.snapshot", body, list_status, download, upload, checksum, "exact", 3)


def _plain(body: str = "tar", size: str = "right", name: str = "docs", kind: str = "plain") -> Entry:
    return Entry(name, kind, body, size)


#: The issue's findings, each an explicit example run before the drawn ones (item numbers of issue 20).
FINDINGS = [
    # 1: a --out holding files is refused and left as it was; 7: a hard link to a file outside is refused.
    ("files", _server(["docs"]), Crafted("file", 1, [_plain(kind="hardlink")], False, False)),
    # 1: a link as --out never empties the folder it points to; 4: a 302 to the upload is no success.
    ("link-to-victim", _server(["docs"], upload=302), Crafted("file", True, [_plain()], False, True)),
    # 2: names that are paths stay inside --out; 4: a 307 upload carries neither key nor snapshot away;
    # 3: a snapshot with a negative member size is refused, not looped on.
    ("absent", _server(["../../../victim/planted", f"{ABS}/victim/abs-planted", "a/b", "a%2Fb", "a" * 300,
                        "x\u202ey", "line\u2028sep"], upload=307),
     Crafted("file", 1, [_plain("negative-size-tar")], False, True)),
    # 3: the same through backup's own verify; 7: restore of {"format": 1} is an error, not exit 0.
    ("absent", _server(["docs"], body="negative-size-tar"), Crafted("file", 1, [], False, False)),
    # 3: a 10 KB bz2 that expands to 8 GB costs neither the time nor the memory; 7: format 1.0 is not 1.
    ("nested-absent", _server(["docs"], body="bz2-bomb"), Crafted("file", 1.0, [_plain("bz2-tar")], False, False)),
    # 4: a redirected download never reaches the other host with the key; a file outside the folder is refused.
    ("absent", _server(["docs"], download=307), Crafted("link", 1, [_plain(kind="outside-relative")], False, True)),
    # 4: a redirected listing; links and FIFOs in a backup are refused without being followed or waited on.
    ("absent", _server([], list_status=307), Crafted("file", 1, [_plain(kind="symlink"), _plain(name="n", kind="fifo")],
                                                     False, True)),
    # 1: an empty --out is given back as it was after a failure; a wrong size does not verify.
    ("empty", _server(["docs"], download=302), Crafted("file", 1, [_plain(size="wrong")], False, True)),
    # A backup of a Qdrant without collections holds nothing to restore.
    ("absent", _server([]), Crafted("file", 1, [_plain(name="\u202e"), _plain(name="ok", kind="dotdot-inside")],
                                    False, True)),
    # 5: trickled headers stop at the 2 s deadline; 6: a PAX sparse member with a garbage map is one paragraph.
    ("absent", _server(["docs"], download="trickle-headers"), Crafted("file", 1, [_plain("pax-sparse-garbage")], False, True)),
    # 5: a 302 with an endless body is capped, no MemoryError; 3: a member name that is not UTF-8 is a format error.
    ("absent", _server(["docs"], download="endless-302"), Crafted("file", 1, [_plain("non-utf8-name")], False, True)),
    # 7: credentials in --qdrant-url are refused; a sparse 10 GiB file is judged by its size, not read.
    ("absent", Server(["docs"], "-1.snapshot", "tar", 200, 200, 200, "right", "exact", 3, url="credentials"),
     Crafted("file", 1, [_plain(kind="sparse-huge")], False, True)),
    # 7: an infinite deadline is refused; 4: a Location with control and bidi characters is printed escaped.
    ("absent", Server(["docs"], "-1.snapshot", "tar", 200, 307, 200, "right", "exact", 3, location="hostile",
                      timeout="inf"), Crafted("file", 1, [_plain()], False, True, folder="cr\u202eafted\u2028")),
    ("absent", Server(["docs"], "-1.snapshot", "tar", 200, 200, 307, "right", "exact", 3, location="hostile"),
     Crafted("file", 1, [_plain()], False, True)),
    # 6: an --out name over 255 bytes is one paragraph (ENAMETOOLONG), and 7: bidi in --out is printed escaped.
    ("absent", _server(["docs"]), Crafted("file", 1, [_plain()], False, True), "x" * 300),
    ("nested-absent", _server(["docs"]), Crafted("file", 1, [_plain()], False, True), "o\u202eut\u2028"),
    # Found by this test: answers not shaped as Qdrant's are one paragraph, never a KeyError or TypeError.
    *[("absent", Server(["docs"], "-1.snapshot", "tar", 200, 200, 200, "right", "exact", 3, shape=shape),
       Crafted("file", 1, [_plain()], False, False)) for shape in SHAPES],
]


def _with_findings(test):
    for finding in reversed(FINDINGS):
        out_kind, server, crafted, out_name = (*finding, "out")[:4]
        test = example(out_kind=out_kind, server=server, crafted=crafted, out_name=out_name)(test)
    return test


@settings(settings.get_profile("cli-fuzz"))
@_with_findings
@given(out_kind=st.sampled_from(["absent"] * 3 + OUT_KINDS), server=servers, crafted=crafted_folders,
       out_name=st.sampled_from(OUT_NAMES))
def test_backup_verify_and_restore_never_hang_leak_fake_success_or_touch_anything_outside(place, out_kind, server, crafted,
                                                                                         out_name):
    problems = run_example(place, out_kind, server, crafted, out_name)
    assert not problems, "\n".join(problems)

