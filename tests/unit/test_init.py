"""`aidb-gate init` reads a service repository and writes a configuration the gate accepts."""

from __future__ import annotations

from pathlib import Path

import pytest

from aidb_gate.config import load_config
from aidb_gate.errors import BuildError
from aidb_gate.init import init, keep_reports_out_of_the_build


def _repo(tmp_path: Path, dockerfile: str = "FROM python:3.12-slim\nEXPOSE 8000/tcp\n") -> Path:
    (tmp_path / "Dockerfile").write_text(dockerfile)
    (tmp_path / "requirements.txt").write_text("fastapi==0.1\npsycopg[binary]>=3\n")
    (tmp_path / "app.py").write_text("import os\nDB = os.environ['DATABASE_URL']\n")
    return tmp_path


def test_the_starter_describes_the_service_found_and_loads(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    lines = init(repo)
    assert any(line.startswith("wrote  gate.toml") for line in lines), lines
    cfg = load_config(repo, environ={})
    assert cfg.port == 8000 and cfg.target == repo.resolve()
    assert [d.name for d in cfg.enabled_dependencies] == ["postgres"], "only what the service names"
    assert (repo / ".github/workflows/aidb-gate.yml").is_file()
    assert "pytest -m p1" in (repo / ".gitlab/aidb-gate.gitlab-ci.yml").read_text()


def test_nothing_is_overwritten_without_force(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    init(repo)
    (repo / "gate.toml").write_text((repo / "gate.toml").read_text() + "# mine\n")
    again = init(repo)
    assert all(not line.startswith("wrote") for line in again), again
    assert (repo / "gate.toml").read_text().endswith("# mine\n")


def test_the_reports_stay_out_of_the_build_context(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / ".dockerignore").write_text(".git")
    init(repo)
    assert (repo / ".dockerignore").read_text().splitlines()[-1] == "reports/"
    assert keep_reports_out_of_the_build(repo, "reports").startswith("kept")
    (repo / ".containerignore").write_text("")
    keep_reports_out_of_the_build(repo, "reports")
    assert "reports/" in (repo / ".containerignore").read_text(), "Podman reads .containerignore first"


def test_a_repository_without_a_containerfile_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="No Containerfile or Dockerfile"):
        init(tmp_path)


def test_a_node_service_is_read_from_its_manifest_and_code(tmp_path: Path) -> None:
    """Not every service is Python: a Node service names its clients in package.json."""
    (tmp_path / "Dockerfile").write_text("FROM node:22-slim\nEXPOSE 3000\nCMD [\"node\", \"server.js\"]\n")
    (tmp_path / "package.json").write_text('{"dependencies": {"express": "^4", "pg": "^8", "ioredis": "^5"}}')
    (tmp_path / "server.js").write_text("const { Pool } = require('pg');\n")
    (tmp_path / "node_modules" / "qdrant").mkdir(parents=True)
    (tmp_path / "node_modules" / "qdrant" / "index.js").write_text("// qdrant, but a dependency's, not ours\n")
    init(tmp_path)
    cfg = load_config(tmp_path, environ={})
    assert cfg.port == 3000
    assert [d.name for d in cfg.enabled_dependencies] == ["postgres", "redis"]
    assert "package.json" in (tmp_path / "gate.toml").read_text()
    assert not cfg.raw["imports"]["enabled"], "no Python: the imports stage has nothing to import"


COMPOSE = """
services:
  api:
    build: {context: ., dockerfile: Dockerfile}
    environment: {DATABASE_URL: "postgresql://app:${DB_PASSWORD:?}@db/app"}
    depends_on: {db: {condition: service_healthy}}
  db:
    image: postgres:16
    environment: {POSTGRES_USER: app, POSTGRES_PASSWORD: "${DB_PASSWORD:?}"}
    healthcheck: {test: ["CMD-SHELL", "pg_isready -U app"]}
  worker:
    build: ./worker
"""


def test_a_compose_file_with_one_service_built_here_becomes_the_stack(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "compose.yaml").write_text(COMPOSE)
    init(repo)
    text = (repo / "gate.toml").read_text()
    assert 'compose = "compose.yaml"' in text and 'service = "api"' in text and "[tool.aidb-gate.env]" not in text
    cfg = load_config(repo, environ={})
    assert cfg.target == repo.resolve() and cfg.containerfile == "Dockerfile"
    assert [(d.name, d.kind, d.condition) for d in cfg.enabled_dependencies] == [("db", "postgres", "service_healthy")]


def test_a_compose_file_without_a_service_built_here_is_left_alone(tmp_path: Path) -> None:
    repo = _repo(tmp_path)
    (repo / "docker-compose.yml").write_text("services:\n  db:\n    image: postgres:16\n")
    init(repo)
    text = (repo / "gate.toml").read_text()
    assert "compose =" not in text and 'target = "."' in text
