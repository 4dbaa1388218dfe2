"""engine: find the container engine the user already has, or start Podman's API for the run.

Guarantees: the engine is looked for in this order - `DOCKER_HOST`, the Podman socket, the
Docker socket, and finally a `podman system service` that the gate starts on a socket of its
own and stops when the run ends. That socket lives in this user's private runtime folder
(`service_dir`: mode 0700, owned by the user, never a symlink), and a killed run's service is
stopped later only when /proc proves which process it is (`reap_dead_services`). Where the
host needs Podman settings that its defaults get wrong (hybrid cgroups, a low nofile hard
limit), the project's containers.conf is applied through `CONTAINERS_CONF`; /etc is never
edited. Failure is one `EngineError` that says what to install or start.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aidb_gate.fixtures as fixtures
from aidb_gate.core.text import clip
from aidb_gate.errors import EngineError

PROJECT_CONTAINERS_CONF: Path = fixtures.CONTAINERS_CONF
PODMAN_ROOT_SOCKET = "/run/podman/podman.sock"
DOCKER_SOCKET = "/var/run/docker.sock"
#: Podman's default `nofile` ulimit; a lower hard limit makes every `podman run` fail setrlimit.
PODMAN_DEFAULT_NOFILE = 1048576
#: Only used to read `/_ping`; every later client is pinned to the version the engine states.
MIN_API_VERSION = "1.24"
#: Said by doctor and at the start of every run where `Engine.ignores_limits()`, never passed over in silence.
ROOTLESS_V1_LIMITS = ("resource limits: rootless Podman on cgroups v1 ignores memory and CPU limits (\"Resource limits "
                      "are not supported and ignored on cgroups V1 rootless systems\"), so a compose `mem_limit` or "
                      "`cpus` is not enforced and a service over its limit is not caught here; run as root, or on a "
                      "cgroups v2 host, to prove limits")


@dataclass
class Engine:
    """A reachable engine: its API address, its CLI, and the environment both need."""

    kind: str  # "podman" or "docker"
    docker_host: str
    version: str
    cli: str | None
    cli_env: dict[str, str] = field(default_factory=dict)
    #: The engine's Docker-compatible API version. Every client is pinned to it: an unpinned
    #: docker-py client asks `/version` first, which costs Podman ~0.4 s each time.
    api_version: str | None = None
    started: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)
    _shared: Any = field(default=None, repr=False)  # a docker.DockerClient (docker-py is untyped), or None
    _shared_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def description(self) -> str:
        how = "started by the gate for this run" if self.started else "already running"
        return f"{self.kind} {self.version} at {self.docker_host} ({how})"

    def env(self) -> dict[str, str]:
        """The process environment for CLI calls (builds) made against this engine."""
        return {**os.environ, **self.cli_env}

    def docker_client(self, timeout: int = 60) -> Any:  # a docker.DockerClient (docker-py is untyped)
        import docker

        return docker.DockerClient(base_url=self.docker_host, timeout=timeout, version=self.api_version)

    @property
    def shared(self) -> Any:  # a docker.DockerClient
        """One docker-py client (a connection pool) for the run's many small look-ups, shared by the
        stages' threads; closed by `close()`. Callers must not close it."""
        with self._shared_lock:
            if self._shared is None:
                self._shared = self.docker_client(timeout=600)
            return self._shared

    def podman_client(self, timeout_s: float | None = None) -> Any:
        """podman-py for inspection, logs and exec where the engine is Podman; `timeout_s` bounds
        each socket read (podman-py's default waits forever)."""
        # Any, not PodmanClient: podman-py is only partly annotated (info(), close(), Network.name are not),
        # and callers use it through the same calls as docker-py's untyped client (see api.client).
        from podman import PodmanClient

        return PodmanClient(base_url=self.docker_host, timeout=timeout_s)

    def ignores_limits(self) -> bool:
        """Whether the engine runs containers without their memory and CPU limits: rootless Podman
        on cgroups v1 (it warns and runs them anyway). False when it cannot tell."""
        if self.kind != "podman":
            return False
        try:
            client = self.podman_client(30)
            try:
                host = client.info().get("host") or {}
            finally:
                client.close()
        except Exception:
            return False
        return bool((host.get("security") or {}).get("rootless")) and host.get("cgroupVersion") == "v1"

    def close(self) -> None:
        """Stop the API service if this run started it, and remove its socket, log and owner file."""
        if self._shared is not None:
            with contextlib.suppress(Exception):
                self._shared.close()
            self._shared = None
        if self.started is not None and self.started.poll() is None:
            self.started.terminate()
            try:
                self.started.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.started.kill()
                self.started.wait()
        if self.started is not None and self.docker_host.startswith("unix://"):
            sock = Path(self.docker_host.removeprefix("unix://"))
            for path in (sock, sock.with_suffix(".log"), sock.with_suffix(".owner")):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
        self.started = None


