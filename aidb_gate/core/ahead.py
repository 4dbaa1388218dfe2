"""ahead: work a run starts before a test asks for it, in background threads.

Guarantees: each named step runs at most once ahead; its errors are never lost (the step caches
them for the test that asks, or they wait in the wanted item's future); announced items are
started only by `start_wanted()` and handed out once by `take()`. `close()` makes new items
refuse to start, then waits for everything already running, so nothing a background thread
creates can appear after the run's clean-up.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class Ahead:
    """The background half of a run: steps started early, and announced items started in advance."""

    def __init__(self) -> None:
        self._threads: dict[str, threading.Thread] = {}
        self._wanted: dict[str, Callable[[], Any]] = {}
        self._futures: dict[str, Future[Any]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._guard = threading.Lock()
        self.closing = threading.Event()

    def run(self, name: str, step: Callable[[], Any]) -> None:
        """Start `step` in a thread, once per name. Its result and errors stay with the step itself
        (the session's steps cache both), so they are deliberately dropped here."""
        with self._guard:
            if name in self._threads:
                return

            def work() -> None:
                with contextlib.suppress(Exception):
                    step()

            thread = threading.Thread(target=work, name=f"aidb-gate-{name}", daemon=True)
            self._threads[name] = thread
        thread.start()

    def want(self, key: str, make: Callable[[], Any]) -> None:
        """Announce an item that a test will `take(key)` later; the first announcement wins."""
        with self._guard:
            self._wanted.setdefault(key, make)

    def start_wanted(self) -> None:
        """Start every announced item, side by side (once)."""
        with self._guard:
            if not self._wanted or self._pool is not None:
                return
            self._pool = ThreadPoolExecutor(max_workers=len(self._wanted), thread_name_prefix="aidb-gate-ahead")
            for key, make in self._wanted.items():
                self._futures[key] = self._pool.submit(make)

    def take(self, key: str) -> Future[Any] | None:
        """The started item for key (its future), at most once; None if it was never started."""
        with self._guard:
            return self._futures.pop(key, None)

    def close(self, timeout_s: float = 180.0) -> None:
        self.closing.set()
        for thread in list(self._threads.values()):
            thread.join(timeout=timeout_s)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
