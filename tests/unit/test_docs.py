"""The repository stands alone: every link and every path the README and docs/ name exists here."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Backticked paths under these top-level folders are claims about this repository.
TOP = ("aidb_gate/", "plugins/", "suites/", "fixtures/", "docs/", "scripts/", "bench/", "tests/", ".ci/")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_relative_link_resolves_inside_the_repository(doc: Path) -> None:
    text = doc.read_text()
    broken = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if re.match(r"^[a-z]+://", target):
            continue
        path = (doc.parent / target).resolve()
        if not path.exists() or ROOT not in (path, *path.parents):
            broken.append(target)
    assert not broken, f"{doc.name} links to what is not in the repository: {broken}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_named_repository_path_exists(doc: Path) -> None:
    named = {m for m in re.findall(r"`([A-Za-z0-9_./-]+)`", doc.read_text()) if m.startswith(TOP)}
    missing = sorted(m for m in named if not (ROOT / m.rstrip("/")).exists())
    assert not missing, f"{doc.name} names paths that do not exist: {missing}"


def test_nothing_points_outside_the_repository() -> None:
    for doc in DOCS:
        assert "shared/" not in doc.read_text(), f"{doc.name} points at shared/, which is not in the repository"
