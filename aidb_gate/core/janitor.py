"""janitor: remove what a run made, by label, and what dead runs left behind.

Guarantees: `remove_run` removes every container (with its anonymous volumes), network and
volume labelled with one run id, whatever state they are in. `reap_dead_runs` removes the
resources of runs whose owner process is provably gone, and never those of a live run, so
two gates can run side by side, nor those of a kept run (--gate-keep), which outlives its
owner on purpose. `remove_finished_run` (`aidb-gate clean --run ID`) removes one run, kept or
not, but refuses a live one; `remove_kept_runs` (`clean --kept`) removes every kept run whose
owner has exited.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from aidb_gate.core.run import KEPT_LABEL, OWNER_LABEL, RUN_LABEL, owner_alive
from aidb_gate.errors import GateError

log = logging.getLogger(__name__)


@dataclass
class Sweep:
    """What a clean-up found and removed, for the terminal and the tests."""

    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: The run ids whose resources were removed (so their kept-secrets files can go too).
    runs: list[str] = field(default_factory=list)
    #: Runs found but deliberately left alone, each with the reason.
    skipped: list[str] = field(default_factory=list)

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


@dataclass
class RunResources:
    """Everything labelled with one run id, and what its labels say about the run."""

    run_id: str
    owner: str | None = None
    kept: bool = False
    containers: list = field(default_factory=list)
    networks: list = field(default_factory=list)
    volumes: list = field(default_factory=list)

    @property
    def groups(self) -> tuple[list, list, list]:
        return self.containers, self.networks, self.volumes

    def live(self) -> bool:
        """True unless the owner is provably gone; a run without an owner label counts as live,
        because what cannot be judged is never removed."""
        return self.owner is None or owner_alive(self.owner)


def group_by_run(containers, networks, volumes) -> dict[str, RunResources]:
    """Resources grouped by their run label. A run counts as kept if any of its resources says so
    (a resource whose labels were not listed must not make a kept run look reapable)."""
    runs: dict[str, RunResources] = {}
    for kind, group in (("containers", containers), ("networks", networks), ("volumes", volumes)):
        for res in group:
            labels = _labels(res)
            run_id = labels.get(RUN_LABEL)
            if not run_id:
                continue
            found = runs.setdefault(run_id, RunResources(run_id))
            getattr(found, kind).append(res)
            found.owner = found.owner or labels.get(OWNER_LABEL)
            found.kept = found.kept or labels.get(KEPT_LABEL) == "true"
    return runs


def reap_dead_runs(client, keep_run: str | None = None) -> Sweep:
    """Remove the resources of runs whose owner is provably dead (never keep_run's, never a kept run's)."""
    sweep = Sweep()
    for run_id, found in group_by_run(*_labelled(client, None)).items():
        if run_id == keep_run or found.kept or found.live():
            continue
        log.info("removing resources of dead gate run %s", run_id)
        sweep.runs.append(run_id)
        _remove(sweep, *found.groups)
    return sweep


def remove_finished_run(client, run_id: str) -> Sweep:
    """Remove one run, kept or not; raise a GateError (removing nothing) while its owner lives."""
    found = group_by_run(*_labelled(client, run_id)).get(run_id)
    if found is None:
        return Sweep()
    if found.live():
        raise GateError(live_run_refusal(found))
    return _remove(Sweep(runs=[run_id]), *found.groups)


def live_run_refusal(found: RunResources) -> str:
    """The one-paragraph reason `clean --run` leaves a run alone."""
    owner = found.owner or "unknown (no owner label)"
    return (f"Run {found.run_id} is still in use, so nothing was removed: its owner {owner} is still running "
            "(or is on another host or unlabelled, which this machine cannot check). Let that gate run finish or "
            "stop it (Ctrl-C removes its stack unless it runs with --gate-keep), then run "
            f"`aidb-gate clean --run {found.run_id}` again.")


def remove_kept_runs(client) -> Sweep:
    """Remove every kept run whose owner has exited; a kept run still in use is listed in `skipped`."""
    sweep = Sweep()
    for run_id, found in group_by_run(*_labelled(client, None)).items():
        if not found.kept:
            continue
        if found.live():
            sweep.skipped.append(f"kept run {run_id} is still in use by {found.owner or 'an unknown owner'}")
            continue
        sweep.runs.append(run_id)
        _remove(sweep, *found.groups)
    return sweep


def remove_run_quietly(client, run_id: str) -> Sweep:
    """remove_run for teardown paths: never raises, reports errors in the Sweep."""
    try:
        return remove_run(client, run_id)
    except Exception as err:
        return Sweep(errors=[f"clean-up of run {run_id} failed: {err}"])
