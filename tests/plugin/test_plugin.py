"""The plugin, run for real in a child pytest: clear errors, and nothing left running.

These start the child with `-p aidb_gate.plugins.gate` in a throw-away project whose configuration points
at the bundled reference AIDB, so they exercise the same code path as `pytest -m p1`.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import pytest
from children import (
    REFERENCE,
    clean_cli,
    engine_env,
    lease_expiry,
    lease_listing,
    lease_names,
    leftovers,
    podman,
    stack_of,
    unshare_works,
)

from aidb_gate.core.mounts import folder_prefix
from aidb_gate.core.run import LEASE_MARGIN_S, owner_alive

needs_podman = pytest.mark.skipif(subprocess.run(["which", "podman"], capture_output=True).returncode != 0,
                                  reason="needs Podman (make test installs it)")
#: A short lease (AIDB_GATE_LEASE_S) so a killed run is over within seconds; renewed every second.
SHORT_LEASE_S = 4


def project(pytester: pytest.Pytester, config: str, test_body: str) -> None:
    pytester.makepyprojecttoml(f"[tool.aidb-gate]\nreports_dir = \"reports\"\nsuites = false\n{config}\n")
    pytester.makepyfile(test_gate=f"import pytest\n\npytestmark = pytest.mark.p1\n\n{test_body}\n")


def run_child(pytester: pytest.Pytester, *args: str, run_id: str | None = None) -> pytest.RunResult:
    """The child pytest with the gate plugin, in pytester's folder."""
    env_run = {"AIDB_GATE_RUN_ID": run_id} if run_id else {}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env_run.items():
            mp.setenv(k, v)
        return pytester.runpytest_subprocess("-p", "aidb_gate.plugins.gate", "-p", "no:cacheprovider", *args, timeout=600)


def test_a_bad_configuration_value_is_one_clear_error(pytester):
    project(pytester, 'prot = 8091', "def test_x():\n    pass")
    result = run_child(pytester)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "unknown key `prot`. Did you mean `port`?" in err
    assert "Traceback" not in err + result.stdout.str()


@pytest.mark.parametrize("args", [(), ("-m", "p1")], ids=["after-collection", "early-start"])
def test_a_missing_containerfile_is_one_clear_error(pytester, tmp_path, args):
    """Both ways a run starts: after collection, and (with `-m p1`) before it, beside it."""
    empty = tmp_path / "service"
    empty.mkdir()
    project(pytester, f'target = "{empty}"', "def test_x(gate_build):\n    pass")
    result = run_child(pytester, *args)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"No Containerfile or Dockerfile in {empty}" in out
    assert "Traceback" not in out


@pytest.mark.skipif(subprocess.run(["which", "podman"], capture_output=True).returncode != 0,
                    reason="needs Podman (make test installs it)")
def test_a_run_leaves_no_labelled_resource_behind(pytester):
    run_id = f"selftest-{uuid.uuid4().hex[:8]}"
    project(pytester, f'target = "{REFERENCE}"\n[tool.aidb-gate.dependencies.qdrant]\nenabled = false',
            "def test_stack(gate_stack):\n    assert gate_stack.deps['postgres'].host_port > 0\n")
    result = run_child(pytester, run_id=run_id)
    result.assert_outcomes(passed=1)
    assert leftovers(run_id) == []


HOLDING_TEST = """
import time
from pathlib import Path

def test_holds_the_stack(gate_stack):
    Path({ready!r}).write_text("up")
    deadline = time.monotonic() + 300
    while not Path({release!r}).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
"""


def start_holding_child(pytester, tmp_path, name: str, prefix: tuple[str, ...] = ()
                        ) -> tuple[subprocess.Popen, Path, Path, str]:
    """A child gate run that starts its stack and holds it until `release` appears; prefix wraps its
    command (for instance in `unshare`)."""
    run_id = f"selftest-{name}-{uuid.uuid4().hex[:6]}"
    ready, release = tmp_path / f"{name}.ready", tmp_path / f"{name}.release"
    folder = tmp_path / name
    folder.mkdir()
    (folder / "pyproject.toml").write_text(
        f'[tool.aidb-gate]\nreports_dir = "reports"\ntarget = "{REFERENCE}"\n'
        "[tool.aidb-gate.dependencies.qdrant]\nenabled = false\n")
    (folder / "test_hold.py").write_text("import pytest\n\npytestmark = pytest.mark.p1\n"
                                         + HOLDING_TEST.format(ready=str(ready), release=str(release)))
    env = {**os.environ, "AIDB_GATE_RUN_ID": run_id}
    child = subprocess.Popen([*prefix, sys.executable, "-m", "pytest", "-p", "no:cacheprovider"],
                             cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             preexec_fn=interruptible)
    return child, ready, release, run_id


