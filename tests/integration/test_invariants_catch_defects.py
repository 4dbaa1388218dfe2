"""The restore invariants catch real defects: each broken procedure must fail, naming what was lost.

Each test runs a deliberately broken backup/restore against real Postgres and Qdrant containers
and asserts that the same comparisons the restore stage uses report the loss.
"""

from __future__ import annotations

import subprocess

import pytest
import requests

from aidb_gate.backup import BackupError, restore_backup, seed, take_backup, verify_backup
from aidb_gate.backup import postgres as pg_backup
from aidb_gate.backup import qdrant as q_backup

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pg(deps_session):
    target = deps_session.pg_target(deps_session.stack().of_kind("postgres"))
    seed.create_probe_objects(target)
    seed.seed_every_table(target, rows=5)
    return target


@pytest.fixture(scope="module")
def qdrant(deps_session):
    q = deps_session.qdrant_target(deps_session.stack().of_kind("qdrant"))
    q.result("PUT", "/collections/gate_probe", json={"vectors": {"size": 4, "distance": "Cosine"}})
    points = [{"id": i, "vector": [1.0, i, 0.5, -i], "payload": {"n": i, "text": seed.TEXT_SAMPLES[i % 7]}}
              for i in range(1, 30)]
    q.result("PUT", "/collections/gate_probe/points", params={"wait": "true"}, json={"points": points})
    return q


def _fresh_db(pg, name):
    pg_backup.drop_database(pg, name)
    pg_backup.create_database(pg, name)
    return pg.with_db(name)


def test_qdrant_restore_with_the_default_priority_is_caught(deps_session, qdrant, tmp_path):
    entry = q_backup.snapshot_collection(qdrant, "gate_probe", tmp_path)
    fresh = deps_session.qdrant_target(deps_session.fresh_dependency("qdrant", "qdrant-default-priority"))
    with open(tmp_path / "gate_probe.snapshot", "rb") as snapshot:
        resp = fresh.request("POST", "/collections/gate_probe/snapshots/upload", params={"wait": "true"},
                             files={"snapshot": snapshot})
    assert resp.status_code < 300, resp.text
    problems = q_backup.compare(q_backup.fingerprint(qdrant, ["gate_probe"]), q_backup.fingerprint(fresh))
    assert any(f"{entry['points']} of {entry['points']} points lost" in p for p in problems), problems


def test_a_dump_that_leaves_out_a_table_is_caught(pg, tmp_path):
    dump = tmp_path / "partial.dump"
    with dump.open("wb") as out:
        pg.exec(["pg_dump", "-Fc", "-U", pg.user, "-d", pg.db, "-T", f"{seed.PROBE_SCHEMA}.audit"], stdout=out)
    assert pg_backup.list_dump(pg, dump), "the partial dump still reads: an exit code would have passed it"
    target = _fresh_db(pg, "gate_partial")
    pg_backup.restore(target, dump)
    problems = pg_backup.compare(pg_backup.fingerprint(pg), pg_backup.fingerprint(target))
    assert any(f'"{seed.PROBE_SCHEMA}"."audit" is missing after the restore (3 rows lost)' in p for p in problems), problems


def test_a_text_that_loses_its_non_ascii_characters_is_caught(pg, tmp_path):
    plain = pg.exec(["pg_dump", "-U", pg.user, "-d", pg.db]).stdout.decode()
    ascii_only = plain.encode("ascii", errors="ignore")  # the defect: an ASCII-only hop in the pipeline
    target = _fresh_db(pg, "gate_ascii")
    subprocess.run([pg.cli, "exec", "-i", pg.container, "psql", "-X", "-q", "-U", pg.user, "-d", target.db],
                   input=ascii_only, env=pg.env, check=True, capture_output=True)
    problems = pg_backup.compare(pg_backup.fingerprint(pg), pg_backup.fingerprint(target))
    assert any(f'"{seed.PROBE_SCHEMA}"."notes": same 3 rows, but their content differs' in p for p in problems), problems


def test_a_truncated_dump_is_caught_by_verify_and_refused_by_restore(pg, tmp_path):
    folder = tmp_path / "backup"
    take_backup(folder, pg, None)
    dump = folder / "postgres.dump"
    dump.write_bytes(dump.read_bytes()[: dump.stat().st_size // 2])
    problems = verify_backup(folder, pg)
    assert problems and str(dump) in problems[0] and "truncated" in problems[0], problems
    target = _fresh_db(pg, "gate_truncated")
    with pytest.raises(BackupError, match=str(dump)):
        restore_backup(folder, target, None)
    assert pg_backup.is_empty(target), "a refused restore wrote into the target"


def test_qdrant_api_key_protects_the_backup_source(qdrant):
    resp = requests.get(qdrant.url + "/collections", headers={"api-key": "wrong"}, timeout=10)
    assert resp.status_code in (401, 403)
