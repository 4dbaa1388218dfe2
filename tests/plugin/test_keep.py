"""--gate-keep, run for real: the kept stack is reachable at the printed addresses, outlives later
runs and `aidb-gate clean`, and `aidb-gate clean --run ID` removes all of it.

The child gates the bundled reference AIDB with `-m "p1 and health"` in a throw-away project, as a
user would; when no Podman socket exists it runs on a private API service that is stopped before
the instructions are printed, which is exactly the case that used to crash.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import requests
from children import REFERENCE, ROOT, leftovers

pytestmark = pytest.mark.skipif(subprocess.run(["which", "podman"], capture_output=True).returncode != 0,
                                reason="needs Podman (make test installs it)")

PLUGIN = "aidb_gate.plugins.gate"


def gate_child(pytester: pytest.Pytester, run_id: str, *args: str) -> pytest.RunResult:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIDB_GATE_RUN_ID", run_id)
        return pytester.runpytest_subprocess("-p", PLUGIN, "-p", "no:cacheprovider", *args, timeout=900)


def clean(pytester: pytest.Pytester, *args: str) -> subprocess.CompletedProcess:
    """`aidb-gate clean` as the user runs it, in the child project."""
    return subprocess.run([sys.executable, "-m", "aidb_gate.cli", "--root", str(pytester.path), "clean", *args],
                          capture_output=True, text=True, timeout=300, check=False)


def read_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


def test_a_kept_stack_is_reachable_outlives_later_runs_and_clean_run_removes_it(pytester):
    run_id = f"selftest-keep-{uuid.uuid4().hex[:6]}"
    # suites = false: the child names test_health.py itself, so the bundled suites are not added twice.
    pytester.makepyprojecttoml('[tool.aidb-gate]\nreports_dir = "reports"\nsuites = false\nca_bundle = "auto"\n'
                               f'target = "{REFERENCE}"\n')
    try:
        result = gate_child(pytester, run_id, "-c", str(pytester.path / "pyproject.toml"),
                            "--rootdir", str(pytester.path), "--confcutdir", str(ROOT / "suites"),
                            str(ROOT / "suites" / "test_health.py"), "-m", "p1 and health", "--gate-keep")
        out = result.stdout.str() + result.stderr.str()
        assert result.ret == 0, out[-4000:]
        assert "Traceback" not in out, out[-4000:]

        # The printed service URL answers, and so does every printed dependency port.
        health = re.search(r'curl -H "X-API-Key: \$AIDB_API_KEY" (http://127\.0\.0\.1:\d+\S*)', out)
        assert health, out[-3000:]
        assert requests.get(health.group(1), timeout=10).status_code == 200
        ports = dict(re.findall(r"^  (postgres|redis|qdrant)\s+127\.0\.0\.1:(\d+) ", out, re.MULTILINE))
        assert set(ports) == {"postgres", "redis", "qdrant"}, out[-3000:]
        for port in ports.values():
            socket.create_connection(("127.0.0.1", int(port)), timeout=5).close()

        # The secrets are in a private file, never in the output, and they open the kept services.
        from aidb_gate.keep import kept_secrets_file

        secrets_file = kept_secrets_file(run_id)
        assert not list((pytester.path / "reports").rglob("kept-*.env")), "secrets in the reports folder"
        assert f"secrets (mode 0600): {secrets_file}" in out
        assert secrets_file.stat().st_mode & 0o777 == 0o600
        secrets = read_env(secrets_file)
        assert secrets and not any(value in out for value in secrets.values())
        qdrant = requests.get(f"http://127.0.0.1:{ports['qdrant']}/collections",
                              headers={"api-key": secrets["QDRANT_API_KEY"]}, timeout=10)
        assert qdrant.status_code == 200

        # The next gate run's janitor (reap_dead_runs, the same sweep as a plain `aidb-gate clean`, which
        # is not run here because it would also sweep other engineers' dead runs) leaves the kept stack.
        kept = sorted(leftovers(run_id))
        assert any(line.startswith("ps -a") for line in kept)
        pytester.makepyfile(test_next="import pytest\n\npytestmark = pytest.mark.p1\n\n"
                                      "def test_engine(gate_engine):\n    assert gate_engine.kind\n")
        gate_child(pytester, f"{run_id}-next", "test_next.py").assert_outcomes(passed=1)
        assert sorted(leftovers(run_id)) == kept
        assert requests.get(health.group(1), timeout=10).status_code == 200

        removed = clean(pytester, "--run", run_id)
        assert removed.returncode == 0, removed.stdout + removed.stderr
        assert leftovers(run_id) == []
        assert not secrets_file.exists()
    finally:
        clean(pytester, "--run", run_id)  # whatever failed above, the kept stack must not outlive the test
    assert leftovers(run_id) == []