def containers_conf_reasons(environ: Mapping[str, str] = os.environ) -> list[str]:
    """Why this host needs the project's containers.conf; empty when it does not (or the user chose)."""
    if environ.get("CONTAINERS_CONF") or Path("/etc/containers/containers.conf").exists():
        return []
    reasons = []
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < PODMAN_DEFAULT_NOFILE:
        reasons.append(f"the nofile hard limit is {hard}, below Podman's default ulimit {PODMAN_DEFAULT_NOFILE}")
    if _cgroups_hybrid():
        reasons.append("cgroups run in hybrid mode, which crun (Podman's default runtime) refuses")
    return reasons


def _cgroups_hybrid() -> bool:
    root, unified = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")
    if not unified.is_dir():
        return False
    with contextlib.suppress(OSError):
        return not (root / "cgroup.controllers").exists()
    return False


@dataclass(frozen=True)
class Answer:
    """What an engine says about itself on `/_ping`."""

    kind: str
    version: str
    api_version: str | None


def _ping(docker_host: str, timeout: int = 5) -> Answer | None:
    """Who answers at docker_host, read from the `/_ping` headers (a few ms; `/version` costs
    Podman ~0.4 s because it runs its runtime binaries), or None."""
    try:
        import docker

        api = docker.APIClient(base_url=docker_host, timeout=timeout, version=MIN_API_VERSION)
        try:
            reply = api.get(f"{api.base_url}/_ping")
        finally:
            api.close()
    except Exception:
        return None
    return answer_from_ping(reply.headers) if reply.status_code == 200 else None


def answer_from_ping(headers: Mapping[str, str]) -> Answer:
    """Podman names itself in `Libpod-Api-Version`; Docker in `Server: Docker/<version>`."""
    if headers.get("Libpod-Api-Version"):
        return Answer("podman", headers["Libpod-Api-Version"], headers.get("Api-Version"))
    server = headers.get("Server", "")
    version = server.split("/", 1)[1].split()[0] if server.lower().startswith("docker/") else "?"
    return Answer("docker", version, headers.get("Api-Version"))


def _socket_url(path: str) -> str:
    return f"unix://{path}"


def candidate_hosts(environ: Mapping[str, str] = os.environ) -> list[tuple[str, str]]:
    """(where it came from, DOCKER_HOST url) in the order the gate tries them."""
    found = []
    if environ.get("DOCKER_HOST"):
        found.append(("DOCKER_HOST", environ["DOCKER_HOST"]))
    runtime = environ.get("XDG_RUNTIME_DIR")
    podman_socks = [PODMAN_ROOT_SOCKET] if os.geteuid() == 0 else []
    if runtime:
        podman_socks.append(f"{runtime}/podman/podman.sock")
    for sock in podman_socks:
        if Path(sock).exists():
            found.append(("Podman socket", _socket_url(sock)))
    if Path(DOCKER_SOCKET).exists():
        found.append(("Docker socket", _socket_url(DOCKER_SOCKET)))
    return found


def _cli_for(kind: str) -> str | None:
    return shutil.which(kind)


def _install_hint() -> str:
    if Path("/etc/debian_version").exists():
        if os.geteuid() == 0:
            return ("Install Podman with `apt-get update && apt-get install -y podman runc iptables` "
                    "(or run `make gate`, which does it).")
        return ("Install Podman as root: `sudo apt-get install -y podman runc iptables` "
                "(or run `make gate`, which does it).")
    return (
        "Install Podman (https://podman.io/docs/installation) or Docker, and make sure `podman info` "
        "or `docker info` works for this user."
    )


