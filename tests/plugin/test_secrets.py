"""No secret on a command line or in `inspect`, except where the stack under test itself puts it:
while a real run's whole stack is up, every process's /proc/<pid>/cmdline (world-readable) and
every container's inspect output is read.

- With the contract's templates, a secret shows only in the service's own environment, under the
  names the `env` table gives (its contract reads them there).
- With `*_file` placeholders, the service gets files instead, and no secret shows anywhere.
- With the reference's compose file, which puts REDIS_PASSWORD on Redis's command line as
  production's does, secrets show only in what that file declares - a service's environment, and
  the command lines of the services the gate's notice names - and the notice is in the output.

The scan runs inside the child gate run, as a test of its own, so it sees the run's secrets
and the stack at once; the parent checks that the child passed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
from children import REFERENCE, engine_env

SCAN = '''
import json, re, subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.p1

#: A template that hands over a secret's value (not its file).
VALUE = re.compile(r"\\{(?:\\w+\\.)?(?:password|api_key)\\}")


def container_of(pid):
    """The full id of the container whose cgroup holds pid, or None for a host process."""
    try:
        text = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    found = re.findall(r"[0-9a-f]{64}", text)
    return found[-1] if found else None


def test_no_secret_in_any_cmdline_or_inspect(gate, gate_boot, gate_url):
    secrets = gate.run.redactor.known()
    assert len(secrets) >= 4, "the run made its random secrets (postgres, redis, qdrant, api key)"
    compose = gate.cfg.compose
    plain_sight = set(compose.secrets_in_plain_sight()) if compose else set()
    listing = json.loads(subprocess.run(["podman", "ps", "-a", "--format", "json", "--filter",
                                         f"label=aidb-gate.run={gate.run.id}"],
                                        capture_output=True, text=True, check=True).stdout)
    assert len(listing) >= 4, listing
    role_of = {c["Id"]: c["Labels"].get("aidb-gate.role", "?") for c in listing}
    service_of = {role: ("aidb" if role == "target" else role) for role in role_of.values()}
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
        if any(s in cmdline for s in secrets):
            role = role_of.get(container_of(proc.name) or "", "host")
            if service_of.get(role) not in plain_sight:
                found.append(f"pid {proc.name} cmdline ({role})")
    for cid, role in role_of.items():
        info = json.loads(subprocess.run(["podman", "inspect", cid], capture_output=True, text=True,
                                         check=True).stdout)[0]
        if service_of[role] in plain_sight:
            continue  # named by the notice: its command line is the compose file's own
        env = info["Config"].get("Env") or []
        if compose is not None:
            # The compose file's environment, as written: the gate runs what production runs.
            svc = compose.target if role.startswith("target") else compose.dependencies.get(role)
            declared = set(svc.environment) if svc is not None else set()
        elif role.startswith("target"):
            declared = {k for k, v in gate.cfg.env_templates.items() if VALUE.search(v)}
        else:
            declared = set()
        info["Config"]["Env"] = [e for e in env if e.split("=", 1)[0] not in declared]
        text = json.dumps(info)
        found += [f"{role} inspect" for s in secrets if s in text]
    assert not found, f"secrets found in: {sorted(set(found))}"
'''

#: The reference's variables, every secret given as a file.
FILES_ENV = '''
[tool.aidb-gate.env]
AIDB_POSTGRES_HOST = "{postgres.host}"
AIDB_POSTGRES_PORT = "{postgres.port}"
AIDB_POSTGRES_DB = "{postgres.db}"
AIDB_POSTGRES_USER = "{postgres.user}"
AIDB_POSTGRES_PASSWORD_FILE = "{postgres.password_file}"
AIDB_REDIS_HOST = "{redis.host}"
AIDB_REDIS_PORT = "{redis.port}"
AIDB_REDIS_PASSWORD_FILE = "{redis.password_file}"
QDRANT_URL = "{qdrant.url}"
AIDB_QDRANT_CRITICAL = "{qdrant.critical}"
AIDB_QDRANT_API_KEY_FILE = "{qdrant.api_key_file}"
AIDB_API_KEY_FILE = "{api_key_file}"
'''

MODES = {
    "templates": f'target = "{REFERENCE}"\n',
    "files": f'target = "{REFERENCE}"\n' + FILES_ENV,
    "compose": f'compose = "{REFERENCE / "compose.yml"}"\nservice = "aidb"\n',
}


@pytest.mark.skipif(shutil.which("podman") is None, reason="needs Podman (make test installs it)")
@pytest.mark.parametrize("mode", MODES)
def test_a_run_puts_no_secret_on_a_command_line_or_in_inspect(pytester: pytest.Pytester, mode: str) -> None:
    head, _, tables = MODES[mode].partition("\n[")
    pytester.makepyprojecttoml('[tool.aidb-gate]\nreports_dir = "reports"\nca_bundle = "auto"\n' + head + "\n"
                               + ("[" + tables if tables else ""))
    pytester.makepyfile(test_scan=SCAN)
    result = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "test_scan.py"],
                            cwd=pytester.path, env=engine_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "1 passed" in result.stdout, result.stdout[-2000:]
    notice = "notice, secret on a command line: `redis` puts REDIS_PASSWORD on its `command:` line"
    assert (notice in result.stdout) == (mode == "compose"), result.stdout[-3000:]
