"""A stage name is a typed value from the one table (aidb_gate/pipeline.py): a name outside it fails
where it is made, never as a row missing from the report, and no module lists stages itself."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from aidb_gate import pipeline as stages
from aidb_gate.errors import GateError
from aidb_gate.pipeline import PIPELINE, StageBook, StageName

ROOT = Path(__file__).resolve().parents[2]


def test_the_table_lists_every_stage_once_in_order_config_first():
    assert [s.name for s in PIPELINE] == list(StageName)
    assert stages.NAMES[0] == StageName.CONFIG and stages.order("config") < stages.order("engine")
    assert "config" not in stages.MARKED and "engine" not in stages.MARKED and "boot" in stages.MARKED
    assert StageName.BUILD == "build" and f"{StageName.BUILD}" == "build"


@pytest.mark.parametrize("make", [
    lambda: GateError("x", stage="buidl"),
    lambda: StageBook().record("buidl", 1.0, True),
    lambda: StageBook().mark_failed("helth"),
    lambda: StageBook().add_test("Boot", "passed", 0.1),
])
def test_a_misspelled_stage_is_refused_where_it_is_made(make):
    with pytest.raises(ValueError, match=r"is not a gate stage .*known: config, engine"):
        make()


def test_a_stage_outside_the_markers_still_gets_its_row():
    book = StageBook()
    book.record(StageName.CONFIG, 0.5, False)
    book.record("dependencies", 1.0, True)
    assert [(r["stage"], r["status"]) for r in book.rows()] == [("config", "failed"), ("dependencies", "passed")]
    assert book.first_failure() == "config"


def _literal_stages(tree: ast.AST) -> list[tuple[int, str]]:
    """Stage names written as bare strings where a stage is expected: `stage="..."` keywords,
    `Step(name, "<stage>", ...)`, and the stage book's record/mark_failed/add_test calls."""
    found = []
    names = {str(s) for s in StageName}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        args = [kw.value for kw in node.keywords if kw.arg == "stage"]
        func = node.func
        called = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if called == "Step" and len(node.args) > 1:
            args.append(node.args[1])
        if called in ("record", "mark_failed", "add_test") and node.args:
            args.append(node.args[0])
        found += [(a.lineno, a.value) for a in args if isinstance(a, ast.Constant) and a.value in names]
    return found


def test_no_module_names_a_stage_with_a_bare_string():
    offenders = []
    for folder in ("aidb_gate", "plugins"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, value in _literal_stages(ast.parse(path.read_text(), str(path))):
                offenders.append(f"{path.relative_to(ROOT)}:{line}: {value!r}")
    assert offenders == [], "use StageName members: " + ", ".join(offenders)


def test_the_literal_finder_finds_what_it_looks_for():
    code = 'Step("x", "boot", f)\nGateError("m", stage="build")\nbook.record("engine", 1, True)\nStep("x", S.BOOT, f)'
    assert [v for _, v in _literal_stages(ast.parse(code))] == ["boot", "build", "engine"]


def test_every_step_needs_only_steps_of_its_own_or_earlier_stages():
    from aidb_gate.stages import graph

    found = graph.steps()
    assert {"base", "images", "build", "imports", "stack", "boot", "diagnosis", "seeded", "backup", "restore"} <= {
        s.name for s in found}
    for step in found:
        for need in step.needs:
            assert stages.order(need.stage) <= stages.order(step.stage), f"{step.name} needs the later {need.name}"
            assert found.index(need) < found.index(step)


def test_docs_architecture_shows_the_stage_table_and_step_graph_the_code_has():
    from aidb_gate.stages import graph

    doc = ROOT / "docs" / "ARCHITECTURE.md"
    assert graph.render(doc.read_text()) == doc.read_text(), (
        "docs/ARCHITECTURE.md is out of date: run python -m aidb_gate.stages.graph --write docs/ARCHITECTURE.md")
