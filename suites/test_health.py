"""Stage health: every endpoint of the health contract answers the right status and shape, in time."""

from __future__ import annotations

import pytest

from aidb_gate.core.wait import run_healthcheck
from aidb_gate.stages import health

pytestmark = [pytest.mark.p1, pytest.mark.health]


def _judge(*problem_lists: list[str], reply: health.Reply) -> None:
    problems = [p for group in problem_lists for p in group]
    assert not problems, "; ".join(problems) + f"\n\n{reply.describe()}"


def _get(gate_url: str, path: str) -> health.Reply:
    return health.call(gate_url, path)


def test_liveness(gate_url, gate_config):
    reply = _get(gate_url, gate_config.health["live"])
    _judge(health.check_status(reply, 200), health.check_probe_body(reply, "liveness", {"healthy"}),
           health.check_budget(reply, gate_config.response_budget_ms), reply=reply)


def test_readiness(gate_url, gate_config):
    reply = _get(gate_url, gate_config.health["ready"])
    expected = {d.name: d.critical for d in gate_config.enabled_dependencies if d.reported}
    _judge(health.check_status(reply, 200), health.check_probe_body(reply, "readiness", {"healthy", "degraded"}),
           health.check_readiness_dependencies(reply, expected),
           health.check_budget(reply, gate_config.response_budget_ms), reply=reply)


def test_readiness_reports_dependency_healthy(gate_url, gate_config, watched_dependency):
    reply = _get(gate_url, gate_config.health["ready"])
    _judge(health.check_dependency_status(reply, watched_dependency, "healthy"), reply=reply)


def test_startup_probe(gate_url, gate_config):
    reply = _get(gate_url, gate_config.health["startup"])
    _judge(health.check_status(reply, 200), health.check_probe_body(reply, "startup", {"healthy"}),
           health.check_budget(reply, gate_config.response_budget_ms), reply=reply)


def test_detailed_health(gate_url, gate_config):
    reply = _get(gate_url, gate_config.health["detailed"])
    _judge(health.check_status(reply, 200), health.check_detailed(reply),
           health.check_budget(reply, gate_config.response_budget_ms), reply=reply)


def test_legacy_health(gate_url, gate_config):
    reply = _get(gate_url, gate_config.health["legacy"])
    _judge(health.check_status(reply, 200), health.check_legacy(reply, healthy=True),
           health.check_budget(reply, gate_config.response_budget_ms), reply=reply)


def test_metrics(gate_url, gate_config):
    reply = _get(gate_url, gate_config.health["metrics"])
    _judge(health.check_status(reply, 200), health.check_metrics(reply), reply=reply)


def test_service_healthcheck_passes(gate, gate_boot, gate_url, request):
    """The healthcheck production's engine runs (compose's, else the image's) passes on a ready
    service: one that never passes would keep every `service_healthy` dependant from starting."""
    healthcheck, where = gate.service_healthcheck()
    if healthcheck is None:
        request.node.user_properties.append(("healthcheck", "none declared in the compose file or the image"))
        return
    result = run_healthcheck(gate_boot.container, healthcheck, deadline_s=max(3.0, healthcheck.retries))
    assert result.ok, health.healthcheck_verdict(healthcheck, where, result)
