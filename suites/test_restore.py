"""Stage restore: the backup restores losslessly into a fresh stack, which serves the same data."""

from __future__ import annotations

import shutil

import pytest

from aidb_gate.backup import BackupError, restore_backup, seed
from aidb_gate.backup import postgres as pg_backup
from aidb_gate.backup import qdrant as q_backup
from aidb_gate.backup.fingerprint import take_fingerprint
from aidb_gate.stages.restore import compare_service, read_back

pytestmark = [pytest.mark.p1, pytest.mark.restore]


def test_postgres_restores_without_loss(gate_backup, gate_restore):
    problems = pg_backup.compare(gate_backup.before.postgres, gate_restore.fingerprint.postgres)
    assert not problems, "the Postgres restore lost data: " + "; ".join(problems)


def test_qdrant_restores_without_loss(gate_backup, gate_restore):
    problems = q_backup.compare(gate_backup.before.qdrant, gate_restore.fingerprint.qdrant)
    assert not problems, "the Qdrant restore lost data: " + "; ".join(problems)


def test_service_boots_against_the_restored_stack(gate, gate_restore):
    boot = gate_restore.boot
    assert boot.ready, f"the service did not become ready against the restored stack: {boot.error}\n\n{boot.log.snapshot()[-3000:]}"


def test_restored_service_serves_the_same_data(gate_backup, gate_restore, gate_url, gate_config):
    assert gate_restore.boot.ready, "the service did not boot against the restored stack"
    problems = compare_service(gate_url, gate_restore.boot.url, gate_backup.seeded["documents"], gate_config.data)
    assert not problems, "the restored service serves different data: " + "; ".join(problems)


@pytest.mark.gate_requires("data.documents")
def test_restored_service_returns_what_was_sent(gate_backup, gate_restore, gate_config):
    """Against the original service's answers, a mangled write would look restored; against what
    was sent, it does not."""
    written = gate_backup.seeded["written"]
    now = read_back(gate_restore.boot.url, [w.created for w in written], gate_config.data)
    problems = seed.round_trip_verdict([(w.sent, got) for w, got in zip(written, now, strict=True)],
                                       "GET on the restored service")
    assert not problems, "; ".join(problems)


def test_restore_refuses_a_non_empty_target(gate, gate_backup, gate_restore):
    pg, q = gate.targets(gate_restore.deps)
    before = take_fingerprint(pg, q)
    with pytest.raises(BackupError, match="refusing to restore"):
        restore_backup(gate_backup.folder, pg, q)
    assert take_fingerprint(pg, q) == before, "a refused restore changed the target"


def test_restore_refuses_a_corrupted_backup_and_names_the_file(gate, gate_backup, gate_restore, tmp_path):
    copy = tmp_path / "backup"
    shutil.copytree(gate_backup.folder, copy)
    dump = copy / gate_backup.manifest["postgres"]["file"]
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    pg, q = gate.targets(gate_restore.deps)
    before = take_fingerprint(pg, q)
    with pytest.raises(BackupError) as err:
        restore_backup(copy, pg, q, force=True)
    assert str(dump) in str(err.value) and "sha256" in str(err.value), str(err.value)
    assert take_fingerprint(pg, q) == before, "a refused restore changed the target"
