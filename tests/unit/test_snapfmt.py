"""snapfmt, the snapshot format of the qdrant-api recipe image, on the host (no container, no
qdrant-edge): a collection folder written as a tar and read back is byte-identical, its sparse
files are stored as GNU sparse members (GNU tar lists and extracts them too), the checksum is the
file's sha256, and the strict reader refuses bad uploads with `SnapshotFormatError` before writing
anything outside (or, for refused members, inside) the destination. Random and mutated archives
are fuzzed with hypothesis. Defects found in the reader are kept as regression tests (the last section)."""

from __future__ import annotations

import ast
import gzip
import hashlib
import importlib.util
import io
import json
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aidb_gate.backup import archive as gate_archive
from tests.unit.crafted import sparse_file, time_limit

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "fixtures/images/qdrant-api"
SNAPFMT = RECIPE / "snapfmt.py"


#: What snapfmt imports as `archive`: the image build copies the gate's strict reader next to it.
GATE_ARCHIVE = ROOT / "aidb_gate/backup/archive.py"
#: The same load, as code for a child process (which has nothing else to protect in sys.modules).
LOAD = ("import importlib.util, sys\n"
        "from aidb_gate.backup import archive\n"
        "sys.modules['archive'] = archive\n"
        f"spec = importlib.util.spec_from_file_location('snapfmt', {str(SNAPFMT)!r})\n"
        "snapfmt = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(snapfmt)\n")


def _load_snapfmt() -> ModuleType:
    """snapfmt.py by its path, without putting the recipe folder (and its server.py) on sys.path;
    its `import archive` gets the gate's aidb_gate/backup/archive.py (the file the image build
    copies next to it), registered under that name only while snapfmt loads."""
    spec = importlib.util.spec_from_file_location("snapfmt", SNAPFMT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    before = sys.modules.get("archive")
    sys.modules["archive"] = gate_archive
    try:
        spec.loader.exec_module(module)
    finally:
        if before is None:
            del sys.modules["archive"]
        else:
            sys.modules["archive"] = before
    return module


snapfmt = _load_snapfmt()
SnapshotFormatError = snapfmt.SnapshotFormatError

MiB = 1 << 20
GNU = tarfile.GNU_FORMAT
UUID1 = "2b1f0c7e-5d7a-4a51-9e0c-1f6e8a1d2c3b"
UUID2 = "9c4d1a22-0b7e-4f36-8d55-6a7e3c2b1f00"
LONG_NAME = "vector_storage-" + "x" * 120 + ".dat"  # a GNU long-name header in front of a sparse one
GNU_TAR = shutil.which("tar")


# --------------------------------------------------------------------------- helpers



def make_collection(folder: Path) -> Path:
    """A fake collection folder in the layout the server keeps: config and state files, two segments
    (one with a sparse file behind a long name), a WAL with a 32 MiB mostly-zero `open-1` that ends in
    data, a 32 MiB `open-2` with 30 data regions (sparse extension blocks) that ends in a hole, an
    empty file and a file that is one hole."""
    config = {"params": {"vectors": {"size": 4, "distance": "Cosine"}, "shard_number": 1}, "hnsw_config": {"m": 16}}
    (folder / "0/wal").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "payload_index.json").write_text('{"schema": {"city": "keyword"}}')
    (folder / "version.info").write_text("1.15.0")
    (folder / "0/shard_config.json").write_text('{"type": "ReplicaSet"}')
    (folder / "0/replica_state.json").write_text('{"peers": {"1": "Active"}, "this_peer_id": 1}')
    seg1 = folder / "0/segments" / UUID1
    (seg1 / "payload_index").mkdir(parents=True)  # an empty folder is kept too
    (seg1 / "segment.json").write_text('{"version": 3, "config": {}}')
    (seg1 / "small.bin").write_bytes(bytes(range(256)) * 5 + b"tail")  # 1284 bytes: not a multiple of 512
    sparse_file(seg1 / "vectors/chunk_0.mmap", 4 * MiB, {0: b"\x01" * 4096, 3 * MiB + 7: b"vec"})
    sparse_file(folder / "0/segments" / UUID2 / LONG_NAME, 2 * MiB, {MiB + 1: b"long"})
    sparse_file(folder / "0/wal/open-1", 32 * MiB, {1: b"\x7f", 4097 * 3 + 5: b"abc", 12_345_677: b"\xff" * 10,
                                                 32 * MiB - 1: b"!"})
    sparse_file(folder / "0/wal/open-2", 32 * MiB, {i * MiB + 513 * i + 1: bytes([i + 1]) * (i + 1) for i in range(30)})
    (folder / "0/wal/first-index").write_bytes(b"\x00" * 7 + b"\x01")
    (folder / "0/wal/empty").write_bytes(b"")
    sparse_file(folder / "0/wal/all-hole", MiB, {})
    return folder


