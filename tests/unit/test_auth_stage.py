"""The auth stage's verdicts over replies: only 401/403 refuse; a 2xx without a key says anyone can
write; the right key must get a 2xx; the wrong key is never the right one."""

from __future__ import annotations

import pytest

from aidb_gate.stages import auth
from aidb_gate.stages.health import Reply

AUTH = {"method": "POST", "path": "/documents", "header": "X-API-Key", "body": {}}


def reply(status: int) -> Reply:
    return Reply("POST", "/documents", status, b'{"detail": "x"}', "application/json", 3.0)


@pytest.mark.parametrize("status", [401, 403])
def test_401_and_403_refuse(status):
    assert auth.refused(reply(status), AUTH, "missing") is None and auth.refused(reply(status), AUTH, "wrong") is None


@pytest.mark.parametrize("status", [200, 201, 204, 404, 422, 500])
def test_anything_else_is_not_a_refusal(status):
    said = auth.refused(reply(status), AUTH, "missing")
    assert said is not None and f"returned {status}, expected 401 or 403" in said
    assert ("anyone can write" in said) == (200 <= status < 300)
    assert "with a wrong API key" in (auth.refused(reply(status), AUTH, "wrong") or "")


def test_the_right_key_must_be_accepted():
    assert auth.accepted(reply(201), AUTH) is None
    assert "with the right API key returned 401, expected 2xx" in (auth.accepted(reply(401), AUTH) or "")


@pytest.mark.parametrize("key", ["k", "abcd", "a" * 64])
def test_a_wrong_key_is_never_the_key_nor_a_prefix_of_it(key):
    wrong = auth.wrong_key(key)
    assert wrong != key and not key.startswith(wrong) and wrong
