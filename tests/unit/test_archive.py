"""The strict tar reader (aidb_gate/backup/archive.py) that verify, restore's pre-check and the
Qdrant-API recipe's upload share: crafted archives - a negative member size (CVE-2025-8194), a
bz2 bomb, a pax header that makes tarfile's regular expressions backtrack (CVE-2024-6232), pax
sparse maps of garbage, names that are not UTF-8, links, too many or too large members, a missing
end marker - each get one paragraph from `verify_backup` and from `aidb-gate verify` (exit 1), and
restore refuses them, within seconds. Valid archives (tarfile's, GNU tar's four sparse formats)
verify clean and extract byte-identical. Also: how the recipe image receives this module."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from aidb_gate import images
from aidb_gate.backup import BackupError, archive, restore_backup, verify_backup
from aidb_gate.cli import main
from tests.unit.crafted import sparse_file, time_limit

ROOT = Path(__file__).resolve().parents[2]
BLOCK = tarfile.BLOCKSIZE
GNU = tarfile.GNU_FORMAT
END = b"\0" * (2 * BLOCK)
GNU_TAR = shutil.which("tar")
SECONDS = 10  # a refusal takes milliseconds; this bound only proves "does not hang"


# --------------------------------------------------------------------------- crafting archives


def padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


def header(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, fields: dict[int, bytes] | None = None) -> bytes:
    """One GNU header block for `name`, with raw bytes written over it at `fields` {offset: bytes}
    and the checksum computed again: for sizes, names and sparse maps no writer produces."""
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mtime, info.mode = size, kind, 1_700_000_000, 0o644
    buf = bytearray(info.tobuf(GNU, "utf-8", "surrogateescape"))
    head = len(buf) - BLOCK
    for offset, raw in (fields or {}).items():
        buf[head + offset:head + offset + len(raw)] = raw
    buf[head + 148:head + 156] = b" " * 8
    buf[head + 148:head + 155] = b"%06o\0" % tarfile.calc_chksums(bytes(buf[head:head + BLOCK]))[0]
    return bytes(buf)


def prefix() -> bytes:
    """A small valid collection snapshot's first members (raw blocks); crafted members follow."""
    return b"".join(header(n, len(d)) + padded(d) for n, d in
                    (("config.json", b"{}"), ("0/segments/s/f", b"seg"), ("0/wal/open-1", b"wal")))


def with_tarfile(*members: tuple[tarfile.TarInfo, bytes], fmt: int = GNU) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buf.getvalue()


def info(name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE, link: str = "",
         pax: dict[str, str] | None = None) -> tuple[tarfile.TarInfo, bytes]:
    member = tarfile.TarInfo(name)
    member.type, member.linkname, member.mode, member.mtime = kind, link, 0o644, 1_700_000_000
    member.size = len(data) if kind == tarfile.REGTYPE else 0
    member.pax_headers = dict(pax or {})
    return member, data


def valid_tar() -> bytes:
    return with_tarfile(info("config.json", b"{}"), info("0", b"", tarfile.DIRTYPE), info("0/segments/s/f", b"seg"),
                        info("0/wal/open-1", b"wal" * 100))


def pax_sparse_10(map_text: bytes, realsize: str = "10") -> bytes:
    """A pax member in GNU's sparse format 1.0 whose map (in front of the data) is `map_text`."""
    member = tarfile.TarInfo("0/wal/GNUSparseFile.0/p")
    member.size = len(padded(map_text)) + BLOCK
    member.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": "0/wal/p",
                          "GNU.sparse.realsize": realsize}
    return prefix() + member.tobuf(tarfile.PAX_FORMAT) + padded(map_text) + b"d" * BLOCK + END


def pax_record(keyword: str, value: str) -> bytes:
    """One pax record `LEN keyword=value\\n`, LEN counting itself."""
    body = f" {keyword}={value}\n".encode()
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def pax_header_with(records: bytes) -> bytes:
    """A pax extended header (type x) holding `records` verbatim, then a regular member."""
    return header("PaxHeaders/x", len(records), tarfile.XHDTYPE) + padded(records) + header("0/wal/x", 1) + padded(b"z")


