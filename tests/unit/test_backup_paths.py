"""Every path the backup derives from a server's or a manifest's data is one safe, contained file name:
a rogue Qdrant's collection names never reach outside --out, a crafted manifest's names are refused or
escaped, hard links are refused, and a checksum reads no more than the manifest lists."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from http_doubles import FakeQdrant, outcome

from aidb_gate.backup import verify_backup
from aidb_gate.backup.manifest import BackupError, read_manifest
from tests.unit.crafted import run_cli, snapshot_tar

#: What a rogue Qdrant (or anyone on a plain-http path to it) lists as collection names.
ROGUE = ["../../../x", "/abs/path", "a/b", "n" * 300, "evil\u202etxt.exe", "two\u2028lines", "..%2Fenc", "docs"]


def _tree(root: Path, skip: Path | None = None) -> dict[str, tuple[int, int, bytes | None]]:
    """Every entry under root except `skip`'s subtree: mode, mtime and content."""
    found = {}
    for path in [root, *root.rglob("*")]:
        if skip is not None and (path == skip or skip in path.parents):
            continue
        st = os.lstat(path)
        found[str(path)] = (st.st_mode, st.st_mtime_ns, path.read_bytes() if stat.S_ISREG(st.st_mode) else None)
    return found






def _rogue(points: int = 2) -> FakeQdrant:
    fake = FakeQdrant(points=points)
    fake.snapshot_body = snapshot_tar()
    docs = fake.collections["docs"]
    fake.collections = {name: list(docs) for name in ROGUE}
    return fake


