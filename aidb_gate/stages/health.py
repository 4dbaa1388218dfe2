"""health: the health contract as pure checks over HTTP responses.

Guarantees: each check takes a `Reply` (status, headers, body, time) and returns a list of
problems in plain words - empty means the contract holds. Nothing here talks to a container,
so the same checks serve the suites, the CLI and the unit tests.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from aidb_gate.core import http
from aidb_gate.core.text import clip

PROBE_STATUSES = {"healthy", "degraded", "unhealthy", "unknown"}
DEPENDENCY_KEYS = {"name", "status", "critical", "message", "error"}


@dataclass
class Reply:
    """One HTTP exchange, reduced to what the checks judge (the body kept as bytes: some are binary)."""

    method: str
    path: str
    status: int
    content: bytes
    content_type: str
    elapsed_ms: float

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.content)
        except ValueError:
            return None

    def describe(self) -> str:
        if "json" in self.content_type or self.content_type.startswith("text/") or not self.content:
            body = clip(self.text, 600) + ("..." if len(self.text) > 600 else "")
        else:
            body = f"<{len(self.content)} bytes of {self.content_type or 'unknown type'}>"
        return f"{self.method} {self.path} -> {self.status} in {self.elapsed_ms:.0f} ms: {body}"


def call(base_url: str, path: str, method: str = "GET", timeout_s: float = 10.0, **kwargs: Any) -> Reply:
    """One exchange with the service, finished within `timeout_s` (no proxy: see core.http)."""
    begin = time.monotonic()
    resp = http.request(method, base_url + path, deadline_s=timeout_s, **kwargs)
    elapsed = (time.monotonic() - begin) * 1000
    return Reply(method, path, resp.status_code, resp.content, resp.headers.get("content-type", ""), elapsed)


def check_status(reply: Reply, expected: int | set[int]) -> list[str]:
    allowed = {expected} if isinstance(expected, int) else expected
    if reply.status not in allowed:
        want = " or ".join(str(s) for s in sorted(allowed))
        return [f"{reply.method} {reply.path} returned {reply.status}, expected {want}"]
    return []


def check_budget(reply: Reply, budget_ms: float) -> list[str]:
    if reply.elapsed_ms > budget_ms:
        return [f"{reply.path} took {reply.elapsed_ms:.0f} ms, over the {budget_ms:.0f} ms response budget"]
    return []


def _is_iso8601(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
        return True
    except ValueError:
        return False


def check_probe_body(reply: Reply, check_type: str, statuses: set[str] | None = None) -> list[str]:
    """The probe body is upstream's HealthCheckResult.to_dict() with the right check_type."""
    body = reply.json
    where = f"{reply.path}"
    if not isinstance(body, dict):
        return [f"{where} did not return a JSON object: {clip(reply.text, 200)!r}"]
    problems = []
    status = body.get("status")
    if status not in PROBE_STATUSES:
        problems.append(f"{where}: `status` is {status!r}, expected one of {sorted(PROBE_STATUSES)}")
    elif statuses and status not in statuses:
        problems.append(f"{where}: `status` is {status!r}, expected {' or '.join(sorted(statuses))}")
    if body.get("check_type") != check_type:
        problems.append(f"{where}: `check_type` is {body.get('check_type')!r}, expected {check_type!r}")
    if not isinstance(body.get("message"), str):
        problems.append(f"{where}: `message` must be a string")
    if not isinstance(body.get("details"), dict):
        problems.append(f"{where}: `details` must be an object")
    if not _is_iso8601(body.get("timestamp")):
        problems.append(f"{where}: `timestamp` must be ISO-8601, got {body.get('timestamp')!r}")
    duration = body.get("duration_ms")
    if not isinstance(duration, (int, float)) or isinstance(duration, bool) or duration < 0:
        problems.append(f"{where}: `duration_ms` must be a non-negative number, got {duration!r}")
    return problems


def dependency_entries(reply: Reply) -> list[dict[str, Any]]:
    body = reply.json if isinstance(reply.json, dict) else {}
    deps = (body.get("details") or {}).get("dependencies")
    return deps if isinstance(deps, list) else []


