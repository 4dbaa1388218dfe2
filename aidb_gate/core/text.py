"""text: the one way the gate masks secrets in text and shortens it.

Guarantees: every string that leaves the gate (log files, report extras, failure text, JUnit
XML) goes through one `Redactor`, which knows every secret the run made. Text is cut only by
`clip`, which redacts with every live run's secrets first, so no cut can leave part of a secret
that the redactor would no longer recognise. Plain functions with no import from the project,
so every layer may use them.
"""

from __future__ import annotations

import threading
import weakref

MASK = "***"


#: Every Redactor alive in this process: `clip` applies them all, so code that holds no run (an
#: engine error, a user's command output) still never cuts a secret in half.
_LIVE: weakref.WeakSet[Redactor] = weakref.WeakSet()


class Redactor:
    """Replaces every registered secret with ***; thread-safe, longest secret first."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()
        _LIVE.add(self)

    def add(self, secret: str) -> None:
        if secret and len(secret) >= 4:
            with self._lock:
                self._secrets.add(secret)

    def known(self) -> frozenset[str]:
        """The secrets registered so far (for self-tests that look for them elsewhere)."""
        with self._lock:
            return frozenset(self._secrets)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for s in secrets:
            if s in text:
                text = text.replace(s, MASK)
        return text

    def bytes(self, data: bytes) -> bytes:
        return self(data.decode("utf-8", errors="replace")).encode()


def redact_all(text: str) -> str:
    """`text` with the secrets of every live run masked."""
    for redactor in list(_LIVE):
        text = redactor(text)
    return text


def clip(text: str, limit: int, *, tail: bool = False) -> str:
    """Redact, then cut: at most `limit` characters of `text` (the last ones when `tail`), with
    every live run's secrets masked before the cut. The one way the gate shortens text."""
    text = redact_all(text or "")
    if len(text) <= limit:
        return text
    return text[-limit:] if tail else text[:limit]