def sparse_old_gnu(name: str, realsize: int, regions: list[tuple[int, int]], stored: int) -> bytes:
    """An old-GNU sparse member (type S) with up to 4 map entries in its header and `stored` data bytes."""
    fields = {483: tarfile.itn(realsize, 12, GNU)}
    for i, (offset, length) in enumerate(regions[:4]):
        fields[386 + 24 * i] = tarfile.itn(offset, 12, GNU) + tarfile.itn(length, 12, GNU)
    return header(name, stored, tarfile.GNUTYPE_SPARSE, fields) + padded(b"d" * stored)


def bz2_bomb(streams: int = 180, chunk: int = 45_000_000) -> bytes:
    """About 9 KB of bzip2 (`streams` concatenated streams of `chunk` zero bytes each) that
    decompresses to a tar of one member of some 8 GB of zeros: what the issue measured."""
    total = streams * chunk
    first = bz2.compress(header("0/wal/zeros", total - 3 * BLOCK))
    return first + bz2.compress(b"\0" * chunk) * streams


#: The issue's 2 KB snapshot: a member, then one whose size field says -512 (base-256), then a zero block.
NEGATIVE_SIZE = header("config.json", 2) + padded(b"{}") + header("0/wal/x", fields={124: b"\xff" * 10 + b"\xfe\x00"}) \
    + b"\0" * BLOCK

# (id, the snapshot's bytes (or a function making them), words of the one problem)
REFUSED = [
    ("gzip", lambda: gzip.compress(valid_tar(), mtime=0), "gzip-compressed, not a plain tar archive"),
    ("xz-magic", lambda: b"\xfd7zXZ\x00" + b"\0" * 600, "xz-compressed"),
    ("pax-sparse-map-garbage", lambda: pax_sparse_10(b"garbage\n"), "sparse map line that is not a number"),
    ("pax-sparse-map-huge-count", lambda: pax_sparse_10(b"99999999999999\n"), "sparse map of 99999999999999 entries"),
    ("pax-sparse-map-no-newline", lambda: pax_sparse_10(b"1" * 5000), "sparse map line that is not a number"),
    ("pax-sparse-map-outside-size", lambda: pax_sparse_10(b"1\n0\n100\n"), "sparse map entry (0, 100) outside its size"),
    ("pax-sparse-realsize-not-a-number", lambda: pax_sparse_10(b"1\n0\n1\n", realsize="ten"), "the archive is damaged"),
    ("old-gnu-sparse-map-overlaps", lambda: prefix() + sparse_old_gnu("0/wal/s", 4096, [(0, 512), (256, 512)], 1024) + END,
     "overlap or are out of order"),
    ("old-gnu-sparse-more-data-than-stored", lambda: prefix() + sparse_old_gnu("0/wal/s", 4096, [(0, 2048)], 512) + END,
     "more than the 512 it stores"),
    ("member-of-2-TiB", lambda: prefix() + sparse_old_gnu("0/wal/s", 1 << 41, [], 0) + END, "declares a size of 2199023255552"),
    ("holes-of-400-GiB", lambda: prefix() + sparse_old_gnu("0/wal/a", 200 << 30, [], 0)
     + sparse_old_gnu("0/wal/b", 200 << 30, [], 0) + END, "beyond its own"),
    ("non-utf8-name", lambda: prefix() + header("0/wal/xx", 1, fields={6: b"\xff\xfe"}) + padded(b"z") + END,
     "has a name that is not UTF-8"),
    ("non-utf8-pax-path", lambda: with_tarfile(info("config.json", b"{}"), (_binary_pax_path(), b"z"), fmt=tarfile.PAX_FORMAT),
     "name that is not UTF-8"),
    ("symlink", lambda: with_tarfile(info("config.json", b"{}"), info("0/wal/l", b"", tarfile.SYMTYPE, "/etc/passwd")),
     "is a symbolic link"),
    ("hard-link", lambda: with_tarfile(info("config.json", b"{}"), info("0/wal/h", b"", tarfile.LNKTYPE, "/etc/shadow")),
     "is a hard link"),
    ("fifo", lambda: with_tarfile(info("config.json", b"{}"), info("0/wal/f", b"", tarfile.FIFOTYPE)), "device or FIFO"),
    ("contiguous-file", lambda: with_tarfile(info("config.json", b"{}"), info("0/wal/c", b"", tarfile.CONTTYPE)),
     "of tar type '7'"),
    ("dotdot", lambda: with_tarfile(info("config.json", b"{}"), info("0/../../x")), "not a plain relative path"),
    ("absolute", lambda: with_tarfile(info("/etc/cron.d/x")), "absolute or malformed"),
    ("duplicate", lambda: with_tarfile(info("config.json", b"{}"), info("./config.json", b"{}")), "appears more than once"),
    ("file-under-a-file-listed-later", lambda: with_tarfile(info("0/a/b"), info("0/a")), "lies under '0/a', which is a file"),
    ("too-deep", lambda: with_tarfile(info("/".join(["d"] * 65))), "65 folders deep"),
    ("no-end-marker", prefix, "without the end-of-archive marker"),
    ("damaged-second-header", lambda: prefix()[:BLOCK * 2] + b"\x01" * BLOCK + END, "without the end-of-archive marker"),
    ("cut-inside-data", lambda: prefix()[:-BLOCK + 10], "truncated"),
    ("pax-record-malformed", lambda: prefix() + pax_header_with(b"99 path=x\n") + END, "malformed record"),
    ("not-a-tar", lambda: b"this is a log file, not a snapshot\n" * 40, "not a readable tar archive"),
    ("empty-file", lambda: b"", "not a readable tar archive: empty file"),
]


