"""Stage boot: the dependencies are ready, and the service boots, stays up and answers in time."""

from __future__ import annotations

import pytest

from aidb_gate.core import api
from aidb_gate.stages.boot import boot_problems, wiring_problems
from aidb_gate.stages.diagnose import container_state

pytestmark = [pytest.mark.p1, pytest.mark.boot]


def test_dependency_is_ready(gate_engine, gate_stack, dependency_name):
    dep = gate_stack.deps[dependency_name]
    state = container_state(api.inspect(gate_engine, dep.container_id))
    assert state["running"] and not state["restart_count"], (
        f"{dependency_name} ({dep.image.ref}, {dep.image.source}) is {state['status']} "
        f"(restarts: {state['restart_count']}) after it was ready; its log ends with:\n{dep.log.snapshot()[-2000:]}"
    )


def test_secret_files_named_by_the_environment_are_mounted(gate_config):
    problems = wiring_problems(gate_config)
    assert not problems, "; ".join(problems)


def test_service_becomes_ready_within_the_startup_budget(gate, gate_boot):
    if not gate_boot.ready:
        diagnosis = gate.boot_diagnosis()
        pytest.fail(f"{diagnosis.verdict}\n\n{diagnosis.render()}", pytrace=False)


def test_container_is_running_and_never_restarted(gate, gate_engine, gate_boot):
    state = container_state(api.inspect(gate_engine, gate_boot.container_id))
    if not state["running"] or state["restart_count"]:
        diagnosis = gate.boot_diagnosis()
        pytest.fail(f"{diagnosis.verdict}\n\n{diagnosis.render()}", pytrace=False)


def test_boot_log_has_no_traceback_or_error(gate_boot):
    problems = boot_problems(gate_boot.boot_log)
    assert not problems, (
        f"the service logged {len(problems)} error(s) while it booted: " + "; ".join(problems[:5])
        + f"\n\nboot log:\n{gate_boot.boot_log[-4000:]}"
    )
