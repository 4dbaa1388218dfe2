"""Parallel runs, for real: `pytest -m p1 -n 2`, and two gate runs from two clones at the same moment.

Each runs the whole p1 gate on the bundled reference AIDB in a child process and then checks what a
user would: every test passed (none skipped), the reports are whole, and nothing labelled with
either run is left behind. If two runs' names, ports or networks clashed, or one removed the
other's containers, a test of the victim would fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from children import ROOT, leftovers

pytestmark = pytest.mark.skipif(shutil.which("podman") is None, reason="needs Podman (make test installs it)")

#: What a copy of the project leaves out: local state, not project files.
LOCAL_STATE = shutil.ignore_patterns(".venv", ".git", "reports", ".hypothesis", "*.egg-info", ".pytest_cache",
                                     ".ruff_cache", "__pycache__")


def p1_command(reports: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "pytest", "-m", "p1", "suites", "-p", "no:cacheprovider", "-q", *extra,
            f"--html={reports}/gate.html", f"--junitxml={reports}/junit.xml"]


def p1_env(run_id: str, reports: Path) -> dict[str, str]:
    return {**os.environ, "AIDB_GATE_RUN_ID": run_id, "AIDB_GATE_REPORTS_DIR": str(reports), "CI": "true"}


def assert_all_passed(reports: Path, output: str) -> None:
    suite = ET.parse(reports / "junit.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    assert counts["tests"] > 0 and counts["failures"] == counts["errors"] == counts["skipped"] == 0, \
        f"{counts}\n{output[-3000:]}"


def test_p1_with_two_xdist_workers_passes_and_leaves_nothing(tmp_path):
    run_id = f"selftest-xdist-{uuid.uuid4().hex[:6]}"
    reports = tmp_path / "reports"
    proc = subprocess.run(p1_command(reports, "-n", "2"), cwd=ROOT, env=p1_env(run_id, reports),
                          capture_output=True, text=True, timeout=900)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-3000:]
    assert_all_passed(reports, output)
    # The controller's report merges the workers' stage tables: each worker ran its own stack.
    summary = json.loads((reports / "summary.json").read_text())
    assert summary["first_failure"] is None and {r["status"] for r in summary["stages"]} == {"passed"}
    assert f"gw0: {run_id}-gw0" in summary["evidence"]["run"] and f"gw1: {run_id}-gw1" in summary["evidence"]["run"]
    assert "Gate stages" in (reports / "gate.html").read_text()
    assert leftovers(f"{run_id}-gw0") == [] and leftovers(f"{run_id}-gw1") == []


def test_two_clones_gating_at_the_same_moment_both_pass_and_leave_nothing(tmp_path):
    runs = []
    for name in ("clone-a", "clone-b"):
        clone = tmp_path / name
        shutil.copytree(ROOT, clone, ignore=LOCAL_STATE)
        run_id = f"selftest-{name}-{uuid.uuid4().hex[:6]}"
        reports = clone / "reports"
        runs.append((run_id, reports, clone))
    children = [subprocess.Popen(p1_command(reports), cwd=clone, env=p1_env(run_id, reports), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for run_id, reports, clone in runs]
    outputs = [child.communicate(timeout=900)[0] for child in children]
    for (run_id, reports, _), child, output in zip(runs, children, outputs, strict=True):
        assert child.returncode == 0, f"{run_id}:\n{output[-3000:]}"
        assert_all_passed(reports, output)
        assert leftovers(run_id) == [], run_id
