"""What goes in through the service must come out unchanged: the verdict names the field, the
smallest example sent and returned, and whether plain ASCII survives."""

from __future__ import annotations

from aidb_gate.backup.seed import round_trip_problems, round_trip_verdict

ASCII = {"title": "plain", "content": "ascii only"}
ACCENTED = {"title": "Zürich", "content": "naïve façade"}


def test_an_intact_round_trip_has_no_problem() -> None:
    assert round_trip_verdict([(ASCII, dict(ASCII, id=1)), (ACCENTED, dict(ACCENTED, id=2))], "GET") == []


def test_a_changed_or_missing_field_is_named_with_what_was_sent_and_returned() -> None:
    problems = round_trip_problems(ACCENTED, {"title": "Zurich"}, "GET right after")
    assert problems == ["GET right after: field `title` was sent as 'Zürich' and came back as 'Zurich'",
                        "GET right after: field `content` is missing (sent 'naïve façade')"]
    assert round_trip_problems(ASCII, None, "GET") == ["GET: no document came back"]


def test_the_verdict_leads_with_the_smallest_example_and_says_ascii_survives() -> None:
    mangled = {k: v.encode().decode("ascii", "ignore") for k, v in ACCENTED.items()}
    long_one = {"title": "Ünïcödé " * 10, "content": "x"}
    verdict = round_trip_verdict([(ASCII, ASCII), (long_one, {"title": "?", "content": "x"}), (ACCENTED, mangled)],
                                 "the create call's answer")
    assert verdict[0].startswith("2 of 3 documents written through the data API do not come back as sent; smallest "
                                 "example: the create call's answer: field `title` was sent as 'Zürich'")
    assert "plain-ASCII documents come back intact" in verdict[0]


def test_when_ascii_is_changed_too_the_verdict_says_so() -> None:
    verdict = round_trip_verdict([(ASCII, {"title": "PLAIN", "content": "ascii only"})], "GET")
    assert "plain-ASCII documents are changed too" in verdict[0]


def test_a_users_command_is_told_the_conventional_names(tmp_path) -> None:
    from aidb_gate.backup.commands import command_env
    from aidb_gate.backup.postgres import PgTarget
    from aidb_gate.backup.qdrant import QdrantTarget

    pg = PgTarget("podman", "c1", "app", "appdb", dsn="host=127.0.0.1 port=41234 user=app password=s3cret connect_timeout=10")
    env = command_env(tmp_path, pg, QdrantTarget("http://127.0.0.1:41235", "k"))
    assert {k: env[k] for k in ("PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "POSTGRES_PORT",
                                "QDRANT_HOST", "QDRANT_PORT")} == {
        "PGHOST": "127.0.0.1", "PGPORT": "41234", "PGUSER": "app", "PGPASSWORD": "s3cret", "PGDATABASE": "appdb",
        "POSTGRES_PORT": "41234", "QDRANT_HOST": "127.0.0.1", "QDRANT_PORT": "41235"}


def test_a_collection_snapshot_is_found_at_any_depth_by_name_and_the_newest_wins(tmp_path) -> None:
    import os

    from aidb_gate.backup.commands import newest_for

    daily = tmp_path / "daily"
    daily.mkdir()
    for name, mtime in (("docs-20261129.snapshot", 1), ("docs-20261130.snapshot", 2), ("docs_v2-20261130.snapshot", 3)):
        (daily / name).write_text(name)
        os.utime(daily / name, (mtime, mtime))
    assert newest_for(tmp_path, "docs") == daily / "docs-20261130.snapshot"
    assert newest_for(tmp_path, "doc") is None


def test_a_command_past_its_timeout_is_stopped_with_its_children(tmp_path) -> None:
    import os

    import pytest

    from aidb_gate.backup.commands import run_command
    from aidb_gate.backup.manifest import BackupError
    from aidb_gate.core.wait import poll_until

    script = tmp_path / "hang.sh"
    # A child that keeps the output pipe open after the script would have ended.
    script.write_text("#!/bin/sh\nsleep 300 &\necho child $!\nwait\n")
    script.chmod(0o755)
    with pytest.raises(BackupError, match=r"still running after 1 s \(backup.command_timeout_s\)") as err:
        run_command(str(script), tmp_path, dict(os.environ), "Postgres", timeout_s=1)
    child = int(str(err.value).split("child ")[1].split()[0])
    assert poll_until(lambda: not os.path.exists(f"/proc/{child}"), deadline_s=10).ok, "the child outlived the timeout"
