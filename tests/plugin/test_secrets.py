"""No secret on a command line or in `inspect`: while a real run's whole stack is up, every
process's /proc/<pid>/cmdline (world-readable) and every container's inspect output is read,
and none holds one of the run's secrets - except the service's own environment, where the
configuration's `env` table puts them because the service's contract reads them there.

The scan runs inside the child gate run, as a test of its own, so it sees the run's secrets
and the stack at once; the parent only checks that the child passed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from children import REFERENCE, engine_env

SCAN = '''
import json, os, subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.p1


def test_no_secret_in_any_cmdline_or_inspect(gate, gate_boot, gate_url):
    secrets = gate.run.redactor.known()
    assert len(secrets) >= 4, "the run made its random secrets (postgres, redis, qdrant, api key)"
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\\\\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        found += [f"pid {proc.name} cmdline" for s in secrets if s in cmdline]
    ids = subprocess.run(["podman", "ps", "-a", "-q", "--filter", f"label=aidb-gate.run={gate.run.id}"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert len(ids) >= 4, ids
    for cid in ids:
        info = json.loads(subprocess.run(["podman", "inspect", cid], capture_output=True, text=True,
                                         check=True).stdout)[0]
        role = info["Config"]["Labels"].get("aidb-gate.role", "?")
        env = info["Config"].get("Env") or []
        if role.startswith("target"):
            # The service's contract reads its secrets from the environment: only there, and only
            # under the names the configuration's env table gives.
            allowed = {k for k, v in gate.cfg.env_templates.items() if "password" in v or "api_key" in v}
            env = [e for e in env if e.split("=", 1)[0] not in allowed]
            info["Config"]["Env"] = env
        text = json.dumps(info)
        found += [f"{role} inspect" for s in secrets if s in text]
    assert not found, f"secrets found in: {sorted(set(found))}"
'''


@pytest.mark.skipif(shutil.which("podman") is None, reason="needs Podman (make test installs it)")
def test_a_run_puts_no_secret_on_a_command_line_or_in_inspect(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(f'[tool.aidb-gate]\nreports_dir = "reports"\ntarget = "{REFERENCE}"\n'
                               'ca_bundle = "auto"\n')
    pytester.makepyfile(test_scan=SCAN)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_scan.py"],
                            cwd=pytester.path, env=engine_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout, result.stdout[-2000:]