def tree(folder: Path) -> dict[str, str | None]:
    """{relative path: sha256 of a file, or None for a folder} of everything under `folder`."""
    out: dict[str, str | None] = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        assert not path.is_symlink(), f"{rel} is a symlink"
        out[rel] = None if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def listing(folder: Path, skip: Path | None = None) -> dict[str, tuple[str, int, int]]:
    """What is under `folder`, `skip`'s subtree left out: {path: (kind, size, mtime_ns)}, sizes and
    times for files and links only (a folder's own mtime changes when the destination is made in it)."""
    out = {}
    for path in folder.rglob("*"):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        st_ = path.lstat()
        kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
        out[path.relative_to(folder).as_posix()] = (kind, 0, 0) if kind == "dir" else (kind, st_.st_size, st_.st_mtime_ns)
    return out


def holes_supported(path: Path) -> bool:
    """Whether the file system kept `path` (a mostly-zero file made with truncate) sparse."""
    return path.stat().st_blocks * 512 < path.stat().st_size // 2


def member(name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = "",
           pax: dict[str, str] | None = None) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, link, 0o644, 1_700_000_000
    info.size = len(data) if kind in (tarfile.REGTYPE, tarfile.AREGTYPE) else 0
    if pax:
        info.pax_headers = dict(pax)
    return info, data


