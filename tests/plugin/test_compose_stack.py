"""A stack read from a compose file the gate has never seen, with dependency kinds it does not ship.

The compose file is written here in production's shape (env_file, a secret file, host paths outside
the project, depends_on conditions, services the target does not depend on). Two of its
dependencies are new to the gate:
- `memo`: a new plug-in kind, added the way a user adds one - a module and an
  `aidb_gate.dependencies` entry point in a distribution of its own, nothing in the gate changed;
- `tracer`: no plug-in at all, so the generic kind, judged by its compose healthcheck.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
import uuid
from pathlib import Path

import pytest
from children import REFERENCE, engine_env, leftovers

pytestmark = pytest.mark.skipif(shutil.which("podman") is None, reason="needs Podman (make test installs it)")

BASE = "localhost/aidb-gate/base:bookworm"
MEMO_IMAGE = "localhost/gate-selftest/memo:1"

PLUGIN = '''
"""memo: a key-value cache speaking HTTP, as a user's own dependency plug-in."""
import requests

from aidb_gate.services import Offer

KIND = "memo"
IMAGES = ("gate-selftest/memo",)
IMAGE = "localhost/gate-selftest/memo:1"
RECIPE = ""
PORT = 8085
CRITICAL = False
FAULTS = ()
DATA = ""
REFUSALS = ()


def offer(dep, secret):
    return Offer(dict(dep.environment), list(dep.command) if dep.command else None, {}, {"url": f"http://{dep.name}:8085"})


def is_ready(dependency):
    return requests.get(f"http://{dependency.host}:{dependency.host_port}/", timeout=2).status_code == 200
