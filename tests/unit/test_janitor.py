"""janitor and run identity: dead runs are told from live ones."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from aidb_gate.core.run import Run, owner_alive, owner_token


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
