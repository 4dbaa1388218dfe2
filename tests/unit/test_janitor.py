"""janitor and run identity: dead runs are told from live ones."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime

import pytest

from aidb_gate.core.janitor import (
    RunResources,
    group_by_run,
    judge,
    reap_dead_runs,
    remove_finished_run,
    remove_kept_runs,
)
from aidb_gate.core.run import (
    CLOCK_SKEW_S,
    LEASE_MARGIN_S,
    EngineClock,
    Lease,
    Run,
    engine_timestamp,
    lease_seconds,
    owner_alive,
    owner_seen_alive,
    owner_token,
)
from aidb_gate.errors import EngineError, GateError
from aidb_gate.stack import STACK


def test_this_process_is_alive_and_a_finished_one_is_not():
    assert owner_alive(owner_token())
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    token = owner_token(proc.pid)
    proc.wait()
    assert not owner_alive(token)


def test_a_reused_pid_is_not_the_owner():
    host, pid, _ = owner_token().rsplit(":", 2)
    assert not owner_alive(f"{host}:{pid}:1")


@pytest.mark.parametrize("token", ["garbage", "{host}:notapid:1", "{host}:?:1", "{host}:-1:1", "{host}:\u00b2:1",
                                   "{host}:0:1", "{host}:1:", ":1:1", "not-{host}:1:1", "{host}:{pid}:?"])
def test_other_hosts_and_odd_tokens_are_left_alone_and_never_raise(token):
    """engine.py's owner files: what cannot be judged (a hidden start time, another host, a token
    that is not host:pid:start) is never taken for dead; and it is never proof of life either."""
    token = token.format(host=socket.gethostname(), pid=os.getpid())
    assert owner_alive(token)
    assert not owner_seen_alive(token)


def test_proof_of_life_needs_this_pid_with_its_start_time():
    assert owner_seen_alive(owner_token())
    assert not owner_seen_alive(dead_owner())
    host, pid, _ = owner_token().rsplit(":", 2)
    assert not owner_seen_alive(f"{host}:{pid}:1")


def test_run_labels_and_secrets():
    run = Run()
    labels = run.labels("postgres")
    assert labels["aidb-gate.run"] == run.id and labels["aidb-gate.owner"].endswith(owner_token().split(":", 1)[1])
    secret = run.secret()
    assert run.redactor(f"password={secret}") == "password=***"
    assert secret != Run().secret()
    assert str(os.getpid()) in labels["aidb-gate.owner"]


def test_services_of_dead_runs_are_reaped_and_live_ones_kept(tmp_path):
    from aidb_gate.core.engine import reap_dead_services

    bystander = subprocess.Popen(["sleep", "30"])  # not a podman process: must never be signalled
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_token = owner_token(dead.pid)
    dead.wait()
    try:
        (tmp_path / "podman-dead.owner").write_text(f"{dead_token}\n{bystander.pid}\n")
        (tmp_path / "podman-dead.sock").write_text("")
        (tmp_path / "podman-live.owner").write_text(f"{owner_token()}\n{bystander.pid}\n")
        assert reap_dead_services(tmp_path) == []
        assert not (tmp_path / "podman-dead.owner").exists() and not (tmp_path / "podman-dead.sock").exists()
        assert (tmp_path / "podman-live.owner").exists()
        assert bystander.poll() is None
    finally:
        bystander.kill()


def test_static_macs_follow_their_address():
    from aidb_gate.core.network import mac_for

    assert mac_for("10.89.3.100") == "02:42:0a:59:03:64"
    assert mac_for("10.89.3.101") != mac_for("10.89.3.100")


# -- the lease: the pure judgement ------------------------------------------------------------

NOW, MARGIN, TTL = 1_000_000.0, LEASE_MARGIN_S, 120.0


def resources(*created: float | None, leases=(), owner: str | None = "elsewhere:1:1", kept=False) -> RunResources:
    """A run as group_by_run makes it: its leases (label value, made at) and its other resources' creation times."""
    return RunResources("r", owner=owner, kept=kept, leases=list(leases), created=list(created))


