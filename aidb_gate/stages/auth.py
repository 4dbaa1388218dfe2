"""auth: a protected endpoint refuses a missing or wrong API key and accepts the right one.

Guarantees: `send` makes the configured protected request (default: POST /documents) with the
headers given; `refused` and `accepted` judge one reply and return the problem in one paragraph
(None when it holds). A refusal is 401 or 403 only: a 404 or 500 without a key is not a refusal
the contract promises, and a 2xx means anyone can write. Pure over replies; the suite
(suites/test_auth.py) only sends and asserts.
"""

from __future__ import annotations

from typing import Any

from aidb_gate.stages.health import Reply, call

#: The statuses that refuse a request for its key.
REFUSED = frozenset({401, 403})


def send(base_url: str, auth: dict[str, Any], headers: dict[str, str]) -> Reply:
    """The configured protected request, with these headers."""
    return call(base_url, auth["path"], method=auth["method"], json=dict(auth["body"]), headers=headers)


def wrong_key(key: str) -> str:
    """A key that is certainly not `key` and as long as it (plus one): not a prefix, not empty."""
    return key[::-1] + "x"


def refused(reply: Reply, auth: dict[str, Any], key: str) -> str | None:
    """The problem when a request sent with `key` ("missing" or "wrong") was not refused."""
    if reply.status in REFUSED:
        return None
    said = "without an API key" if key == "missing" else "with a wrong API key"
    tail = ": anyone can write." if key == "missing" and 200 <= reply.status < 300 else "."
    return (f"{auth['method']} {auth['path']} {said} returned {reply.status}, expected 401 or 403{tail}"
            f"\n\n{reply.describe()}")


def accepted(reply: Reply, auth: dict[str, Any]) -> str | None:
    """The problem when the request with the right key was not accepted (2xx)."""
    if 200 <= reply.status < 300:
        return None
    return (f"{auth['method']} {auth['path']} with the right API key returned {reply.status}, expected 2xx."
            f"\n\n{reply.describe()}")
