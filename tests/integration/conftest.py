"""A dependencies-only stack (real Postgres and Qdrant, no target) for self-tests of the invariants."""

from __future__ import annotations

from pathlib import Path

import pytest

from aidb_gate.config import load_config
from aidb_gate.session import GateSession

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def deps_session(tmp_path_factory):
    """A GateSession whose stack runs Postgres and Qdrant only; removed with everything it made."""
    reports = tmp_path_factory.mktemp("reports")
    cfg = load_config(ROOT, {"reports_dir": str(reports),
                             "dependencies": {"redis": {"enabled": False}}})
    session = GateSession(cfg)
    try:
        session.connect()
        session.stack()
        yield session
    finally:
        session.close()