def _conf_env(environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    reasons = containers_conf_reasons(environ)
    if not reasons:
        return {}, []
    note = f"applied {PROJECT_CONTAINERS_CONF} through CONTAINERS_CONF because " + " and ".join(reasons)
    return {"CONTAINERS_CONF": str(PROJECT_CONTAINERS_CONF)}, [note]


def start_podman_service(podman: str, env: dict[str, str], run_id: str,
                         deadline_s: float = 20.0) -> tuple[str, subprocess.Popen[bytes], Answer]:
    """Start `podman system service` on a socket in this user's private runtime folder (see
    `service_dir`) and wait until it answers; its owner file names this process, the service's pid
    and the service's start time, so a later run can prove which process it may stop."""
    sock_dir = service_dir()
    sock = sock_dir / f"podman-{run_id}.sock"
    with contextlib.suppress(FileNotFoundError):
        sock.unlink()
    # The service writes through a descriptor of its own; ours closes as soon as it has started.
    with _open_private(sock_dir / f"podman-{run_id}.log") as log:
        proc = subprocess.Popen(
            [podman, "system", "service", "--time=0", _socket_url(str(sock))],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # Who owns this service, so a later run can stop it if this run is killed (SIGKILL skips clean-up).
    from aidb_gate.core.run import owner_token, process_start_time

    with _open_private(sock_dir / f"podman-{run_id}.owner") as owner:
        owner.write(f"{owner_token()}\n{proc.pid}\n{process_start_time(proc.pid) or '?'}\n".encode())
    url = _socket_url(str(sock))
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            tail = clip((sock_dir / f"podman-{run_id}.log").read_text(errors="replace"), 800, tail=True)
            raise EngineError(
                f"`podman system service` exited at once with code {proc.returncode}: {tail.strip()} "
                "Check that `podman info` works as this user."
            )
        answer = _ping(url, timeout=2) if sock.exists() else None
        if answer:
            return url, proc, answer
        time.sleep(0.02)
    proc.terminate()
    raise EngineError(
        f"`podman system service` did not answer on {sock} within {deadline_s:.0f} s. "
        "Run `podman system service --time=0` by hand to see why, or set DOCKER_HOST to a running engine."
    )


def _open_private(path: Path) -> IO[bytes]:
    """A new file (replacing one of the same name) open for writing, mode 0600, never through a symlink."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    return os.fdopen(fd, "wb")


def runtime_base(environ: Mapping[str, str] = os.environ) -> Path:
    """Where this user's runtime folder lives: `$XDG_RUNTIME_DIR/aidb-gate` (a folder only this user
    can enter), `/run/aidb-gate` for root, else `<tmp>/aidb-gate-<uid>` - never a folder shared by users."""
    runtime = environ.get("XDG_RUNTIME_DIR")
    if runtime and Path(runtime).is_absolute():
        return Path(runtime) / "aidb-gate"
    if os.geteuid() == 0:
        return Path("/run/aidb-gate")
    return Path(tempfile.gettempdir()) / f"aidb-gate-{os.geteuid()}"


def service_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """This user's private runtime folder (API sockets, their logs and owner files, kept-run
    secrets), made on first use. Guarantees: what it returns is a real folder (not a symlink),
    owned by this user, writable by nobody else; anything else is an EngineError, one paragraph."""
    return ensure_private_dir(runtime_base(environ))


def ensure_private_dir(folder: Path, lstat: Callable[[Path], os.stat_result] = os.lstat, uid: int | None = None) -> Path:
    """folder, made with mode 0700 if missing (mkdir is atomic: it fails if someone made it first,
    and a symlink planted there is never followed, since lstat judges the link itself). An existing
    folder is accepted only if it is a real folder owned by uid and not group/world-writable."""
    uid = os.geteuid() if uid is None else uid
    with contextlib.suppress(FileExistsError):
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir(mode=0o700)
    try:
        st = lstat(folder)
    except OSError as err:
        raise EngineError(f"The gate's runtime folder {folder} cannot be read ({err.strerror or err}). "
                          f"{_runtime_fix(folder)}") from None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a folder"
        problem = f"is {what}"
    elif st.st_uid != uid:
        problem = f"belongs to user id {st.st_uid}, not to you (user id {uid})"
    elif st.st_mode & 0o022:
        problem = f"is writable by other users (mode {stat.S_IMODE(st.st_mode):o})"
    else:
        if stat.S_IMODE(st.st_mode) != 0o700:
            _tighten(folder, st)
        return folder
    raise EngineError(
        f"The gate's runtime folder {folder} {problem}, so it was not used: the gate keeps the sockets of the "
        f"container engine it starts and kept runs' secrets there, and another user could plant or read files in "
        f"it. {_runtime_fix(folder)}")


def _tighten(folder: Path, seen: os.stat_result) -> None:
    """Mode 0700 on a folder of ours made by an older gate (say 0755): through a descriptor opened
    without following links, and only if it is still the folder that was judged."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            now = os.fstat(fd)
            if (now.st_dev, now.st_ino, now.st_uid) == (seen.st_dev, seen.st_ino, seen.st_uid):
                os.fchmod(fd, 0o700)
        finally:
            os.close(fd)


