"""steps: the run's step runner - each step once, timed into its stage, its typed result kept.

Guarantees: a `Step` names what it makes, the stage (aidb_gate/stages.py) its time and outcome
are booked under, and the function that makes it from the session. `StepRunner.run` makes a
step at most once per run, even when a background prefetch and a test ask at the same moment
(one lock per step); a failure is kept like a result, so every later caller gets the same
one-paragraph `GateError` instead of a retry that collides with half-made resources. Each
stage module defines its own steps next to its logic; the session only runs them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from aidb_gate.errors import GateError
from aidb_gate.report import StageBook
from aidb_gate.stages import StageName

T = TypeVar("T")


class Pipeline(Protocol):
    """What a step may ask of the run (the session implements it): the state every step shares,
    and the other steps, each of which runs once however many steps ask for it."""

    cfg: Any
    run: Any
    log_dir: Path
    mounts: Any
    api_key: str
    work: dict[str, float]

    def progress(self, message: str) -> None: ...
    def connect(self) -> Any: ...
    def base(self) -> Any: ...
    def base_ref(self) -> str | None: ...
    def dependency_images(self) -> Any: ...
    def target_image(self) -> str: ...
    def stack(self) -> Any: ...
    def boot(self) -> Any: ...
    def service_url(self) -> str: ...
    def seeded(self) -> Any: ...
    def backup(self) -> Any: ...
    def restore_names(self) -> list[str]: ...
    def fresh_dependency(self, name: str, role: str) -> Any: ...
    def boot_against(self, fresh: dict[str, Any], role: str) -> Any: ...


@dataclass(frozen=True)
class Step(Generic[T]):
    """One memoised step of the pipeline: `make(session)` returns its result."""

    name: str
    stage: StageName
    make: Callable[[Pipeline], T]


class StepRunner:
    """Runs steps once and keeps their results (or the error they ended in)."""

    def __init__(self, book: StageBook):
        self.book = book
        self._results: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def run(self, step: Step[T], session: Pipeline) -> T:
        with self._guard:
            lock = self._locks.setdefault(step.name, threading.Lock())
        with lock:
            if step.name not in self._results:
                begin, ok = time.monotonic(), False
                try:
                    self._results[step.name] = step.make(session)
                    ok = True
                except GateError as err:
                    self._results[step.name] = err
                    raise
                except Exception as err:
                    self._results[step.name] = GateError(f"the {step.stage} step failed: {type(err).__name__}: {err}",
                                                         stage=step.stage)
                    raise self._results[step.name] from err
                finally:
                    self.book.record(step.stage, time.monotonic() - begin, ok)
        value = self._results[step.name]
        if isinstance(value, GateError):
            raise value
        return value

    def set(self, step: Step[T], value: T) -> None:
        """Record a result made elsewhere (the self-tests hand the runner fake containers)."""
        self._results[step.name] = value

    def result(self, step: Step[T]) -> T | None:
        """The step's result if it finished well; None if it never ran or failed (no waiting)."""
        value = self._results.get(step.name)
        return None if isinstance(value, GateError) else value
