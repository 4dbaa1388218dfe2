"""run: the identity of one gate run, the labels it stamps on everything, its lease, and its secrets.

Guarantees: every container, network and volume the gate makes carries `aidb-gate.run=<id>`
and an owner label (host:pid:start time: for people reading `podman ps`, and proof of life of
a run without a lease); a run made with --gate-keep also carries `aidb-gate.kept=true`, which
the janitor never reaps. A run that
holds a `Lease` has, from before its first other resource until `Lease.stop`, at least one
lease volume in the engine that a renewal thread re-creates every quarter of the lease time:
what another run's janitor reads to tell a live run from a dead one, on the engine's clock,
whatever host or PID namespace either runs in. Secrets are random per run and registered with
the redactor the moment they are made.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aidb_gate.core.text import Redactor
from aidb_gate.errors import EngineError, GateError

log = logging.getLogger(__name__)

RUN_LABEL = "aidb-gate.run"
OWNER_LABEL = "aidb-gate.owner"
ROLE_LABEL = "aidb-gate.role"
#: Set at creation on everything of a --gate-keep run (labels cannot change later): the stack
#: outlives its owner on purpose, so only `aidb-gate clean --run ID` or `--kept` removes it.
KEPT_LABEL = "aidb-gate.kept"
#: On a lease volume only: how many seconds after the volume's creation (the engine's clock) the
#: run counts as live, or RELEASED once the run has ended (a kept run's last word).
LEASE_LABEL = "aidb-gate.lease"
RELEASED = "released"
LEASE_ROLE = "lease"
#: Overrides the lease time in seconds (the self-tests use a few seconds to see a dead run reaped). Not
#: AIDB_GATE_*: config/sources.py takes every variable with that prefix for a setting and refuses unknown ones.
LEASE_ENV = "AIDB_GATE_LEASE_S"
DEFAULT_LEASE_S = 120.0
#: Below a second the renewals (four per lease time) would only load the engine; above a day a
#: killed run's stack would linger for longer than anyone waits for it.
MIN_LEASE_S, MAX_LEASE_S = 1.0, 86400.0
#: What a lease is given beyond its time when judged on the engine's clock: its creation time is
#: listed to the second, and the judgement runs a moment after the listing.
LEASE_MARGIN_S = 5.0
#: The margin when the engine's clock is unknown and this host's clock stands in for it: hosts that
#: share a remote engine may disagree by this much.
CLOCK_SKEW_S = 60.0
#: How soon a failed renewal is tried again (at most; a quarter of the lease time if shorter).
RENEW_RETRY_S = 2.0
#: The engine-call timeout of a renewal: a hung engine must not hold the renewal (or stop()) forever.
RENEW_TIMEOUT_S = 30


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of pid (clock ticks since boot), or None if this /proc does not show it."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except (OSError, ValueError):
        return None
    # The command name may hold spaces and parentheses; the fields after the last ')' are fixed.
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def owner_token(pid: int | None = None) -> str:
    """`host:pid:start time` of pid (this process by default); `?` for a start time /proc hides."""
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start_time(pid) or '?'}"


def parse_owner(token: str) -> tuple[str, int, str] | None:
    """(host, pid, start time) of a `host:pid:start` owner token, or None when it is not one."""
    parts = token.rsplit(":", 2) if isinstance(token, str) else []
    if len(parts) != 3 or not parts[0] or not parts[2]:
        return None
    pid = parts[1]
    if not (pid.isascii() and pid.isdigit() and int(pid) > 0):
        return None
    return parts[0], int(parts[1]), parts[2]


def owner_alive(token: str) -> bool:
    """True unless the owner is provably dead as this process sees it: the token is well formed,
    names this host, shows a start time, and this /proc shows that pid gone or started at another
    time. Only sound where the owner shares this PID namespace and /proc (the API-service owner
    files of engine.py); the janitor judges runs by their lease instead."""
    owner = parse_owner(token)
    if owner is None:
        return True  # unknown format: never remove what we cannot judge
    host, pid, started = owner
    if host != socket.gethostname() or started == "?":
        return True
    return process_start_time(pid) == started


def owner_seen_alive(token: str) -> bool:
    """True only on proof of life: the owner names this host and this /proc shows its pid with its
    start time. False says nothing (another PID namespace, another host, hidepid, or dead)."""
    owner = parse_owner(token)
    if owner is None or owner[0] != socket.gethostname() or owner[2] == "?":
        return False
    return process_start_time(owner[1]) == owner[2]


# -- the lease: liveness the engine can see ------------------------------------------------------

def lease_seconds(environ: Mapping[str, str] = os.environ) -> float:
    """The lease time: AIDB_GATE_LEASE_S when set (seconds, finite, MIN_LEASE_S to MAX_LEASE_S),
    else DEFAULT_LEASE_S; a GateError that names the variable for anything else."""
    text = environ.get(LEASE_ENV, "").strip()
    if not text:
        return DEFAULT_LEASE_S
    value = lease_value(text)
    if value is None:
        raise GateError(f"{LEASE_ENV}={text!r} is not a lease time: give a number of seconds from {MIN_LEASE_S:g} "
                        f"to {MAX_LEASE_S:g} (the default is {DEFAULT_LEASE_S:g}), or unset it.")
    return value


def lease_value(text: str) -> float | None:
    """The seconds a lease label (or AIDB_GATE_LEASE_S) grants, or None unless it is a finite
    number from MIN_LEASE_S to MAX_LEASE_S (RELEASED is not a number: callers check it first)."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and MIN_LEASE_S <= value <= MAX_LEASE_S else None