def _binary_pax_path() -> tarfile.TarInfo:
    member = tarfile.TarInfo("0/wal/\udcff\udcfe")  # written as the raw bytes ff fe with hdrcharset=BINARY
    member.size, member.mtime = 1, 1_700_000_000
    return member


# --------------------------------------------------------------------------- a backup folder around a snapshot


def backup_of(root: Path, blob: bytes, collection: str = "docs") -> Path:
    """A backup folder whose manifest lists `blob` as collection `collection`'s snapshot, with its
    right size and sha256: everything verifies but the snapshot's content."""
    folder = root / "backup"
    (folder / "qdrant").mkdir(parents=True)
    (folder / "qdrant" / f"{collection}.snapshot").write_bytes(blob)
    entry = {"file": f"qdrant/{collection}.snapshot", "size": len(blob), "sha256": hashlib.sha256(blob).hexdigest(),
             "points": 1}
    manifest = {"format": 1, "tool": "aidb-gate test", "started_at": "2026-01-01T00:00:00+00:00",
                "qdrant": {"url": "http://127.0.0.1:6333", "collections": {collection: entry}}}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder




def assert_one_problem(folder: Path, says: str, capsys: pytest.CaptureFixture[str]) -> None:
    """verify_backup names one problem holding `says`; `aidb-gate verify` prints it as one line and
    exits 1; restore refuses before it needs a target. All within SECONDS."""
    with time_limit(SECONDS):
        problems = verify_backup(folder)
    assert len(problems) == 1, problems
    assert says in problems[0] and "the snapshot of docs" in problems[0], problems[0]
    assert "\n" not in problems[0] and problems[0].isprintable(), problems[0]
    capsys.readouterr()
    with time_limit(SECONDS):
        code = main(["verify", str(folder)])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    assert out.count("\n") == 1 and out.startswith("[aidb-gate] VERIFY FAILED: ") and says in out, out
    assert "Traceback" not in out + err
    with time_limit(SECONDS), pytest.raises(BackupError, match="refusing to restore a backup that does not verify"):
        restore_backup(folder, None, None)


# --------------------------------------------------------------------------- verify refuses, quickly, in one paragraph


