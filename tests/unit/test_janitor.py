"""janitor and run identity: dead runs are told from live ones."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from aidb_gate.core.run import Run, owner_alive, owner_token
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


def test_other_hosts_and_odd_tokens_are_left_alone():
    assert owner_alive(f"not-{socket.gethostname()}:1:1")
    assert owner_alive("garbage")


def test_run_labels_and_secrets():
    run = Run()
    labels = run.labels("postgres")
    assert labels["aidb-gate.run"] == run.id and labels["aidb-gate.owner"].endswith(owner_token().split(":", 1)[1])
    secret = run.secret()
    assert run.redactor(f"password={secret}") == "password=***"
    assert secret != Run().secret()
    assert str(os.getpid()) in labels["aidb-gate.owner"]


def test_services_of_dead_runs_are_reaped_and_live_ones_kept(tmp_path):
    from aidb_gate.engine import reap_dead_services

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


# -- kept runs (--gate-keep): fakes for docker-py's containers, networks and volumes ------------

def dead_owner() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    token = owner_token(proc.pid)
    proc.wait()
    return token


class FakeResource:
    """A docker-py container, network or volume as the janitor sees it: labels, a name, remove()."""

    def __init__(self, name: str, labels: dict[str, str], removed: list[str]):
        self.name = self.id = name
        self.attrs = {"Labels": labels, "Names": [f"/{name}"]}
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


class FakeClient:
    """One container, network and volume per run, each labelled like Run.labels() labels them."""

    def __init__(self, runs: list[Run]):
        self.removed: list[str] = []
        made = {kind: [FakeResource(f"{run.id}-{kind}", run.labels(kind), self.removed) for run in runs]
                for kind in ("container", "network", "volume")}
        self.containers = FakeCollection(made["container"])
        self.networks = FakeCollection(made["network"])
        self.volumes = FakeCollection(made["volume"])

    def gone(self, run: Run) -> bool:
        return all(f"{run.id}-{kind}" in self.removed for kind in ("container", "network", "volume"))

    def untouched(self, run: Run) -> bool:
        return not any(name.startswith(f"{run.id}-") for name in self.removed)


def test_a_kept_run_is_labelled_as_kept_from_the_first_resource():
    assert Run(kept=True).labels("postgres")["aidb-gate.kept"] == "true"
    assert "aidb-gate.kept" not in Run().labels("postgres")


def test_the_janitor_reaps_dead_runs_but_never_a_kept_or_a_live_one():
    from aidb_gate.core.janitor import reap_dead_runs

    dead, dead_kept, live = Run(id="dead", owner=dead_owner()), Run(id="kept", owner=dead_owner(), kept=True), Run(id="live")
    client = FakeClient([dead, dead_kept, live])
    sweep = reap_dead_runs(client)
    assert client.gone(dead) and sweep.runs == ["dead"]
    assert client.untouched(dead_kept) and client.untouched(live)


def test_clean_run_removes_a_finished_kept_run_and_refuses_a_live_one():
    import pytest

    from aidb_gate.core.janitor import remove_finished_run
    from aidb_gate.errors import GateError

    kept, live = Run(id="kept", owner=dead_owner(), kept=True), Run(id="live", kept=True)
    client = FakeClient([kept, live])
    with pytest.raises(GateError) as err:
        remove_finished_run(client, "live")
    message = str(err.value)
    assert "live is still in use, so nothing was removed" in message and "\n" not in message
    assert client.removed == []
    sweep = remove_finished_run(client, "kept")
    assert client.gone(kept) and sweep.total == 3 and sweep.runs == ["kept"]
    assert remove_finished_run(client, "no-such-run").total == 0


def test_clean_kept_removes_every_finished_kept_run_and_nothing_else():
    from aidb_gate.core.janitor import remove_kept_runs

    kept = [Run(id=f"kept{i}", owner=dead_owner(), kept=True) for i in range(2)]
    live_kept, dead = Run(id="livekept", kept=True), Run(id="dead", owner=dead_owner())
    client = FakeClient([*kept, live_kept, dead])
    sweep = remove_kept_runs(client)
    assert all(client.gone(r) for r in kept) and sorted(sweep.runs) == ["kept0", "kept1"]
    assert client.untouched(live_kept) and client.untouched(dead)
    assert sweep.skipped == [f"kept run livekept is still in use by {live_kept.owner}"]


def test_a_run_is_kept_if_any_of_its_resources_says_so():
    from aidb_gate.core.janitor import group_by_run

    removed: list[str] = []
    plain, kept = Run(id="r", owner=dead_owner()), Run(id="r", owner=dead_owner(), kept=True)
    found = group_by_run([FakeResource("c", plain.labels("target"), removed)],
                         [FakeResource("n", kept.labels("network"), removed)], [])
    assert found["r"].kept and not found["r"].live()


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
    from aidb_gate.boot import BOOT, Boot
    from aidb_gate.config import load_config
    from aidb_gate.services import Dependency
    from aidb_gate.session import GateSession
    from aidb_gate.stack import Stack

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
