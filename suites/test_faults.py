"""Stage faults (p2): readiness tells the truth while a dependency is stopped, paused or killed.

For each dependency and each action: readiness turns 503 (critical) or 200 "degraded"
(non-critical) with the dependency listed as failed within the budget; liveness stays 200
throughout; the service neither crashes nor restarts; and once the dependency is back,
readiness returns to 200 within the budget.
"""

from __future__ import annotations

import pytest

from aidb_gate.core import api
from aidb_gate.stages import faults
from aidb_gate.stages.diagnose import container_state

pytestmark = [pytest.mark.p2, pytest.mark.faults]


def test_readiness_follows_a_dependency_fault(gate_engine, gate_stack, gate_boot, gate_url, gate_config, watched_dependency,
                                              fault_action):
    dep = gate_stack.deps[watched_dependency]
    budget = gate_config.fault_budget_s
    paths = (gate_config.health["ready"], gate_config.health["live"])
    wrapped = dep.container.get_wrapped_container()
    before = container_state(api.inspect(gate_engine, gate_boot.container_id))
    try:
        faults.inject(wrapped, fault_action)
        outage = faults.watch(gate_url, *paths, faults.outage_seen(watched_dependency, dep.config.critical), budget)
    finally:
        faults.recover(wrapped, fault_action)
    back_up = dep.wait_ready(deadline_s=120)
    assert back_up.ok, f"{watched_dependency} did not come back after {fault_action}: {back_up.last_error}"
    recovery = faults.watch(gate_url, *paths, faults.recovery_seen(watched_dependency), budget)
    after = container_state(api.inspect(gate_engine, gate_boot.container_id))

    problems = faults.judge_outage(outage, watched_dependency, dep.config.critical, fault_action, budget)
    problems += faults.judge_recovery(recovery, watched_dependency, fault_action, budget)
    if not after["running"] or after["restart_count"] != before["restart_count"]:
        problems.append(f"the service did not survive the {fault_action} of `{watched_dependency}`: it is "
                        f"{after['status']} (exit code {after['exit_code']}, restarts {after['restart_count']})")
    assert not problems, "; ".join(problems) + (
        f"\n\nreadiness during the outage:\n{outage.describe()}\n\nreadiness during recovery:\n{recovery.describe()}")