def D(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return member(name, b"", tarfile.DIRTYPE)


def F(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return member(name, data)


CONFIG = F("config.json", b'{"params": {"vectors": {"size": 4, "distance": "Dot"}}}')
SEGMENTS = [D("0"), D("0/segments"), D(f"0/segments/{UUID1}"), F(f"0/segments/{UUID1}/segment.json", b"{}")]
WAL = [D("0/wal"), F("0/wal/open-1", b"wal" * 100), F("0/wal/first-index", b"\0" * 8)]
VALID = [CONFIG, *SEGMENTS, *WAL]


def build_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """A tar of `members` made with tarfile (which writes any name, link or type it is given): GNU
    format, or pax when a member has pax headers."""
    fmt = tarfile.PAX_FORMAT if any(info.pax_headers for info, _ in members) else GNU
    with tarfile.open(path, "w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return path


def raw_header(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, fields: dict[int, bytes] | None = None) -> bytes:
    """One GNU header block for `name` with raw bytes patched in at `fields` {offset: bytes} and a
    valid checksum: for sizes and sparse maps tarfile would not write."""
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mtime = size, kind, 1_700_000_000
    buf = bytearray(info.tobuf(GNU, "utf-8", "surrogateescape"))
    head = len(buf) - tarfile.BLOCKSIZE
    for offset, raw in (fields or {}).items():
        buf[head + offset:head + offset + len(raw)] = raw
    buf[head + 148:head + 156] = b" " * 8
    buf[head + 148:head + 155] = b"%06o\0" % tarfile.calc_chksums(bytes(buf[head:head + 512]))[0]
    return bytes(buf)


def padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)


def valid_prefix() -> bytes:
    """config.json, a segment file and a WAL file as raw blocks: crafted members go after it."""
    return b"".join(raw_header(n, len(d)) + padded(d) for n, d in
                    (("config.json", b"{}"), (f"0/segments/{UUID1}/f", b"seg"), ("0/wal/open-1", b"wal")))


END = b"\0" * (2 * tarfile.BLOCKSIZE)
NEGATIVE_512 = valid_prefix() + raw_header("0/wal/x", fields={124: b"\xff" * 10 + b"\xfe\x00"}) + END
NEGATIVE_256 = valid_prefix() + raw_header("0/wal/x", fields={124: b"\xff" * 11 + b"\x00"}) + END






class Scene:
    """A work folder: the snapshot in `in/`, the destination `out/dest` beside a neighbour file; the
    listing of everything but the destination is taken right before the read."""

    def __init__(self, root: Path, blob: bytes | None = None, snap: Path | None = None):
        self.root = root
        (root / "in").mkdir(parents=True, exist_ok=True)
        (root / "out").mkdir(exist_ok=True)
        (root / "out/neighbour.txt").write_text("keep me")
        self.snap = snap or root / "in/upload.snapshot"
        if blob is not None:
            self.snap.write_bytes(blob)
        self.dest = root / "out/dest"
        self.before: dict[str, tuple[str, int, int]] = {}

    def extract(self) -> None:
        self.before = listing(self.root, skip=self.dest)
        with time_limit(10):
            snapfmt.extract(str(self.snap), str(self.dest))

    def assert_untouched_outside(self) -> None:
        assert listing(self.root, skip=self.dest) == self.before, "something outside the destination changed"
        assert (self.root / "out/neighbour.txt").read_text() == "keep me"

    def refused(self, match: str | None = None) -> SnapshotFormatError:
        with pytest.raises(SnapshotFormatError, match=match) as err:
            self.extract()
        self.assert_untouched_outside()
        return err.value


# --------------------------------------------------------------------------- the module itself


def _imports(path: Path) -> set[str]:
    imported = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"a relative import in {path.name}"
            imported.add((node.module or "").split(".")[0])
    return {m for m in imported if m not in sys.stdlib_module_names and m != "__future__"}


def test_snapfmt_imports_only_the_standard_library_and_the_gates_reader():
    """snapfmt runs wherever Python does: it imports nothing but the standard library (no qdrant_edge)
    and `archive`, the gate's strict reader, which imports the standard library only."""
    assert _imports(SNAPFMT) == {"archive"}
    assert _imports(GATE_ARCHIVE) == set()
    assert snapfmt.archive.__file__ == str(GATE_ARCHIVE)


# --------------------------------------------------------------------------- writing and reading back


@pytest.fixture
def written(tmp_path: Path) -> tuple[Path, Path, str]:
    """(collection folder, its snapshot, the sha256 write_snapshot returned)."""
    folder = make_collection(tmp_path / "collection")
    snap = tmp_path / "snaps/c.snapshot"
    snap.parent.mkdir()
    return folder, snap, snapfmt.write_snapshot(str(snap), str(folder))


def test_round_trip_is_byte_identical_and_keeps_holes(written, tmp_path):
    """write_snapshot then extract gives back every file and folder byte for byte; sparse files stay sparse."""
    folder, snap, _ = written
    scene = Scene(tmp_path / "work", snap=snap)
    scene.extract()
    scene.assert_untouched_outside()
    assert tree(scene.dest) == tree(folder)
    assert (scene.dest / "0/segments" / UUID1 / "payload_index").is_dir()
    assert (scene.dest / "0/wal/open-1").stat().st_size == 32 * MiB
    assert (scene.dest / "0/wal/empty").stat().st_size == 0
    if holes_supported(folder / "0/wal/open-1"):
        for rel in ("0/wal/open-1", "0/wal/open-2", "0/wal/all-hole", f"0/segments/{UUID1}/vectors/chunk_0.mmap"):
            assert holes_supported(scene.dest / rel), f"{rel} lost its holes on extraction"


def test_snapshot_stores_mostly_zero_files_as_sparse_members(written):
    """The tar is a small fraction of the folder's 71 MiB: files with holes are GNU sparse members
    holding their data only, in sorted order with config.json and the segments listed."""
    folder, snap, _ = written
    if not holes_supported(folder / "0/wal/open-1"):
        pytest.skip("this file system does not keep holes, so the writer sees no holes to leave out")
    assert snap.stat().st_size < 256 * 1024, f"snapshot of {snap.stat().st_size} bytes: holes were archived"
    assert not Path(f"{snap}.tmp").exists()
    with tarfile.open(snap) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.split("/")), "members are not in sorted walk order"
    by_name = {m.name: m for m in members}
    assert "config.json" in by_name and f"0/segments/{UUID2}/{LONG_NAME}" in by_name
    for rel in ("0/wal/open-1", "0/wal/open-2", "0/wal/all-hole", f"0/segments/{UUID2}/{LONG_NAME}"):
        assert by_name[rel].issparse(), f"{rel} is not a sparse member"
        assert by_name[rel].size == (folder / rel).stat().st_size
    assert len(by_name["0/wal/open-2"].sparse) >= 30  # more than 4 regions: extension blocks
    assert not by_name["config.json"].issparse() and not by_name[f"0/segments/{UUID1}/small.bin"].issparse()


def test_data_regions_cover_every_nonzero_byte_on_block_boundaries(tmp_path):
    """data_regions never calls data a hole: every non-zero byte lies in a region, regions start on
    512-byte boundaries, are sorted and disjoint, and stay within the file."""
    path = tmp_path / "f"
    chunks = {1: b"a", 70_000: b"bb", 3 * MiB + 511: b"c", 5 * MiB - 3: b"end"}
    sparse_file(path, 5 * MiB, chunks)
    with open(path, "rb") as fh:
        regions = snapfmt.data_regions(fh.fileno(), 5 * MiB)
    previous_end = 0
    for offset, length in regions:
        assert offset % 512 == 0 and length > 0 and offset >= previous_end and offset + length <= 5 * MiB
        previous_end = offset + length
    for offset, data in chunks.items():
        for i in range(len(data)):
            assert any(o <= offset + i < o + n for o, n in regions), f"byte {offset + i} is in no region"
    with open(tmp_path / "empty", "wb") as fh:
        assert snapfmt.data_regions(fh.fileno(), 0) == []


def test_checksum_is_the_sha256_of_the_snapshot_file(written):
    """The checksum write_snapshot returns (and the server lists) is sha256 of the file's bytes, as is sha256_file's."""
    _, snap, digest = written
    expected = hashlib.sha256(snap.read_bytes()).hexdigest()
    assert digest == expected
    assert snapfmt.sha256_file(str(snap)) == expected


def test_writer_skips_what_it_is_told_and_never_follows_symlinks(tmp_path):
    """skip(rel) leaves files and folders out; symlinks in the collection folder (even to outside
    files) are not archived; a snapshot of the same folder is written again to the same path atomically."""
    folder = tmp_path / "c"
    (folder / "0/segments/s").mkdir(parents=True)
    (folder / "0/wal").mkdir()
    (folder / "0/temp_segments/t").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "0/segments/s/f").write_text("seg")
    (folder / "0/wal/open-1").write_text("wal")
    (folder / "0/wal/.lock").write_text("lock")
    (folder / "0/wal/half.tmp").write_text("half")
    (tmp_path / "secret").write_text("outside")
    (folder / "0/wal/link").symlink_to(tmp_path / "secret")
    (folder / "0/segments/dirlink").symlink_to(tmp_path)

    def skip(rel: str) -> bool:
        base = rel.rsplit("/", 1)[-1]
        return rel.startswith("0/temp_segments") or base.endswith(".tmp") or (rel.startswith("0/wal/") and base.startswith("."))

    snap = tmp_path / "s.snapshot"
    first = snapfmt.write_snapshot(str(snap), str(folder), skip=skip)
    again = snapfmt.write_snapshot(str(snap), str(folder), skip=skip)
    with tarfile.open(snap) as tar:
        names = tar.getnames()
    assert names == ["0", "0/segments", "0/segments/s", "0/segments/s/f", "0/wal", "0/wal/open-1", "config.json"]
    assert again == snapfmt.sha256_file(str(snap)) and len(first) == 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "s.snapshot", "secret"]


