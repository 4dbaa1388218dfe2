"""The corpus self-tests: the gate rejects each known-bad variant at the right stage."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "corpus: runs the real gate on a corpus entry (fixtures/broken/* and the reference)")
