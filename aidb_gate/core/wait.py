"""wait: polls with deadlines, never fixed sleeps.

Guarantees: `poll_until` returns as soon as a check passes and gives up at the deadline with
the last thing it saw. `HttpProbe` waits for an HTTP status like testcontainers'
HttpWaitStrategy, but stops at once when the container exits, because waiting out the deadline
on a dead container only hides the cause.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from testcontainers.core.waiting_utils import WaitStrategy

from aidb_gate.core import http


@dataclass
class PollResult:
    ok: bool
    value: Any
    elapsed_s: float
    attempts: int
    last_error: str = ""


def poll_until(
    check: Callable[[], Any],
    deadline_s: float,
    interval_s: float = 0.2,
    stop: Callable[[], str | None] | None = None,
) -> PollResult:
    """Call check() until it returns a truthy value, the deadline passes, or stop() names a reason.

    Exceptions from check() count as "not yet" and the last one is kept for the error message.
    """
    start = time.monotonic()
    attempts, last_error, value = 0, "", None
    while True:
        attempts += 1
        try:
            value = check()
            if value:
                return PollResult(True, value, time.monotonic() - start, attempts)
        except Exception as err:
            last_error = f"{type(err).__name__}: {err}"
        reason = stop() if stop else None
        if reason:
            return PollResult(False, value, time.monotonic() - start, attempts, reason)
        if time.monotonic() - start >= deadline_s:
            return PollResult(False, value, time.monotonic() - start, attempts, last_error)
        time.sleep(interval_s)


class NotReady(Exception):
    """The container did not become ready; carries what was last seen."""

    def __init__(self, message: str, result: PollResult, exited: bool):
        super().__init__(message)
        self.result = result
        self.exited = exited


class HttpProbe(WaitStrategy):
    """Wait until GET path answers `status`, failing fast if the container stops running."""

    def __init__(self, port: int, path: str, status: int = 200, timeout_s: float = 120.0):
        super().__init__()
        self.port, self.path, self.status = port, path, status
        self.timeout_s = timeout_s
        self.last_status: int | None = None
        self.result: PollResult | None = None

    def wait_until_ready(self, container: Any) -> None:
        exited = {"state": ""}

        def check() -> bool:
            # Looked up on every try: the mapping exists only while the container runs.
            port = container.get_docker_client().port(container.get_container_id(), self.port)
            url = f"http://{container.get_container_host_ip()}:{port}{self.path}"
            resp = http.request("GET", url, deadline_s=2)
            self.last_status = resp.status_code
            return resp.status_code == self.status

        def stopped() -> str | None:
            wrapped = container.get_wrapped_container()
            wrapped.reload()
            if wrapped.status not in ("running", "created"):
                exited["state"] = wrapped.status
                return f"the container is {wrapped.status}"
            return None

        self.result = poll_until(check, self.timeout_s, interval_s=0.25, stop=stopped)
        if not self.result.ok:
            seen = f"last HTTP status {self.last_status}" if self.last_status else self.result.last_error or "no answer"
            raise NotReady(
                f"GET {self.path} did not return {self.status} within {self.timeout_s:.0f} s ({seen})",
                self.result,
                exited=bool(exited["state"]),
            )


def exec_with_timeout(container: Any, argv: list[str], timeout_s: float) -> tuple[int | None, str]:
    """(exit code, output) of argv run inside a testcontainers container; (None, why) when it
    does not finish in time. docker-py's exec has no timeout, so it runs in a daemon thread the
    gate stops waiting for (the exec dies with the container at clean-up)."""
    import threading

    box: dict[str, tuple[int | None, str]] = {}

    def call() -> None:
        try:
            code, output = container.get_wrapped_container().exec_run(argv)
            box["result"] = (code, output.decode("utf-8", errors="replace") if isinstance(output, bytes) else str(output))
        except Exception as err:
            box["result"] = (None, f"{type(err).__name__}: {err}")

    thread = threading.Thread(target=call, name="healthcheck-exec", daemon=True)
    thread.start()
    thread.join(timeout_s)
    return box.get("result", (None, f"the command did not finish within {timeout_s:g} s"))


def run_healthcheck(container: Any, healthcheck: Any, deadline_s: float,
                    stop: Callable[[], str | None] | None = None) -> PollResult:
    """Run a compose healthcheck inside the container until it exits 0 or the deadline passes.
    The gate tries every second rather than every `interval`: passing sooner than production
    would see it changes no verdict, and a check that never passes still fails at the deadline.
    `value` holds the last output, for the verdict."""
    last: dict[str, str] = {"output": ""}
    per_try = max(1.0, min(healthcheck.timeout_s, 30.0))

    def check() -> bool:
        code, output = exec_with_timeout(container, healthcheck.argv(), per_try)
        last["output"] = f"exit {code}: {output.strip()}" if code is not None else output
        return code == 0

    result = poll_until(check, deadline_s, interval_s=1.0, stop=stop)
    result.value = last["output"]
    return result