@pytest.mark.skipif(GNU_TAR is None, reason="no tar on this host")
def test_gnu_tar_lists_and_extracts_the_snapshot_byte_identical(written, tmp_path):
    """GNU tar reads the snapshot: `tar -tf` lists config.json and the segments, `tar -x` gives the same files."""
    folder, snap, _ = written
    version = subprocess.run([GNU_TAR, "--version"], capture_output=True, text=True, check=False).stdout
    if "GNU tar" not in version:
        pytest.skip(f"{GNU_TAR} is not GNU tar")
    listed = subprocess.run([GNU_TAR, "-tf", str(snap)], capture_output=True, text=True, check=True, timeout=30)
    names = listed.stdout.splitlines()
    assert "config.json" in names and "0/wal/open-1" in names
    assert f"0/segments/{UUID1}/vectors/chunk_0.mmap" in names and f"0/segments/{UUID2}/{LONG_NAME}" in names
    assert any(n.startswith("0/segments/") for n in names) and any(n.startswith("0/wal/") for n in names)
    assert listed.stderr == ""
    out = tmp_path / "gnu"
    out.mkdir()
    done = subprocess.run([GNU_TAR, "-xf", str(snap), "-C", str(out)], capture_output=True, text=True, check=False, timeout=60)
    assert done.returncode == 0, done.stderr
    assert tree(out) == tree(folder)


@pytest.mark.skipif(GNU_TAR is None, reason="no tar on this host")
@pytest.mark.parametrize("fmt", ["gnu", "posix"])
def test_snapshots_made_by_gnu_tar_are_read(tmp_path, fmt):
    """An archive GNU tar made of the folder (`./` names, gnu or posix/pax 1.0 sparse members) extracts identically."""
    folder = make_collection(tmp_path / "collection")
    snap = tmp_path / "gnu.snapshot"
    made = subprocess.run([GNU_TAR, f"--format={fmt}", "--sparse", "-C", str(folder), "-cf", str(snap), "."],
                          capture_output=True, text=True, check=False, timeout=60)
    if made.returncode != 0:
        pytest.skip(f"tar could not write the {fmt} format: {made.stderr.strip()}")
    if holes_supported(folder / "0/wal/open-1"):
        with tarfile.open(snap) as tar:
            assert tar.getmember("./0/wal/open-1").issparse(), "GNU tar did not write a sparse member"
    scene = Scene(tmp_path / "work", snap=snap)
    scene.extract()
    scene.assert_untouched_outside()
    assert tree(scene.dest) == tree(folder)


