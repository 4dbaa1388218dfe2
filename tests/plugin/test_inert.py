"""The installed plugin is inert where nobody asked for it, and listing things never touches the engine.

Every child here runs with DOCKER_HOST pointing at a socket that does not exist: a gate that
tried to reach an engine would stop with "no engine answers there", so a clean exit proves it
never tried.
"""

from __future__ import annotations

import pytest

NO_ENGINE = "unix:///nonexistent/aidb-gate-inert.sock"


@pytest.fixture(autouse=True)
def no_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("AIDB_GATE_CONFIG", "AIDB_GATE_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("DOCKER_HOST", NO_ENGINE)


def _child(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)


def test_a_project_that_never_asked_keeps_its_own_p1_tests(pytester: pytest.Pytester) -> None:
    """An unrelated project with its own `p1` marker and a fixture named like pytest-base-url's."""
    pytester.makepyprojecttoml('[project]\nname = "unrelated"\n[tool.pytest.ini_options]\nmarkers = ["p1: ours"]\n')
    pytester.makeconftest("import pytest\n\n@pytest.fixture\ndef base_url():\n    return 'http://ours'\n")
    pytester.makepyfile(test_ours="import pytest\n\n@pytest.mark.p1\ndef test_ours(base_url):\n"
                                  "    assert base_url == 'http://ours'\n")
    result = _child(pytester, "-m", "p1")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 0, out
    result.assert_outcomes(passed=1)
    assert "[aidb-gate]" not in result.stdout.str(), "the gate spoke in a project that never configured it"
    assert not (pytester.path / "reports").exists(), "the gate wrote reports in a project that never configured it"


def test_no_public_fixture_name_collides_with_common_plugins(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml("[tool.aidb-gate]\nport = 8091\n")
    result = _child(pytester, "--fixtures")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    listed = result.stdout.str()
    section = listed.split("fixtures defined from aidb_gate.plugins.gate", 1)[1].split("\n-", 1)[0]
    ours = [line.split()[0] for line in section.splitlines()[1:] if line.strip() and not line.startswith(" ")]
    assert len(ours) >= 10, listed
    assert all(name.startswith("gate") for name in ours), ours
    # pytest-base-url, pytest-django and pytest-docker use these names.
    for taken in ("base_url", "engine", "stack", "api_key", "live_server", "db", "docker_ip"):
        assert taken not in ours


@pytest.mark.parametrize("listing", [("--fixtures",), ("--co", "-m", "p1"), ("--markers",)])
def test_listing_in_a_configured_project_never_touches_the_engine(pytester: pytest.Pytester,
                                                                  listing: tuple[str, ...]) -> None:
    pytester.makepyprojecttoml("[tool.aidb-gate]\nport = 8091\n")
    result = _child(pytester, *listing)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == 0, out
    assert "no engine answers" not in out and "Traceback" not in out
    if "--co" in listing:
        assert "test_health.py" in out, "the installed suites are listed under -m p1"


def test_a_switched_off_check_is_deselected_and_named_not_skipped(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml("[tool.aidb-gate]\nport = 8091\n[tool.aidb-gate.data]\nsearch = false\n"
                               "[tool.aidb-gate.auth]\nenabled = false\n[tool.aidb-gate.imports]\nenabled = false\n")
    result = _child(pytester, "--co", "-m", "p1")
    out = result.stdout.str()
    assert result.ret == 0, out + result.stderr.str()
    assert "<Function test_a_written_document_is_found_by_vector_search>" not in out
    assert "<Function test_refuses_a_wrong_key>" not in out
    assert "<Function test_health_ready" in out or "<Function test_" in out
    assert "switched off by data.search" in out and "switched off by auth.enabled" in out, out
    assert "<Function test_every_module_imports>" not in out and "switched off by imports.enabled" in out, out


def test_loading_the_plugin_pulls_in_no_container_or_database_client() -> None:
    """Every pytest run in an environment with the gate installed loads the plugin: it stays cheap."""
    import subprocess
    import sys

    code = ("import sys, aidb_gate.plugins.gate\n"
            "heavy = sorted(m for m in ('testcontainers', 'docker', 'podman', 'psycopg', 'qdrant_client', 'requests')"
            " if m in sys.modules)\n"
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
