"""janitor: remove what a run made, by label, and what dead runs left behind.

Guarantees: `remove_run` removes every container (with its anonymous volumes), network and
volume labelled with one run id, whatever state they are in. Whether a run is live is judged
by `judge` from what the engine lists alone - the run's lease volumes and creation times, on
the engine's clock - never from this host's /proc, so a run in another PID namespace, on
another host or behind hidepid is judged like any other. `reap_dead_runs` removes the resources
of runs that are over (their lease expired or was released, or they have no lease and nothing
younger than the lease time), so a dead run goes within the lease time plus a margin, and
never those of a live run, so gates can share an engine, nor those of a kept run
(--gate-keep), which outlives its owner on purpose. A run whose labels cannot be judged is
left alone with a warning; nothing a label says makes these functions raise.
`remove_finished_run` (`aidb-gate clean --run ID`) removes one run, kept or not, but refuses
a live one; `remove_kept_runs` (`clean --kept`) removes every kept run that is over.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from aidb_gate.core.mounts import remove_run_folders
from aidb_gate.core.run import (
    KEPT_LABEL,
    LEASE_LABEL,
    OWNER_LABEL,
    RELEASED,
    RUN_LABEL,
    EngineClock,
    engine_timestamp,
    lease_seconds,
    lease_value,
    owner_seen_alive,
    parse_owner,
)
from aidb_gate.errors import GateError

log = logging.getLogger(__name__)
# Callers print the notes of a Sweep themselves (the session's progress, `aidb-gate clean`); without a
# handler configured, Python's last-resort handler would repeat each warning on stderr.
log.addHandler(logging.NullHandler())

#: docker-py ships no type information: its client, containers, networks and volumes are `Any` here.
#: One run's (containers, networks, volumes), as the engine lists them.
Groups: TypeAlias = tuple[list[Any], list[Any], list[Any]]


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
    #: Host folders of removed runs (their mounts' per-run copies and secret files).
    folders: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.containers) + len(self.networks) + len(self.volumes)


def _labelled(client: Any, run_id: str | None) -> Groups:
    selector = f"{RUN_LABEL}={run_id}" if run_id else RUN_LABEL
    filters = {"label": selector}
    # sparse: no per-container inspect, which races with other runs removing their containers
    # (Podman answers 500, not 404, for a container that vanished in between).
    containers = client.containers.list(all=True, filters=filters, sparse=True)
    networks = client.networks.list(filters=filters)
    volumes = client.volumes.list(filters=filters)
    return containers, networks, volumes


def _remove_container(sweep: Sweep, c: Any) -> None:
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


def _remove_run(sweep: Sweep, run_id: str, groups: Groups) -> Sweep:
    """Remove one run's engine resources, then its host folders (a killed run's secret files)."""
    sweep.runs.append(run_id)
    _remove(sweep, *groups)
    sweep.folders += remove_run_folders(run_id)
    return sweep


def _remove(sweep: Sweep, containers: Iterable[Any], networks: Iterable[Any], volumes: Iterable[Any]) -> Sweep:
    # The lease goes last: a clean-up cut short still leaves a lease that says when the run ended.
    volumes = sorted(volumes, key=lambda v: LEASE_LABEL in _labels(v))
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


def _container_name(container: Any) -> str:
    names: list[str] = (container.attrs or {}).get("Names") or []
    return names[0].lstrip("/") if names else container.id[:12]


def remove_run(client: Any, run_id: str) -> Sweep:
    """Remove everything labelled with run_id."""
    return _remove(Sweep(), *_labelled(client, run_id))


def _labels(resource: Any) -> dict[str, str]:
    """A container's, network's or volume's labels, wherever the listing put them."""
    attrs = getattr(resource, "attrs", {}) or {}
    return attrs.get("Labels") or (attrs.get("Config") or {}).get("Labels") or {}


@dataclass
class RunResources:
    """Everything labelled with one run id, and what its labels and creation times say about the run."""

    run_id: str
    owner: str | None = None
    kept: bool = False
    containers: list[Any] = field(default_factory=list)
    networks: list[Any] = field(default_factory=list)
    volumes: list[Any] = field(default_factory=list)
    #: (the lease label's value, when the engine made that lease volume) for each lease volume.
    leases: list[tuple[str, float | None]] = field(default_factory=list)
    #: When the engine made each other resource (None where the listing does not say).
    created: list[float | None] = field(default_factory=list)

    @property
    def groups(self) -> Groups:
        return self.containers, self.networks, self.volumes


@dataclass(frozen=True)
class Verdict:
    """Whether a run is in use - True (live), False (over) or None (its labels cannot be judged) - and why, in words."""

    live: bool | None
    why: str


def _created(resource: Any) -> float | None:
    attrs = getattr(resource, "attrs", {}) or {}
    return engine_timestamp(attrs.get("CreatedAt") or attrs.get("Created"))


def group_by_run(containers: Iterable[Any], networks: Iterable[Any], volumes: Iterable[Any]) -> dict[str, RunResources]:
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
            if kind == "volumes" and LEASE_LABEL in labels:
                found.leases.append((labels[LEASE_LABEL], _created(res)))
            else:
                found.created.append(_created(res))
    return runs


