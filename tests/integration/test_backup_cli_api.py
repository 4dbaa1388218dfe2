"""`aidb-gate backup`, `verify` and `restore --postgres-container` run pg_dump, pg_restore and
psql in the container through the engine's API (DOCKER_HOST), with no engine CLI involved: the
container's defaults come from its inspect, and a restored database holds the same rows."""

from __future__ import annotations

import pytest

from aidb_gate import cli
from aidb_gate.backup import postgres as pg_backup

pytestmark = pytest.mark.integration


def test_backup_verify_and_restore_by_container_name_through_the_api(deps_session, tmp_path, monkeypatch, capsys):
    dep = deps_session.stack().of_kind("postgres")
    pg = deps_session.pg_target(dep)
    pg.exec(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", pg.user, "-d", pg.db, "-c",
             "CREATE TABLE IF NOT EXISTS cli_api (id int PRIMARY KEY, body text); "
             "INSERT INTO cli_api VALUES (1, 'eins'), (2, 'zwei') ON CONFLICT DO NOTHING"])
    monkeypatch.setenv("DOCKER_HOST", deps_session.engine.docker_host)
    monkeypatch.setenv("PATH", str(tmp_path / "no-clis"))  # no podman, no docker: the API alone must do
    out = tmp_path / "b"
    assert cli.main(["backup", "--postgres-container", dep.container_id, "--out", str(out)]) == 0, capsys.readouterr()
    assert cli.main(["verify", str(out), "--postgres-container", dep.container_id]) == 0, capsys.readouterr()
    pg_backup.create_database(pg, "cli_api_restored")
    try:
        code = cli.main(["restore", str(out), "--postgres-container", dep.container_id, "--postgres-db", "cli_api_restored"])
        assert code == 0, capsys.readouterr()
        assert pg.with_db("cli_api_restored").sql("SELECT id, body FROM cli_api ORDER BY id") == [["1", "eins"], ["2", "zwei"]]
    finally:
        pg_backup.drop_database(pg, "cli_api_restored")


def test_an_unknown_container_is_one_paragraph(deps_session, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DOCKER_HOST", deps_session.engine.docker_host)
    code = cli.main(["backup", "--postgres-container", "no-such-container-here", "--out", str(tmp_path / "b")])
    err = capsys.readouterr().err
    assert code == 2 and "has no container 'no-such-container-here'" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()
