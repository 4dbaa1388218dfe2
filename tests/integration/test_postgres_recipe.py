"""The Postgres the gate runs is the one production runs: PostgreSQL 18 with pgvector.

Production's compose file runs `pgvector/pgvector:0.8.1-pg18`. A service that runs `CREATE
EXTENSION vector` at start-up must not be failed by the gate because its Postgres lacks the
extension (a false alarm: the environment differs, the code is not at fault). Where no registry
answers, the local recipe stands in for that image, so it must carry the same server and extension.
"""

from __future__ import annotations

import psycopg
import pytest

from aidb_gate.services.postgres import dsn

pytestmark = pytest.mark.integration


def test_the_stack_postgres_is_18_and_has_pgvector(deps_session) -> None:
    dep = deps_session.stack().of_kind("postgres")
    with psycopg.connect(dsn(dep), autocommit=True) as conn:
        major = conn.execute("SHOW server_version_num").fetchone()[0]
        assert int(major) // 10000 == 18, f"server_version_num {major}: production runs PostgreSQL 18"
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        distance = conn.execute("SELECT '[1,2,3]'::vector <-> '[1,2,5]'::vector").fetchone()[0]
        assert distance == pytest.approx(2.0)
        conn.execute("CREATE TABLE IF NOT EXISTS recipe_probe (id int PRIMARY KEY, embedding vector(3))")
        conn.execute("INSERT INTO recipe_probe VALUES (1, '[0,0,1]'), (2, '[1,1,1]') ON CONFLICT DO NOTHING")
        nearest = conn.execute("SELECT id FROM recipe_probe ORDER BY embedding <-> '[0,0,0.9]' LIMIT 1").fetchone()[0]
        assert nearest == 1
        conn.execute("DROP TABLE recipe_probe")
        conn.execute("DROP EXTENSION vector")


def test_pg_dump_inside_the_container_matches_the_server(deps_session) -> None:
    """Backups run `pg_dump` inside the container: its major version must be the server's."""
    from aidb_gate.core import api

    dep = deps_session.stack().of_kind("postgres")
    code, out, err = api.exec_in(deps_session.connect(), dep.container_id, ["pg_dump", "--version"])
    assert code == 0, err
    assert " 18." in out, out