@pytest.mark.parametrize(("make", "says"), [(m, s) for _, m, s in REFUSED], ids=[i for i, _, _ in REFUSED])
def test_a_crafted_snapshot_is_one_problem_for_verify_and_restore(tmp_path, capsys, make, says):
    """Each crafted snapshot (listed in the manifest with its right checksum) is one problem naming
    it - never a traceback, never a pass - and restore refuses the backup."""
    assert_one_problem(backup_of(tmp_path, make()), says, capsys)


def test_a_bz2_bomb_is_refused_by_its_magic_bytes_without_decompressing(tmp_path, capsys):
    """A 9 KB bzip2 snapshot that expands to 8 GB (verify spent 23 s and 8 GiB on it) is refused
    from its first bytes: verify, the CLI and restore answer within SECONDS in all."""
    blob = bz2_bomb()
    assert len(blob) < 10_000
    begin = time.monotonic()
    assert_one_problem(backup_of(tmp_path, blob), "bzip2-compressed, not a plain tar archive", capsys)
    assert time.monotonic() - begin < SECONDS


def test_too_many_members_is_one_problem(tmp_path, capsys, monkeypatch):
    """More members than the limit (lowered here to 20, so the archive stays small) is one problem."""
    monkeypatch.setattr(archive, "LIMITS", archive.Limits(members=20))
    blob = with_tarfile(*(info(f"0/d{i}", b"", tarfile.DIRTYPE) for i in range(30)))
    assert_one_problem(backup_of(tmp_path, blob), "more than 20 members", capsys)


CHILD = """
import json, sys
from pathlib import Path
from aidb_gate.backup import BackupError, restore_backup, verify_backup
from aidb_gate.cli import main
folder = Path(sys.argv[1])
print(json.dumps(verify_backup(folder)), flush=True)
print("exit", main(["verify", str(folder)]), flush=True)
try:
    restore_backup(folder, None, None)
except BackupError as err:
    print("restore refused:", str(err).splitlines()[0][:80], flush=True)
"""


def verify_in_child(folder: Path, timeout_s: float = 30) -> list[str]:
    """verify_backup, `aidb-gate verify` and restore_backup of `folder` in a child process that is
    killed after `timeout_s`: a hang (a loop in C or in a regular expression, which no alarm
    interrupts) fails the test instead of hanging the suite. Returns the child's output lines."""
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, str(folder)], capture_output=True, text=True,
                              timeout=timeout_s, check=False, cwd=ROOT)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"verify/restore did not finish within {timeout_s} s: they hang") from None
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize(("blob", "says"), [
    (NEGATIVE_SIZE, "declares a size of -512 bytes"),
    (header("0/wal/x", fields={124: b"\xff" * 11 + b"\x00"}) + END, "declares a size of -256 bytes"),
    # An old-GNU sparse member whose stored size is negative while its real size is fine: only the
    # position check sees that tarfile would move back.
    (header("0/wal/s", 0, tarfile.GNUTYPE_SPARSE, {124: b"\xff" * 10 + b"\xfe\x00",
                                                             483: tarfile.itn(4096, 12, GNU)}) + END, "outside the archive"),
], ids=["size-minus-512", "size-minus-256", "sparse-stored-size-negative"])
def test_a_negative_member_size_is_refused_not_looped_on(tmp_path, blob, says):
    """A 2 KB snapshot with a negative member size made verify and restore loop forever with
    growing memory (tarfile.getmembers, CVE-2025-8194): now one problem, exit 1, a refused
    restore, in a child process that is killed after 30 s."""
    assert len(blob) <= 2048
    lines = verify_in_child(backup_of(tmp_path, blob))
    problems = json.loads(lines[0])
    assert len(problems) == 1 and says in problems[0], problems
    assert lines[1].startswith("[aidb-gate] VERIFY FAILED: ") and lines[2] == "exit 1", lines
    assert lines[3].startswith("restore refused: refusing to restore a backup that does not verify"), lines


def test_a_pax_header_that_backtracks_tarfiles_regex_is_refused_quickly(tmp_path):
    """A pax record holding a long run of digits makes tarfile's `\\d+ hdrcharset=` search quadratic
    (CVE-2024-6232; 128 KiB of digits took verify minutes): refused before tarfile parses it."""
    blob = prefix() + pax_header_with(pax_record("comment", "1" * 131_072)) + END
    lines = verify_in_child(backup_of(tmp_path, blob))
    problems = json.loads(lines[0])
    assert len(problems) == 1 and "a number longer than 32 digits" in problems[0], problems
    assert lines[2] == "exit 1", lines