def _runtime_fix(folder: Path) -> str:
    return (f"Remove {folder} if it is yours (the gate makes it again with mode 0700), or set XDG_RUNTIME_DIR "
            "to a folder only you can write (systemd's /run/user/<uid> is one).")


def reap_dead_services(folder: Path | None = None) -> list[int]:
    """Stop the API services of this user's runs that were killed, and remove their files.

    Guarantees: only owner files in this user's private runtime folder are read. A pid is signalled
    only when `is_service` proves it is that owner file's own service (this user's `podman system
    service` on that very socket, started at the recorded time) and the owner is provably dead: a pid
    of another process, or of another PID namespace, never is. Otherwise a service whose socket
    answers is alive, and left alone with its files (its owner may live in another PID namespace);
    the files of a service that neither answers nor runs are removed (deleting them signals nothing).
    Returns the pids signalled."""
    from aidb_gate.core.run import owner_alive

    folder = folder or service_dir()
    stopped = []
    for owner_file in folder.glob("podman-*.owner"):
        stem = owner_file.name.removesuffix(".owner")
        sock = folder / f"{stem}.sock"
        try:
            token, pid_text, *rest = owner_file.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            continue
        if owner_alive(token):
            continue
        if is_service(pid, sock, rest[0] if rest else None):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
                stopped.append(pid)
        elif sock.exists() and _ping(_socket_url(str(sock)), timeout=2):
            continue
        for suffix in (".owner", ".sock", ".log"):
            with contextlib.suppress(FileNotFoundError):
                (folder / f"{stem}{suffix}").unlink()
    return stopped


def is_service(pid: int, sock: Path, started: str | None, proc: Path = Path("/proc")) -> bool:
    """True only if this /proc shows pid as this user's `podman system service` on sock (its
    executable is podman, its arguments name exactly that socket) and, when the owner file recorded
    one, with that start time. A pid number reused by any other process, or one this /proc cannot
    read (another user's, another namespace's), is False."""
    base = proc / str(pid)
    try:
        if os.stat(base).st_uid != os.geteuid():
            return False
        exe = os.readlink(base / "exe")
        args = (base / "cmdline").read_bytes().split(b"\0")
        stat_fields = (base / "stat").read_text().rsplit(")", 1)[-1].split()
    except (OSError, ValueError):
        return False
    if not Path(exe.removesuffix(" (deleted)")).name.startswith("podman"):
        return False
    if [a.decode(errors="replace") for a in args[1:5]] != ["system", "service", "--time=0", _socket_url(str(sock))]:
        return False
    # Field 22 of /proc/<pid>/stat (the 20th after the command name): the start time, as owner_token writes it.
    return not started or started == "?" or (len(stat_fields) > 19 and stat_fields[19] == started)


def connect(run_id: str, environ: Mapping[str, str] = os.environ) -> Engine:
    """The engine for this run; starts Podman's API service when Podman is installed but idle."""
    reap_dead_services()
    conf_env, notes = _conf_env(environ)
    tried = []
    for origin, url in candidate_hosts(environ):
        answer = _ping(url)
        if answer:
            # The containers.conf note is Podman's: a Docker engine never reads it.
            return Engine(answer.kind, url, answer.version, _cli_for(answer.kind),
                          conf_env if answer.kind == "podman" else {}, api_version=answer.api_version,
                          notes=notes if answer.kind == "podman" else [])
        tried.append(f"{origin} {url} did not answer")
        if origin == "DOCKER_HOST":
            raise EngineError(
                f"DOCKER_HOST is set to {url}, but no engine answers there. Start the engine behind it "
                "(for Podman: `podman system service --time=0 " + url + " &`) or unset DOCKER_HOST."
            )
    podman = _cli_for("podman")
    if podman:
        env = {**os.environ, **conf_env}
        url, proc, answer = start_podman_service(podman, env, run_id)
        return Engine(answer.kind, url, answer.version, podman, conf_env, api_version=answer.api_version, started=proc,
                      notes=notes)
    detail = "; ".join(tried) if tried else "no DOCKER_HOST, no Podman or Docker socket, and no podman binary on PATH"
    raise EngineError(f"No container engine found ({detail}). {_install_hint()}")