def verdict(found: RunResources, seen_alive=lambda _token: False):
    return judge(found, NOW, MARGIN, TTL, seen_alive=seen_alive)


@pytest.mark.parametrize(("found", "live", "why"), [
    (resources(NOW - 3600, leases=[("120", NOW - 30)]), True, "its lease is valid for 95 s more"),
    (resources(NOW - 3600, leases=[("120", NOW - 122)]), True, "valid for 3 s more"),  # within the margin: skew
    (resources(NOW - 3600, leases=[("120", NOW - 126)]), False, "its lease expired 6 s ago"),
    (resources(NOW - 3600, leases=[("6", NOW - 12)]), False, "expired 6 s ago"),  # the lease's own time counts
    (resources(NOW - 3600, leases=[("120", NOW - 200), ("120", NOW - 10)]), True, "valid for 115 s more"),
    (resources(NOW, leases=[("released", NOW - 1), ("120", NOW - 2)]), False, "released when it ended"),
    (resources(NOW, leases=[("soon", NOW - 1)]), None, "its lease label aidb-gate.lease='soon' is not a number"),
    (resources(NOW, leases=[("inf", NOW - 1)]), None, "is not a number of seconds"),
    (resources(NOW, leases=[("0", NOW - 1)]), None, "is not a number of seconds"),
    (resources(NOW, leases=[("soon", NOW - 1), ("120", NOW - 1)]), True, "valid"),  # a valid lease beside: live
    (resources(NOW, leases=[("soon", NOW - 1), ("120", NOW - 900)]), None, "is not a number"),
    (resources(NOW, leases=[("120", None)]), None, "no creation time for its lease volume"),
    (resources(NOW - 10), True, "no lease yet and its newest resource is 10 s old"),  # a run that is starting
    (resources(NOW - 900, NOW - 100), True, "newest resource is 100 s old, under the 120 s lease time"),
    (resources(NOW - 900, NOW - 130), False, "it has no lease and its newest resource is 130 s old"),
    (resources(NOW - 900, owner=None), False, "no lease"),
    (resources(NOW - 900, None), None, "no creation time for some of its resources"),
    (resources(NOW - 900, owner="vm:notapid:1"), None, "owner label aidb-gate.owner='vm:notapid:1' is not host:pid:start"),
    (resources(NOW - 900, owner="vm:42:?"), False, "no lease"),  # a hidden start time proves nothing either way
], ids=lambda v: v if isinstance(v, str) else None)
def test_a_run_is_judged_by_its_lease_on_the_engine_clock(found, live, why):
    result = verdict(found)
    assert result.live is live and why in result.why, result


def test_an_owner_seen_alive_keeps_a_run_without_a_lease_but_never_one_whose_lease_expired():
    assert verdict(resources(NOW - 900, owner="vm:42:7"), seen_alive=lambda _t: True).live is True
    assert verdict(resources(NOW - 900, owner="vm:42:7", leases=[("120", NOW - 900)]), seen_alive=lambda _t: True).live is False


def test_the_margin_is_small_on_the_engine_clock_and_wide_on_this_hosts():
    assert EngineClock(offset=3.0).margin == LEASE_MARGIN_S
    assert EngineClock().margin == CLOCK_SKEW_S > LEASE_MARGIN_S
    assert abs(EngineClock(offset=100.0).now() - time.time() - 100.0) < 1


@pytest.mark.parametrize(("value", "seconds"), [
    (1796015064, 1796015064.0), ("2026-11-30T05:16:05Z", 1796015765.0),
    ("2026-11-30T05:16:05.501278958Z", 1796015765.501278), ("2026-11-30T05:16:05", 1796015765.0),
    ("2026-11-30T06:16:05+01:00", 1796015765.0), ("0001-01-01T00:00:00Z", None), ("", None), ("soon", None),
    (None, None), (True, None), (float("nan"), None), (0, None)])
def test_engine_timestamps(value, seconds):
    got = engine_timestamp(value)
    assert got == pytest.approx(seconds) if seconds is not None else got is None