'''

COMPOSE = """
name: selftest
services:
  aidb:
    build: {{context: ../aidb, dockerfile: Containerfile}}
    env_file: [../aidb/aidb.env]
    environment:
      AIDB_POSTGRES_HOST: postgres
      AIDB_POSTGRES_DB: ${{POSTGRES_DB:-app}}
      AIDB_POSTGRES_USER: ${{POSTGRES_USER:-app}}
      AIDB_POSTGRES_PASSWORD: ${{POSTGRES_PASSWORD:?}}
      AIDB_REDIS_HOST: redis
      AIDB_REDIS_PASSWORD: ${{REDIS_PASSWORD:?}}
      QDRANT_URL: http://qdrant:6333
      AIDB_QDRANT_API_KEY: ${{QDRANT_API_KEY:?}}
      MEMO_URL: http://memo:8085
      OTEL_EXPORTER_OTLP_ENDPOINT: http://tracer:4318
      GRAFANA_URL: http://grafana:3000
      AIDB_API_KEY_FILE: /run/secrets/api_key
    secrets: [{{source: api_key, target: api_key, mode: 0400}}]
    volumes: ["${{AI_STACK_DATA:-${{HOME}}/.local/share/stack}}/aidb:/data"]
    depends_on:
      postgres: {{condition: service_healthy}}
      redis: {{condition: service_started}}
      qdrant: {{condition: service_started}}
      memo: {{condition: service_started}}
      tracer: {{condition: service_healthy}}
    healthcheck:
      test: ["CMD-SHELL", "python -c \\"import urllib.request; urllib.request.urlopen('http://localhost:8091/health/live')\\""]
      start_period: 20s
    mem_limit: 768m
    security_opt: [no-new-privileges:true]
  postgres:
    image: postgres:18
    environment:
      POSTGRES_USER: ${{POSTGRES_USER:-app}}
      POSTGRES_DB: ${{POSTGRES_DB:-app}}
      POSTGRES_PASSWORD: ${{POSTGRES_PASSWORD:?}}
    volumes: ["${{AI_STACK_DATA:-${{HOME}}/.local/share/stack}}/pg:/var/lib/postgresql"]
    healthcheck: {{test: ["CMD-SHELL", "pg_isready -U ${{POSTGRES_USER:-app}}"], interval: 2s, retries: 10}}
  redis:
    image: redis:7
    command: ["redis-server", "--requirepass", "${{REDIS_PASSWORD:?}}"]
  qdrant:
    image: qdrant/qdrant:v1.16.2
    environment: {{QDRANT__SERVICE__API_KEY: "${{QDRANT_API_KEY:?}}"}}
  memo:
    image: {memo}
    command: ["python3", "-m", "http.server", "8085"]
  tracer:
    image: {base}
    command: ["python3", "-m", "http.server", "4318"]
    expose: ["4318"]
    healthcheck:
      test: ["CMD", "python3", "-c", "import urllib.request; urllib.request.urlopen('http://localhost:{tracer_port}/')"]
      interval: 1s
      retries: 3
  grafana:
    image: grafana/grafana:11.0.0
secrets:
  api_key: {{file: ./secrets/api_key}}
"""


@pytest.fixture(scope="module")
def memo_image():
    """The memo kind's image: the gate's base image under a name of its own (removed afterwards)."""
    env = engine_env()
    subprocess.run(["podman", "tag", BASE, MEMO_IMAGE], check=True, env=env, capture_output=True)
    yield MEMO_IMAGE
    # With no name, `podman untag` removes every name of the image (the base one too).
    subprocess.run(["podman", "untag", MEMO_IMAGE, MEMO_IMAGE], check=False, env=env, capture_output=True)


def _project(pytester: pytest.Pytester, tracer_port: int) -> tuple[Path, Path, Path]:
    """The user's repository: the service, its stack, and the plug-in distribution (site/)."""
    shutil.copytree(REFERENCE, pytester.path / "aidb", ignore=shutil.ignore_patterns("__pycache__"))
    stack = pytester.path / "stack"
    stack.mkdir()
    (stack / "compose.yml").write_text(COMPOSE.format(memo=MEMO_IMAGE, base=BASE, tracer_port=tracer_port))
    site = pytester.path / "site"
    dist = site / "memo_plugin-1.0.dist-info"
    dist.mkdir(parents=True)
    (site / "memo_plugin.py").write_text(textwrap.dedent(PLUGIN))
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: memo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[aidb_gate.dependencies]\nmemo = memo_plugin\n")
    # The reference AIDB's readiness knows nothing of memo: say so, as a user would for a cache it
    # uses but does not report.
    pytester.makepyprojecttoml('[tool.aidb-gate]\nreports_dir = "reports"\n\n'
                               '[tool.aidb-gate.dependencies.memo]\nreported = false\n')
    return stack, site, pytester.path / "real-data"


def _gate(pytester: pytest.Pytester, stack: Path, site: Path, data: Path, run_id: str) -> pytest.RunResult:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIDB_GATE_RUN_ID", run_id)
        mp.setenv("PYTHONPATH", str(site))
        mp.setenv("AI_STACK_DATA", str(data))
        return pytester.runpytest_subprocess("-p", "no:cacheprovider", "-m", "p1 and (boot or health or auth)",
                                             f"--gate-compose={stack / 'compose.yml'}", "--gate-service=aidb",
                                             timeout=600)


def test_a_compose_stack_with_a_new_kind_and_a_generic_service(pytester, memo_image):
    stack, site, data = _project(pytester, tracer_port=4318)
    run_id = f"compose-{uuid.uuid4().hex[:6]}"
    result = _gate(pytester, stack, site, data, run_id)
    output = result.stdout.str()[-5000:] + result.stderr.str()[-2000:]
    assert result.ret == 0, output

    summary = json.loads((pytester.path / "reports" / "summary.json").read_text())
    evidence = summary["evidence"]
    assert evidence["dependency kinds"] == {"postgres": "postgres", "redis": "redis", "qdrant": "qdrant",
                                            "memo": "memo", "tracer": "generic"}
    facts = evidence["compose"]
    assert facts["not started (outside depends_on)"] == {"grafana": "named by GRAFANA_URL"}
    assert any(line.startswith("postgres: /var/lib/postgresql (host path") for line in facts["mounts replaced"])
    assert not data.exists(), "a host path outside the compose project was mounted"
    assert "docker.io/library/postgres:18 -> stood in for by" in evidence["images"]["postgres"]
    # The service read its API key from the per-run secret file: otherwise the auth stage fails.
    assert any(row["stage"] == "auth" and row["status"] == "passed" for row in summary["stages"])
    assert leftovers(run_id) == []


def test_a_generic_dependency_whose_healthcheck_never_passes_stops_the_run(pytester, memo_image):
    stack, site, data = _project(pytester, tracer_port=9)  # the check asks a port nothing serves
    run_id = f"compose-{uuid.uuid4().hex[:6]}"
    result = _gate(pytester, stack, site, data, run_id)
    output = result.stdout.str()[-5000:] + result.stderr.str()[-2000:]
    assert result.ret == pytest.ExitCode.TESTS_FAILED, output

    summary = json.loads((pytester.path / "reports" / "summary.json").read_text())
    assert summary["first_failure"] == "dependencies", output
    headline = next(iter(summary["verdicts"].values())).splitlines()[0]
    assert "The tracer dependency" in headline and "compose healthcheck `python3 -c" in headline, headline
    assert "never passed within" in headline, headline
    assert leftovers(run_id) == []
