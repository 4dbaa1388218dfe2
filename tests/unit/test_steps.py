"""The step runner: each step once per run, even under concurrent callers; failures kept and booked."""

from __future__ import annotations

import threading

import pytest

from aidb_gate.core.steps import Step, StepRunner
from aidb_gate.errors import GateError
from aidb_gate.pipeline import StageBook, StageName


def _rows(book: StageBook) -> dict[str, str]:
    return {row["stage"]: row["status"] for row in book.rows()}


def test_a_step_runs_once_and_its_time_is_booked_under_its_stage() -> None:
    calls = []
    step = Step("build", "build", lambda session: calls.append(session) or "image:1")
    book = StageBook()
    runner = StepRunner(book)
    assert runner.run(step, "s") == "image:1" and runner.run(step, "s") == "image:1"
    assert calls == ["s"] and runner.result(step) == "image:1"
    assert _rows(book)["build"] == "passed"


def test_concurrent_callers_wait_for_the_one_run() -> None:
    started, release = threading.Event(), threading.Event()
    calls = []

    def make(_session: object) -> int:
        calls.append(1)
        started.set()
        release.wait(5)  # held until the second caller is on its way
        return 42

    runner, step = StepRunner(StageBook()), Step("stack", "dependencies", make)
    results: list[int] = []
    callers = [threading.Thread(target=lambda: results.append(runner.run(step, None))) for _ in range(2)]
    callers[0].start()
    assert started.wait(5)
    callers[1].start()
    release.set()
    for caller in callers:
        caller.join(5)
    assert results == [42, 42] and calls == [1]


def test_a_failure_is_kept_so_every_caller_gets_the_same_error_and_the_stage_fails() -> None:
    calls = []

    def make(_session: object) -> None:
        calls.append(1)
        raise KeyError("half-made")

    book = StageBook()
    runner, step = StepRunner(book), Step("images", "images", make)
    with pytest.raises(GateError, match="the images step failed: KeyError") as first:
        runner.run(step, None)
    with pytest.raises(GateError) as second:
        runner.run(step, None)
    assert first.value is second.value and calls == [1] and runner.result(step) is None
    assert _rows(book)["images"] == "failed"


def test_set_records_a_result_made_elsewhere() -> None:
    runner, step = StepRunner(StageBook()), Step("boot", "boot", lambda _s: pytest.fail("must not run"))
    runner.set(step, "booted")
    assert runner.run(step, None) == "booted"


def test_needs_run_first_each_once_and_outside_the_steps_clock() -> None:
    import time

    order: list[str] = []

    def slow_build(_s: object) -> str:
        order.append("build")
        time.sleep(0.3)  # a need's time is its own stage's, never its dependant's
        return "image"

    build = Step("build", StageName.BUILD, slow_build)
    stack = Step("stack", StageName.DEPENDENCIES, lambda _s: order.append("stack") or "stack")
    boot = Step("boot", StageName.BOOT, lambda _s: order.append("boot") or "booted", needs=(build, stack))
    seeded = Step("seeded", StageName.BACKUP, lambda _s: order.append("seeded") or 1, needs=(boot,))
    book = StageBook()
    runner = StepRunner(book)
    assert runner.run(seeded, None) == 1 and runner.run(boot, None) == "booted"
    assert order == ["build", "stack", "boot", "seeded"]
    seconds = {row["stage"]: row["seconds"] for row in book.rows()}
    assert seconds["build"] >= 0.3 and seconds["boot"] < 0.3


def test_a_step_stopped_by_an_earlier_stages_error_books_that_stage_not_its_own() -> None:
    def blocked(_s: object) -> None:
        raise GateError("The image did not build, so this stage cannot run", stage=StageName.BUILD)

    def own(_s: object) -> None:
        raise GateError("exec gave no answer")  # no stage said: the step's own failure

    def later(_s: object) -> None:
        raise GateError("a restore problem", stage=StageName.RESTORE)  # a later stage's name is not a block

    book = StageBook()
    runner = StepRunner(book)
    for make, stage in ((blocked, StageName.IMPORTS), (own, StageName.BOOT), (later, StageName.BACKUP)):
        with pytest.raises(GateError):
            runner.run(Step(make.__name__, stage, make), None)
    assert _rows(book) == {"build": "failed", "boot": "failed", "backup": "failed"}


def test_a_result_its_stage_judges_failed_fails_the_stage_and_is_still_returned() -> None:
    book = StageBook()
    runner = StepRunner(book)
    step = Step("build", StageName.BUILD, lambda _s: {"ok": False}, passed=lambda r: r["ok"])
    assert runner.run(step, None) == {"ok": False} and runner.result(step) == {"ok": False}
    assert _rows(book) == {"build": "failed"}


def test_an_error_whose_class_has_an_earlier_stage_is_still_the_steps_own() -> None:
    """A BackupError (its class says backup) raised while restoring fails the restore stage: only
    a stage the raiser names marks a block by an earlier stage."""
    from aidb_gate.backup.manifest import BackupError

    def restore(_s: object) -> None:
        raise BackupError("collection holds no points after the upload")

    book = StageBook()
    with pytest.raises(BackupError):
        StepRunner(book).run(Step("restore", StageName.RESTORE, restore), None)
    assert _rows(book) == {"restore": "failed"}
