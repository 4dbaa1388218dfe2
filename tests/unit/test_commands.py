"""A user's backup command: what the gate reads from its output and its folder, without a stack.

The verdicts must name the bug in the user's terms (where the script stopped, which credentials
it chose, which client it ran), and the gate must pick the dump out of whatever else the script
leaves beside it (logs, metrics, the roles file)."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from aidb_gate.backup.commands import dump_kind, failure_hints, postgres_with_command, run_command
from aidb_gate.backup.manifest import BackupError
from aidb_gate.backup.postgres import PgTarget

PG = PgTarget("podman", "c1", "mcp", "mcp")


def _script(tmp_path: Path, body: str) -> Path:
    script = tmp_path / "backup.sh"
    script.write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + body)
    script.chmod(0o755)
    return script


def test_a_set_e_arithmetic_abort_names_the_line_and_the_idiom(tmp_path) -> None:
    script = _script(tmp_path, "count=0\necho snapshot one\n((count++))\necho never\n")
    with pytest.raises(BackupError) as err:
        run_command(str(script), tmp_path, dict(os.environ), "Qdrant backup")
    said = str(err.value)
    assert "stopped at backup.sh:5 (`((count++))`, status 1)" in said, said
    assert "an arithmetic command whose value is 0 returns 1" in said and "snapshot one" in said


def test_a_command_that_failed_earlier_is_not_blamed_for_an_explicit_exit(tmp_path) -> None:
    script = _script(tmp_path, "grep -q nothing /dev/null || true\nfalse || echo recovered\nexit 3\n")
    with pytest.raises(BackupError) as err:
        run_command(str(script), tmp_path, dict(os.environ), "Qdrant backup")
    assert "exited 3" in str(err.value) and "stopped at" not in str(err.value)


def test_the_command_runs_through_a_shell_so_names_can_be_mapped(tmp_path) -> None:
    script = _script(tmp_path, 'test "$DB_HOST" = "$PGHOST" && echo "$DB_HOST" > "$BACKUP_DIR/out"\n')
    run_command(f"DB_HOST=$PGHOST {script}", tmp_path, {**os.environ, "PGHOST": "10.0.0.7", "BACKUP_DIR": str(tmp_path)},
                "Postgres backup")
    assert (tmp_path / "out").read_text() == "10.0.0.7\n"


def test_a_users_own_bash_env_still_runs(tmp_path) -> None:
    (tmp_path / "mine.sh").write_text("export FROM_MY_BASH_ENV=yes\n")
    script = _script(tmp_path, 'echo "$FROM_MY_BASH_ENV" > "$BACKUP_DIR/out"\n')
    run_command(str(script), tmp_path, {**os.environ, "BASH_ENV": str(tmp_path / "mine.sh"), "BACKUP_DIR": str(tmp_path)},
                "Postgres backup")
    assert (tmp_path / "out").read_text() == "yes\n"


@pytest.mark.parametrize(("output", "says"), [
    ('pg_dump: error: connection to server at "10.0.0.2", port 5432 failed: FATAL:  password authentication failed '
     'for user "aidb"', "The command used user `aidb`; the stack's is `mcp` (given as $PGUSER)"),
    ('psql: error: FATAL:  database "aidb" does not exist', "The command used database `aidb`; the stack's is `mcp`"),
    ("pg_dump: error: aborting because of server version mismatch\npg_dump: detail: server version: 18.1; "
     "pg_dump version: 15.18 (Debian 15.18-0+deb12u1)",
     "the host's pg_dump (15) is older than the server (18) and refuses to run"),
    ("curl: (22) The requested URL returned error: 405", "HTTP 405 (method not allowed)"),
])
def test_the_output_is_read_for_the_cause(output: str, says: str) -> None:
    assert any(says in hint for hint in failure_hints(output, [], PG, 1)), failure_hints(output, [], PG, 1)


def test_the_stacks_own_credentials_are_no_hint() -> None:
    assert failure_hints('FATAL:  password authentication failed for user "mcp"', [], PG, 1) == []


def _gz(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as fh:
        fh.write(text)
    return path


def test_dumps_roles_logs_and_metrics_are_told_apart(tmp_path) -> None:
    db = _gz(tmp_path / "daily/mcp-1.sql.gz", "--\n-- PostgreSQL database dump\n--\nSELECT 1;\n")
    roles = _gz(tmp_path / "daily/globals-1.sql.gz", "--\n-- PostgreSQL database cluster dump\n--\n")
    (tmp_path / "backup.log").write_text("[2026-11-30] Backup complete: mcp-1.sql.gz\n")
    (tmp_path / "custom.dump").write_bytes(b"PGDMP\x01\x0e\x00")
    assert dump_kind(db) == ("plain.gz", "database")
    assert dump_kind(roles) == ("plain.gz", "globals")
    assert dump_kind(tmp_path / "backup.log") is None
    assert dump_kind(tmp_path / "custom.dump") == ("custom", "database")
    (tmp_path / "broken.sql.gz").write_bytes(b"\x1f\x8bnot gzip at all")
    assert dump_kind(tmp_path / "broken.sql.gz") is None


def test_the_dump_and_its_roles_file_are_picked_out_of_the_folder(tmp_path, monkeypatch) -> None:
    import aidb_gate.backup.commands as commands

    monkeypatch.setattr(commands.pg_backup, "row_counts", lambda pg: {"public.t": 1})
    script = _script(tmp_path, 'cd "$BACKUP_DIR" && mkdir daily\n'
                               'printf -- "--\\n-- PostgreSQL database dump\\n" | gzip > daily/mcp-1.sql.gz\n'
                               'printf -- "--\\n-- PostgreSQL database cluster dump\\n" | gzip > daily/globals-1.sql.gz\n'
                               'echo done > backup.log\n')
    entry = postgres_with_command(str(script), tmp_path, tmp_path / "dest", PG)
    assert entry["file"] == "postgres/daily/mcp-1.sql.gz" and entry["format"] == "plain.gz"
    assert entry["globals"]["file"] == "postgres/daily/globals-1.sql.gz"


def test_a_folder_without_a_dump_is_a_verdict_that_lists_what_is_there(tmp_path, monkeypatch) -> None:
    import aidb_gate.backup.commands as commands

    monkeypatch.setattr(commands.pg_backup, "row_counts", lambda pg: {})
    script = _script(tmp_path, 'echo "pg_dump skipped" > "$BACKUP_DIR/backup.log"\n')
    with pytest.raises(BackupError, match=r"left no database dumps under \$BACKUP_DIR .*it holds backup.log"):
        postgres_with_command(str(script), tmp_path, tmp_path / "dest", PG)


def test_the_cli_takes_no_key_on_its_command_line(tmp_path, monkeypatch, capsys) -> None:
    """A key on the command line shows in `ps`: refused with the two ways that do not."""
    from aidb_gate import cli

    assert cli.main(["verify", str(tmp_path), "--qdrant-url", "http://127.0.0.1:1", "--qdrant-api-key", "s3cret"]) == 2
    said = capsys.readouterr().err
    assert "export QDRANT_API_KEY" in said and "--qdrant-api-key-file" in said and "s3cret" not in said
    keyfile = tmp_path / "key"
    keyfile.write_text("from-a-file\n")
    args = cli.build_parser().parse_args(["verify", str(tmp_path), "--qdrant-url", "http://q:6333",
                                          "--qdrant-api-key-file", str(keyfile)])
    assert cli._targets(args)[1].api_key == "from-a-file"
    monkeypatch.setenv("QDRANT_API_KEY", "from-the-env")
    args = cli.build_parser().parse_args(["verify", str(tmp_path), "--qdrant-url", "http://q:6333"])
    assert cli._targets(args)[1].api_key == "from-the-env"