def interruptible() -> None:
    """In the child, before exec: SIGINT back to its default. A shell that starts a job in the
    background (`make test &`, as some CI runners do) makes it ignore SIGINT, and a process keeps
    that through exec, so Python would never turn the test's Ctrl-C into KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_ready(child: subprocess.Popen, ready: Path) -> None:
    deadline = time.monotonic() + 300
    while not ready.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ready.exists(), f"the child never reached its test: {child.communicate()[0][-3000:]}"


@pytest.mark.skipif(subprocess.run(["which", "podman"], capture_output=True).returncode != 0,
                    reason="needs Podman (make test installs it)")
def test_ctrl_c_mid_run_leaves_nothing_behind(pytester, tmp_path):
    child, ready, _release, run_id = start_holding_child(pytester, tmp_path, "interrupted")
    wait_ready(child, ready)
    assert leftovers(run_id), "the running stack should be visible before the interrupt"
    child.send_signal(signal.SIGINT)
    output = child.communicate(timeout=120)[0]
    assert child.returncode == pytest.ExitCode.INTERRUPTED, output[-3000:]
    assert leftovers(run_id) == [], output[-3000:]


def wait_until(condition, seconds: float, what: str) -> None:
    """Poll condition every half second until it holds; fail naming what never happened."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, f"{what} did not happen within {seconds:.0f} s"
        time.sleep(0.5)


def run_folders(run_id: str) -> list[Path]:
    """The host folders a run's mounts were made in (they hold its secret files)."""
    return sorted(Path(tempfile.gettempdir()).glob(folder_prefix(run_id) + "*"))


@needs_podman
def test_after_sigkill_the_next_run_removes_the_dead_runs_leftovers_and_only_those(pytester, tmp_path, monkeypatch):
    """The killed run's lease is not renewed: once it expired the next run's janitor removes what the
    run left, and the live run beside it, whose lease is renewed, keeps everything."""
    monkeypatch.setenv("AIDB_GATE_LEASE_S", str(SHORT_LEASE_S))  # the children and the next run alike
    killed, killed_ready, _, killed_id = start_holding_child(pytester, tmp_path, "killed")
    alive, alive_ready, alive_release, alive_id = start_holding_child(pytester, tmp_path, "alive")
    try:
        wait_ready(killed, killed_ready)
        wait_ready(alive, alive_ready)
        alive_stack = stack_of(alive_id)
        killed.kill()
        killed.wait()
        assert leftovers(killed_id), "SIGKILL skips clean-up, so the dead run's stack is still there"
        assert lease_expiry(killed_id) is not None, "the killed run held no lease"
        folders = run_folders(killed_id)
        assert folders, "the killed run left its mount folder (its secret files) on the host"
        alive_folders = run_folders(alive_id)

        def expired() -> bool:
            # Read again each time: a renewal the engine was still carrying out when the run died
            # lands after the kill. On the engine's clock (this host's here), over after the margin.
            expiry = lease_expiry(killed_id)
            return expiry is None or time.time() > expiry + LEASE_MARGIN_S + 1

        try:
            wait_until(expired, 120, "the killed run's lease expiring")
        except AssertionError as err:
            raise AssertionError(f"{err}; its leases now: {lease_listing(killed_id)}, now {time.time():.0f}") from None
        project(pytester, f'target = "{REFERENCE}"\n[tool.aidb-gate.dependencies.qdrant]\nenabled = false',
                "def test_engine(gate_engine):\n    assert gate_engine.kind")
        run_child(pytester).assert_outcomes(passed=1)
        assert leftovers(killed_id) == [], "the next run must remove what the killed run left"
        assert run_folders(killed_id) == [], "the killed run's secret files must go with its stack"
        assert stack_of(alive_id) == alive_stack, "the next run removed a live run's resources"
        assert run_folders(alive_id) == alive_folders, "the next run removed a live run's mount folder"
        assert lease_names(alive_id), "the live run lost its lease"
    finally:
        alive_release.write_text("go")
        output = alive.communicate(timeout=300)[0]
    assert alive.returncode == 0, output[-3000:]
    assert leftovers(alive_id) == []