# --------------------------------------------------------------------------- valid archives read clean


def test_a_valid_snapshot_verifies_clean(tmp_path, capsys):
    """A plain tar of folders and files (tarfile's default pax format) verifies with no problem and exit 0."""
    folder = backup_of(tmp_path, valid_tar())
    assert verify_backup(folder) == []
    assert main(["verify", str(folder)]) == 0
    assert "every artifact matches its manifest" in capsys.readouterr().out



@pytest.mark.skipif(GNU_TAR is None, reason="no tar on this host")
@pytest.mark.parametrize("options", [["--format=gnu"], ["--format=posix"], ["--format=posix", "--sparse-version=0.0"],
                                     ["--format=posix", "--sparse-version=0.1"]], ids=["gnu", "pax-1.0", "pax-0.0", "pax-0.1"])
def test_gnu_tars_sparse_formats_verify_and_extract_identically(tmp_path, options):
    """Archives GNU tar writes with --sparse (old GNU, pax 0.0, 0.1 and 1.0 maps; 30 regions, so
    the old GNU map continues in extension blocks) verify clean; extract gives the same bytes."""
    folder = tmp_path / "c"
    (folder / "0/segments/s").mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    (folder / "0/segments/s/f").write_text("seg")
    sparse_file(folder / "0/wal/open-1", 32 << 20, {i * (1 << 20) + 513 * i + 1: bytes([i + 1]) * (i + 1) for i in range(30)})
    sparse_file(folder / "0/wal/ends-in-hole", 1 << 20, {5: b"x"})
    snap = tmp_path / "s.snapshot"
    made = subprocess.run([GNU_TAR, *options, "--sparse", "-C", str(folder), "-cf", str(snap), "."],
                          capture_output=True, text=True, check=False, timeout=60)
    if made.returncode != 0:
        pytest.skip(f"tar could not write {options}: {made.stderr.strip()}")
    assert verify_backup(backup_of(tmp_path / "b", snap.read_bytes())) == []
    members = archive.scan(snap)
    archive.extract(snap, tmp_path / "out", members)
    for rel in ("config.json", "0/segments/s/f", "0/wal/open-1", "0/wal/ends-in-hole"):
        assert (tmp_path / "out" / rel).read_bytes() == (folder / rel).read_bytes(), rel


def test_scan_leaves_the_root_folder_and_repeated_folders_out(tmp_path):
    """`./` and a folder listed twice are not members; names come back clean (no `./`)."""
    path = tmp_path / "s.tar"
    path.write_bytes(with_tarfile(info("./", b"", tarfile.DIRTYPE), info("./0", b"", tarfile.DIRTYPE),
                                  info("0", b"", tarfile.DIRTYPE), info("./0/f", b"abc")))
    assert [(m.name, m.is_dir, m.size) for m in archive.scan(path)] == [("0", True, 0), ("0/f", False, 3)]


def test_extract_never_overwrites(tmp_path):
    """extract creates files O_EXCL: a file already in the target is not overwritten."""
    path = tmp_path / "s.tar"
    path.write_bytes(valid_tar())
    (tmp_path / "out").mkdir()
    (tmp_path / "out/config.json").write_text("mine")
    with pytest.raises(FileExistsError):
        archive.extract(path, tmp_path / "out", archive.scan(path))
    assert (tmp_path / "out/config.json").read_text() == "mine"


def test_names_in_messages_are_escaped():
    """A name from an archive prints on one line: control, bidi and separator characters and bytes
    that were not UTF-8 become visible escapes; ordinary letters stay."""
    assert archive.shown("Zürich/a\nb\u202ec\u2028d\udcff") == "'Zürich/a\\x0ab\\u202ec\\u2028d\\xff'"
    assert archive.shown("x" * 200, 10) == "'xxxxxxxxxx...'"