# --------------------------------------------------------------------------- refused uploads


@pytest.fixture(scope="module")
def small_snapshot(tmp_path_factory) -> bytes:
    """A snapshot written by write_snapshot of a small collection: sparse members of at most 4
    regions (no extension block), plain files, folders."""
    folder = tmp_path_factory.mktemp("small") / "c"
    (folder / "0/segments" / UUID1).mkdir(parents=True)
    (folder / "0/wal").mkdir()
    (folder / "config.json").write_text('{"params": {"vectors": {"size": 2, "distance": "Euclid"}}}')
    (folder / "payload_index.json").write_text('{"schema": {}}')
    (folder / "0/segments" / UUID1 / "segment.json").write_text('{"version": 1}')
    sparse_file(folder / "0/segments" / UUID1 / "chunk", 64 * 1024, {100: b"v" * 40, 40_000: b"w"})
    sparse_file(folder / "0/wal/open-1", 128 * 1024, {0: b"first", 70_000: b"second", 128 * 1024 - 2: b"zz"})
    (folder / "0/wal/first-index").write_bytes(b"\1\0\0\0")
    snap = folder.parent / "s.snapshot"
    snapfmt.write_snapshot(str(snap), str(folder))
    return snap.read_bytes()


NOT_TARS = {
    "empty-file": b"",
    "text": b"this is not a snapshot\n" * 100,
    "random-bytes": random.Random(7).randbytes(20_000),
    "json": json.dumps({"snapshot": "x", "points": []}).encode(),
    "zero-blocks": b"\0" * 10_240,
}


@pytest.mark.parametrize("blob", list(NOT_TARS.values()), ids=list(NOT_TARS))
def test_not_a_tar_is_refused(tmp_path, blob):
    """A file that is not a tar archive gets SnapshotFormatError and no destination at all."""
    scene = Scene(tmp_path, blob)
    err = scene.refused()
    assert "not a readable tar" in str(err) or "damaged" in str(err) or "no config.json" in str(err)
    assert not scene.dest.exists()


def test_a_compressed_snapshot_is_refused(tmp_path, small_snapshot):
    """Snapshots are plain tars: a gzipped one is refused by its magic bytes, nothing decompressed."""
    scene = Scene(tmp_path, gzip.compress(small_snapshot))
    scene.refused("gzip-compressed, not a plain tar archive")
    assert not scene.dest.exists()


def _cut_points(blob: bytes) -> dict[str, int]:
    """Where to cut the snapshot `blob` short, by name."""
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        members = tar.getmembers()
        end_marker = tar.offset  # where the end-of-archive marker starts
    last_file = [m for m in members if m.isreg()][-1]
    return {
        "inside-the-first-header": 300,
        "inside-a-later-header": members[3].offset + 100,
        "inside-a-file": last_file.offset_data + 3,
        "at-a-member-boundary": members[3].offset,
        "before-the-end-marker": end_marker,
    }


@pytest.mark.parametrize("where", ["inside-the-first-header", "inside-a-later-header", "inside-a-file",
                                   "at-a-member-boundary", "before-the-end-marker"])
def test_a_truncated_snapshot_is_refused(tmp_path, small_snapshot, where):
    """A snapshot cut short anywhere before its end-of-archive marker is refused before anything is
    written: as truncated, or (config.json is the last member) as incomplete, whichever check trips first."""
    cut = _cut_points(small_snapshot)[where]
    assert 0 < cut < len(small_snapshot)
    scene = Scene(tmp_path, small_snapshot[:cut])
    err = scene.refused()
    words = ("truncated", "damaged", "not a readable tar", "not a complete Qdrant collection snapshot")
    assert any(w in str(err) for w in words), str(err)
    assert not scene.dest.exists()


def test_the_small_snapshot_itself_is_accepted(tmp_path, small_snapshot):
    """The fixture the truncation and fuzz tests damage is a valid snapshot."""
    scene = Scene(tmp_path, small_snapshot)
    scene.extract()
    scene.assert_untouched_outside()
    assert json.loads((scene.dest / "config.json").read_text())["params"]["vectors"]["size"] == 2


