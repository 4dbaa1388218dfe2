"""boot: the target container, started in isolation on the run's network.

Guarantees: the target runs from the image the build stage made, with the environment
rendered from the contract's templates, its HTTP port published where `core.container.reach` says (127.0.0.1 only for a local
engine), and its
logs followed into a file from the first byte. Readiness is a poll of the startup endpoint
against a deadline; a container that exits ends the wait at once. A failed boot is returned,
not raised, so the startup stage can judge and explain it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from testcontainers.core.container import DockerContainer

from aidb_gate.config import GateConfig
from aidb_gate.core.container import LogFollower, client_kw, publish, reach
from aidb_gate.core.network import RunNetwork
from aidb_gate.core.run import Run
from aidb_gate.core.steps import Pipeline, Step
from aidb_gate.core.text import clip
from aidb_gate.core.wait import HttpProbe, NotReady
from aidb_gate.pipeline import StageName
from aidb_gate.stack import STACK
from aidb_gate.stages.build import BUILD

if TYPE_CHECKING:
    from aidb_gate.core.mounts import MountPlan

TRACEBACK = re.compile(r"Traceback \(most recent call last\)")
ERROR_LINE = re.compile(r"\b(ERROR|CRITICAL|FATAL)\b")


@dataclass
class Boot:
    """A started target: where it answers, how long it took, or why it did not."""

    container: DockerContainer
    log: LogFollower
    port: int
    ready: bool
    seconds: float
    error: str = ""
    exited: bool = False
    last_status: int | None = None
    boot_log: str = ""  # the log as it stood when the service became ready (or gave up)

    @property
    def container_id(self) -> str:
        return self.container.get_container_id()

    @property
    def url(self) -> str:
        port = self.container.get_docker_client().port(self.container_id, self.port)
        return f"http://{reach().url_host()}:{port}"


def boot_target(run: Run, network: RunNetwork, image: str, cfg: GateConfig, env: dict[str, str], log_dir: Path,
                role: str = "target", hosts: dict[str, str] | None = None,
                runtime: dict[str, Any] | None = None) -> Boot:
    """Start the target; `hosts` ({alias: address}) become /etc/hosts entries for its dependencies,
    and `runtime` holds the run options its compose file gives it (mounts, limits, user, ...)."""
    _ip, attach = network.attach_kwargs(role)
    container = DockerContainer(image, env=env, labels=run.labels(role), name=run.name(role),
                                extra_hosts=hosts or {}, docker_client_kw=client_kw(), **attach, **(runtime or {}))
    publish(container, cfg.port)
    container.start()
    log = LogFollower(container.get_wrapped_container(), log_dir / f"{role}.log", run.redactor).start()
    probe = HttpProbe(cfg.port, cfg.health["startup"] or cfg.health["live"], 200, cfg.startup_timeout_s)
    begin = time.monotonic()
    boot = Boot(container, log, cfg.port, ready=False, seconds=0.0)
    try:
        probe.wait_until_ready(container)
        boot.ready = True
    except NotReady as err:
        boot.error, boot.exited = str(err), err.exited
    boot.seconds = time.monotonic() - begin
    boot.last_status = probe.last_status
    boot.boot_log = log.snapshot()
    return boot


def service_env(cfg: GateConfig, endpoints: dict[str, dict[str, str]], api_key: str) -> dict[str, str]:
    """The service's environment: its compose environment as written, or the contract's
    templates filled from the running dependencies' endpoints."""
    if cfg.compose is not None:
        return dict(cfg.compose.target.environment)
    return cfg.render_env(endpoints, api_key)


def wiring_problems(cfg: GateConfig) -> list[str]:
    """What the service's environment names that its stack does not give it: a `*_FILE` variable
    pointing into /run/secrets/ with no secret there (under a compose file, or from the templates)."""
    from aidb_gate.compose import unmounted_secret_files

    if cfg.compose is not None:
        svc = cfg.compose.target
        return unmounted_secret_files(svc.environment, svc.secrets, svc.name)
    return unmounted_secret_files(cfg.env_templates, (), "the service")


