"""ahead: background steps run once, announced items are handed out once, close waits for all."""

from __future__ import annotations

import threading

from aidb_gate.core.ahead import Ahead


def test_a_step_runs_once_and_its_error_stays_with_the_step():
    ahead, calls, done = Ahead(), [], threading.Event()

    def step():
        calls.append(1)
        done.set()
        raise RuntimeError("kept by the step's own cache, not raised in the thread")

    ahead.run("stack", step)
    ahead.run("stack", step)
    assert done.wait(5)
    ahead.close()
    assert calls == [1]


def test_announced_items_start_together_and_are_taken_once():
    ahead = Ahead()
    ahead.want("a", lambda: "first")
    ahead.want("a", lambda: "second")  # the first announcement wins
    ahead.want("b", lambda: "b")
    assert ahead.take("a") is None  # not started yet: the caller starts its own
    ahead.start_wanted()
    assert ahead.take("a").result(5) == "first"
    assert ahead.take("a") is None
    assert ahead.take("b").result(5) == "b"
    ahead.close()


def test_close_waits_for_running_work_and_items_see_that_the_run_is_ending():
    ahead, release, finished = Ahead(), threading.Event(), []

    def slow():
        release.wait(5)
        finished.append("slow")

    def item():
        release.wait(5)
        return "refused" if ahead.closing.is_set() else "started"

    ahead.run("slow", slow)
    ahead.want("late", item)
    ahead.start_wanted()
    future = ahead.take("late")
    threading.Timer(0.2, release.set).start()
    ahead.close()
    assert finished == ["slow"] and future.done() and future.result() == "refused"