# (id, members, what the message says); the archive is complete otherwise.
REFUSED = [
    ("dotdot", [*VALID, F("../escaped")], "not a plain relative path"),
    ("dotdot-inside", [*VALID, F("0/wal/../../../escaped")], "not a plain relative path"),
    ("dotdot-dir", [*VALID, D("0/../.."), F("0/wal/x")], "not a plain relative path"),
    ("dotdot-long-name", [*VALID, F("../" + "a" * 150)], "not a plain relative path"),
    ("dotdot-pax-path", [*VALID, member("0/wal/ok", b"x", pax={"path": "../escaped"})], "not a plain relative path"),
    ("empty-part", [*VALID, F("0//wal/x")], "not a plain relative path"),
    ("absolute", [*VALID, F("/tmp/aidb-gate-snapfmt-escaped")], "absolute"),
    ("absolute-dir", [*VALID, D("/tmp")], "absolute"),
    ("backslash", [*VALID, F("0\\..\\..\\escaped")], "malformed"),
    ("symlink", [*VALID, member("0/wal/link", b"", tarfile.SYMTYPE, "/etc/passwd")], "symbolic link"),
    ("symlink-dotdot", [*VALID, member("0/wal/link", b"", tarfile.SYMTYPE, "../../..")], "symbolic link"),
    ("symlink-then-file", [*VALID, member("0/evil", b"", tarfile.SYMTYPE, "/tmp"), F("0/evil/x")], "symbolic link"),
    ("hardlink", [*VALID, member("0/wal/hard", b"", tarfile.LNKTYPE, "config.json")], "hard link"),
    ("hardlink-outside", [*VALID, member("0/wal/hard", b"", tarfile.LNKTYPE, "/etc/passwd")], "hard link"),
    ("device", [*VALID, member("0/wal/dev", b"", tarfile.CHRTYPE)], "device or FIFO"),
    ("fifo", [*VALID, member("0/wal/fifo", b"", tarfile.FIFOTYPE)], "device or FIFO"),
    ("duplicate-file", [*VALID, F("config.json", b"{}")], "more than once"),
    ("duplicate-dot-slash", [*VALID, F("./0/wal/open-1", b"again")], "more than once"),
    ("file-then-dir", [*VALID, F("0/wal/x"), D("0/wal/x")], "more than once"),
    ("dir-then-file", [*VALID, D("0/wal/x"), F("0/wal/x")], "more than once"),
    ("file-under-a-file", [*VALID, F("0/wal/open-1/inner")], "which is a file"),
    ("config-is-a-folder", [D("config.json"), *SEGMENTS, *WAL], "config.json in the snapshot is not a file"),
    ("no-config", [*SEGMENTS, *WAL], "no config.json"),
    ("no-segments", [CONFIG, D("0"), *WAL], "no 0/segments/"),
    ("no-wal", [CONFIG, *SEGMENTS], "no 0/wal/"),
    ("shard-in-other-folder", [CONFIG, D("1"), F("1/segments/s/f"), F("1/wal/open-1")], "no 0/segments/ and no 0/wal/"),
    ("empty-archive", [], "no config.json"),
    ("old-format", [F("snapshot.json", b'{"collection": "c"}'), F("points.jsonl", b'{"id": 1}\n')],
     "old qdrant-api recipe"),
]


@pytest.mark.parametrize(("members", "match"), [(m, w) for _, m, w in REFUSED], ids=[i for i, _, _ in REFUSED])
def test_bad_members_are_refused_before_anything_is_written(tmp_path, members, match):
    """Each unsafe or incomplete archive raises SnapshotFormatError naming the problem; the
    destination is not even created and nothing around it changes."""
    scene = Scene(tmp_path)
    build_tar(scene.snap, members)
    scene.refused(match)
    assert not scene.dest.exists()
    assert not Path("/tmp/aidb-gate-snapfmt-escaped").exists()


def test_the_valid_member_list_is_accepted(tmp_path):
    """The member list the refusal cases start from is itself a valid snapshot (so each refusal is the added member's)."""
    scene = Scene(tmp_path)
    build_tar(scene.snap, VALID)
    scene.extract()
    scene.assert_untouched_outside()
    assert (scene.dest / "0/wal/open-1").read_bytes() == b"wal" * 100


def test_invalid_json_config_is_left_to_the_server(tmp_path):
    """snapfmt checks the archive, not config.json's content: invalid JSON (or UTF-8) extracts, and the
    server's read of it raises ValueError, which recover() turns into a 400 "config.json is not JSON"."""
    for i, content in enumerate((b'{"params": ', b"\xff\xfe not utf-8")):
        scene = Scene(tmp_path / str(i))
        build_tar(scene.snap, [F("config.json", content), *SEGMENTS, *WAL])
        scene.extract()
        with pytest.raises(ValueError), open(scene.dest / "config.json", encoding="utf-8") as fh:
            json.load(fh)