@pytest.mark.parametrize(("text", "seconds"), [(None, 120.0), ("", 120.0), ("6", 6.0), (" 2.5 ", 2.5), ("1", 1.0)])
def test_the_lease_time_comes_from_the_environment(text, seconds):
    assert lease_seconds({} if text is None else {"AIDB_GATE_LEASE_S": text}) == seconds


@pytest.mark.parametrize("text", ["0", "-5", "0.5", "nan", "inf", "-inf", "1e9", "two minutes", "120s"])
def test_a_bad_lease_time_is_one_clear_error(text):
    with pytest.raises(GateError) as err:
        lease_seconds({"AIDB_GATE_LEASE_S": text})
    message = str(err.value)
    assert message.startswith(f"AIDB_GATE_LEASE_S={text!r} is not a lease time") and "\n" not in message


# -- fakes for docker-py's containers, networks and volumes ------------------------------------

def dead_owner() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    token = owner_token(proc.pid)
    proc.wait()
    return token


class FakeResource:
    """A docker-py container, network or volume as the janitor sees it: labels, a name, a creation
    time where the engine lists it, remove()."""

    def __init__(self, name: str, labels: dict[str, str], removed: list[str], created: float | None = None):
        self.name = self.id = name
        self.attrs = {"Labels": labels, "Names": [f"/{name}"]}
        if created is not None:
            self.attrs["CreatedAt"] = datetime.fromtimestamp(created, UTC).isoformat()
        self._removed = removed

    def kill(self):
        pass

    def remove(self, **_kw):
        self._removed.append(self.name)


class FakeCollection:
    def __init__(self, items: list[FakeResource]):
        self.items = items

    def list(self, filters=None, **_kw):
        key, _, value = filters["label"].partition("=")
        return [r for r in self.items if key in r.attrs["Labels"] and (not value or r.attrs["Labels"][key] == value)
                and r.name not in r._removed]


#: A lease made a moment ago (valid), one that expired long ago, and one released at the run's end.
VALID, EXPIRED, RELEASED_LEASE = ("120", 5.0), ("120", 3600.0), ("released", 5.0)


class FakeClient:
    """One container, network and volume per run, each labelled like Run.labels() labels them and
    made an hour ago, plus the run's lease volume (label value, made how many seconds ago), if any."""

    def __init__(self, runs: list[Run], leases: dict[str, tuple[str, float]] | None = None):
        self.removed: list[str] = []
        made = {kind: [FakeResource(f"{run.id}-{kind}", run.labels(kind), self.removed, time.time() - 3600)
                       for run in runs] for kind in ("container", "network", "volume")}
        for run_id, (value, age) in (leases or {}).items():
            run = next(r for r in runs if r.id == run_id)
            made["volume"].append(FakeResource(f"{run.id}-lease", {**run.labels("lease"), "aidb-gate.lease": value},
                                               self.removed, time.time() - age))
        self.containers = FakeCollection(made["container"])
        self.networks = FakeCollection(made["network"])
        self.volumes = FakeCollection(made["volume"])

    def gone(self, run: Run) -> bool:
        return all(f"{run.id}-{kind}" in self.removed for kind in ("container", "network", "volume"))

    def untouched(self, run: Run) -> bool:
        return not any(name.startswith(f"{run.id}-") for name in self.removed)


CLOCK = EngineClock(offset=0.0)


def test_a_kept_run_is_labelled_as_kept_from_the_first_resource():
    assert Run(kept=True).labels("postgres")["aidb-gate.kept"] == "true"
    assert "aidb-gate.kept" not in Run().labels("postgres")


