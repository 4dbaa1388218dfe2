"""Suite-wide parametrization from the run's configuration (known before any container starts)."""

from __future__ import annotations

import pytest
from aidb_gate.plugins.gate import SESSION


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """`dependency_name` runs once per enabled dependency of the configuration; `watched_dependency`
    once per dependency the service's readiness must list (`dependencies.<name>.reported`; a
    generic compose service is not); with `fault_action`, once per such dependency and each action
    both the configuration and the dependency's plug-in allow."""
    cfg = metafunc.config.stash[SESSION].cfg
    names = metafunc.fixturenames
    if "dependency_name" in names:
        metafunc.parametrize("dependency_name", [d.name for d in cfg.enabled_dependencies])
    watched = [d for d in cfg.enabled_dependencies if d.reported]
    if "watched_dependency" in names and "fault_action" in names:
        from aidb_gate.services import plugin

        pairs = [(d.name, action) for d in watched for action in cfg.fault_actions if action in plugin(d.kind).FAULTS]
        metafunc.parametrize(("watched_dependency", "fault_action"), pairs, ids=[f"{n}-{a}" for n, a in pairs])
    elif "watched_dependency" in names:
        metafunc.parametrize("watched_dependency", [d.name for d in watched])
    elif "fault_action" in names:
        metafunc.parametrize("fault_action", list(cfg.fault_actions))
