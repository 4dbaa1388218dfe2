"""reports/gate.html of a failing run, as a reviewer's browser shows it: the verdict first.

A real child gate run whose target fails to build writes the HTML report; headless Chromium
renders it (pytest-html builds the page with JavaScript from a JSON blob, so the HTML text is not
what a reviewer sees) and the rendered DOM must open with the banner and the cause, before
pytest-metadata's environment table and before any test row.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from children import leftovers

CHROMIUM = Path("/usr/bin/chromium")

pytestmark = pytest.mark.skipif(shutil.which("podman") is None, reason="needs Podman (make test installs it)")


def need_chromium() -> None:
    """Skip without the browser; in CI (CI=true) fail instead, as the gate does with its own skips
    (that rule covers only p1/p2 gate tests, not these self-tests, hence here)."""
    if CHROMIUM.exists():
        return
    reason = "needs headless Chromium at /usr/bin/chromium: run `make chromium` (Debian's `chromium` package)"
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{reason}; in CI a skipped check is a failure, so CI must install it", pytrace=False)
    pytest.skip(reason)


CHILD_TESTS = """
import pytest

pytestmark = [pytest.mark.p1, pytest.mark.build]


def test_image_builds(gate):
    result = gate.build()
    assert result.ok, f"the image did not build: `podman build` exited {result.exit_code}"


def test_image_has_a_command(gate_image):
    assert gate_image


def test_image_exposes_the_port(gate_image):
    assert gate_image


def test_image_user(gate_image):
    assert gate_image
"""


def render(page: Path, tmp_path: Path, *how: str) -> subprocess.CompletedProcess:
    """Chromium, headless and offline, on a local file; `how` is --dump-dom or --screenshot=..."""
    profile = tmp_path / "chromium-profile"
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         f"--user-data-dir={profile}", *how, page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)


def failing_run(pytester: pytest.Pytester, tmp_path: Path) -> tuple[pytest.RunResult, str]:
    """(child result, rendered DOM) of a gate run that fails at the build stage."""
    run_id = f"selftest-html-{uuid.uuid4().hex[:6]}"
    service = tmp_path / "service"
    service.mkdir()
    (service / "Containerfile").write_text("FROM localhost/aidb-gate/base:bookworm\nRUN false\n")
    pytester.makepyprojecttoml(f'[tool.aidb-gate]\nreports_dir = "reports"\nsuites = false\ntarget = "{service}"\n')
    pytester.makepyfile(test_gate=CHILD_TESTS)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIDB_GATE_RUN_ID", run_id)
        result = pytester.runpytest_subprocess(
            "-p", "aidb_gate.plugins.gate", "-p", "no:cacheprovider", "--html=reports/gate.html",
            "--self-contained-html", timeout=600)
    page = pytester.path / "reports" / "gate.html"
    assert page.exists(), result.stdout.str()[-3000:] + result.stderr.str()[-3000:]
    rendered = render(page, tmp_path, "--dump-dom")
    assert rendered.returncode == 0 and "<body" in rendered.stdout, rendered.stderr[-3000:]
    assert leftovers(run_id) == []
    # pytest-html's <template> elements (a result row's blueprint) sit at the top of the page; they are not rows.
    return result, re.sub(r"<template\b.*?</template>", "", rendered.stdout, flags=re.S)


def test_a_failing_runs_report_opens_with_the_verdict_and_says_each_cause_once(pytester, tmp_path):
    need_chromium()
    result, dom = failing_run(pytester, tmp_path)

    # The run really failed at the build stage, and the gate's terminal summary says each cause once.
    result.assert_outcomes(failed=1, errors=3)
    out = result.stdout.str()
    assert "GATE: FAIL at build: the image did not build: `podman build` exited 1" in out
    # pytest's own short summary (one line per failed test) follows the gate's section; it is not ours.
    gate_section = out[out.index(" aidb-gate ="):].split("short test summary info", 1)[0]
    blocking = "The image did not build (exit 1), so this stage cannot run"
    assert gate_section.count(blocking) == 1
    assert "[build] 3 test(s) could not run because the build stage failed" in gate_section
    summary = (pytester.path / "reports" / "summary.json").read_text()
    assert '"first_failure": "build"' in summary and '"causes"' in summary

    # The rendered page: the banner, the stage table and the causes come before any test row.
    banner = dom.find("GATE: FAIL at build: the image did not build: `podman build` exited 1")
    assert banner != -1, dom[:3000]
    first_row = dom.find('class="results-table-row')
    assert first_row != -1, "pytest-html drew no result row: did its script run?"
    assert banner < dom.find("Gate stages") < dom.find("Verdicts, by cause") < first_row
    # pytest-metadata's table comes after the verdicts, folded, and its heading is gone.
    environment = dom.find('id="environment"')
    assert dom.find("Verdicts, by cause") < environment < first_row and 'id="environment-header"' not in dom
    assert re.search(r'<details class="gate-environment" id="gate-environment">\s*<summary>', dom)
    assert "<td>Python</td>" in dom[environment:first_row], "the environment table was lost, not folded"

    # Each cause once: in the summary, and in the rows the first blocked test carries it.
    head, rows = dom[:first_row], dom[first_row:dom.index("<footer")]  # the footer holds the page's JSON
    assert head.count(blocking) == 1 and "build</span> broke: 3 test(s) could not run." in head
    assert rows.count("the same cause as") == 2 and rows.count("Not run: an earlier stage failed") == 2