def find_dependency(entries: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The entry for a gate dependency name; `postgres` matches `postgresql` or `PostgreSQL DB`."""
    for entry in entries:
        if isinstance(entry, dict) and name.lower() in str(entry.get("name", "")).lower():
            return entry
    return None


def check_readiness_dependencies(reply: Reply, expected: dict[str, bool]) -> list[str]:
    """Readiness lists every dependency with the contract's keys and the configured criticality."""
    entries = dependency_entries(reply)
    if not entries:
        return [f"{reply.path}: `details.dependencies` must list the dependencies, got {clip(reply.text, 300)!r}"]
    problems = []
    for entry in entries:
        missing = DEPENDENCY_KEYS - set(entry) if isinstance(entry, dict) else DEPENDENCY_KEYS
        if missing:
            problems.append(f"{reply.path}: dependency entry {entry!r} lacks {sorted(missing)}")
    for name, critical in expected.items():
        found = find_dependency(entries, name)
        if found is None:
            listed = [e.get("name") for e in entries if isinstance(e, dict)]
            problems.append(f"{reply.path}: dependency `{name}` is not listed (listed: {listed})")
        elif found.get("critical") is not critical:
            problems.append(f"{reply.path}: `{name}` has critical={found.get('critical')!r}, the contract says {critical}")
    return problems


def check_dependency_status(reply: Reply, name: str, status: str) -> list[str]:
    entry = find_dependency(dependency_entries(reply), name)
    if entry is None:
        return [f"{reply.path}: dependency `{name}` is not listed"]
    if entry.get("status") != status:
        return [f"{reply.path}: `{name}` is {entry.get('status')!r} ({entry.get('message')!r}), expected {status!r}"]
    return []


def check_detailed(reply: Reply) -> list[str]:
    body = reply.json
    if not isinstance(body, dict):
        return [f"{reply.path} did not return a JSON object: {clip(reply.text, 200)!r}"]
    problems = []
    if not isinstance(body.get("service"), str) or not body.get("service"):
        problems.append(f"{reply.path}: `service` must name the service, got {body.get('service')!r}")
    if body.get("startup_complete") is not True:
        problems.append(f"{reply.path}: `startup_complete` must be true once started, got {body.get('startup_complete')!r}")
    return problems


def check_legacy(reply: Reply, healthy: bool = True) -> list[str]:
    body = reply.json
    if not isinstance(body, dict):
        return [f"{reply.path} did not return a JSON object: {clip(reply.text, 200)!r}"]
    want = "ok" if healthy else "error"
    if body.get("status") not in ("ok", "error"):
        return [f"{reply.path}: `status` must be \"ok\" or \"error\", got {body.get('status')!r}"]
    if body.get("status") != want:
        return [f"{reply.path}: `status` is {body.get('status')!r} while the stack is healthy"]
    return []


def check_metrics(reply: Reply) -> list[str]:
    """A Prometheus text exposition that prometheus_client's own parser accepts, with samples."""
    from prometheus_client.parser import text_string_to_metric_families

    if not reply.content_type.startswith("text/plain"):
        return [f"{reply.path}: content-type is {reply.content_type!r}, expected text/plain (Prometheus text format)"]
    try:
        families = list(text_string_to_metric_families(reply.text))
    except Exception as err:
        return [f"{reply.path}: not Prometheus text format ({err})"]
    if not any(f.samples for f in families):
        return [f"{reply.path}: no samples exposed"]
    return []


def healthcheck_verdict(healthcheck: Any, where: str, result: Any) -> str:
    """The verdict for a declared healthcheck that does not pass on a ready service."""
    return (f"{where} never passed on the ready service ({result.attempts} tries in {result.elapsed_s:.0f} s): "
            f"`{healthcheck.quoted()}`; last result: {clip(str(result.value or result.last_error).strip(), 600) or '(no output)'}. "
            "Production's engine would mark the container unhealthy (and a `service_healthy` dependant would never "
            "start): fix the command, or the endpoint and text it expects.")


def declared_healthcheck(cfg: Any, engine: Any, image: str) -> tuple[Any, str]:
    """The service's own healthcheck and where it was declared: the compose file's, else the
    image's HEALTHCHECK (kept because Podman builds use the docker format); (None, ...) if none."""
    compose = cfg.compose
    if compose is not None and compose.target.healthcheck is not None:
        return compose.target.healthcheck, f"the healthcheck of `{compose.target.name}` in {compose.path.name}"
    return image_healthcheck(engine, image), "the image's HEALTHCHECK"


def image_healthcheck(engine: Any, image: str) -> Any:
    """The image's own HEALTHCHECK as a compose Healthcheck (None when it has none)."""
    from aidb_gate.compose import Healthcheck
    from aidb_gate.core import api

    raw = (api.image_attrs(engine, image).get("Config") or {}).get("Healthcheck") or {}
    test = raw.get("Test") or []
    if not test or test[0] == "NONE":
        return None
    ns = 1e-9
    return Healthcheck(tuple(test), interval_s=(raw.get("Interval") or 30e9) * ns, timeout_s=(raw.get("Timeout") or 30e9) * ns,
                       retries=raw.get("Retries") or 3, start_period_s=(raw.get("StartPeriod") or 0) * ns)
