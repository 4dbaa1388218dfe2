"""Helpers for the self-tests that run the gate in a child process: where things are, and what a
run left behind."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "fixtures" / "aidb"


def engine_env() -> dict[str, str]:
    """The environment for `podman` CLI calls, with the project's containers.conf where needed."""
    from aidb_gate.engine import _conf_env

    return {**os.environ, **_conf_env(os.environ)[0]}


def leftovers(run_id: str) -> list[str]:
    """Every container, network and volume labelled with run_id."""
    out = []
    for kind in ("ps -a", "network ls", "volume ls"):
        proc = subprocess.run(["podman", *kind.split(), "-q", "--filter", f"label=aidb-gate.run={run_id}"],
                              capture_output=True, text=True, env=engine_env(), check=False)
        out += [f"{kind}: {line}" for line in proc.stdout.split()]
    return out
