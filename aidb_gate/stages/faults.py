"""faults: take a dependency away (stop, pause, kill), watch the probes, and bring it back.

Guarantees: `inject` and `recover` act on the real container through the engine; `watch`
samples readiness and liveness against a deadline (no fixed sleeps) and returns every sample;
the `judge_*` functions are pure and say, in words, which promise of the contract broke:
readiness must turn 503 (critical) or "degraded" with 200 (non-critical) and list the
dependency as failed within the budget, liveness must stay 200 throughout, and readiness must
come back after recovery.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from aidb_gate.core import http
from aidb_gate.stages.health import find_dependency

ACTIONS = ("stop", "pause", "kill")


def inject(wrapped: Any, action: str) -> None:
    """Take the dependency away: a clean stop, a freeze (paused, sockets hang), or SIGKILL."""
    if action == "stop":
        wrapped.stop(timeout=10)
    elif action == "pause":
        wrapped.pause()
    elif action == "kill":
        wrapped.kill()
    else:
        raise ValueError(f"unknown fault action {action!r}")


def recover(wrapped: Any, action: str) -> None:
    wrapped.reload()
    if wrapped.status == "paused":
        wrapped.unpause()
    elif wrapped.status != "running":
        wrapped.start()


@dataclass
class Sample:
    at_s: float
    ready_status: int | None
    ready_body: Any
    live_status: int | None
    error: str = ""

    def dependency(self, name: str) -> dict[str, Any] | None:
        body = self.ready_body if isinstance(self.ready_body, dict) else {}
        deps = (body.get("details") or {}).get("dependencies") or []
        return find_dependency(deps, name)


@dataclass
class Watch:
    samples: list[Sample] = field(default_factory=list)
    satisfied_at_s: float | None = None

    def describe(self, limit: int = 12) -> str:
        rows = []
        for s in self.samples[-limit:]:
            rows.append(f"  t={s.at_s:5.1f}s ready={s.ready_status} "
                        f"body.status={(s.ready_body or {}).get('status') if isinstance(s.ready_body, dict) else None} "
                        f"live={s.live_status}{' ' + s.error if s.error else ''}")
        return "\n".join(rows)


def _get(url: str, timeout_s: float) -> tuple[int | None, Any, str]:
    try:
        resp = http.request("GET", url, deadline_s=timeout_s)
    except requests.RequestException as err:
        return None, None, f"{type(err).__name__}"
    try:
        body = resp.json()
    except ValueError:
        body = None
    return resp.status_code, body, ""


def watch(base_url: str, ready_path: str, live_path: str, until: Callable[[Sample], bool], deadline_s: float,
          interval_s: float = 0.25, request_timeout_s: float = 5.0) -> Watch:
    """Sample both probes until `until(sample)` holds or the deadline passes."""
    result = Watch()
    start = time.monotonic()
    while True:
        ready_status, body, err = _get(base_url + ready_path, request_timeout_s)
        live_status, _, lerr = _get(base_url + live_path, request_timeout_s)
        sample = Sample(time.monotonic() - start, ready_status, body, live_status, err or lerr)
        result.samples.append(sample)
        if until(sample):
            result.satisfied_at_s = sample.at_s
            return result
        if time.monotonic() - start >= deadline_s:
            return result
        time.sleep(interval_s)


def outage_seen(name: str, critical: bool) -> Callable[[Sample], bool]:
    """The condition readiness must reach while `name` is away."""
    def check(s: Sample) -> bool:
        dep = s.dependency(name)
        listed_failed = dep is not None and dep.get("status") != "healthy"
        if critical:
            return s.ready_status == 503 and listed_failed
        return s.ready_status == 200 and isinstance(s.ready_body, dict) \
            and s.ready_body.get("status") == "degraded" and listed_failed
    return check


def recovery_seen(name: str) -> Callable[[Sample], bool]:
    def check(s: Sample) -> bool:
        dep = s.dependency(name)
        return s.ready_status == 200 and dep is not None and dep.get("status") == "healthy"
    return check


def judge_outage(w: Watch, name: str, critical: bool, action: str, budget_s: float) -> list[str]:
    problems = []
    if w.satisfied_at_s is None:
        want = ("503 with the dependency listed as failed" if critical
                else '200 with status "degraded" and the dependency listed as failed')
        last = w.samples[-1] if w.samples else None
        problems.append(
            f"after {action} of {'critical' if critical else 'non-critical'} dependency `{name}`, readiness did not "
            f"answer {want} within {budget_s:.0f} s (last: HTTP {last.ready_status if last else None}). A readiness that "
            "stays 200 while a dependency is gone keeps the instance in traffic; a cached health answer hides outages"
        )
    problems += judge_liveness(w, f"while `{name}` was {action_past(action)}")
    return problems


def judge_recovery(w: Watch, name: str, action: str, budget_s: float) -> list[str]:
    problems = []
    if w.satisfied_at_s is None:
        last = w.samples[-1] if w.samples else None
        problems.append(f"after `{name}` came back from {action}, readiness did not return to 200 with `{name}` healthy "
                        f"within {budget_s:.0f} s (last: HTTP {last.ready_status if last else None})")
    problems += judge_liveness(w, f"while `{name}` recovered")
    return problems


def judge_liveness(w: Watch, when: str) -> list[str]:
    bad = [s for s in w.samples if s.live_status != 200]
    if bad:
        return [f"liveness answered {bad[0].live_status or bad[0].error} {when}: liveness must not depend on "
                "Postgres, Redis or Qdrant, or the orchestrator restarts a healthy process"]
    return []


def action_past(action: str) -> str:
    return {"stop": "stopped", "pause": "paused", "kill": "killed"}.get(action, action)