def start_shared_engine(folder: Path) -> tuple[subprocess.Popen, str]:
    """One `podman system service` several runs share through DOCKER_HOST, as CI jobs in containers
    share the host's engine socket."""
    sock = folder / "engine.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"], env=engine_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"unix://{sock}"
    wait_until(lambda: sock.exists() and subprocess.run(
        [sys.executable, "-c", f"import docker; docker.DockerClient(base_url={url!r}, version='1.41').ping()"],
        capture_output=True, check=False).returncode == 0, 30, "the shared engine answering")
    return service, url


@needs_podman
@pytest.mark.skipif(not unshare_works(), reason="needs `unshare --pid --fork --mount-proc` (root, util-linux)")
def test_a_live_run_in_another_pid_namespace_is_never_taken_for_dead(pytester, tmp_path, monkeypatch):
    """A gate run in a PID namespace of its own (same hostname, its own /proc: a CI job in a container)
    shares the engine with a second run. Its owner label names a pid that this /proc shows as another
    process, so judged by /proc it would be dead; its lease, renewed in the engine, keeps it whole."""
    folder = Path(tempfile.mkdtemp(prefix="aidb-ns-"))  # short: a unix socket path has 107 bytes at most
    service, url = start_shared_engine(folder)
    monkeypatch.setenv("DOCKER_HOST", url)
    monkeypatch.setenv("AIDB_GATE_LEASE_S", str(SHORT_LEASE_S))
    # engine.py judges its API-service owner files by /proc too (not this test's subject): a folder of the
    # child's own keeps the namespaced child away from other runs' files.
    (folder / "runtime").mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(folder / "runtime"))
    child, ready, release, run_id = start_holding_child(
        pytester, tmp_path, "namespaced", prefix=("unshare", "--pid", "--fork", "--mount-proc"))
    try:
        wait_ready(child, ready)
        stack = stack_of(run_id)
        assert any(line.startswith("ps -a") for line in stack), stack
        owner = podman("ps", "-a", "--filter", f"label=aidb-gate.run={run_id}", "--format",
                       '{{index .Labels "aidb-gate.owner"}}').stdout.split()[0]
        assert not owner_alive(owner), f"the owner {owner} should look dead to this /proc (another PID namespace)"
        # Outlive one lease time: the first lease would have expired by now had it not been renewed.
        first, since = lease_names(run_id), time.monotonic()
        wait_until(lambda: time.monotonic() - since > SHORT_LEASE_S + LEASE_MARGIN_S + 1
                   and not (lease_names(run_id) & first), 60, "the namespaced run's lease being renewed")
        project(pytester, f'target = "{REFERENCE}"\n[tool.aidb-gate.dependencies.qdrant]\nenabled = false',
                "def test_engine(gate_engine):\n    assert gate_engine.kind")
        second = run_child(pytester)
        second.assert_outcomes(passed=1)
        assert stack_of(run_id) == stack, "the second run touched the live run's stack"
        assert lease_names(run_id), "the live run lost its lease"
    finally:
        release.write_text("go")
        output = child.communicate(timeout=300)[0]
        service.terminate()
        service.wait(timeout=30)
        shutil.rmtree(folder, ignore_errors=True)
    assert child.returncode == 0, output[-3000:]
    assert leftovers(run_id) == [], output[-3000:]


@needs_podman
def test_a_malformed_owner_or_lease_label_is_left_alone_with_a_warning_and_clean_still_works(pytester, monkeypatch):
    """`<thishost>:notapid:1` once made every gate start and every `clean` crash with a ValueError."""
    suffix = uuid.uuid4().hex[:6]
    bad_owner, bad_lease = f"selftest-badowner-{suffix}", f"selftest-badlease-{suffix}"
    made = [(bad_owner, f"aidb-gate.owner={socket.gethostname()}:notapid:1"), (bad_lease, "aidb-gate.lease=soon")]
    project(pytester, f'target = "{REFERENCE}"', "def test_x():\n    pass")
    # The owner label is only read for a run with no lease once it is older than the lease time.
    monkeypatch.setenv("AIDB_GATE_LEASE_S", "1")
    try:
        for run_id, label in made:
            assert podman("volume", "create", "--label", f"aidb-gate.run={run_id}", "--label", label,
                          f"{run_id}-vol").returncode == 0
        since = time.monotonic()
        wait_until(lambda: time.monotonic() - since > 1 + LEASE_MARGIN_S + 1, 30, "the volumes ageing")
        result = clean_cli(pytester.path)
        out = result.stdout + result.stderr
        assert result.returncode == 0 and "Traceback" not in out, out[-3000:]
        owner_note = (f"left alone: run {bad_owner} cannot be judged, so nothing of it was removed: it has no lease "
                      f"and its owner label aidb-gate.owner='{socket.gethostname()}:notapid:1' is not host:pid:start. "
                      f"If no gate run uses it any more, remove it with `aidb-gate clean --run {bad_owner}`.")
        assert owner_note in out, out[-3000:]
        assert (f"left alone: run {bad_lease} cannot be judged, so nothing of it was removed: its lease label "
                "aidb-gate.lease='soon' is not a number of seconds") in out, out[-3000:]
        assert out.count(f"run {bad_owner} cannot be judged") == 1, "the warning is printed once"
        assert leftovers(bad_owner) and leftovers(bad_lease)
        for run_id, _ in made:  # named by the user, as the warning says: removed
            removed = clean_cli(pytester.path, "--run", run_id)
            assert removed.returncode == 0, removed.stdout + removed.stderr
            assert leftovers(run_id) == []
    finally:
        for run_id, _ in made:
            podman("volume", "rm", "-f", f"{run_id}-vol")