def engine_timestamp(value: Any) -> float | None:
    """Seconds since the epoch of a creation time as the engine lists it (a number, or RFC 3339
    with up to nanoseconds), or None when it is missing or does not parse."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) and value > 0 else None
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        stamp = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=UTC)
    seconds = stamp.timestamp()
    return seconds if seconds > 0 else None  # Docker lists an unknown time as year 1


@dataclass(frozen=True)
class EngineClock:
    """Now on the engine's clock, from the offset between the engine's stamp on a lease it just made
    and this host's clock; with no offset, this host's clock stands in and the margin allows for
    hosts that disagree. Leases and creation times are judged on this clock, never on /proc."""

    offset: float | None = None

    def now(self) -> float:
        return time.time() + (self.offset or 0.0)

    @property
    def margin(self) -> float:
        return CLOCK_SKEW_S if self.offset is None else LEASE_MARGIN_S


class Lease:
    """A run's claim, kept in the engine, that it is alive.

    Guarantees: after `start()` and until `stop()`, at least one volume labelled with the run and
    `aidb-gate.lease=<seconds>` exists, the newest made at most a quarter of the lease time ago while
    the engine answers (a new one is made before the old is removed). A failed renewal is logged and
    tried again within RENEW_RETRY_S; it never raises into the run. `stop(release=True)` leaves one
    RELEASED lease, which says the run is over at once.
    """

    def __init__(self, run: Run, client: Callable[[], Any], seconds: float):
        self.run, self.seconds = run, seconds
        self.interval = seconds / 4
        self.clock = EngineClock()
        self._client = client
        self._held: list[str] = []  # this run's lease volumes still to remove, newest first
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one renewal at a time: the thread's, or stop()'s release
        self._thread: threading.Thread | None = None
        #: Renewals that failed (each was logged and tried again).
        self.failures = 0

    def start(self) -> None:
        """Make the first lease (an EngineError if the engine refuses) and renew it in a daemon thread."""
        try:
            self.renew()
        except Exception as err:
            raise EngineError(
                f"The engine did not create the lease volume of run {self.run.id} ({type(err).__name__}: {err}); "
                "without it another gate run could take this run for dead and remove its containers. Check that "
                "`podman volume create` works for this user, then run the gate again.") from err
        self._thread = threading.Thread(target=self._keep, name=f"aidb-gate-lease-{self.run.id}", daemon=True)
        self._thread.start()

    def renew(self) -> None:
        """Make a new lease volume, then remove the older ones (one that resists is tried next time)."""
        with self._lock:
            self._replace(f"{self.seconds:g}")

    def stop(self, release: bool = False) -> None:
        """Stop renewing (after a renewal under way). With release, the run is over for every janitor
        at once (a kept run: `clean --run` needs no wait); without, the lease volumes stay for the
        run's own clean-up, which removes everything labelled with the run. Never raises."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=RENEW_TIMEOUT_S * 2)
        if not release:
            return
        with self._lock:
            try:
                self._replace(RELEASED)
            except Exception as err:
                log.warning("run %s: its lease could not be released (%s: %s); it expires within %g s, and "
                            "`aidb-gate clean --run %s` works from then on", self.run.id, type(err).__name__, err,
                            self.seconds, self.run.id)

    def _replace(self, value: str) -> None:
        name = f"aidb-gate-{self.run.id}-lease-{uuid.uuid4().hex[:8]}"
        client = self._client()
        try:
            volume = client.volumes.create(name=name, labels={**self.run.labels(LEASE_ROLE), LEASE_LABEL: value})
            stamped = engine_timestamp((volume.attrs or {}).get("CreatedAt"))
            if stamped is not None:
                # The stamp may be cut to the second: the engine's now comes out up to a second early,
                # which only makes other runs' leases look younger.
                self.clock = EngineClock(stamped - time.time())
            kept = []
            for old in self._held:
                try:
                    client.api.remove_volume(old, force=True)
                except Exception as err:
                    if "no such" not in str(err).lower() and "404" not in str(err):
                        kept.append(old)
            self._held = [name, *kept]
        finally:
            with contextlib.suppress(Exception):
                client.close()

    def _keep(self) -> None:
        wait, renewed, lapsed = self.interval, time.monotonic(), False
        while not self._stop.wait(wait):
            # SIGSTOP and a long engine outage both show up as a gap between renewals: said once per lapse.
            gap = time.monotonic() - renewed
            if gap > self.seconds and not lapsed:
                lapsed = True
                log.warning("run %s: no lease renewal for %.0f s, over its %g s lease; another gate run may have "
                            "removed its containers meanwhile", self.run.id, gap, self.seconds)
            try:
                self.renew()
            except Exception as err:
                self.failures += 1
                wait = min(self.interval, RENEW_RETRY_S)
                log.warning("run %s: renewing its lease failed (%s: %s); trying again in %.1f s", self.run.id,
                            type(err).__name__, err, wait)
            else:
                wait, renewed, lapsed = self.interval, time.monotonic(), False


@dataclass
class Run:
    """One gate run: its id, its owner, and the secrets it made."""

    # AIDB_GATE_RUN_ID lets a caller (CI, a self-test) name the run it will look for afterwards.
    id: str = field(default_factory=lambda: os.environ.get("AIDB_GATE_RUN_ID")
                    or time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6])
    owner: str = field(default_factory=owner_token)
    redactor: Redactor = field(default_factory=Redactor)
    #: The user asked to keep the stack (--gate-keep): everything is labelled as kept.
    kept: bool = False

    def labels(self, role: str) -> dict[str, str]:
        labels = {RUN_LABEL: self.id, OWNER_LABEL: self.owner, ROLE_LABEL: role}
        if self.kept:
            labels[KEPT_LABEL] = "true"
        return labels

    def name(self, role: str) -> str:
        """A container or network name unique to this run, readable in `podman ps`."""
        return f"aidb-gate-{self.id}-{role}"

    def secret(self, nbytes: int = 18) -> str:
        value = secrets.token_urlsafe(nbytes).replace("-", "x").replace("_", "y")
        self.redactor.add(value)
        return value