# --------------------------------------------------------------------------- the cheap "is this a snapshot" test


def test_looks_like_tar_reads_one_header_and_decompresses_nothing(tmp_path):
    """Picking a user command's snapshot among its other files reads one block: a tar header passes,
    a compressed file (the bomb included), a log and an empty file do not."""
    cases = {"tar": (valid_tar(), True), "tar.gz": (gzip.compress(valid_tar()), False), "bomb": (bz2_bomb(20, 1000), False),
             "log": (b"2026-01-01 backup done\n" * 50, False), "empty": (b"", False), "zeros": (b"\0" * 2048, False)}
    for name, (blob, expected) in cases.items():
        (tmp_path / name).write_bytes(blob)
        assert archive.looks_like_tar(tmp_path / name) is expected, name
    assert archive.looks_like_tar(tmp_path / "missing") is False


# --------------------------------------------------------------------------- the recipe image carries this module


def test_the_qdrant_api_recipe_is_built_with_the_gates_archive_module(tmp_path, monkeypatch):
    """provision() builds the Qdrant-API recipe from a copy of its folder with aidb_gate/backup/archive.py
    added as archive.py (the Containerfile COPYs it); the copy is gone afterwards; the image's tag
    hashes exactly what was built."""
    seen: dict[str, object] = {}

    def fake_build(engine, context, tag, log_path, **kwargs):
        seen["context"] = context
        seen["files"] = sorted(p.relative_to(context).as_posix() for p in Path(context).rglob("*") if p.is_file())
        seen["archive"] = (Path(context) / "archive.py").read_bytes()
        seen["hash"] = images.tree_hash(Path(context), extra="base-id")[:12]
        seen["tag"] = tag
        return 0, ""

    class NoEngine:
        class shared:  # the attribute path images.image_id and images.try_pull use
            class images:
                @staticmethod
                def get(ref):
                    raise LookupError(ref)

                @staticmethod
                def pull(ref):
                    raise LookupError(ref)

    monkeypatch.setattr(images, "run_build", fake_build)
    base = images.ImageInfo("base", "localhost/aidb-gate/base:x", "local", "base-id")
    images.provision(NoEngine(), "qdrant", "qdrant/qdrant:v1", "qdrant-api", lambda: base, tmp_path)
    recipe = images.RECIPES / "qdrant-api"
    assert seen["archive"] == (ROOT / "aidb_gate/backup/archive.py").read_bytes()
    own = sorted(p.relative_to(recipe).as_posix() for p in recipe.rglob("*")
                 if p.is_file() and not images.IGNORED & set(p.parts))
    assert seen["files"] == sorted([*own, "archive.py"])
    assert str(seen["tag"]).endswith(f":r-{seen['hash']}")
    assert not Path(str(seen["context"])).exists(), "the staged context was left behind"
    assert "archive.py" not in own, "a second copy of the reader in the recipe folder"
    copy = [line for line in (recipe / "Containerfile").read_text().splitlines() if line.startswith("COPY ")]
    assert any("snapfmt.py" in line and "archive.py" in line for line in copy), copy


def test_a_change_to_the_archive_module_changes_the_recipe_tag(tmp_path):
    """The recipe hash covers the added module: a change to it rebuilds the image; without
    additions the hash is what it always was (a folder's own files)."""
    recipe = tmp_path / "recipe"
    recipe.mkdir()
    (recipe / "Containerfile").write_text("FROM base\nCOPY archive.py /srv/\n")
    module = tmp_path / "archive.py"
    module.write_text("A = 1\n")
    before = images.tree_hash(recipe, "b", added={"archive.py": module})
    module.write_text("A = 2\n")
    assert images.tree_hash(recipe, "b", added={"archive.py": module}) != before
    assert images.tree_hash(recipe, "b", added={}) == images.tree_hash(recipe, "b")
    with images.recipe_context(recipe, {"archive.py": module}) as context:
        assert images.tree_hash(context, "b") == images.tree_hash(recipe, "b", added={"archive.py": module})
    with images.recipe_context(recipe, None) as context:
        assert context == recipe
