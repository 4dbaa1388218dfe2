"""A restore folder is input: a crafted or damaged manifest is one clear error, never a traceback,
and never a read or write outside the backup folder."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from aidb_gate.backup.commands import check_plain
from aidb_gate.backup.manifest import BackupError, read_manifest
from aidb_gate.backup.qdrant import seg

GOOD = {"file": "postgres.dump", "size": 3, "sha256": "ab"}


def _folder(tmp_path: Path, manifest: object, raw: str | None = None) -> Path:
    (tmp_path / "manifest.json").write_text(raw if raw is not None else json.dumps(manifest))
    return tmp_path


@pytest.mark.parametrize(("manifest", "says"), [
    ([], "JSON list"),
    ("x", "JSON str"),
    ({"format": 1, "postgres": "postgres.dump"}, "`postgres` must be an object"),
    ({"format": 1, "qdrant": {"collections": ["docs"]}}, "`qdrant.collections` must be an object"),
    ({"format": 1, "postgres": {"size": 3, "sha256": "ab"}}, "`postgres.file` is missing"),
    ({"format": 1, "postgres": {"file": "postgres.dump", "sha256": "ab"}}, "whole-number `size`"),
    ({"format": 1, "postgres": {**GOOD, "file": "/etc/passwd"}}, "points outside the backup folder"),
    ({"format": 1, "qdrant": {"collections": {"docs": {**GOOD, "file": "../../x"}}}}, "points outside"),
])
def test_a_malformed_or_escaping_manifest_is_one_clear_error(tmp_path, manifest, says) -> None:
    with pytest.raises(BackupError, match=says):
        read_manifest(_folder(tmp_path, manifest))


def test_deeply_nested_json_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(BackupError, match="not valid JSON"):
        read_manifest(_folder(tmp_path, None, raw="[" * 100000 + "]" * 100000))


def test_a_symlink_out_of_the_folder_is_refused(tmp_path) -> None:
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "postgres.dump").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(BackupError, match="points outside the backup folder"):
        read_manifest(_folder(backup, {"format": 1, "postgres": GOOD}))


def test_a_good_manifest_reads(tmp_path) -> None:
    assert read_manifest(_folder(tmp_path, {"format": 1, "postgres": GOOD}))["postgres"] == GOOD


def test_collection_names_are_one_escaped_path_segment() -> None:
    assert seg("%64ocs") == "%2564ocs" and seg("a/../b") == "a%2F..%2Fb" and seg("docs") == "docs"


def test_a_gzip_bomb_is_checked_as_a_stream(tmp_path) -> None:
    path = tmp_path / "dump.sql.gz"
    with gzip.open(path, "wb") as fh:
        for _ in range(64):
            fh.write(b"\0" * (1 << 20))  # 64 MiB of nothing, a few KB on disk
        fh.write(b"-- PostgreSQL database dump complete\n")
    assert check_plain(path, gz=True) == []
    (tmp_path / "bad.sql.gz").write_bytes(b"\x1f\x8bnot gzip")
    assert "not a readable gzip file" in check_plain(tmp_path / "bad.sql.gz", gz=True)[0]


def test_the_manifest_keeps_no_credentials_from_a_url() -> None:
    from aidb_gate.backup import _without_credentials

    assert _without_credentials("http://admin:s3cret@qdrant.internal:6333/") == "http://qdrant.internal:6333/"
    assert _without_credentials("http://127.0.0.1:6333") == "http://127.0.0.1:6333"


def test_a_planted_symlink_is_replaced_not_followed(tmp_path) -> None:
    from aidb_gate.backup.manifest import open_private

    victim = tmp_path / "victim"
    victim.write_text("keep me")
    planted = tmp_path / ".docs.snapshot.partial"
    planted.symlink_to(victim)
    with open_private(planted) as fh:
        fh.write(b"snapshot bytes")
    assert victim.read_text() == "keep me" and not planted.is_symlink()
    assert planted.read_bytes() == b"snapshot bytes" and planted.stat().st_mode & 0o777 == 0o600
