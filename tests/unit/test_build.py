"""build: the target's tag changes with every build input the gate controls, and only then."""

from __future__ import annotations

from aidb_gate.stages.build import target_tag


def _context(tmp_path):
    ctx = tmp_path / "My Service"
    ctx.mkdir()
    (ctx / "Containerfile").write_text("FROM base\nCOPY app.py /app/\n")
    (ctx / "app.py").write_text("print('hi')\n")
    return ctx


def test_the_tag_is_stable_for_the_same_inputs(tmp_path):
    ctx = _context(tmp_path)
    first = target_tag(ctx, ctx / "Containerfile", {"A": "1"})
    assert first == target_tag(ctx, ctx / "Containerfile", {"A": "1"})
    assert first.startswith("localhost/aidb-gate/target-my-service:c-")


def test_the_tag_follows_files_containerfile_and_args(tmp_path):
    ctx = _context(tmp_path)
    base = target_tag(ctx, ctx / "Containerfile", {"BASE_IMAGE": "b:1"})
    assert target_tag(ctx, ctx / "Containerfile", {"BASE_IMAGE": "b:2"}) != base
    outside = tmp_path / "Other.Containerfile"
    outside.write_text("FROM base\nCOPY app.py /srv/\n")
    assert target_tag(ctx, outside, {"BASE_IMAGE": "b:1"}) != base
    (ctx / "app.py").write_text("print('changed')\n")
    assert target_tag(ctx, ctx / "Containerfile", {"BASE_IMAGE": "b:1"}) != base


def test_the_gates_own_reports_inside_the_context_do_not_change_the_tag(tmp_path):
    """A service repository gates itself (`target = "."`): its reports/ change every run."""
    ctx = _context(tmp_path)
    reports = ctx / "reports"
    before = target_tag(ctx, ctx / "Containerfile", {}, skip=(reports,))
    (reports / "logs").mkdir(parents=True)
    (reports / "logs" / "target.log").write_text("a run's log\n")
    assert target_tag(ctx, ctx / "Containerfile", {}, skip=(reports,)) == before
    (ctx / "app.py").write_text("print('changed')\n")
    assert target_tag(ctx, ctx / "Containerfile", {}, skip=(reports,)) != before


def test_old_target_tags_are_the_ones_beyond_the_newest_of_each_target():
    from aidb_gate.images import created_seconds, stale_target_tags

    tags = [("localhost/aidb-gate/target-aidb:c-1", 10.0), ("localhost/aidb-gate/target-aidb:c-2", 30.0),
            ("localhost/aidb-gate/target-aidb:c-3", 20.0), ("localhost/aidb-gate/target-other:c-9", 1.0),
            ("localhost/aidb-gate/postgres:r-1", 0.0)]
    assert sorted(stale_target_tags(tags)) == ["localhost/aidb-gate/target-aidb:c-1", "localhost/aidb-gate/target-aidb:c-3"]
    assert stale_target_tags(tags, keep=3) == []
    assert created_seconds("2026-11-27T09:22:37.501153548Z") < created_seconds("2026-11-27T09:22:38Z")
    assert created_seconds(1700000000) == 1700000000.0
