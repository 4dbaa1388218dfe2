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


def test_streamed_exec_and_copy_in_move_bytes_exactly_through_the_api(deps_session, tmp_path) -> None:
    """exec_to streams stdout to a file with the exit code and stderr; put_file copies a host file
    in; both through the engine's API (no CLI), byte for byte, binary and larger than a read."""
    import hashlib
    import os

    dep = deps_session.stack().deps["postgres"]
    src = tmp_path / "blob"
    src.write_bytes(os.urandom(3 << 20) + b"\0\xff end")
    where = api.put_file(deps_session.engine, dep.container_id, src, "/tmp", "aidb-gate-blob")
    out = tmp_path / "back"
    with out.open("wb") as fh:
        code, err = api.exec_to(deps_session.engine, dep.container_id,
                                ["sh", "-c", f"cat {where}; echo done >&2; rm {where}; exit 5"], fh, timeout_s=60)
    assert (code, err.strip()) == (5, "done")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == hashlib.sha256(src.read_bytes()).hexdigest()


def test_streamed_exec_ends_at_its_deadline(deps_session, tmp_path) -> None:
    dep = deps_session.stack().deps["postgres"]
    begin = time.monotonic()
    with (tmp_path / "out").open("wb") as fh, pytest.raises(GateError, match=r"still running after 2 s"):
        api.exec_to(deps_session.engine, dep.container_id, ["sh", "-c", "while :; do echo x; sleep 0.2; done"], fh,
                    timeout_s=2)
    assert time.monotonic() - begin < 60
