"""Which runs the gate acts in, what it collects, and what the configuration switches off."""

from __future__ import annotations

from pathlib import Path

import pytest

from aidb_gate.selection import bundled_suites, gate_requested, lookup, marker_names, suites_to_add, switched_off_by


def test_a_project_without_gate_configuration_is_not_gated(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "other"\n[tool.pytest.ini_options]\nmarkers = ["p1"]\n')
    assert not gate_requested(tmp_path, [None, False, ""], environ={})


@pytest.mark.parametrize("how", ["table", "gate.toml", "option", "env"])
def test_each_way_of_asking_for_the_gate_turns_it_on(tmp_path: Path, how: str) -> None:
    if how == "table":
        (tmp_path / "pyproject.toml").write_text("[tool.aidb-gate]\nport = 8080\n")
    elif how == "gate.toml":
        (tmp_path / "gate.toml").write_text("port = 8080\n")
    options = ["some/dir"] if how == "option" else [None]
    environ = {"AIDB_GATE_CONFIG": "x.toml"} if how == "env" else {}
    assert gate_requested(tmp_path, options, environ=environ)


def test_marker_names_ignore_the_operators() -> None:
    assert marker_names("p1 and not (health or auth)") == {"p1", "health", "auth"}
    assert marker_names(None) == set()


def test_the_bundled_suites_are_added_for_a_gate_marker_and_default_paths(tmp_path: Path) -> None:
    assert suites_to_add(True, "p1", [str(tmp_path)], False, tmp_path) == bundled_suites()
    assert suites_to_add(True, "health and not p2", [str(tmp_path)], False, tmp_path) == bundled_suites()


@pytest.mark.parametrize(("enabled", "markexpr", "given"), [
    (False, "p1", False),      # the configuration says the project brings its own tests
    (True, "", False),         # plain `pytest`: the project's unit tests, not the gate
    (True, "slow", False),     # a marker of the project's own
    (True, "p1", True),        # the user named the paths to collect
])
def test_the_bundled_suites_stay_out_otherwise(tmp_path: Path, enabled: bool, markexpr: str, given: bool) -> None:
    assert suites_to_add(enabled, markexpr, [str(tmp_path)], given, tmp_path) is None


def test_the_bundled_suites_are_never_collected_twice(tmp_path: Path) -> None:
    suites = bundled_suites()
    assert suites_to_add(True, "p1", [str(suites)], False, tmp_path) is None
    assert suites_to_add(True, "p1", [f"{suites / 'test_health.py'}::test_x"], False, tmp_path) is None


def test_a_false_key_switches_a_test_off_and_names_itself() -> None:
    raw = {"data": {"documents": True, "search": False}, "auth": {"enabled": True}}
    assert switched_off_by(["data.documents", "data.search"], raw) == "data.search"
    assert switched_off_by(["auth.enabled"], raw) is None
    assert switched_off_by([], raw) is None


def test_an_unknown_key_is_an_error_not_a_silent_pass() -> None:
    with pytest.raises(KeyError, match=r"data\.serch"):
        lookup({"data": {"search": True}}, "data.serch")