def test_extra_shard_folders_are_left_to_the_server(tmp_path):
    """snapfmt does not refuse a multi-shard layout (0/ and 1/): the server refuses shard_number != 1
    from config.json, and only shard 0 is loaded. Pinned so a change here is deliberate."""
    scene = Scene(tmp_path)
    config = F("config.json", b'{"params": {"vectors": {"size": 4, "distance": "Dot"}, "shard_number": 2}}')
    build_tar(scene.snap, [config, *SEGMENTS, *WAL, D("1"), F("1/segments/s/f"), F("1/wal/open-1")])
    scene.extract()
    scene.assert_untouched_outside()
    assert (scene.dest / "1/wal/open-1").is_file()


def test_extract_into_an_existing_file_does_not_overwrite_it(tmp_path):
    """extract opens files with O_EXCL: a destination that already holds config.json is not overwritten."""
    scene = Scene(tmp_path)
    build_tar(scene.snap, VALID)
    scene.dest.mkdir()
    (scene.dest / "config.json").write_text("mine")
    with pytest.raises(FileExistsError):
        scene.extract()
    assert (scene.dest / "config.json").read_text() == "mine"


# --------------------------------------------------------------------------- fuzzing


FUZZ = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def _read_fuzzed(blob: bytes) -> None:
    """Extract `blob` in a fresh work folder: accepted, or SnapshotFormatError; never another
    exception, never a hang (10 s), nothing outside the destination changed."""
    with tempfile.TemporaryDirectory(prefix="snapfmt-fuzz-") as tmp:
        scene = Scene(Path(tmp), blob)
        try:
            scene.extract()
            event("accepted")
        except SnapshotFormatError as exc:
            assert str(exc), "an error without a message"
            event(f"refused: {' '.join(str(exc).split()[:4])}")
        scene.assert_untouched_outside()


@FUZZ
@given(blob=st.one_of(st.binary(max_size=4096),
                      st.binary(min_size=512, max_size=512).map(lambda b: b * 3),
                      st.lists(st.sampled_from([b"\0" * 512, b"ustar\0", b"../", b"0/wal/", b"config.json"]),
                               max_size=20).map(b"".join)))
def test_fuzz_random_bytes_are_accepted_or_refused_cleanly(blob):
    """Random bytes (and tar-ish fragments) never make the reader crash, hang or write outside."""
    _read_fuzzed(blob)


@pytest.fixture(scope="module")
def landmarks(small_snapshot) -> list[int]:
    """Offsets in the small snapshot where damage is most telling: each member's header and data,
    a sparse member's map, the end-of-archive marker."""
    with tarfile.open(fileobj=io.BytesIO(small_snapshot)) as tar:
        members = tar.getmembers()
        marks = [tar.offset]
    for m in members:
        marks += [m.offset, m.offset + 124, m.offset + 386, m.offset_data]
    return sorted(set(marks))


@FUZZ
@given(data=st.data())
def test_fuzz_mutated_snapshots_are_accepted_or_refused_cleanly(small_snapshot, landmarks, data):
    """A valid snapshot with random bytes overwritten, cut off, inserted or a block duplicated is
    accepted or refused with SnapshotFormatError, never another exception, never a hang, nothing outside changes."""
    blob = bytearray(small_snapshot)
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        kind = data.draw(st.sampled_from(["overwrite", "truncate", "insert", "duplicate-block", "zero-block"]), label="kind")
        pos = data.draw(st.one_of(st.builds(sum, st.tuples(st.sampled_from(landmarks[1:]), st.integers(0, 600))),
                                  st.integers(0, max(0, len(blob) - 1))), label="pos")
        pos = min(pos, max(0, len(blob) - 1))
        if kind == "overwrite":
            chunk = data.draw(st.binary(min_size=1, max_size=16), label="bytes")
            blob[pos:pos + len(chunk)] = chunk
        elif kind == "truncate":
            del blob[pos:]
        elif kind == "insert":
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=600), label="bytes")
        else:
            start = pos - pos % 512
            block = bytes(blob[start:start + 512])
            blob[start:start + 512] = block * 2 if kind == "duplicate-block" else b"\0" * len(block)
    _read_fuzzed(bytes(blob))


# --------------------------------------------------------------------------- crafted archives
#
# Archives with valid header checksums that once crashed or hung the reader (found by these tests):
# each must now be one SnapshotFormatError (a 400 from the server), or, for the last, accepted.


