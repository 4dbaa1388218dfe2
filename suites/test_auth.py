"""Stage auth: a protected endpoint refuses a missing or wrong API key and accepts the right one
(the verdicts are aidb_gate/stages/auth.py's)."""

from __future__ import annotations

import pytest

from aidb_gate.stages import auth as check

pytestmark = [pytest.mark.p1, pytest.mark.auth, pytest.mark.gate_requires("auth.enabled")]


@pytest.fixture
def auth(gate_config):
    """The configured protected request (default: POST /documents)."""
    return gate_config.auth


def test_refuses_a_missing_key(gate_url, auth):
    problem = check.refused(check.send(gate_url, auth, {}), auth, "missing")
    assert problem is None, problem


def test_refuses_a_wrong_key(gate_url, auth, gate_api_key):
    problem = check.refused(check.send(gate_url, auth, {auth["header"]: check.wrong_key(gate_api_key)}), auth, "wrong")
    assert problem is None, problem


def test_accepts_the_right_key(gate_url, auth, gate_api_key):
    problem = check.accepted(check.send(gate_url, auth, {auth["header"]: gate_api_key}), auth)
    assert problem is None, problem
