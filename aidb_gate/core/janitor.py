"""janitor: remove what a run made, by label, and what dead runs left behind.

Guarantees: `remove_run` removes every container (with its anonymous volumes), network and
volume labelled with one run id, whatever state they are in. `reap_dead_runs` removes the
resources of runs whose owner process is provably gone, and never those of a live run, so
two gates can run side by side.
"""

from __future__ import annotations

import contextlib
import logging
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aidb_gate.core.run import OWNER_LABEL, RUN_LABEL, owner_alive

log = logging.getLogger(__name__)


@dataclass
class Sweep:
    """What a clean-up found and removed, for the terminal and the tests."""

    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.containers) + len(self.networks) + len(self.volumes)


def _labelled(client, run_id: str | None):
    selector = f"{RUN_LABEL}={run_id}" if run_id else RUN_LABEL
    filters = {"label": selector}
    # sparse: no per-container inspect, which races with other runs removing their containers
    # (Podman answers 500, not 404, for a container that vanished in between).
    containers = client.containers.list(all=True, filters=filters, sparse=True)
    networks = client.networks.list(filters=filters)
    volumes = client.volumes.list(filters=filters)
    return containers, networks, volumes


def _remove_container(sweep: Sweep, c) -> None:
    name = _container_name(c)
    # The run's containers are thrown away (their logs are already saved), so there is no graceful
    # stop to wait for: SIGKILL first halves the removal time of a running Postgres or Qdrant.
    with contextlib.suppress(Exception):  # not running, or already gone: remove() says which
        c.kill()
    try:
        c.remove(force=True, v=True)
        sweep.containers.append(name)
    except Exception as err:  # already gone is fine; anything else is reported
        if "no such" not in str(err).lower() and "404" not in str(err):
            sweep.errors.append(f"container {name}: {err}")


def _remove(sweep: Sweep, containers, networks, volumes) -> Sweep:
    # Containers first (side by side: each removal mostly waits on the engine), since a network
    # or volume in use cannot be removed.
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda c: _remove_container(sweep, c), containers))
    for n in networks:
        try:
            n.remove()
            sweep.networks.append(n.name)
        except Exception as err:
            if "no such" not in str(err).lower() and "404" not in str(err):
                sweep.errors.append(f"network {n.name}: {err}")
    for v in volumes:
        try:
            v.remove(force=True)
            sweep.volumes.append(v.name)
        except Exception as err:
            if "no such" not in str(err).lower() and "404" not in str(err):
                sweep.errors.append(f"volume {v.name}: {err}")
    return sweep


def _container_name(container) -> str:
    names = (container.attrs or {}).get("Names") or []
    return names[0].lstrip("/") if names else container.id[:12]


def remove_run(client, run_id: str) -> Sweep:
    """Remove everything labelled with run_id."""
    return _remove(Sweep(), *_labelled(client, run_id))


def _labels(resource) -> dict[str, str]:
    """A container's, network's or volume's labels, wherever the listing put them."""
    attrs = getattr(resource, "attrs", {}) or {}
    return attrs.get("Labels") or (attrs.get("Config") or {}).get("Labels") or {}


def reap_dead_runs(client, keep_run: str | None = None) -> Sweep:
    """Remove the resources of runs whose owner is provably dead (never keep_run's)."""
    containers, networks, volumes = _labelled(client, None)
    by_run: dict[str, list[list]] = defaultdict(lambda: [[], [], []])
    owners: dict[str, str | None] = {}
    for i, group in enumerate((containers, networks, volumes)):
        for res in group:
            run_id = _labels(res).get(RUN_LABEL)
            if not run_id or run_id == keep_run:
                continue
            by_run[run_id][i].append(res)
            if owners.get(run_id) is None:
                owners[run_id] = _labels(res).get(OWNER_LABEL)
    sweep = Sweep()
    for run_id, groups in by_run.items():
        token = owners.get(run_id)
        if token is None or owner_alive(token):
            continue
        log.info("removing resources of dead gate run %s", run_id)
        _remove(sweep, *groups)
    return sweep


def remove_run_quietly(client, run_id: str) -> Sweep:
    """remove_run for teardown paths: never raises, reports errors in the Sweep."""
    try:
        return remove_run(client, run_id)
    except Exception as err:
        return Sweep(errors=[f"clean-up of run {run_id} failed: {err}"])
