"""Floats through the gate's own backup and restore, on a real Postgres: the invariants judge them
by what the dump format keeps.

pg_dump writes every float NaN as the text `NaN`, so a NaN's payload and sign never survive a
dump; the invariants must not call that a loss (a correct service failed p2 on it). Every other
bit must survive - -0.0 is not 0.0 - and a value that changes is named with its bits. The last
test explores with random floats (NaN payloads, signed zeros, subnormals, infinities): exploring
belongs here, in the project's self-tests; the gate's own properties replay fixed draws.
"""

from __future__ import annotations

import struct
import uuid

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aidb_gate.backup import postgres as pg_backup
from aidb_gate.backup import restore_backup, take_backup

pytestmark = pytest.mark.integration

TABLE = "CREATE TABLE item (id int PRIMARY KEY, ratio float8, small float4, many float8[])"


def bits_to_float(hex_value: str) -> float:
    return struct.unpack(">d", bytes.fromhex(hex_value))[0]


@pytest.fixture(scope="module")
def pg(deps_session):
    return deps_session.pg_target(deps_session.stack().of_kind("postgres"))


def _fresh_db(pg, name):
    pg_backup.drop_database(pg, name)
    pg_backup.create_database(pg, name)
    return pg.with_db(name)


def _insert(target, rows: list[tuple]) -> None:
    """Rows in binary (%b): the float's own bits reach the table, NaN payload included."""
    with psycopg.connect(f"{target.dsn} dbname={target.db}", autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(TABLE)
        cur.executemany("INSERT INTO item VALUES (%b, %b, %b, %b)", rows)


def _round_trip(pg, source, tmp_path) -> pg_backup.PgTarget:
    folder = tmp_path / "backup"
    take_backup(folder, source, None)
    target = _fresh_db(pg, source.db + "_r")
    restore_backup(folder, target, None)
    return target


def test_a_nan_payload_is_not_a_loss_and_a_negative_zero_turned_zero_is_named(pg, tmp_path):
    source = _fresh_db(pg, "gate_nan_src")
    payload, negative = bits_to_float("7ff8000000000001"), bits_to_float("fff8000000000000")
    # 0x7ff8000020000000 narrows to the float4 NaN 0x7fc00001 (a payload there too).
    _insert(source, [(1, payload, bits_to_float("7ff8000020000000"), [payload, -0.0]),
                     (2, negative, None, None), (3, -0.0, -0.0, None), (4, 0.0, None, None)])
    stored = source.sql("SELECT encode(float8send(ratio), 'hex'), encode(float4send(small), 'hex') FROM item WHERE id = 1")
    assert stored == [["7ff8000000000001", "7fc00001"]], "the NaN payloads did not reach the table: the test proves nothing"
    target = _round_trip(pg, source, tmp_path)
    try:
        # The dump did canonicalise the NaN (the bits differ): the invariant is what must not mind.
        assert target.scalar("SELECT encode(float8send(ratio), 'hex') FROM item WHERE id = 1") == "7ff8000000000000"
        before = pg_backup.fingerprint(source)
        assert pg_backup.compare(before, pg_backup.fingerprint(target)) == []

        # A hop that loses the sign of zero is a real loss, and the verdict names the value.
        target.sql("UPDATE item SET ratio = 0.0, small = 0.0 WHERE id = 3 RETURNING id")
        problems = pg_backup.compare(before, pg_backup.fingerprint(target))
        assert any(p.startswith("postgres column public.item.ratio: its values differ bit for bit")
                   and "-0.0 (0x8000000000000000) became 0.0 (0x0000000000000000)" in p for p in problems), problems
        assert any(p.startswith("postgres column public.item.small:") and "-0.0 (0x80000000) became 0.0 (0x00000000)" in p
                   for p in problems), problems
    finally:
        pg_backup.drop_database(pg, source.db)
        pg_backup.drop_database(pg, target.db)


def _nan(width: int) -> st.SearchStrategy[float]:
    """Every NaN of a width: any sign, any non-zero payload (as a float8 whose narrowing keeps it)."""
    fraction = 52 if width == 64 else 23
    exponent = (1 << (width - 1)) - (1 << fraction)  # all exponent bits set
    as_float = (lambda n: bits_to_float(f"{n:016x}")) if width == 64 else (
        lambda n: struct.unpack(">f", n.to_bytes(4, "big"))[0])
    return st.builds(lambda sign, payload: as_float((sign << (width - 1)) | exponent | payload),
                     st.integers(0, 1), st.integers(1, (1 << fraction) - 1))


FLOAT8 = st.floats(allow_nan=True, allow_infinity=True) | _nan(64)
FLOAT4 = st.floats(width=32, allow_nan=True, allow_infinity=True) | _nan(32)
ROWS = st.lists(st.tuples(st.none() | FLOAT8, st.none() | FLOAT4, st.none() | st.lists(FLOAT8, max_size=4)),
                min_size=1, max_size=30)


@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(rows=ROWS)
def test_any_floats_round_trip_without_a_verdict(pg, tmp_path_factory, rows):
    """Exploring (random draws, the example database on): whatever floats a service stores, a
    correct dump and restore passes the invariants. A counter-example found here becomes an
    explicit `@example` of the gate's own property (suites/test_backup_properties.py)."""
    source = _fresh_db(pg, f"gate_nan_{uuid.uuid4().hex[:8]}")
    target = None
    try:
        _insert(source, [(i, *row) for i, row in enumerate(rows)])
        target = _round_trip(pg, source, tmp_path_factory.mktemp("nan"))
        assert pg_backup.compare(pg_backup.fingerprint(source), pg_backup.fingerprint(target)) == []
    finally:
        pg_backup.drop_database(pg, source.db)
        if target is not None:
            pg_backup.drop_database(pg, target.db)
