"""steps: the run's step runner - each step once, timed into its stage, its typed result kept.

Guarantees: a `Step` names what it makes, the stage (aidb_gate/pipeline.py) its time and outcome
are booked under, the steps it needs, and the function that makes it from the session.
`StepRunner.run` makes a step's needs first (so its stage's clock holds only its own work),
then the step, each at most once per run, even when a background prefetch and a test ask at
the same moment (one lock per step); a failure is kept like a result, so every later caller
gets the same one-paragraph `GateError` instead of a retry that collides with half-made
resources. A step stopped by an earlier stage's error (a build that failed, a service that
never became ready) books that stage, not its own: it was blocked, it did not fail. Each stage
module defines its own steps next to its logic; the session only runs them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, cast

from aidb_gate.errors import GateError
from aidb_gate.pipeline import StageBook, StageName, order

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
    #: The steps whose results `make` reads: run first, each once (the graph in docs/ARCHITECTURE.md).
    needs: tuple[Step[Any], ...] = ()
    #: Whether a result is a pass for the stage (a failed build is a result its stage judges, not
    #: an error); None: every result is.
    passed: Callable[[T], bool] | None = None


class StepRunner:
    """Runs steps once and keeps their results (or the error they ended in)."""

    def __init__(self, book: StageBook):
        self.book = book
        self._results: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def run(self, step: Step[T], session: Pipeline) -> T:
        if step.name not in self._results:
            for need in step.needs:  # a need's error is this step's too, raised before its clock starts
                self.run(need, session)
        with self._guard:
            lock = self._locks.setdefault(step.name, threading.Lock())
        with lock:
            if step.name not in self._results:
                begin, ok, booked = time.monotonic(), False, step.stage
                try:
                    result = self._results[step.name] = step.make(session)
                    ok = step.passed is None or step.passed(result)
                except GateError as err:
                    self._results[step.name] = err
                    blocked = err.stage_given and order(err.stage) < order(step.stage)
                    booked = err.stage if blocked else step.stage
                    raise
                except Exception as err:
                    self._results[step.name] = GateError(f"the {step.stage} step failed: {type(err).__name__}: {err}",
                                                         stage=step.stage)
                    raise self._results[step.name] from err
                finally:
                    self.book.record(booked, time.monotonic() - begin, ok)
        value = self._results[step.name]
        if isinstance(value, GateError):
            raise value
        return cast(T, value)  # _results holds each step's own T (keyed by its name)

    def set(self, step: Step[T], value: T) -> None:
        """Record a result made elsewhere (the self-tests hand the runner fake containers)."""
        self._results[step.name] = value

    def result(self, step: Step[T]) -> T | None:
        """The step's result if it finished well; None if it never ran or failed (no waiting)."""
        value = self._results.get(step.name)
        return None if isinstance(value, GateError) else value
