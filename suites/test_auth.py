"""Stage auth: a protected endpoint refuses a missing or wrong API key and accepts the right one."""

from __future__ import annotations

import pytest

from aidb_gate.stages import health

pytestmark = [pytest.mark.p1, pytest.mark.auth, pytest.mark.gate_requires("auth.enabled")]

REFUSED = {401, 403}


def _send(gate_url: str, auth: dict, headers: dict[str, str]) -> health.Reply:
    return health.call(gate_url, auth["path"], method=auth["method"], json=dict(auth["body"]), headers=headers)


@pytest.fixture
def auth(gate_config):
    """The configured protected request (default: POST /documents)."""
    return gate_config.auth


def test_refuses_a_missing_key(gate_url, auth):
    reply = _send(gate_url, auth, {})
    assert reply.status in REFUSED, (
        f"{auth['method']} {auth['path']} without an API key returned {reply.status}, expected 401 or 403: "
        f"anyone can write.\n\n{reply.describe()}"
    )


def test_refuses_a_wrong_key(gate_url, auth, gate_api_key):
    wrong = gate_api_key[::-1] + "x"
    reply = _send(gate_url, auth, {auth["header"]: wrong})
    assert reply.status in REFUSED, (
        f"{auth['method']} {auth['path']} with a wrong API key returned {reply.status}, expected 401 or 403."
        f"\n\n{reply.describe()}"
    )


def test_accepts_the_right_key(gate_url, auth, gate_api_key):
    reply = _send(gate_url, auth, {auth["header"]: gate_api_key})
    assert 200 <= reply.status < 300, (
        f"{auth['method']} {auth['path']} with the right API key returned {reply.status}, expected 2xx."
        f"\n\n{reply.describe()}"
    )
