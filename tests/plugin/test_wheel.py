"""The gate as a stranger gets it: a wheel, a fresh venv, and a service repository outside this one.

The wheel is built from this checkout and installed with its dependencies into a new virtual
environment (no editable install, nothing from the dev venv). A temporary "user repo" holds a
service with its own Containerfile - a copy of the reference AIDB, since the contract's health
endpoints are what the gate judges - and nothing of the gate. In it, `aidb-gate init` writes the
configuration and CI jobs, and `pytest -m p1` must pass with the installed plugin collecting the
installed suites; a broken variant (a package the code imports is missing from requirements.txt)
must fail at the imports stage. Nothing labelled with either run may be left behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
import venv
from pathlib import Path

import pytest
from children import REFERENCE, ROOT, leftovers

pytestmark = pytest.mark.skipif(shutil.which("podman") is None, reason="needs Podman (make test installs it)")

INSTALL_TIMEOUT_S = 900
GATE_TIMEOUT_S = 900


def _run(cmd: list[str], cwd: Path, timeout: int, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return proc


def _clean_env(run_id: str) -> dict[str, str]:
    """The caller's environment without anything that points at this checkout or its dev venv."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIDB_GATE_", "PYTEST_", "PYTHON", "VIRTUAL_ENV"))}
    env["AIDB_GATE_RUN_ID"] = run_id
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if ".venv" not in p)
    return env


def _source_tree(where: Path) -> Path:
    """This checkout's files as a release sees them (tracked, or new and not ignored), copied: a
    wheel built in place would also carry whatever a stale `build/` folder still holds, such as a
    suite that was renamed since."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT, timeout=60)
    if listed.returncode != 0:  # not a git checkout (an unpacked sdist): build it as it is
        return ROOT
    tree = where / "src"
    for rel in filter(None, listed.stdout.split("\0")):
        if (ROOT / rel).is_file():
            (tree / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, tree / rel)
    return tree


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """bin/ of a fresh venv holding the wheel built from this checkout (and PyPI's dependencies)."""
    where = tmp_path_factory.mktemp("wheel")
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(where / "dist"),
                  str(_source_tree(where))], cwd=where, timeout=INSTALL_TIMEOUT_S)
    assert built.returncode == 0, f"the wheel did not build:\n{built.stdout}\n{built.stderr}"
    wheels = list((where / "dist").glob("aidb_gate-*.whl"))
    assert len(wheels) == 1, wheels
    venv.EnvBuilder(with_pip=True).create(where / "venv")
    bin_dir = where / "venv" / "bin"
    # The dependencies at the versions CI tested (constraints.txt), so a new release upstream cannot
    # turn this self-test red overnight; the wheel's own requirements still decide what is installed.
    done = _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"),
                 str(wheels[0])], cwd=where, timeout=INSTALL_TIMEOUT_S)
    assert done.returncode == 0, f"the wheel did not install:\n{done.stdout}\n{done.stderr}"
    return bin_dir


def _user_repo(base: Path, name: str) -> Path:
    """A service repository of its own: the service's code, a Containerfile, a pyproject; no gate."""
    repo = base / name
    shutil.copytree(REFERENCE, repo, ignore=shutil.ignore_patterns("__pycache__", "README.md"))
    (repo / "pyproject.toml").write_text(f'[project]\nname = "{name}"\nversion = "1.0.0"\n')
    return repo


def test_the_wheel_carries_the_plugin_suites_recipes_and_reference(installed: Path, tmp_path: Path) -> None:
    code = ("import aidb_gate, aidb_gate.plugins.gate as g, aidb_gate.fixtures as f, aidb_gate.selection as s\n"
            "assert 'site-packages' in aidb_gate.__file__, aidb_gate.__file__\n"
            "assert (f.IMAGES / 'postgres' / 'Containerfile').is_file() and (f.REFERENCE / 'Containerfile').is_file()\n"
            "assert f.CONTAINERS_CONF.is_file() and (f.IMAGES / 'base' / 'build-base.sh').is_file()\n"
            "assert (s.bundled_suites() / 'test_health.py').is_file()\n"
            "print(aidb_gate.__file__)\n"
            "print(' '.join(sorted(p.name for p in s.bundled_suites().glob('test_*.py'))))")
    proc = _run([str(installed / "python"), "-c", code], cwd=tmp_path, timeout=60, env=_clean_env("wheel-check"))
    assert proc.returncode == 0, proc.stderr
    assert str(ROOT) not in proc.stdout, "the installed package must not point back into the checkout"
    shipped = proc.stdout.split("\n")[1].split()
    assert shipped == sorted(p.name for p in (ROOT / "suites").glob("test_*.py")), "the wheel's suites are this checkout's"


def _gate(installed: Path, repo: Path, run_id: str) -> tuple[int, str, dict]:
    """`pytest -m p1` in the user repo: (exit code, output tail, summary.json); nothing may be left."""
    try:
        gate = _run([str(installed / "pytest"), "-m", "p1", "-p", "no:cacheprovider"], cwd=repo, timeout=GATE_TIMEOUT_S,
                    env=_clean_env(run_id))
    finally:
        assert leftovers(run_id) == [], f"run {run_id} left resources behind"
    out = gate.stdout[-5000:] + gate.stderr[-2000:]
    summary_file = repo / "reports" / "summary.json"
    assert summary_file.is_file(), f"the run wrote no summary.json:\n{out}"
    return gate.returncode, out, json.loads(summary_file.read_text())