def test_the_janitor_reaps_dead_runs_but_never_a_kept_or_a_live_one():
    dead, dead_kept, live = Run(id="dead"), Run(id="kept", kept=True), Run(id="live", owner=dead_owner())
    released, legacy = Run(id="released"), Run(id="legacy", owner=dead_owner())
    # The cases of the issue: owners /proc cannot see or judge, each holding a valid lease.
    other_ns = Run(id="otherns", owner=f"{socket.gethostname()}:1:1")
    hidden = Run(id="hidden", owner=f"{socket.gethostname()}:4242:?")
    client = FakeClient([dead, dead_kept, live, released, legacy, other_ns, hidden],
                        {"dead": EXPIRED, "kept": EXPIRED, "live": VALID, "released": RELEASED_LEASE,
                         "otherns": VALID, "hidden": VALID})
    sweep = reap_dead_runs(client, clock=CLOCK)
    assert sorted(sweep.runs) == ["dead", "legacy", "released"] and sweep.skipped == []
    assert client.gone(dead) and client.gone(released) and client.gone(legacy)
    assert ("dead-lease" in client.removed and client.removed[-1].endswith("-lease")) or "legacy" in client.removed[-1]
    for run in (dead_kept, live, other_ns, hidden):
        assert client.untouched(run), run.id


def test_a_run_is_reaped_only_once_its_lease_has_expired():
    run = Run(id="r")
    for age, reaped in ((1, False), (120 + LEASE_MARGIN_S - 1, False), (120 + LEASE_MARGIN_S + 1, True)):
        client = FakeClient([run], {"r": ("120", age)})
        assert reap_dead_runs(client, clock=CLOCK).runs == (["r"] if reaped else []), age


def test_the_lease_goes_last_so_a_cut_clean_up_still_says_when_the_run_ended():
    run = Run(id="r")
    client = FakeClient([run], {"r": EXPIRED})
    client.volumes.items.reverse()  # the listing puts the lease first
    reap_dead_runs(client, clock=CLOCK)
    assert client.removed[-1] == "r-lease" and client.gone(run)


def test_a_malformed_label_is_skipped_with_a_warning_and_never_raises(caplog):
    """`<thishost>:notapid:1` used to raise ValueError in reap_dead_runs, so every start crashed."""
    bad_owner = Run(id="badowner", owner=f"{socket.gethostname()}:notapid:1")
    bad_lease, dead = Run(id="badlease"), Run(id="dead")
    client = FakeClient([bad_owner, bad_lease, dead], {"badlease": ("soon", 3600), "dead": EXPIRED})
    with caplog.at_level(logging.WARNING, logger="aidb_gate.core.janitor"):
        sweep = reap_dead_runs(client, clock=CLOCK)
    assert sweep.runs == ["dead"] and client.untouched(bad_owner) and client.untouched(bad_lease)
    assert len(sweep.skipped) == 2 and all("\n" not in note for note in sweep.skipped)
    unjudged = "cannot be judged, so nothing of it was removed:"
    assert any(f"run badowner {unjudged} it has no lease and its owner label" in n and "notapid" in n
               and "`aidb-gate clean --run badowner`" in n for n in sweep.skipped), sweep.skipped
    assert any(f"run badlease {unjudged} its lease label aidb-gate.lease='soon'" in n for n in sweep.skipped)
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == sweep.skipped
    # Asked for by name, a run that cannot be judged is removed.
    assert remove_finished_run(client, "badowner", clock=CLOCK).runs == ["badowner"] and client.gone(bad_owner)


def test_clean_run_removes_a_finished_kept_run_and_refuses_a_live_one():
    kept, live, starting = Run(id="kept", kept=True), Run(id="live", kept=True), Run(id="starting", owner=dead_owner())
    client = FakeClient([kept, live], {"kept": RELEASED_LEASE, "live": VALID})
    with pytest.raises(GateError) as err:
        remove_finished_run(client, "live", clock=CLOCK)
    message = str(err.value)
    assert "live is still in use, so nothing was removed: its lease is valid for" in message and "\n" not in message
    assert "`aidb-gate clean --run live` again" in message
    assert client.removed == []
    sweep = remove_finished_run(client, "kept", clock=CLOCK)
    assert client.gone(kept) and sweep.total == 4 and sweep.runs == ["kept"]
    assert remove_finished_run(client, "no-such-run", clock=CLOCK).total == 0
    young = FakeClient([starting])
    for item in young.containers.items + young.networks.items + young.volumes.items:
        item.attrs["CreatedAt"] = datetime.fromtimestamp(time.time() - 2, UTC).isoformat()
    with pytest.raises(GateError, match="no lease yet and its newest resource is 2 s old"):
        remove_finished_run(young, "starting", clock=CLOCK)


