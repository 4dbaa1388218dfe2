"""The restore invariants catch real defects: each broken procedure must fail, naming what was lost.

Each test runs a deliberately broken backup/restore against real Postgres and Qdrant containers
and asserts that the same comparisons the restore stage uses report the loss.
"""

from __future__ import annotations

import hashlib
import json
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


def test_a_vector_one_ulp_off_is_caught_bit_for_bit(pg, tmp_path):
    """pgvector columns must come back bit-exact: a component nudged to the next float32 (what a
    hop that prints 6 significant digits does) is named, column and all."""
    table = f"{seed.PROBE_SCHEMA}.embeddings"
    pg.exec(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", pg.user, "-d", pg.db, "-c",
             f"CREATE EXTENSION IF NOT EXISTS vector; CREATE TABLE {table} (id int PRIMARY KEY, e vector(3));"
             f"INSERT INTO {table} VALUES (1, '[0.3, -0.1, 0.7]'), (2, '[1e-7, 2, 3]')"])
    try:
        folder = tmp_path / "backup"
        take_backup(folder, pg, None)
        target = _fresh_db(pg, "gate_ulp")
        restore_backup(folder, target, None)
        before = pg_backup.fingerprint(pg)
        assert pg_backup.compare(before, pg_backup.fingerprint(target)) == []
        assert before["binary values"][f"{table}.e"].startswith("2 values ")
        # 0.3 as float32 is 0.300000011920929; the next float32 up is 0.300000041723251.
        target.exec(["psql", "-X", "-q", "-U", target.user, "-d", target.db, "-c",
                     f"UPDATE {table} SET e = '[0.30000004172325134, -0.1, 0.7]' WHERE id = 1"])
        problems = pg_backup.compare(before, pg_backup.fingerprint(target))
        assert any(p.startswith(f"postgres column {table}.e: its values differ bit for bit") for p in problems), problems
    finally:
        pg.exec(["psql", "-X", "-q", "-U", pg.user, "-d", pg.db, "-c", f"DROP TABLE IF EXISTS {table}"], check=False)


def test_force_replaces_a_database_whose_partitions_have_keys(pg, tmp_path):
    """`--force` on a partitioned table with a primary key: pg_restore --clean cannot drop a
    partition's inherited key, so force recreates the database instead - and the result is equal."""
    source = _fresh_db(pg, "gate_parts_src")
    source.exec(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", pg.user, "-d", source.db, "-c",
                 "CREATE TABLE payments (id bigint, at date, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);"
                 "CREATE TABLE payments_2026 PARTITION OF payments FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');"
                 "CREATE TABLE payments_default PARTITION OF payments DEFAULT;"
                 "INSERT INTO payments SELECT g, date '2026-01-01' + g FROM generate_series(1, 500) g"])
    folder = tmp_path / "backup"
    take_backup(folder, source, None)
    target = _fresh_db(pg, "gate_parts_dst")
    restore_backup(folder, target, None)
    restore_backup(folder, target, None, force=True)
    assert pg_backup.compare(pg_backup.fingerprint(source), pg_backup.fingerprint(target)) == []
    assert pg_backup.row_counts(target) == {'"public"."payments_2026"': 364, '"public"."payments_default"': 136}


def test_a_restore_that_fails_midway_leaves_no_roles_behind(pg, tmp_path):
    """A dump damaged in a way its checksum cannot see (the manifest rewritten to match) fails in
    pg_restore; the database rolls back, and the roles the restore created are dropped again."""
    role = "gate_midway_reader"
    source = _fresh_db(pg, "gate_midway_src")
    source.exec(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", pg.user, "-d", source.db, "-c",
                 f"CREATE ROLE {role} NOLOGIN; CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) g;"
                 f"GRANT SELECT ON t TO {role}"])
    folder = tmp_path / "backup"
    take_backup(folder, source, None)
    pg_backup.drop_database(pg, source.db)
    pg.exec(["psql", "-X", "-q", "-U", pg.user, "-d", "postgres", "-c", f"DROP ROLE {role}"])
    dump = folder / "postgres.dump"
    data = bytearray(dump.read_bytes())
    data[len(data) * 3 // 4] ^= 0xFF  # inside the table's compressed data, past the table of contents
    dump.write_bytes(bytes(data))
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["postgres"]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    (folder / "manifest.json").write_text(json.dumps(manifest))
    target = _fresh_db(pg, "gate_midway_dst")
    with pytest.raises(BackupError, match=f"the roles it had created \\({role}\\) were dropped again"):
        restore_backup(folder, target, None)
    assert role not in pg_backup.role_names(pg) and pg_backup.is_empty(target)
