"""Shared places: the runtime folder, API-service reaping, run folders, xdist merging, image clean-up.

Each rule is checked without an engine: a fake stat, a fake /proc, fake docker clients.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from aidb_gate import images
from aidb_gate import report as reporting
from aidb_gate.core import engine
from aidb_gate.core.run import Run, owner_token
from aidb_gate.errors import EngineError
from aidb_gate.pipeline import StageBook
from plugins import gate as plugin

# -- the runtime folder -------------------------------------------------------------------------


def test_the_runtime_folder_is_made_private(tmp_path):
    folder = engine.ensure_private_dir(tmp_path / "run" / "aidb-gate")
    assert folder.is_dir() and (folder.stat().st_mode & 0o777) == 0o700
    assert engine.ensure_private_dir(folder) == folder  # one's own private folder is taken as it is


def test_a_folder_of_ours_from_an_older_gate_is_made_0700(tmp_path):
    folder = tmp_path / "aidb-gate"
    folder.mkdir()
    folder.chmod(0o755)
    assert engine.ensure_private_dir(folder) == folder and (folder.stat().st_mode & 0o777) == 0o700


def test_a_planted_symlink_is_refused_and_never_followed(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (tmp_path / "aidb-gate").symlink_to(elsewhere)
    with pytest.raises(EngineError) as err:
        engine.ensure_private_dir(tmp_path / "aidb-gate")
    text = str(err.value)
    assert "is a symbolic link" in text and "XDG_RUNTIME_DIR" in text and "\n" not in text
    assert list(elsewhere.iterdir()) == []


def test_a_folder_of_another_user_is_refused(tmp_path):
    folder = tmp_path / "aidb-gate"
    folder.mkdir(mode=0o700)
    real = os.lstat(folder)
    fake = os.stat_result((real.st_mode, real.st_ino, real.st_dev, real.st_nlink, 4242, real.st_gid,
                           real.st_size, 0, 0, 0))
    with pytest.raises(EngineError, match="belongs to user id 4242, not to you"):
        engine.ensure_private_dir(folder, lstat=lambda p: fake, uid=1000)


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702])
def test_a_folder_others_can_write_is_refused(tmp_path, mode):
    folder = tmp_path / "aidb-gate"
    folder.mkdir()
    folder.chmod(mode)
    with pytest.raises(EngineError, match=f"writable by other users \\(mode {mode:o}\\)"):
        engine.ensure_private_dir(folder)


def test_a_file_in_its_place_is_refused(tmp_path):
    (tmp_path / "aidb-gate").write_text("")
    with pytest.raises(EngineError, match="is not a folder"):
        engine.ensure_private_dir(tmp_path / "aidb-gate")


def test_without_xdg_runtime_dir_each_user_has_a_folder_of_their_own(monkeypatch, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1234)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(engine.tempfile, "tempdir", None)
    assert engine.runtime_base({}) == tmp_path / "aidb-gate-1234"
    assert engine.runtime_base({"XDG_RUNTIME_DIR": "/run/user/1234"}) == Path("/run/user/1234/aidb-gate")
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert engine.runtime_base({}) == Path("/run/aidb-gate")


def test_service_files_are_made_without_following_a_planted_link(tmp_path):
    target = tmp_path / "victim"
    target.write_text("keep me")
    (tmp_path / "podman-x.log").symlink_to(target)
    with engine._open_private(tmp_path / "podman-x.log") as fh:
        fh.write(b"log")
    assert target.read_text() == "keep me" and not (tmp_path / "podman-x.log").is_symlink()
    assert (tmp_path / "podman-x.log").stat().st_mode & 0o777 == 0o600


# -- reaping dead API services --------------------------------------------------------------------


def _dead_token() -> str:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    token = owner_token(dead.pid)  # read before wait(): until then /proc still shows its start time
    dead.wait()
    assert not token.endswith(":?")
    return token


def test_a_planted_owner_file_never_gets_an_unrelated_process_signalled(tmp_path):
    sock = tmp_path / "podman-x.sock"
    # Its command line names podman, the service and even this very socket, but it is not podman.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "podman", "system",
                                  "service", "--time=0", f"unix://{sock}"])
    try:
        (tmp_path / "podman-x.owner").write_text(f"{_dead_token()}\n{bystander.pid}\n")
        assert engine.reap_dead_services(tmp_path) == []
        time.sleep(0.1)
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()


def _fake_proc(root: Path, pid: int, exe: str, args: list[str], start: str = "777") -> Path:
    base = root / str(pid)
    base.mkdir(parents=True)
    (base / "exe").symlink_to(exe)
    (base / "cmdline").write_bytes(b"\0".join(a.encode() for a in args) + b"\0")
    fields = ["S"] + ["0"] * 18 + [start, "0"]
    (base / "stat").write_text(f"{pid} (podman) " + " ".join(fields))
    return root


def test_only_the_very_service_of_that_socket_is_recognised(tmp_path):
    sock = tmp_path / "podman-r1.sock"
    args = ["podman", "system", "service", "--time=0", f"unix://{sock}"]
    proc = _fake_proc(tmp_path / "proc", 41, "/usr/bin/podman", args)
    assert engine.is_service(41, sock, "777", proc)
    assert engine.is_service(41, sock, None, proc)  # an owner file from before start times were written
    assert not engine.is_service(41, sock, "778", proc)  # the pid was reused by a later process
    assert not engine.is_service(41, tmp_path / "podman-r2.sock", "777", proc)  # another run's service
    assert not engine.is_service(42, sock, "777", proc)  # no such process here (dead, or another namespace)
    other = _fake_proc(tmp_path / "proc2", 41, "/usr/bin/python3", args)
    assert not engine.is_service(41, sock, "777", other)


def test_a_service_whose_socket_answers_is_alive(tmp_path, monkeypatch):
    (tmp_path / "podman-x.owner").write_text(f"{_dead_token()}\n999999\n1\n")
    (tmp_path / "podman-x.sock").write_text("")
    monkeypatch.setattr(engine, "_ping", lambda url, timeout=5: engine.Answer("podman", "4", "1.41"))
    assert engine.reap_dead_services(tmp_path) == []
    assert (tmp_path / "podman-x.owner").exists() and (tmp_path / "podman-x.sock").exists()


def test_the_orphaned_service_of_a_dead_owner_is_stopped(tmp_path, monkeypatch):
    (tmp_path / "podman-x.owner").write_text(f"{_dead_token()}\n4321\n777\n")
    monkeypatch.setattr(engine, "is_service", lambda pid, sock, started: (pid, sock.name, started)
                        == (4321, "podman-x.sock", "777"))
    killed = []
    monkeypatch.setattr(engine.os, "kill", lambda pid, sig: killed.append((pid, sig)))
    assert engine.reap_dead_services(tmp_path) == [4321] and killed == [(4321, engine.signal.SIGTERM)]
    assert not (tmp_path / "podman-x.owner").exists()


# -- run folders ------------------------------------------------------------------------------


def _age(folder: Path, seconds: float) -> None:
    then = time.time() - seconds
    for path in [folder, *folder.rglob("*")]:
        os.utime(path, (then, then), follow_symlinks=False)


def test_prune_removes_only_old_folders_of_runs_that_are_over(tmp_path):
    reports = tmp_path / "reports"
    old, young, live = (reporting.run_folder(reports, name) for name in ("old", "young", "live"))
    for folder in (old, young):
        (folder / "logs").mkdir(parents=True)
        (folder / "logs" / "target.log").write_text("x")
    lock = reporting.hold_run_folder(live)
    try:
        (live / "logs").mkdir()
        _age(old, 3 * 86400)
        _age(live, 3 * 86400)
        _age(young, 60)
        outside = tmp_path / "not-reports"
        outside.mkdir()
        (reports / "runs" / "link").symlink_to(outside)
        removed, left = reporting.prune_run_folders(reports, older_than_s=86400)
        assert removed == ["old"] and left == ["live: its run is still going"]
        assert young.is_dir() and live.is_dir() and outside.is_dir()
        assert reporting.prune_run_folders(reports, older_than_s=0)[0] == []  # never under MIN_PRUNE_AGE_S
    finally:
        lock.close()
    assert not reporting.run_folder_live(live)
    assert reporting.prune_run_folders(reports, older_than_s=86400)[0] == ["live"]


def test_a_session_writes_its_logs_in_its_own_run_folder(tmp_path):
    from aidb_gate.config import load_config
    from aidb_gate.session import GateSession

    (tmp_path / "svc").mkdir()
    cfg = load_config(tmp_path, {"target": str(tmp_path / "svc")}, environ={})
    a, b = GateSession(cfg, run=Run(id="run-a")), GateSession(cfg, run=Run(id="run-b"))
    assert a.log_dir == cfg.reports_dir / "runs" / "run-a" / "logs" and a.log_dir != b.log_dir


# -- xdist: the controller merges its own workers' summaries only --------------------------------


def _summary(run_id: str) -> dict:
    book = StageBook()
    book.add_test("build", "passed", 0.1)
    return reporting.summary_data(book, {"run": run_id}, {}, 0)


def test_the_controller_merges_workeroutput_and_ignores_a_foreign_summary_file(tmp_path):
    (tmp_path / "summary-gw0.json").write_text(__import__("json").dumps(_summary("someone-elses-run")))
    stash = pytest.Stash()
    config = SimpleNamespace(stash=stash, pluginmanager=SimpleNamespace(hasplugin=lambda name: name == "dsession"))
    stash[plugin.SESSION] = SimpleNamespace(cfg=SimpleNamespace(reports_dir=tmp_path))
    stash[plugin.WORKER_SUMMARIES] = {}
    for worker in ("gw0", "gw1"):
        node = SimpleNamespace(config=config, workerinput={"workerid": worker},
                               workeroutput={plugin.SUMMARY_KEY: _summary(f"mine-{worker}")})
        plugin.pytest_testnodedown(node, None)
    plugin.pytest_testnodedown(SimpleNamespace(config=config, workerinput={"workerid": "gw2"}, workeroutput={}), None)
    _stages, evidence, _verdicts = plugin.gate_view(config)
    assert evidence["run"] == "gw0: mine-gw0, gw1: mine-gw1"


def test_a_worker_sends_its_summary_and_writes_nothing_of_the_latest_run(tmp_path):
    book = StageBook()
    book.add_test("build", "passed", 0.1)
    gate = SimpleNamespace(cfg=SimpleNamespace(reports_dir=tmp_path), run=SimpleNamespace(id="r-gw0"), worker="gw0",
                           stages=book, evidence=lambda: {"run": "r-gw0"})
    stash = pytest.Stash()
    stash[plugin.SESSION], stash[plugin.VERDICTS], stash[plugin.SWITCHED_OFF] = gate, {}, {}
    config = SimpleNamespace(stash=stash, workeroutput={},
                             pluginmanager=SimpleNamespace(hasplugin=lambda name: False, get_plugin=lambda name: None))
    plugin.pytest_sessionfinish(SimpleNamespace(config=config), 0)
    assert config.workeroutput[plugin.SUMMARY_KEY]["evidence"] == {"run": "r-gw0"}
    assert (tmp_path / "runs" / "r-gw0" / "summary.json").is_file()
    assert not (tmp_path / "summary.json").exists() and not list(tmp_path.glob("summary-*.json"))


# -- clean --images ------------------------------------------------------------------------------


class FakeImage:
    def __init__(self, image_id: str, tag: str, created: float):
        self.id, self.tags, self.attrs = f"sha256:{image_id}", [tag], {"Created": created}


class FakeClient:
    def __init__(self, project_images, containers=(), announced=()):
        self.filters, self.removed = [], []
        outer = self

        class Images:
            def list(self, filters=None):
                outer.filters.append(filters)
                return list(project_images)

            def remove(self, tag, force=False):
                assert force is False
                outer.removed.append(tag)

        class Containers:
            def list(self, all=False, sparse=False, filters=None):
                return [SimpleNamespace(attrs={"ImageID": i, "Image": "x"}) for i in containers]

        class Volumes:
            def list(self, filters=None):
                assert filters == {"label": images.IMAGE_LABEL}
                return [SimpleNamespace(attrs={"Labels": {images.IMAGE_LABEL: ref}}) for ref in announced]

        self.images, self.containers, self.volumes = Images(), Containers(), Volumes()


def test_clean_images_selects_by_project_label_and_spares_what_is_in_use(tmp_path):
    repo = images.TARGET_REPO_PREFIX + "svc"
    tags = {n: f"{repo}:c-{n}" for n in range(1, 5)}
    client = FakeClient([FakeImage(f"id{n}", tags[n], float(n)) for n in range(1, 5)],
                        containers=["sha256:id2"], announced=[tags[3]])
    removed, problems, left = images.prune_target_images(SimpleNamespace(shared=client), "abc123")
    assert client.filters == [{"label": f"{images.PROJECT_LABEL}=abc123"}]
    assert removed == [tags[1]] and client.removed == [tags[1]] and problems == []
    assert sorted(left) == sorted(f"{tags[n]}: a gate run or a container uses it" for n in (2, 3))


def test_a_project_is_told_apart_by_its_path_not_its_folder_name(tmp_path):
    a, b = tmp_path / "one" / "service", tmp_path / "two" / "service"
    assert images.project_id(a) != images.project_id(b) and images.project_id(a) == images.project_id(a / ".." / "service")


def test_a_run_announces_its_image_with_its_run_labels():
    made = []
    client = SimpleNamespace(volumes=SimpleNamespace(create=lambda name, labels: made.append((name, labels))))
    run = Run(id="r1")
    images.announce_image(SimpleNamespace(shared=client), run, "localhost/aidb-gate/target-x:c-1")
    name, labels = made[0]
    assert name.startswith("aidb-gate-r1-image-")
    assert labels["aidb-gate.run"] == "r1" and labels[images.IMAGE_LABEL] == "localhost/aidb-gate/target-x:c-1"