def _external_containers() -> set[str]:
    """Build containers: what `podman ps --external` lists beyond Podman's own containers."""
    def ids(*flags: str) -> set[str]:
        proc = subprocess.run(["podman", "ps", "-a", "-q", "--no-trunc", *flags], capture_output=True, text=True,
                              env=engine_env(), check=False)
        return set(proc.stdout.split())

    return ids("--external") - ids()


@pytest.mark.skipif(subprocess.run(["which", "podman"], capture_output=True).returncode != 0,
                    reason="needs Podman (make test installs it)")
@pytest.mark.parametrize(("point", "args"), [
    ("building", ()), ("starting", ()), ("booting", ()), ("backup", ()), ("starting", ("-m", "p1"))],
    ids=["building", "starting", "booting", "backup", "starting-while-collecting"])
def test_ctrl_c_at_each_point_of_a_run_leaves_nothing_behind(tmp_path, point, args):
    """SIGINT while the target builds (the stack starting beside it), while the dependencies start,
    while the service boots (the restore targets starting in the background), while the backup
    runs, and (with `-m p1`) while the stack and the build start as pytest still collects: no
    labelled container, network or volume and no build container survives."""
    run_id = f"selftest-int-{point}-{'early' if args else 'late'}-{uuid.uuid4().hex[:6]}"
    folder = tmp_path / "project"
    folder.mkdir()
    context = tmp_path / "service"
    shutil.copytree(REFERENCE, context)
    # A unique file makes the build's COPY layer new, so "building" really interrupts a build.
    (context / "build_stamp.py").write_text(f"STAMP = {uuid.uuid4().hex!r}\n")
    (folder / "pyproject.toml").write_text(f'[tool.aidb-gate]\nreports_dir = "reports"\nsuites = false\n'
                                           f'target = "{context}"\nca_bundle = "auto"\n')
    # The restore test makes the run start its restore targets in the background once the stack is
    # up, so the interrupt also lands while those spares start.
    (folder / "test_run.py").write_text("import pytest\n\npytestmark = pytest.mark.p1\n\n"
                                        "def test_health(gate_url):\n    assert gate_url\n\n"
                                        "@pytest.mark.restore\ndef test_restore(gate_restore):\n    assert gate_restore\n")
    before = _external_containers()
    env = {**os.environ, "AIDB_GATE_RUN_ID": run_id, "PYTHONUNBUFFERED": "1"}  # progress lines as they happen
    child = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s", *args],
                             cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             preexec_fn=interruptible)
    seen = []
    assert child.stdout is not None
    for line in child.stdout:
        seen.append(line)
        if line.startswith("[aidb-gate] ") and line.split(" ", 2)[1].rstrip(":") == point:
            child.send_signal(signal.SIGINT)
            break
    output = "".join(seen) + child.communicate(timeout=300)[0]
    assert child.returncode == pytest.ExitCode.INTERRUPTED, output[-3000:]
    assert leftovers(run_id) == [], output[-3000:]
    # Other tests may be building at the same moment (pytest -n 2): their build containers come and
    # go, while one leaked by this interrupted build would stay. So every new one must go away.
    deadline = time.monotonic() + 180
    while (new := _external_containers() - before) and time.monotonic() < deadline:
        time.sleep(1)
    assert not new, f"build container(s) {sorted(new)} survived the interrupt"
