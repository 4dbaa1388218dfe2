"""`aidb-gate backup|verify|restore` as a careless user drives them: a refused --out is left exactly as
it was, a failed backup removes only what it created, and every mistake is one paragraph with the
documented exit code (never a traceback), with outside names escaped."""

from __future__ import annotations

import errno
import io
import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest

from aidb_gate import cli
from aidb_gate.backup import BackupError
from aidb_gate.backup.qdrant import _env_seconds
from tests.unit.crafted import run_cli

#: A Qdrant URL nothing listens on: a backup that gets as far as asking it fails at once.
NOBODY = "http://127.0.0.1:1"


def _state(root: Path) -> dict[str, tuple[Any, ...]]:
    """Every entry under (and including) root: kind and mode, mtime and ctime (ns), and the bytes of a file
    or the target of a link. Any write, removal, chmod or utime changes it (atime is left out: a read may move it)."""
    found = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = os.lstat(path)
        what: Any = os.readlink(path) if stat.S_ISLNK(st.st_mode) else path.read_bytes() if stat.S_ISREG(st.st_mode) else None
        found[str(path.relative_to(root))] = (st.st_mode, st.st_mtime_ns, st.st_ctime_ns, what)
    return found




def _user_folder(tmp_path: Path) -> Path:
    """`mkdir -p d && echo x > d/f`, with a mode and times of its own."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "f").write_text("x\n")
    os.chmod(d, 0o751)
    os.utime(d / "f", ns=(1_000_000_000, 1_000_000_000))
    os.utime(d, ns=(2_000_000_000, 2_000_000_000))
    return d


def test_a_folder_that_holds_files_is_refused_and_left_as_it_was(tmp_path, capsys) -> None:
    d = _user_folder(tmp_path)
    before = _state(tmp_path)
    code, _, err = run_cli(capsys, "backup", "--qdrant-url", NOBODY, "--out", str(d))
    assert _state(tmp_path) == before
    assert code == 2 and "is not a new or empty folder" in err and "left as they are" in err


def test_a_link_to_a_folder_that_holds_files_is_refused_and_both_are_left_as_they_were(tmp_path, capsys) -> None:
    d = _user_folder(tmp_path)
    (tmp_path / "link").symlink_to(d)
    before = _state(tmp_path)
    code, _, err = run_cli(capsys, "backup", "--qdrant-url", NOBODY, "--out", str(tmp_path / "link"))
    assert _state(tmp_path) == before
    assert code == 2 and "is a symbolic link" in err and str(d) in err


def test_a_link_to_an_empty_folder_is_refused_and_left_as_it_was(tmp_path, capsys) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    before = _state(tmp_path)
    code, _, err = run_cli(capsys, "backup", "--qdrant-url", NOBODY, "--out", str(tmp_path / "link") + "/")
    assert _state(tmp_path) == before
    assert code == 2 and "is a symbolic link" in err


def test_a_folder_holding_a_backup_is_refused_and_left_as_it_was(tmp_path, capsys) -> None:
    d = tmp_path / "old"
    d.mkdir()
    (d / "manifest.json").write_text('{"format": 1}')
    before = _state(tmp_path)
    code, _, err = run_cli(capsys, "backup", "--qdrant-url", NOBODY, "--out", str(d))
    assert code == 2 and "already holds a backup" in err
    assert _state(tmp_path) == before


def test_a_failed_backup_into_an_empty_folder_leaves_it_empty_with_its_mode_and_times(tmp_path, capsys) -> None:
    d = tmp_path / "d"
    d.mkdir()
    os.chmod(d, 0o755)
    os.utime(d, ns=(2_000_000_000, 2_000_000_000))
    before = os.lstat(d)
    code, _, err = run_cli(capsys, "backup", "--qdrant-url", NOBODY, "--out", str(d))
    assert code == 2 and "Qdrant" in err
    after = os.lstat(d)
    assert list(d.iterdir()) == []
    assert (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)


def test_a_failed_backup_removes_the_folders_it_made_and_nothing_else(tmp_path, capsys) -> None:
    d = _user_folder(tmp_path)
    before = {k: v for k, v in _state(tmp_path).items() if k != "d"}  # d's own mtime moves: an entry came and went
    code, _, _ = run_cli(capsys, "backup", "--qdrant-url", NOBODY, "--out", str(d / "new" / "deeper"))
    assert code == 2
    assert {k: v for k, v in _state(tmp_path).items() if k != "d"} == before


def test_a_link_among_the_parents_is_followed_once_and_only_the_new_folder_goes(tmp_path, capsys) -> None:
    d = _user_folder(tmp_path)
    (tmp_path / "link").symlink_to(d)
    before = {k: v for k, v in _state(tmp_path).items() if k != "d"}
    code, _, _ = run_cli(capsys, "backup", "--qdrant-url", NOBODY, "--out", str(tmp_path / "link" / "sub"))
    assert code == 2
    assert {k: v for k, v in _state(tmp_path).items() if k != "d"} == before


def test_an_out_name_over_255_bytes_is_one_paragraph(tmp_path, capsys) -> None:
    code, _, err = run_cli(capsys, "backup", "--qdrant-url", NOBODY, "--out", str(tmp_path / ("x" * 300)))
    assert code == 2 and "File name too long" in err and "\n" not in err.rstrip("\n")


def _backup_folder(tmp_path: Path, manifest: dict[str, Any], files: dict[str, bytes] | None = None) -> Path:
    folder = tmp_path / "backup"
    folder.mkdir(parents=True)
    for name, data in (files or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_restoring_a_backup_that_holds_nothing_is_an_error(tmp_path, capsys) -> None:
    folder = _backup_folder(tmp_path, {"format": 1})
    code, out, err = run_cli(capsys, "restore", str(folder))
    assert code == 2 and "holds nothing to restore" in err and "restored" not in out
    folder = _backup_folder(tmp_path / "q", {"format": 1, "qdrant": {"url": NOBODY, "collections": {}}})
    code, _, err = run_cli(capsys, "restore", str(folder), "--qdrant-url", NOBODY)
    assert code == 2 and "holds nothing to restore" in err


@pytest.mark.parametrize("url", ["http://user:pw@127.0.0.1:1", "http://token@127.0.0.1:1", "https://:pw@q.example:6333"])
def test_credentials_in_the_qdrant_url_are_refused_like_an_api_key_argument(tmp_path, capsys, url) -> None:
    code, _, err = run_cli(capsys, "backup", "--qdrant-url", url, "--out", str(tmp_path / "new"))
    assert code == 2 and "holds credentials" in err and "pw" not in err and "token" not in err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("url", ["127.0.0.1:6333", "ftp://127.0.0.1:6333", "http://", "http://[::1", "http://h:0"])
def test_a_qdrant_url_that_is_no_http_url_is_one_paragraph(tmp_path, capsys, url) -> None:
    code, _, err = run_cli(capsys, "verify", str(tmp_path), "--qdrant-url", url)
    assert code == 2 and "is not an http(s) URL" in err


@pytest.mark.parametrize("raw", ["inf", "Infinity", "1e309", "1e12", "nan", "-inf", "0", "-5", "forever"])
def test_a_snapshot_timeout_that_never_comes_is_refused(monkeypatch, raw) -> None:
    monkeypatch.setenv("QDRANT_SNAPSHOT_TIMEOUT_S", raw)
    with pytest.raises(BackupError, match="is not a number of seconds"):
        _env_seconds("QDRANT_SNAPSHOT_TIMEOUT_S", 60.0)


def test_an_infinite_snapshot_timeout_is_refused_by_the_cli(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("QDRANT_SNAPSHOT_TIMEOUT_S", "inf")
    code, _, err = run_cli(capsys, "backup", "--qdrant-url", NOBODY, "--out", str(tmp_path / "new"))
    assert code == 2 and "QDRANT_SNAPSHOT_TIMEOUT_S='inf' is not a number of seconds" in err
    assert not (tmp_path / "new").exists()


def test_a_finite_snapshot_timeout_is_kept(monkeypatch) -> None:
    monkeypatch.setenv("QDRANT_SNAPSHOT_TIMEOUT_S", "21600")
    assert _env_seconds("QDRANT_SNAPSHOT_TIMEOUT_S", 60.0) == 21600.0


def test_bidi_and_line_separators_in_manifest_names_are_escaped(tmp_path, capsys) -> None:
    folder = _backup_folder(tmp_path, {"format": 1, "qdrant": {"url": NOBODY, "collections": {
        "evil\u202etxt": {"file": "qdrant/evil\u202etxt.snapshot", "size": 1, "sha256": "0" * 64, "points": 1},
        "two\u2028lines": {"file": "qdrant/ok.snapshot", "size": 1, "sha256": "0" * 64, "points": 1}}}})
    for argv in (["verify", str(folder)], ["restore", str(folder), "--qdrant-url", NOBODY]):
        code, out, err = run_cli(capsys, *argv)
        assert code in (1, 2), (out, err)
        for raw in ("\u202e", "\u2028"):
            assert raw not in out + err
        assert "\\u202e" in out + err


def _denied(monkeypatch: pytest.MonkeyPatch, inside: Path) -> None:
    """Files under `inside` cannot be opened, as another user's 0600 files: by their mode when this
    runs as a user, by refusing the open when it runs as root (whom no mode stops)."""
    if os.geteuid() != 0:
        for path in inside.rglob("*"):
            if path.is_file():
                path.chmod(0)
        return

    def refuse(path: Any) -> None:
        if isinstance(path, (str, os.PathLike)) and Path(os.fspath(path)).is_relative_to(inside) \
                and Path(os.fspath(path)) != inside:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(path))

    real_os_open, real_io_open = os.open, io.open
    monkeypatch.setattr(os, "open", lambda path, *a, **k: (refuse(path), real_os_open(path, *a, **k))[1])
    monkeypatch.setattr(io, "open", lambda path, *a, **k: (refuse(path), real_io_open(path, *a, **k))[1])


def test_another_users_backup_is_one_paragraph_naming_the_owner(tmp_path, capsys, monkeypatch) -> None:
    data = b"snapshot"
    import hashlib

    folder = _backup_folder(tmp_path, {"format": 1, "qdrant": {"url": NOBODY, "collections": {"docs": {
        "file": "qdrant/docs.snapshot", "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "points": 1}}}},
        {"qdrant/docs.snapshot": data})
    _denied(monkeypatch, folder)
    for argv in (["verify", str(folder)], ["restore", str(folder), "--qdrant-url", NOBODY]):
        code, out, err = run_cli(capsys, *argv)
        assert code in (1, 2)
        said = out + err
        assert "cannot be read (Permission denied)" in said and "belongs to uid" in said, said
        assert "run this as the user that took the backup" in said


def test_a_file_system_error_is_one_paragraph_not_a_traceback(tmp_path, capsys, monkeypatch) -> None:
    def full(*_args: Any, **_kwargs: Any) -> list[str]:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path / "evil\u202ename"))

    monkeypatch.setattr(cli, "verify_backup", full)
    code, _, err = run_cli(capsys, "verify", str(tmp_path))
    assert code == 2 and "verify failed: No space left on device" in err and "evil\\u202ename" in err
    assert err.count("\n") == 1