def test_init_then_gate_a_service_repo_from_the_installed_wheel(installed: Path, tmp_path: Path) -> None:
    repo = _user_repo(tmp_path, "their-service")
    init = _run([str(installed / "aidb-gate"), "init"], cwd=repo, timeout=60, env=_clean_env("init"))
    assert init.returncode == 0, init.stderr
    assert (repo / ".github/workflows/aidb-gate.yml").is_file() and (repo / ".gitlab/aidb-gate.gitlab-ci.yml").is_file()
    assert "[tool.aidb-gate]" in (repo / "pyproject.toml").read_text()

    text = (repo / "pyproject.toml").read_text()
    assert 'compose = "compose.yml"' in text and 'service = "aidb"' in text, "init reads the repo's compose file"

    code, out, summary = _gate(installed, repo, f"wheel-{uuid.uuid4().hex[:6]}")
    assert code == 0, f"the gate did not pass in the user repo:\n{out}"
    assert summary["evidence"]["compose"]["service"] == "aidb", summary["evidence"]
    assert " passed" in out and " skipped" not in out.splitlines()[-1], out
    assert summary["exit_status"] == 0 and summary["first_failure"] is None
    stages = {row["stage"] for row in summary["stages"]}
    assert {"build", "imports", "boot", "health", "backup", "restore"} <= stages, stages
    assert (repo / "reports" / "gate.html").is_file() and (repo / "reports" / "junit.xml").is_file()


def test_a_broken_service_repo_fails_at_the_stage_that_broke(installed: Path, tmp_path: Path) -> None:
    repo = _user_repo(tmp_path, "their-broken-service")
    reqs = repo / "requirements.txt"
    reqs.write_text("".join(line for line in reqs.read_text().splitlines(keepends=True)
                            if not line.startswith("prometheus_client")))
    assert _run([str(installed / "aidb-gate"), "init"], cwd=repo, timeout=60, env=_clean_env("init")).returncode == 0
    code, out, summary = _gate(installed, repo, f"wheel-bad-{uuid.uuid4().hex[:6]}")
    assert code == 1, f"the broken service was not failed:\n{out}"
    assert summary["first_failure"] == "imports", out
    assert any("prometheus_client" in v for v in summary["verdicts"].values()), summary["verdicts"]


def test_a_service_of_another_shape_is_gated_after_the_user_adapts_the_starter(installed: Path, tmp_path: Path) -> None:
    """A service that is not the reference's shape: a Dockerfile, port 8000, its own variable names,
    its own database user and name, and no Qdrant. `init` finds the file and the port; the user
    then does what the README says - renames the variables, switches Qdrant and search off - and
    the gate passes with those checks deselected and named, none skipped."""
    repo = _user_repo(tmp_path, "notes-service")
    for stack_file in ("compose.yml", "aidb.env", "init-schema.sql"):  # this one has no compose file
        (repo / stack_file).unlink()
    (repo / "Containerfile").rename(repo / "Dockerfile")
    dockerfile = (repo / "Dockerfile").read_text().replace("EXPOSE 8091", "EXPOSE 8000").replace('"8091"', '"8000"')
    (repo / "Dockerfile").write_text(dockerfile)
    settings = repo / "settings.py"
    settings.write_text(settings.read_text().replace('"AIDB_', '"NOTES_'))
    assert _run([str(installed / "aidb-gate"), "init"], cwd=repo, timeout=60, env=_clean_env("init")).returncode == 0
    text = (repo / "pyproject.toml").read_text()
    assert 'containerfile = "Dockerfile"' in text and "port = 8000" in text, text

    # What the user edits by hand: the variables the service reads, and the parts it does not have.
    starter, _, env_table = text.partition("[tool.aidb-gate.env]")
    env_table = env_table.replace("AIDB_", "NOTES_")
    env_table = "\n".join(line for line in env_table.splitlines() if "qdrant" not in line and "QDRANT" not in line)
    qdrant = "[tool.aidb-gate.dependencies.qdrant]\nenabled = "
    starter = starter.replace(qdrant + "true", qdrant + "false")
    starter = starter.replace("search = true", "search = false")
    starter = starter.replace("[tool.aidb-gate.dependencies.postgres]\n",
                              '[tool.aidb-gate.dependencies.postgres]\ndb = "notes"\nuser = "notes_app"\n')
    (repo / "pyproject.toml").write_text(starter + "[tool.aidb-gate.env]" + env_table + "\n")

    code, out, summary = _gate(installed, repo, f"wheel-notes-{uuid.uuid4().hex[:6]}")
    assert code == 0, f"the adapted service was not passed:\n{out}"
    assert " skipped" not in out.splitlines()[-1], out
    off = summary["switched_off"]
    assert set(off.values()) == {"dependencies.qdrant.enabled"}, off
    assert any("vector_search" in nodeid for nodeid in off), off
    assert "switched off by dependencies.qdrant.enabled" in out
