"""Every engine call the gate makes through podman-py ends: a command exec'd into a container that
never answers ends in a GateError at its deadline instead of holding the gate, and a quick one
still returns its output and exit code through the same bounded client."""

from __future__ import annotations

import time

import pytest

from aidb_gate.core import api
from aidb_gate.errors import GateError

pytestmark = pytest.mark.integration


def test_exec_that_never_answers_ends_at_its_deadline(deps_session) -> None:
    dep = deps_session.stack().deps["postgres"]
    begin = time.monotonic()
    with pytest.raises(GateError, match=r"`sleep 600` in container .* gave no answer within 2 s"):
        api.exec_in(deps_session.engine, dep.container_id, ["sleep", "600"], timeout_s=2)
    # The deadline, not the command, ended the call (generous bound: a loaded 2-core machine).
    assert time.monotonic() - begin < 60


def test_exec_within_its_deadline_returns_code_and_output(deps_session) -> None:
    dep = deps_session.stack().deps["postgres"]
    code, out, err = api.exec_in(deps_session.engine, dep.container_id,
                                 ["sh", "-c", "echo out; echo err >&2; exit 3"], timeout_s=30)
    assert (code, out.strip(), err.strip()) == (3, "out", "err")
