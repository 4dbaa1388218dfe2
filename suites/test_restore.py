"""Stage restore: the backup restores losslessly into a fresh stack, which serves the same data."""

from __future__ import annotations

import shutil

import pytest

from aidb_gate.backup import BackupError, restore_backup
from aidb_gate.backup import postgres as pg_backup
from aidb_gate.backup import qdrant as q_backup
from aidb_gate.restore import compare_service, take_fingerprint

pytestmark = [pytest.mark.p1, pytest.mark.restore]


def test_postgres_restores_without_loss(backup_run, restore_run):
    problems = pg_backup.compare(backup_run.before.postgres, restore_run.fingerprint.postgres)
    assert not problems, "the Postgres restore lost data: " + "; ".join(problems)


def test_qdrant_restores_without_loss(backup_run, restore_run):
    problems = q_backup.compare(backup_run.before.qdrant, restore_run.fingerprint.qdrant)
    assert not problems, "the Qdrant restore lost data: " + "; ".join(problems)


def test_service_boots_against_the_restored_stack(gate, restore_run):
    boot = restore_run.boot
    assert boot.ready, f"the service did not become ready against the restored stack: {boot.error}\n\n{boot.log.snapshot()[-3000:]}"


def test_restored_service_serves_the_same_data(backup_run, restore_run, base_url, gate_config):
    assert restore_run.boot.ready, "the service did not boot against the restored stack"
    problems = compare_service(base_url, restore_run.boot.url, backup_run.seeded["documents"], gate_config.data)
    assert not problems, "the restored service serves different data: " + "; ".join(problems)


def test_restore_refuses_a_non_empty_target(gate, backup_run, restore_run):
    pg, q = gate.targets(restore_run.deps)
    before = take_fingerprint(pg, q)
    with pytest.raises(BackupError, match="refusing to restore"):
        restore_backup(backup_run.folder, pg, q)
    assert take_fingerprint(pg, q) == before, "a refused restore changed the target"


def test_restore_refuses_a_corrupted_backup_and_names_the_file(gate, backup_run, restore_run, tmp_path):
    copy = tmp_path / "backup"
    shutil.copytree(backup_run.folder, copy)
    dump = copy / backup_run.manifest["postgres"]["file"]
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    pg, q = gate.targets(restore_run.deps)
    before = take_fingerprint(pg, q)
    with pytest.raises(BackupError) as err:
        restore_backup(copy, pg, q, force=True)
    assert str(dump) in str(err.value) and "sha256" in str(err.value), str(err.value)
    assert take_fingerprint(pg, q) == before, "a refused restore changed the target"
