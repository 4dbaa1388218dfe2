"""engine: discovery order and the errors a user sees when there is no engine."""

from __future__ import annotations

import re

import pytest

from aidb_gate.core import engine
from aidb_gate.errors import EngineError


def test_no_engine_anywhere_is_one_paragraph_that_says_what_to_install(monkeypatch):
    monkeypatch.setattr(engine, "candidate_hosts", lambda environ=None: [])
    monkeypatch.setattr(engine, "_cli_for", lambda kind: None)
    with pytest.raises(EngineError) as err:
        engine.connect("unit", environ={})
    text = str(err.value)
    assert text.startswith("No container engine found") and "podman" in text.lower() and "\n" not in text


def test_a_dead_docker_host_is_named_with_the_fix(monkeypatch):
    monkeypatch.setattr(engine, "_ping", lambda url, timeout=5: None)
    with pytest.raises(EngineError, match=re.escape("DOCKER_HOST is set to unix:///nowhere.sock, but no engine answers there")):
        engine.connect("unit", environ={"DOCKER_HOST": "unix:///nowhere.sock"})


def test_docker_host_comes_first(monkeypatch, tmp_path):
    sock = tmp_path / "docker.sock"
    sock.write_text("")
    monkeypatch.setattr(engine, "DOCKER_SOCKET", str(sock))
    found = engine.candidate_hosts({"DOCKER_HOST": "tcp://127.0.0.1:2375"})
    assert found[0] == ("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert found[-1] == ("Docker socket", f"unix://{sock}")


def test_the_project_containers_conf_is_applied_only_when_the_user_has_none(monkeypatch):
    monkeypatch.setattr(engine, "_cgroups_hybrid", lambda: True)
    assert engine.containers_conf_reasons({"CONTAINERS_CONF": "/mine.conf"}) == []
    reasons = engine.containers_conf_reasons({})
    if reasons:  # hosts with /etc/containers/containers.conf keep their own
        assert any("hybrid" in r for r in reasons)


def test_ping_headers_name_the_engine_and_the_api_version_clients_are_pinned_to():
    podman = engine.answer_from_ping({"Api-Version": "1.41", "Libpod-Api-Version": "4.3.1", "Server": "Libpod/4.3.1 (linux)"})
    assert podman == engine.Answer("podman", "4.3.1", "1.41")
    docker = engine.answer_from_ping({"Api-Version": "1.45", "Server": "Docker/28.2.2 (linux)"})
    assert docker == engine.Answer("docker", "28.2.2", "1.45")
    # An engine that says nothing still connects; its clients then negotiate the version.
    assert engine.answer_from_ping({}) == engine.Answer("docker", "?", None)


def test_a_run_network_takes_a_free_slash_24_of_its_own():
    """Docker grants fixed addresses only on a network created with an explicit subnet."""
    import ipaddress
    import random

    from aidb_gate.core.network import SUBNET_POOL, free_subnet

    used = [ipaddress.ip_network("10.88.0.0/16"), ipaddress.ip_network("10.213.0.0/17")]
    picks = {free_subnet(used, random.Random(seed)) for seed in range(50)}
    assert all(p.prefixlen == 24 and p.subnet_of(SUBNET_POOL) for p in picks)
    assert not any(p.overlaps(u) for p in picks for u in used)
    assert len(picks) > 10, "runs starting together should rarely pick the same subnet"


def test_no_free_subnet_is_one_clear_error():
    import ipaddress

    import pytest

    from aidb_gate.core.network import free_subnet

    with pytest.raises(RuntimeError, match="in use by another network"):
        free_subnet([ipaddress.ip_network("10.213.0.0/16")])


def test_a_one_off_container_that_never_exits_is_stopped_at_its_deadline() -> None:
    """podman-py's wait has no timeout: the gate polls, and kills the container at the deadline."""
    import pytest

    from aidb_gate.core.api import _exited
    from aidb_gate.errors import GateError

    class Stuck:
        status, attrs, killed = "running", {"State": {"Status": "running"}, "ImageName": "img"}, False

        def reload(self) -> None:
            pass

        def kill(self) -> None:
            self.killed = True

    stuck = Stuck()
    with pytest.raises(GateError, match=r"still running after 0\.3 s and was stopped"):
        _exited(stuck, 0.3)
    assert stuck.killed

    class Done(Stuck):
        status, attrs = "exited", {"State": {"Status": "exited", "ExitCode": 3}}

    assert _exited(Done(), 5) == {"StatusCode": 3}


def test_an_exec_stream_is_demultiplexed_from_any_split_of_its_bytes():
    """Frames come out whole whatever the reads return (one byte at a time included), and a
    header that breaks the format is named, never read as payload."""
    import io
    import struct

    from aidb_gate.core.api import StreamError, frames

    def frame(stream: int, data: bytes) -> bytes:
        return struct.pack(">BxxxL", stream, len(data)) + data

    body = frame(1, b"\x96" * 70_000) + frame(2, b"warning\n") + frame(1, b"") + frame(1, b"end")

    class Trickle(io.RawIOBase):
        def __init__(self, data: bytes, step: int):
            self.data, self.step = data, step

        def read(self, n: int = -1) -> bytes:
            out, self.data = self.data[: min(n, self.step)], self.data[min(n, self.step):]
            return out

    for step in (1, 7, 8, 4096, 1 << 20):
        got = list(frames(Trickle(body, step)))
        assert b"".join(d for s, d in got if s == 1) == b"\x96" * 70_000 + b"end"
        assert b"".join(d for s, d in got if s == 2) == b"warning\n"
    with pytest.raises(StreamError, match=r"malformed at byte 70008 \(header 96"):
        list(frames(io.BytesIO(frame(1, b"\x96" * 70_000) + b"\x96" * 16)))
    with pytest.raises(StreamError, match="ended inside a frame, 5 bytes short"):
        list(frames(io.BytesIO(frame(1, b"12345678")[:-5])))
    with pytest.raises(StreamError, match="malformed at byte 0"):
        list(frames(io.BytesIO(b"\x01\x00\x00")))