def test_clean_kept_removes_every_finished_kept_run_and_nothing_else():
    kept = [Run(id=f"kept{i}", kept=True) for i in range(2)]
    live_kept, dead = Run(id="livekept", kept=True), Run(id="dead")
    client = FakeClient([*kept, live_kept, dead], {"kept0": EXPIRED, "kept1": RELEASED_LEASE, "livekept": VALID,
                                                   "dead": EXPIRED})
    sweep = remove_kept_runs(client, clock=CLOCK)
    assert all(client.gone(r) for r in kept) and sorted(sweep.runs) == ["kept0", "kept1"]
    assert client.untouched(live_kept) and client.untouched(dead)
    assert len(sweep.skipped) == 1 and sweep.skipped[0].startswith("kept run livekept is still in use: its lease is valid")


def test_a_run_is_kept_if_any_of_its_resources_says_so():
    removed: list[str] = []
    plain, kept = Run(id="r", owner=dead_owner()), Run(id="r", owner=dead_owner(), kept=True)
    found = group_by_run([FakeResource("c", plain.labels("target"), removed, NOW - 900)],
                         [FakeResource("n", kept.labels("network"), removed, NOW - 900)], [])
    assert found["r"].kept and judge(found["r"], NOW, MARGIN, TTL).live is False


def test_the_listing_times_are_read_where_the_engine_puts_them():
    """Podman lists a container's creation as epoch seconds, a network's and a volume's as RFC 3339."""
    removed: list[str] = []
    run = Run(id="r")
    container = FakeResource("c", run.labels("target"), removed)
    container.attrs["Created"] = 1796015064
    network = FakeResource("n", run.labels("network"), removed)
    network.attrs["Created"] = "2026-11-30T05:04:24.130889873Z"
    lease = FakeResource("l", {**run.labels("lease"), "aidb-gate.lease": "120"}, removed, 1796015100.0)
    found = group_by_run([container], [network], [lease])["r"]
    assert found.created == [1796015064.0, pytest.approx(1796014664.130889)]
    assert found.leases == [("120", 1796015100.0)] and found.volumes == [lease]


# -- the lease: renewed in the engine, robust to a failing engine -------------------------------

class FakeEngineVolumes:
    """The engine's volumes as the lease sees them, with every create and remove in order; it can
    fail the next few creations."""

    def __init__(self):
        self.volumes: dict[str, dict[str, str]] = {}
        self.log: list[str] = []
        self.fail_next = 0
        self.lock = threading.Lock()

    def client(self):
        engine = self

        class Volumes:
            def create(self, name, labels):
                with engine.lock:
                    if engine.fail_next:
                        engine.fail_next -= 1
                        raise ConnectionError("the engine did not answer")
                    engine.volumes[name] = labels
                    engine.log.append(f"create {name}")
                return type("Volume", (), {"attrs": {"CreatedAt": datetime.now(UTC).isoformat()}})()

        class Api:
            def remove_volume(self, name, force=False):
                with engine.lock:
                    engine.volumes.pop(name)
                    engine.log.append(f"remove {name}")

        return type("Client", (), {"volumes": Volumes(), "api": Api(), "close": lambda self: None})()

    def leases(self) -> dict[str, str]:
        with self.lock:
            return {name: labels["aidb-gate.lease"] for name, labels in self.volumes.items()}


