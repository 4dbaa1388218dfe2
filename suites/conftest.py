"""Suite-wide parametrization from the run's configuration (known before any container starts)."""

from __future__ import annotations

import pytest
from aidb_gate.plugins.gate import SESSION


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`dependency_name` runs once per enabled dependency of the configuration."""
    if "dependency_name" in metafunc.fixturenames:
        cfg = metafunc.config.stash[SESSION].cfg
        metafunc.parametrize("dependency_name", [d.name for d in cfg.enabled_dependencies])
    if "fault_action" in metafunc.fixturenames:
        cfg = metafunc.config.stash[SESSION].cfg
        metafunc.parametrize("fault_action", list(cfg.fault_actions))
