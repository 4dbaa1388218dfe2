"""health: the contract checks judge replies without any server."""

from __future__ import annotations

import json

from aidb_gate.stages import health


def reply(status=200, body=None, path="/health/ready", ctype="application/json", ms=5.0):
    text = body if isinstance(body, str) else json.dumps(body)
    return health.Reply("GET", path, status, text.encode(), ctype, ms)


GOOD = {"status": "healthy", "check_type": "readiness", "message": "ok", "timestamp": "2026-01-09T01:04:39+00:00",
        "duration_ms": 3.2, "details": {"dependencies": [
            {"name": "postgres", "status": "healthy", "critical": True, "message": "ok", "error": None},
            {"name": "redis", "status": "healthy", "critical": False, "message": "ok", "error": None}]}}


def test_a_good_readiness_body_passes():
    r = reply(body=GOOD)
    assert health.check_probe_body(r, "readiness", {"healthy", "degraded"}) == []
    assert health.check_readiness_dependencies(r, {"postgres": True, "redis": False}) == []


def test_wrong_check_type_timestamp_and_criticality_are_named():
    bad = dict(GOOD, check_type="liveness", timestamp="yesterday")
    bad["details"] = {"dependencies": [dict(GOOD["details"]["dependencies"][0], critical=False)]}
    r = reply(body=bad)
    problems = health.check_probe_body(r, "readiness") + health.check_readiness_dependencies(
        r, {"postgres": True, "redis": False})
    text = " | ".join(problems)
    assert "check_type" in text and "timestamp" in text
    assert "critical=False" in text and "`redis` is not listed" in text


def test_status_budget_and_non_json():
    assert health.check_status(reply(503), 200)
    assert health.check_status(reply(401), {401, 403}) == []
    assert health.check_budget(reply(ms=2500), 2000)
    assert health.check_probe_body(reply(body="<html>"), "liveness")


def test_metrics_must_parse_as_prometheus_text():
    ok = reply(body="# HELP x a\n# TYPE x counter\nx_total 1.0\n", ctype="text/plain; version=0.0.4", path="/metrics")
    assert health.check_metrics(ok) == []
    assert health.check_metrics(reply(body={"x": 1}, path="/metrics"))
    assert health.check_metrics(reply(body="", ctype="text/plain", path="/metrics"))


def test_dependency_names_match_loosely():
    entries = [{"name": "PostgreSQL database"}]
    assert health.find_dependency(entries, "postgres") is entries[0]
    assert health.find_dependency(entries, "redis") is None