def service_files(cfg: GateConfig, endpoints: dict[str, dict[str, str]], api_key: str) -> dict[str, str]:
    """{path: secret}: the files the contract's `*_file` placeholders name (none under a compose
    file, whose own `secrets:` say what the service gets)."""
    return {} if cfg.compose is not None else cfg.secret_files(endpoints, api_key)


def secret_volumes(cfg: GateConfig, mounts: MountPlan, engine: Any, role: str, image: str,
                   files: dict[str, str] | None = None) -> dict[str, dict[str, str]] | None:
    """The service's secrets alone, as docker-py volumes (the imports check needs no data): the
    compose secrets, or the files of the contract's `*_file` placeholders."""
    compose = cfg.compose
    if compose is None:
        made = mounts.kwargs(role, (), (), files=files).get("volumes", []) if files else []
    elif compose.target.secrets:
        owner = image_owner(engine, image, compose.target.user)
        made = mounts.kwargs(role, (), compose.target.secrets, owner=owner).get("volumes", [])
    else:
        made = []
    return {host: {"bind": bind, "mode": mode} for host, bind, mode in made} or None


def runtime_options(cfg: GateConfig, mounts: MountPlan, engine: Any, role: str, image: str,
                    files: dict[str, str] | None = None) -> dict[str, Any]:
    """docker-py run options the compose file gives the service: mounts and secrets (per-run
    copies), memory and CPU limits, security options, user, read-only root, tmpfs. Without a
    compose file: the read-only secret `files` ({path: secret}) alone."""
    compose = cfg.compose
    if compose is None:
        return mounts.kwargs(role, (), (), files=files) if files else {}
    svc = compose.target
    out: dict[str, Any] = mounts.kwargs(role, svc.mounts, svc.secrets, owner=image_owner(engine, image, svc.user))
    if svc.tmpfs:
        out["tmpfs"] = {**out.get("tmpfs", {}), **svc.tmpfs}
    if svc.mem_limit:
        out["mem_limit"] = svc.mem_limit
    if svc.cpus:
        out["nano_cpus"] = int(svc.cpus * 1e9)
    if svc.security_opt:
        out["security_opt"] = list(svc.security_opt)
    if svc.user:
        out["user"] = svc.user
    if svc.read_only:
        out["read_only"] = True
    return out


def _boot(session: Pipeline) -> Boot:
    image, stack = session.target_image(), session.stack()
    env = service_env(session.cfg, stack.endpoints(), session.api_key)
    files = service_files(session.cfg, stack.endpoints(), session.api_key)
    session.progress(f"booting {image}")
    return boot_target(session.run, stack.network, image, session.cfg, env, session.log_dir, hosts=stack.hosts(),
                       runtime=runtime_options(session.cfg, session.mounts, session.connect(), "target", image, files))


#: The service booted on the run's network against the running stack.
BOOT: Step[Boot] = Step("boot", StageName.BOOT, _boot, needs=(BUILD, STACK), passed=lambda b: b.ready)


def image_owner(engine: Any, image: str, user: str = "") -> tuple[int, int] | None:
    """(uid, gid) the service runs as - compose `user`, else the image's USER - when numeric;
    compose secrets are handed to that owner so a 0400 secret stays readable to the service."""
    from aidb_gate.core import api

    if not user:
        user = (api.image_attrs(engine, image).get("Config") or {}).get("User") or "0"
    uid, _, gid = user.partition(":")
    if not uid.isdigit():
        return None
    return int(uid), int(gid) if gid.isdigit() else int(uid)


def boot_problems(log_text: str) -> list[str]:
    """Log lines that a clean boot must not print: tracebacks and ERROR/CRITICAL/FATAL lines."""
    found = []
    lines = log_text.splitlines()
    for i, line in enumerate(lines):
        if TRACEBACK.search(line):
            end = next((j for j in range(i + 1, len(lines)) if lines[j] and not lines[j].startswith((" ", "\t"))),
                       len(lines) - 1)
            found.append(f"Traceback ending in: {lines[end].strip()}")
        elif ERROR_LINE.search(line):
            found.append(clip(line.strip(), 300))
    return found