def test_a_rogue_qdrants_names_stay_inside_out_and_round_trip(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("QDRANT_API_KEY", "k1")
    # Deep enough that `../../../x` from out/qdrant would land inside tmp_path, where it would show.
    out = tmp_path / "l1" / "l2" / "l3" / "out"
    out.mkdir(parents=True)  # made empty beforehand, so that no folder outside it changes
    (tmp_path / "abs").mkdir()
    before = _tree(tmp_path, skip=out)
    fake = _rogue()
    with fake.running() as url:
        code, said, err = run_cli(capsys, "backup", "--qdrant-url", url, "--out", str(out))
    assert code == 0, err
    assert _tree(tmp_path, skip=out) == before  # nothing written outside --out
    assert not Path("/abs/path.snapshot").exists()
    for raw in ("\u202e", "\u2028"):
        assert raw not in said + err
    assert "qdrant evil\\u202etxt.exe: 2 points" in said and "qdrant two\\u2028lines: 2 points" in said

    manifest = read_manifest(out)
    files = {name: entry["file"] for name, entry in manifest["qdrant"]["collections"].items()}
    assert sorted(files) == sorted(ROGUE)
    assert files["docs"] == "qdrant/docs.snapshot"  # a plain name keeps its plain file name
    assert len(set(files.values())) == len(ROGUE)
    for file in files.values():
        folder, name = file.split("/")
        assert folder == "qdrant" and len(name.encode()) <= 255 and (out / file).is_file()
    assert sorted(p.name for p in (out / "qdrant").iterdir()) == sorted(f.split("/")[1] for f in files.values())

    code, said, err = run_cli(capsys, "verify", str(out))
    assert code == 0 and "every artifact matches its manifest" in said, said + err
    empty = FakeQdrant()
    empty.collections = {}
    with empty.running() as url:
        code, said, err = run_cli(capsys, "restore", str(out), "--qdrant-url", url)
    assert code == 0, err
    assert sorted(name for name, _, _ in empty.uploads) == sorted(ROGUE)


@pytest.mark.parametrize("name", ["a/b", "n" * 300, "../../../x"])
def test_each_rogue_name_alone_is_backed_up_inside_out(tmp_path, capsys, monkeypatch, name) -> None:
    monkeypatch.setenv("QDRANT_API_KEY", "k1")
    out = tmp_path / "l1" / "l2" / "out"
    out.mkdir(parents=True)
    before = _tree(tmp_path, skip=out)
    fake = FakeQdrant()
    fake.snapshot_body = snapshot_tar()
    fake.collections = {name: fake.collections["docs"]}
    with fake.running() as url:
        code, _, err = run_cli(capsys, "backup", "--qdrant-url", url, "--out", str(out))
    assert code == 0, err
    assert _tree(tmp_path, skip=out) == before
    assert [p.parent for p in out.rglob("*.snapshot")] == [out / "qdrant"]


def _backup(tmp_path: Path, collections: dict[str, tuple[str, bytes]], **extra: Any) -> Path:
    """A backup folder whose manifest lists `collections` ({name: (file, bytes)}); the bytes are written."""
    folder = tmp_path / "backup"
    folder.mkdir(exist_ok=True)
    entries = {}
    for name, (file, data) in collections.items():
        path = folder / file
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
        except OSError:
            pass  # a name the file system refuses: the manifest lists it all the same
        entries[name] = {"file": file, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "points": 1}
    (folder / "manifest.json").write_text(json.dumps({"format": 1, **extra, "qdrant": {
        "url": "http://127.0.0.1:1", "collections": entries}}))
    return folder


@pytest.mark.parametrize(("file", "says"), [
    ("qdrant/" + "n" * 300 + ".snapshot", "is 309 bytes long, more than the 255"),
    ("qdrant/evil\u202etxt.snapshot", "has the part 'evil\\u202etxt.snapshot', which is not a safe file name"),
    ("qdrant/two\u2028lines.snapshot", "control, bidi or line-separator character"),
    ("qdrant//docs.snapshot", "it is empty"),
    ("qdrant/./docs.snapshot", "names a folder"),
    ("qdrant/../../x.snapshot", "points outside the backup folder"),
])
def test_an_unsafe_file_name_in_a_manifest_is_one_clear_problem(tmp_path, capsys, file, says) -> None:
    folder = _backup(tmp_path, {"docs": (file, b"snapshot")})
    code, out, err = run_cli(capsys, "verify", str(folder))
    assert code == 1 and says in out, out + err
    assert "\u202e" not in out and "\u2028" not in out
    code, out, err = run_cli(capsys, "restore", str(folder), "--qdrant-url", "http://127.0.0.1:1")
    assert code == 2 and "refusing to restore a backup that does not verify" in err and says in err


@pytest.mark.parametrize("fmt", [True, 1.0, "1", [1], None])
def test_format_must_be_the_integer_1(tmp_path, fmt) -> None:
    folder = _backup(tmp_path, {})
    data = json.loads((folder / "manifest.json").read_text())
    data["format"] = fmt
    (folder / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(BackupError, match=r"this aidb-gate reads format 1 \(the integer\)"):
        read_manifest(folder)


def test_a_hard_link_to_a_file_outside_the_folder_is_refused(tmp_path, capsys) -> None:
    data = snapshot_tar()  # a good snapshot: the link alone is at fault
    outside = tmp_path / "elsewhere.snapshot"
    outside.write_bytes(data)
    folder = _backup(tmp_path, {"docs": ("qdrant/docs.snapshot", data)})
    (folder / "qdrant" / "docs.snapshot").unlink()
    os.link(outside, folder / "qdrant" / "docs.snapshot")
    code, out, _ = run_cli(capsys, "verify", str(folder))
    assert code == 1 and "has 2 hard links" in out, out


def test_a_symlinked_artifact_is_refused_without_reading_what_it_points_to(tmp_path) -> None:
    data = snapshot_tar()
    folder = _backup(tmp_path, {"docs": ("qdrant/docs.snapshot", data)})
    (folder / "qdrant" / "real.snapshot").write_bytes(data)
    (folder / "qdrant" / "docs.snapshot").unlink()
    (folder / "qdrant" / "docs.snapshot").symlink_to("real.snapshot")
    problems = verify_backup(folder)
    assert any("a symbolic link, not a file of the backup" in p for p in problems), problems


def test_the_checksum_stops_at_the_listed_size(tmp_path, monkeypatch) -> None:
    """A file that is larger than listed by the time it is read (it grew after its size was taken) is
    named as such after reading listed + 1 bytes, not hashed to its end: here 64 GiB of holes."""
    data = b"snapshot"
    folder = _backup(tmp_path, {"docs": ("qdrant/docs.snapshot", data)})
    path = folder / "qdrant" / "docs.snapshot"
    with path.open("r+b") as fh:
        fh.truncate(64 << 30)
    ino = os.lstat(path).st_ino
    real_stat, real_fstat = os.stat, os.fstat

    def listed(st: os.stat_result) -> os.stat_result:
        if st.st_ino != ino:
            return st
        fields = list(st)
        fields[stat.ST_SIZE] = len(data)
        return os.stat_result(fields)

    monkeypatch.setattr(os, "stat", lambda *a, **k: listed(real_stat(*a, **k)))
    monkeypatch.setattr(os, "fstat", lambda *a, **k: listed(real_fstat(*a, **k)))
    box: dict[str, list[str]] = {}
    assert outcome(lambda: box.setdefault("problems", verify_backup(folder)), 10) is None
    assert any(f"larger than the {len(data)} bytes the manifest lists" in p for p in box["problems"]), box