def judge(found: RunResources, now: float, margin: float, ttl: float,
          seen_alive: Callable[[str], bool] = owner_seen_alive) -> Verdict:
    """Whether a run is live, over, or cannot be judged, at `now` on the engine's clock.

    Over: a lease of the run was released (it ended), or all its leases expired (made + their seconds
    + margin is not after now). Live: any lease is valid. A run with no lease at all (a gate from
    before leases, a `doctor` check, a lease pruned by hand) is live while any of its resources is
    younger than ttl + margin - a run that is just starting - or while its owner is seen alive in this
    /proc (proof of life only: an owner not seen proves nothing), and over after. Cannot be judged
    (None, never an exception): a lease label that is not a number of seconds or a time the engine
    does not list, with no valid lease beside it; an owner label that is not host:pid:start on a run
    with no lease.
    """
    if any(value == RELEASED for value, _ in found.leases):
        return Verdict(False, "its lease was released when it ended")
    until, problems = None, []
    for value, made in found.leases:
        seconds = lease_value(value)
        if seconds is None:
            problems.append(f"its lease label {LEASE_LABEL}={value!r} is not a number of seconds")
        elif made is None:
            problems.append("the engine lists no creation time for its lease volume")
        else:
            until = made + seconds if until is None else max(until, made + seconds)
    if until is not None and until + margin > now:
        return Verdict(True, f"its lease is valid for {until + margin - now:.0f} s more")
    if problems:
        return Verdict(None, "; ".join(problems))
    if until is not None:
        return Verdict(False, f"its lease expired {now - until:.0f} s ago")
    if found.owner is not None and parse_owner(found.owner) is None:
        return Verdict(None, f"it has no lease and its owner label {OWNER_LABEL}={found.owner!r} is not host:pid:start")
    if found.owner and seen_alive(found.owner):
        return Verdict(True, f"it has no lease, but its owner {found.owner} runs on this host")
    if not found.created or None in found.created:
        return Verdict(None, "it has no lease and the engine lists no creation time for some of its resources")
    age = now - max(t for t in found.created if t is not None)
    if age < ttl + margin:
        return Verdict(True, f"it has no lease yet and its newest resource is {max(age, 0):.0f} s old, under the "
                             f"{ttl:g} s lease time (a run that is starting)")
    return Verdict(False, f"it has no lease and its newest resource is {age:.0f} s old")


def _survey(client: Any, run_id: str | None,
            clock: EngineClock | None) -> tuple[dict[str, RunResources], Callable[[RunResources], Verdict]]:
    """The runs (one, or all) with a judge bound to one moment: taken before listing, so anything made
    meanwhile looks younger, never older."""
    clock = clock or EngineClock()
    now, ttl = clock.now(), lease_seconds()
    runs = group_by_run(*_labelled(client, run_id))
    return runs, lambda found: judge(found, now, clock.margin, ttl)


def unjudged_note(run_id: str, verdict: Verdict) -> str:
    """The warning for a run left alone because its labels cannot be judged, with what to do."""
    return (f"run {run_id} cannot be judged, so nothing of it was removed: {verdict.why}. If no gate run uses it any "
            f"more, remove it with `aidb-gate clean --run {run_id}`.")


def reap_dead_runs(client: Any, keep_run: str | None = None, clock: EngineClock | None = None) -> Sweep:
    """Remove the resources of runs that are over (see `judge`): never keep_run's, a kept run's or a
    live run's; a run that cannot be judged is left alone, with a warning logged and noted in `skipped`."""
    sweep = Sweep()
    runs, verdict_of = _survey(client, None, clock)
    for run_id, found in runs.items():
        if run_id == keep_run or found.kept:
            continue
        verdict = verdict_of(found)
        if verdict.live is None:
            note = unjudged_note(run_id, verdict)
            log.warning("%s", note)
            sweep.skipped.append(note)
            continue
        if verdict.live:
            continue
        log.info("removing resources of dead gate run %s: %s", run_id, verdict.why)
        _remove_run(sweep, run_id, found.groups)
    return sweep


def remove_finished_run(client: Any, run_id: str, clock: EngineClock | None = None) -> Sweep:
    """Remove one run, kept or not; raise a GateError (removing nothing) while it is live. A run whose
    labels cannot be judged is removed, since the user named it, with a warning logged."""
    runs, verdict_of = _survey(client, run_id, clock)
    found = runs.get(run_id)
    if found is None:
        return Sweep()
    verdict = verdict_of(found)
    if verdict.live:
        raise GateError(live_run_refusal(found, verdict))
    if verdict.live is None:
        log.warning("run %s: %s; removed as asked", run_id, verdict.why)
    return _remove_run(Sweep(), run_id, found.groups)


def live_run_refusal(found: RunResources, verdict: Verdict) -> str:
    """The one-paragraph reason `clean --run` leaves a run alone."""
    owner = "" if found.owner and found.owner in verdict.why else f" (owner {found.owner or 'unknown'})"
    return (f"Run {found.run_id} is still in use, so nothing was removed: {verdict.why}{owner}. Let that gate run "
            "finish or stop it (Ctrl-C removes its stack unless it runs with --gate-keep); a run that was killed stops "
            f"counting as live once its lease expires. Then run `aidb-gate clean --run {found.run_id}` again.")


def remove_kept_runs(client: Any, clock: EngineClock | None = None) -> Sweep:
    """Remove every kept run that is over; a kept run still in use, or one that cannot be judged, is
    listed in `skipped` with the reason."""
    sweep = Sweep()
    runs, verdict_of = _survey(client, None, clock)
    for run_id, found in runs.items():
        if not found.kept:
            continue
        verdict = verdict_of(found)
        if verdict.live:
            sweep.skipped.append(f"kept run {run_id} is still in use: {verdict.why}")
            continue
        if verdict.live is None:
            note = unjudged_note(run_id, verdict)
            log.warning("%s", note)
            sweep.skipped.append(note)
            continue
        _remove_run(sweep, run_id, found.groups)
    return sweep


def remove_run_quietly(client: Any, run_id: str) -> Sweep:
    """remove_run for teardown paths: never raises, reports errors in the Sweep."""
    try:
        return remove_run(client, run_id)
    except Exception as err:
        return Sweep(errors=[f"clean-up of run {run_id} failed: {err}"])
