"""What a run starts while pytest still collects, read from `-m`."""

from __future__ import annotations

import pytest
from aidb_gate.plugins.gate import early_steps


@pytest.mark.parametrize(("markexpr", "steps"), [
    ("p1", {"stack", "imports"}),
    ("p1 and health", {"stack", "imports"}),
    ("imports", {"stack", "imports"}),
    ("p2", {"stack"}),
    ("faults or restore", {"stack"}),
    ("", set()),
    ("integration", set()),
    ("p1_like_name", set()),
])
def test_early_steps_follow_the_marker_expression(markexpr, steps):
    assert early_steps(markexpr) == steps
