"""The Qdrant-API recipe answers with qdrant-client's REST models at the version its
requirements pin; the conformance suite drives it through the host's qdrant-client. The two must
agree in major and minor version, or a model field one side knows and the other refuses turns
into a conformance failure that is neither the service's fault nor Qdrant's. This check fails
first, naming both versions and the files to change together."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "fixtures" / "images" / "qdrant-api"


def pinned(path: Path, package: str) -> str:
    found = re.findall(rf"^{re.escape(package)}==([\w.]+)\s*$", path.read_text(), re.MULTILINE)
    assert len(found) == 1, f"{path} must pin {package} exactly once, found {found}"
    return found[0]


def minor(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split(".")[:2])


def test_recipe_and_host_qdrant_client_agree_in_minor_version():
    recipe = pinned(RECIPE / "requirements.txt", "qdrant-client")
    constraints = pinned(ROOT / "constraints.txt", "qdrant-client")
    host = importlib.metadata.version("qdrant-client")
    label = re.search(r'aidb-gate\.qdrant-client\.version="([\w.]+)"', (RECIPE / "Containerfile").read_text())
    where = ("change fixtures/images/qdrant-api/requirements.txt (and its Containerfile label) and constraints.txt "
             "together")
    assert minor(recipe) == minor(constraints) == minor(host), (
        f"qdrant-client: the recipe pins {recipe}, constraints.txt {constraints}, this venv has {host}: {where}")
    assert label and label.group(1) == recipe, f"the recipe's Containerfile label says {label and label.group(1)}: {where}"
