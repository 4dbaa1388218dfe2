"""The gate rejects every known-bad service of the corpus at the right stage, and passes the reference.

Each entry of fixtures/broken/ (and the reference itself) is assembled into a build context under
tmp_path and gated by a real child pytest: a throw-away project whose [tool.aidb-gate] points at
that context and nothing else, run with the entry's markers: the installed plugin collects the
installed suites itself, exactly as in a service repository. The child's reports/summary.json is
then judged by `aidb_gate.corpus.judge`: the first failing stage must be the expected one, and
every verdict regex of the entry must match a verdict of that stage. Entries are independent and
run in parallel (`pytest tests/corpus -n 2`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from aidb_gate import corpus

CHILD_TIMEOUT_S = 600

needs_podman = pytest.mark.skipif(shutil.which("podman") is None, reason="needs Podman (make test installs it)")


def _entries() -> list:
    # The reference first: under xdist it is a long run too, and a broken reference explains all else.
    return [pytest.param(None, id="reference")] + [pytest.param(f, id=f.name) for f in corpus.discover()]


def _leftovers(run_id: str) -> list[str]:
    from aidb_gate.core.engine import _conf_env

    env = {**os.environ, **_conf_env(os.environ)[0]}
    found = []
    for kind in ("ps -a", "network ls", "volume ls"):
        proc = subprocess.run(["podman", *kind.split(), "-q", "--filter", f"label=aidb-gate.run={run_id}"],
                              capture_output=True, text=True, env=env, check=False)
        found += [f"{kind}: {line}" for line in proc.stdout.split()]
    return found


def _child_project(pytester: pytest.Pytester, case: corpus.Case, context: Path) -> None:
    """A project that gates `context` with the installed suites and the case's configuration."""
    gate = corpus.gate_table(case, context, "reports")
    (pytester.path / "pyproject.toml").write_text(corpus.child_pyproject(gate))


@pytest.mark.corpus
@needs_podman
@pytest.mark.parametrize("folder", _entries())
def test_the_gate_gives_the_expected_verdict(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                             tmp_path: Path, folder: Path | None) -> None:
    case = corpus.reference_case() if folder is None else corpus.load_case(folder)
    context = corpus.assemble(case, tmp_path / f"aidb-{case.name}")
    _child_project(pytester, case, context)

    # The child's configuration is the case's alone: no AIDB_GATE_* of the caller leaks into it. Nor is
    # it an xdist worker when this test runs in one (the plugin names its summary after the worker).
    for key in [k for k in os.environ if k.startswith(("AIDB_GATE_", "PYTEST_XDIST_"))]:
        monkeypatch.delenv(key)
    run_id = f"corpus-{case.name}-{uuid.uuid4().hex[:6]}"
    monkeypatch.setenv("AIDB_GATE_RUN_ID", run_id)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-m", case.markers,
                                           timeout=CHILD_TIMEOUT_S)
    output = (result.stdout.str() + "\n" + result.stderr.str())[-6000:]

    summary = corpus.read_summary(pytester.path / "reports")
    problems = corpus.judge(summary, case, int(result.ret), output)
    assert not problems, f"{case.name} ({case.why}):\n" + "\n".join(problems) + f"\n\nchild output (tail):\n{output}"
    if case.expects_pass:
        assert result.ret == 0, output
    elif case.stage != corpus.CONFIG_STAGE:
        assert result.ret == pytest.ExitCode.TESTS_FAILED, output
    assert _leftovers(run_id) == [], f"run {run_id} left resources behind"