def wait_for(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_the_lease_is_renewed_new_before_old_and_released_at_the_end():
    engine, run = FakeEngineVolumes(), Run(id="leased", kept=True)
    lease = Lease(run, engine.client, seconds=1.0)
    lease.start()
    first = set(engine.leases())
    assert len(first) == 1 and engine.leases()[next(iter(first))] == "1"
    wait_for(lambda: len([line for line in engine.log if line.startswith("remove")]) >= 3)
    lease.stop(release=True)
    assert not lease._thread.is_alive()
    # Every removal follows the creation of its successor: at no moment is there no lease.
    alive = 0
    for line in engine.log:
        alive += 1 if line.startswith("create") else -1
        assert alive >= 1, engine.log
    assert list(engine.leases().values()) == ["released"]
    name = next(iter(engine.leases()))
    assert name.startswith("aidb-gate-leased-lease-") and engine.volumes[name]["aidb-gate.kept"] == "true"
    assert engine.volumes[name]["aidb-gate.run"] == "leased" and engine.volumes[name]["aidb-gate.role"] == "lease"
    assert lease.clock.offset is not None and abs(lease.clock.offset) < 2


def test_a_failed_renewal_is_logged_and_tried_again_and_never_kills_the_run(caplog):
    engine = FakeEngineVolumes()
    lease = Lease(Run(id="flaky"), engine.client, seconds=1.0)
    lease.start()
    first = next(iter(engine.leases()))
    with caplog.at_level(logging.WARNING, logger="aidb_gate.core.run"):
        engine.fail_next = 3
        wait_for(lambda: first not in engine.leases())
    lease.stop()
    assert lease.failures == 3 and len(engine.leases()) == 1
    warnings = [r.getMessage() for r in caplog.records if "renewing its lease failed" in r.getMessage()]
    assert len(warnings) == 3 and "ConnectionError: the engine did not answer" in warnings[0]


def test_a_lapsed_lease_is_said_once_when_renewals_resume(caplog):
    """What a SIGSTOPped run sees when it resumes: its lease went unrenewed for longer than its time."""
    engine = FakeEngineVolumes()
    lease = Lease(Run(id="paused"), engine.client, seconds=1.0)
    lease.start()
    first = next(iter(engine.leases()))
    with caplog.at_level(logging.WARNING, logger="aidb_gate.core.run"):
        engine.fail_next = 8  # two seconds without a renewal
        wait_for(lambda: first not in engine.leases())
    lease.stop()
    lapses = [r.getMessage() for r in caplog.records if "no lease renewal for" in r.getMessage()]
    assert len(lapses) == 1 and "over its 1 s lease" in lapses[0], lapses


def test_a_run_whose_engine_refuses_its_first_lease_stops_with_one_clear_error():
    engine = FakeEngineVolumes()
    engine.fail_next = 1
    with pytest.raises(EngineError) as err:
        Lease(Run(id="nolease"), engine.client, seconds=60.0).start()
    assert "did not create the lease volume of run nolease" in str(err.value) and "\n" not in str(err.value)


def test_the_session_holds_its_lease_until_close_and_a_kept_run_releases_it(tmp_path):
    session = kept_session(tmp_path)
    engine = FakeEngineVolumes()
    session.lease = Lease(session.run, engine.client, seconds=60.0)
    session.lease.start()
    session.close()
    assert not session.lease._thread.is_alive() and list(engine.leases().values()) == ["released"]


# -- the keep instructions: every address, no secret --------------------------------------------

class FakeContainer:
    """A testcontainers container whose port can only be read while the engine answers."""

    def __init__(self, port: int, engine: FakeEngine):
        self.port, self.engine = port, engine

    def get_exposed_port(self, _port):
        if self.engine.closed:
            raise ConnectionError("the engine's API service is gone")
        return str(self.port)


class FakeLog:
    def snapshot(self):
        return ""


class FakeEngine:
    kind = "podman"
    cli_env = {"CONTAINERS_CONF": "/conf/containers.conf"}

    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


def kept_session(tmp_path):
    """A GateSession with --gate-keep whose stack and target 'run' on fake containers."""
    from aidb_gate.config import load_config
    from aidb_gate.services.lifecycle import Dependency
    from aidb_gate.session import GateSession
    from aidb_gate.stack import Stack
    from aidb_gate.stages.boot import BOOT, Boot

    cfg = load_config(tmp_path, {"keep": True})
    session = GateSession(cfg, run=Run(id="keeptest"))
    PG = {"user": "mcp", "db": "mcp"}  # what the Postgres plug-in offers
    engine = session.engine = FakeEngine()
    deps = cfg.dependencies
    stack = Stack(session.run, network=None)
    for port, (name, secrets) in enumerate([("postgres", {"password": session.run.secret()}),
                                            ("redis", {"password": session.run.secret()}),
                                            ("qdrant", {"api_key": session.run.secret()})], start=41001):
        stack.deps[name] = Dependency(name, FakeContainer(port, engine), None, deps[name], FakeLog(), 0.1,
                                      secrets=secrets, extra=PG if name == "postgres" else {})
    stack.extra["postgres-restored"] = Dependency("postgres-restored", FakeContainer(41005, engine), None,
                                                  deps["postgres"], FakeLog(), 0.1,
                                                  secrets={"password": session.run.secret()}, extra=PG)
    session.steps.set(STACK, stack)
    session.steps.set(BOOT, Boot(FakeContainer(41000, engine), FakeLog(), cfg.port, ready=True, seconds=1.0))
    return session


def test_keep_reads_every_port_before_the_engine_stops_and_prints_no_secret(tmp_path):
    session = kept_session(tmp_path)
    assert session.close() is None
    assert session.engine.closed
    text = session.keep_instructions()  # after the engine closed: asks it nothing
    secrets = [session.api_key, *(v for d in session.finished(STACK).deps.values() for v in d.secrets.values())]
    assert not any(s in text for s in secrets)
    for line in ("http://127.0.0.1:41000  (container aidb-gate-keeptest-target)",
                 'curl -H "X-API-Key: $AIDB_API_KEY" http://127.0.0.1:41000/health/ready',
                 'PGPASSWORD="$POSTGRES_PASSWORD" psql -h 127.0.0.1 -p 41001 -U mcp mcp',
                 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli -h 127.0.0.1 -p 41002 ping',
                 'curl -H "api-key: $QDRANT_API_KEY" http://127.0.0.1:41003/collections',
                 'PGPASSWORD="$POSTGRES_RESTORED_PASSWORD" psql -h 127.0.0.1 -p 41005 -U mcp mcp',
                 "CONTAINERS_CONF=/conf/containers.conf podman exec aidb-gate-keeptest-target printenv AIDB_API_KEY",
                 "aidb-gate clean --run keeptest"):
        assert line in text, text
    from aidb_gate.keep import kept_secrets_file

    env = kept_secrets_file("keeptest")
    assert f"secrets (mode 0600): {env}" in text
    assert "reports" not in str(env), "CI uploads reports/: secrets must never land there"
    assert env.stat().st_mode & 0o777 == 0o600
    content = env.read_text()
    assert all(s in content for s in secrets) and "POSTGRES_RESTORED_PASSWORD=" in content


def test_a_kept_container_without_a_port_is_named_not_fatal(tmp_path):
    session = kept_session(tmp_path)
    session.engine.closed = True  # as if every port read fails (an exited container)
    session.close()
    text = session.keep_instructions()
    assert "no published port (ConnectionError" in text and "aidb-gate clean --run keeptest" in text


def test_the_secrets_file_is_made_private_even_if_it_existed(tmp_path):
    from aidb_gate.keep import write_secrets_file

    path = tmp_path / "kept-x.env"
    path.write_text("old")
    path.chmod(0o644)
    write_secrets_file(path, "x", {"AIDB_API_KEY": "s3cret"})
    assert path.stat().st_mode & 0o777 == 0o600 and "AIDB_API_KEY=s3cret" in path.read_text()


def test_a_removed_runs_host_folders_go_and_nothing_else(tmp_path, monkeypatch):
    import tempfile

    from aidb_gate.core.mounts import folder_prefix, remove_run_folders

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    mine = tmp_path / (folder_prefix("run-a") + "x1y2z3_4")
    (mine / "files").mkdir(parents=True)
    (mine / "files" / "postgres-1-password").write_text("secret")
    longer = tmp_path / (folder_prefix("run-a-b") + "abcd1234")  # run "a-b", not run "a"
    longer.mkdir()
    target = tmp_path / "elsewhere"
    target.mkdir()
    link = tmp_path / (folder_prefix("run-a") + "linkzzzz")
    link.symlink_to(target)
    assert remove_run_folders("run-a") == [str(mine)]
    assert not mine.exists() and longer.is_dir() and link.is_symlink() and target.is_dir()