def _bad(tmp_path: Path, blob: bytes) -> None:
    scene = Scene(tmp_path, blob)
    scene.refused()


def test_negative_member_size_is_refused_not_looped_on(tmp_path):
    """A member size of -512 must be refused promptly, not loop in getmembers() (run in a child, killed after 3 s)."""
    snap = tmp_path / "neg.snapshot"
    snap.write_bytes(NEGATIVE_512)
    code = LOAD + ("try:\n    snapfmt.extract(sys.argv[1], sys.argv[2])\n"
                   "except snapfmt.SnapshotFormatError:\n    print('refused')\n")
    try:
        done = subprocess.run([sys.executable, "-c", code, str(snap), str(tmp_path / "dest")],
                              capture_output=True, text=True, timeout=3, check=False)
    except subprocess.TimeoutExpired:
        raise AssertionError("extract() did not return within 3 s: it hangs on a negative member size") from None
    assert done.stdout.strip() == "refused", done.stderr


def test_crafted_negative_member_size_raises_value_error(tmp_path):
    """A negative member size (-256) is refused as a damaged archive."""
    _bad(tmp_path, NEGATIVE_256)


def test_crafted_file_named_like_an_earlier_members_folder(tmp_path):
    """A file '0/wal/a' after a file '0/wal/a/b' is refused (it would have to be both a folder and a file)."""
    scene = Scene(tmp_path)
    build_tar(scene.snap, [*VALID, F("0/wal/a/b"), F("0/wal/a")])
    scene.refused()
    assert not scene.dest.exists()


def test_crafted_overlong_member_name(tmp_path):
    """A member whose name component is longer than the file system allows is refused."""
    scene = Scene(tmp_path)
    build_tar(scene.snap, [*VALID, F("0/wal/" + "a" * 300)])
    scene.refused()


def test_crafted_sparse_member_with_negative_offset(tmp_path):
    """A sparse member whose map has a negative offset is refused."""
    sparse = raw_header("0/wal/s", 512, tarfile.GNUTYPE_SPARSE, {386: b"\xff" * 12, 398: tarfile.itn(512, 12, GNU),
                                                                 483: tarfile.itn(4096, 12, GNU)})
    _bad(tmp_path, valid_prefix() + sparse + b"z" * 512 + END)


def test_crafted_sparse_member_with_huge_real_size(tmp_path):
    """A sparse member claiming a real size no file system holds is refused."""
    sparse = raw_header("0/wal/s", 0, tarfile.GNUTYPE_SPARSE, {483: b"\x80" + b"\xff" * 11})
    _bad(tmp_path, valid_prefix() + sparse + END)


def test_crafted_truncated_inside_a_sparse_extension_block(tmp_path):
    """A write_snapshot snapshot cut right after a sparse header whose map continues in an extension block is refused."""
    folder = tmp_path / "c"
    (folder / "0/segments/s").mkdir(parents=True)
    (folder / "0/wal").mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "0/segments/s/f").write_text("seg")
    sparse_file(folder / "0/wal/open-1", 8 * MiB, {i * MiB: b"d" for i in range(8)})  # 8 regions: one extension block
    snap = tmp_path / "s.snapshot"
    snapfmt.write_snapshot(str(snap), str(folder))
    with tarfile.open(snap) as tar:
        wal = tar.getmember("0/wal/open-1")
    assert wal.issparse() and len(wal.sparse) > 4
    _bad(tmp_path / "work", snap.read_bytes()[:wal.offset + 512 + 100])


def test_crafted_pax_sparse_map_that_is_not_numbers(tmp_path):
    """A pax sparse (1.0) member with a garbage map is refused as a damaged archive."""
    info = tarfile.TarInfo("0/wal/p")
    info.size = 512
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "0/wal/p",
                        "GNU.sparse.realsize": "10"}
    _bad(tmp_path, valid_prefix() + info.tobuf(tarfile.PAX_FORMAT) + padded(b"garbage\n") + END)


def test_empty_segments_and_wal_folders_round_trip(tmp_path):
    """write_snapshot of a collection folder whose 0/segments/ and 0/wal/ are empty reads back."""
    folder = tmp_path / "c"
    (folder / "0/segments").mkdir(parents=True)
    (folder / "0/wal").mkdir()
    (folder / "config.json").write_text("{}")
    snap = tmp_path / "s.snapshot"
    snapfmt.write_snapshot(str(snap), str(folder))
    scene = Scene(tmp_path / "work", snap=snap)
    scene.extract()
    assert tree(scene.dest) == tree(folder)
