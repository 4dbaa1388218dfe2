"""Known-bad backup procedures: the stack's own scripts, run unchanged by the backup and restore
stages, are passed when correct and flagged, bug by bug, with a verdict that names the bug.

The scripts are `fixtures/user-backup/*.sh`, configured by `fixtures/user-backup/gate.toml`; each
`fixtures/user-backup/known-bad/<name>/case.toml` is one bug, written as a corpus case (why,
stage, verdict regexes, [[edit]]s of the scripts) and judged by the corpus judge.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tomllib

import pytest
from children import REFERENCE, ROOT

from aidb_gate import corpus

SCRIPTS = ROOT / "fixtures" / "user-backup"
KNOWN_BAD = SCRIPTS / "known-bad"
CASES = [corpus.Case("correct", None, None, why="the scripts as they should be: the gate must pass them")] + [
    corpus.load_case(folder) for folder in corpus.discover(KNOWN_BAD)]


def _toml_table(table: dict) -> str:
    return "".join(f"{key} = {json.dumps(value)}\n" for key, value in table.items())


@pytest.mark.skipif(shutil.which("podman") is None, reason="needs Podman (make test installs it)")
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_backup_procedure_is_judged_by_what_it_restores(pytester: pytest.Pytester, case: corpus.Case) -> None:
    scripts = pytester.path / "scripts"
    shutil.copytree(SCRIPTS, scripts, ignore=shutil.ignore_patterns("known-bad", "*.toml"))
    for i, edit in enumerate(case.edits, 1):
        corpus.apply_edit(scripts, edit, f"{case.name}: edit #{i}")
    backup = tomllib.loads((SCRIPTS / "gate.toml").read_text())["tool"]["aidb-gate"]["backup"]
    pytester.makepyprojecttoml(
        f'[tool.aidb-gate]\nreports_dir = "reports"\ncompose = "{REFERENCE / "compose.yml"}"\nservice = "aidb"\n'
        f'ca_bundle = "auto"\n[tool.aidb-gate.backup]\n{_toml_table(backup)}')
    result = pytester.runpytest_subprocess(
        "-p", "aidb_gate.plugins.gate", "-p", "no:cacheprovider", "-c", str(pytester.path / "pyproject.toml"),
        "--rootdir", str(pytester.path), "--confcutdir", str(ROOT / "suites"),
        str(ROOT / "suites" / "test_backup.py"), str(ROOT / "suites" / "test_restore.py"), "-m", "p1", timeout=900)
    summary_file = pytester.path / "reports" / "summary.json"
    summary = json.loads(summary_file.read_text()) if summary_file.is_file() else None
    problems = corpus.judge(summary, case, result.ret, result.stdout.str())
    assert not problems, "\n".join([*problems, "", result.stdout.str()[-4000:]])


@pytest.mark.parametrize("case", CASES[1:], ids=[c.name for c in CASES[1:]])
def test_every_known_bad_edit_still_applies(tmp_path, case: corpus.Case) -> None:
    """An edit that no longer finds its text would leave the scripts correct and the case moot."""
    shutil.copytree(SCRIPTS, tmp_path / "scripts", ignore=shutil.ignore_patterns("known-bad", "*.toml"))
    for edit in case.edits:
        corpus.apply_edit(tmp_path / "scripts", edit, case.name)


def test_the_scripts_are_valid_bash() -> None:
    for script in sorted(SCRIPTS.glob("*.sh")):
        proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True, check=False)
        assert proc.returncode == 0, f"{script}: {proc.stderr}"
