"""Helpers for the self-tests that run the gate in a child process: where things are, and what a
run left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "fixtures" / "aidb"


def engine_env() -> dict[str, str]:
    """The environment for `podman` CLI calls, with the project's containers.conf where needed."""
    from aidb_gate.core.engine import _conf_env

    return {**os.environ, **_conf_env(os.environ)[0]}


def leftovers(run_id: str) -> list[str]:
    """Every container, network and volume labelled with run_id."""
    out = []
    for kind in ("ps -a", "network ls", "volume ls"):
        proc = subprocess.run(["podman", *kind.split(), "-q", "--filter", f"label=aidb-gate.run={run_id}"],
                              capture_output=True, text=True, env=engine_env(), check=False)
        out += [f"{kind}: {line}" for line in proc.stdout.split()]
    return out


def podman(*args: str) -> subprocess.CompletedProcess:
    """A `podman` CLI call against the engine the gate uses here."""
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=engine_env(), check=False)


def _leases(listing: str) -> list[dict]:
    """The lease volumes of a `volume ls --format json` listing. Podman 4.3 ORs several label
    filters (Docker ANDs them), so the listing is filtered by the run alone and leases picked here."""
    return [v for v in json.loads(listing or "[]") if "aidb-gate.lease" in (v.get("Labels") or {})]


def lease_expiry(run_id: str) -> float | None:
    """When the newest lease of run_id expires (epoch seconds: its creation plus its seconds), or None
    when it holds none; read with the CLI, whose clock is this host's, as the engine's is here."""
    from aidb_gate.core.run import engine_timestamp

    proc = podman("volume", "ls", "--format", "json", "--filter", f"label=aidb-gate.run={run_id}")
    ends = []
    for volume in _leases(proc.stdout):
        made, value = engine_timestamp(volume.get("CreatedAt")), volume["Labels"]["aidb-gate.lease"]
        if made is not None and value != "released":
            ends.append(made + float(value))
    return max(ends, default=None)


def lease_listing(run_id: str) -> list[tuple[str, str, str]]:
    """(name, created, lease label) of run_id's lease volumes, for a failure message."""
    proc = podman("volume", "ls", "--format", "json", "--filter", f"label=aidb-gate.run={run_id}")
    return [(v.get("Name", "?"), str(v.get("CreatedAt")), v["Labels"].get("aidb-gate.lease", "?"))
            for v in _leases(proc.stdout)]


def lease_names(run_id: str) -> set[str]:
    """The names of run_id's lease volumes now (each renewal makes a new one)."""
    proc = podman("volume", "ls", "--format", "json", "--filter", f"label=aidb-gate.run={run_id}")
    return {v["Name"] for v in _leases(proc.stdout)}


def clean_cli(root: Path, *args: str) -> subprocess.CompletedProcess:
    """`aidb-gate clean` as the user runs it, in the project at root, with this process's environment."""
    return subprocess.run([sys.executable, "-m", "aidb_gate.cli", "--root", str(root), "clean", *args],
                          capture_output=True, text=True, timeout=300, check=False)


def unshare_works() -> bool:
    """True where this user can start a process in a PID namespace of its own with its own /proc."""
    if shutil.which("unshare") is None:
        return False
    proc = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "sh", "-c", "echo $$"],
                          capture_output=True, text=True, check=False)
    return proc.returncode == 0 and proc.stdout.strip() == "1"


def stack_of(run_id: str) -> list[str]:
    """leftovers(run_id) without its lease volumes, whose names change with every renewal."""
    return sorted(line for line in leftovers(run_id) if f"aidb-gate-{run_id}-lease-" not in line)
