"""session: one gate run's state, computed once and in pipeline order.

Guarantees: each step (engine, images, build, imports, stack, boot) runs at most once per
run, is timed into the stage book, and is cleaned up by `close()`, which removes everything
labelled with the run - on success, failure and Ctrl-C alike - unless the user asked to keep
the stack. The pytest fixtures and the CLI are thin callers of this class.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aidb_gate import diagnose, services
from aidb_gate.backup import PgTarget, QdrantTarget, restore_backup, seed, take_backup, verify_backup
from aidb_gate.boot import Boot, boot_target, image_healthcheck, image_owner
from aidb_gate.build import BuildResult, build_target, find_containerfile
from aidb_gate.compose import ComposeStack, Healthcheck
from aidb_gate.config import GateConfig
from aidb_gate.core.ahead import Ahead
from aidb_gate.core.container import configure_testcontainers, host_port
from aidb_gate.core.janitor import Sweep, reap_dead_runs, remove_run_quietly
from aidb_gate.core.mounts import MountPlan
from aidb_gate.core.run import Run
from aidb_gate.engine import Engine, connect
from aidb_gate.errors import GateError
from aidb_gate.images import ImageInfo
from aidb_gate.imports import ImportReport, check_imports
from aidb_gate.keep import (
    KeptContainer,
    KeptStack,
    api_key_var,
    engine_cli,
    health_url_path,
    kept_port,
    kept_secrets_file,
    render_keep,
    secret_var,
    write_secrets_file,
)
from aidb_gate.report import StageBook
from aidb_gate.restore import Fingerprint, take_fingerprint
from aidb_gate.services import Dependency, plugin
from aidb_gate.stack import BaseImage, Stack, provision_images, start_stack


@dataclass
class BackupRun:
    """A backup of the seeded stack: where it is, what it holds, and the data it was taken from."""

    folder: Path
    manifest: dict[str, Any]
    before: Fingerprint
    after: Fingerprint
    seconds: float
    problems: list[str]
    seeded: dict[str, Any]


@dataclass
class RestoreRun:
    """The backup restored into fresh dependencies, and the service booted against them."""

    deps: dict[str, Dependency]
    timings: dict[str, float]
    fingerprint: Fingerprint
    boot: Boot


def backup_facts(backup: BackupRun, restore: RestoreRun | None) -> dict[str, dict[str, Any]]:
    """Per dependency: backup size and time, restore time, and the invariants that were checked."""
    facts: dict[str, dict[str, Any]] = {}
    pg = backup.manifest.get("postgres")
    if pg:
        facts["postgres"] = {"size_bytes": pg["size"], "backup_s": pg["duration_s"],
                             "restore_s": round(restore.timings.get("postgres", 0), 3) if restore else None,
                             "invariants": "row count and ordered content hash of every table in every schema; "
                                           "sequences; views; types; constraints; indexes; triggers; functions; "
                                           "comments; large objects"}
    q = backup.manifest.get("qdrant")
    if q:
        facts["qdrant"] = {"size_bytes": sum(c["size"] for c in q["collections"].values()), "backup_s": q["duration_s"],
                           "restore_s": round(restore.timings.get("qdrant", 0), 3) if restore else None,
                           "invariants": "collections; vector config; every point's id, payload and vector; "
                                         "sha256 against the server's checksum"}
    return facts



def compose_facts(compose: ComposeStack) -> dict[str, Any]:
    """What the reviewer must know about how the gated stack differs from the compose file's."""
    facts: dict[str, Any] = {"file": str(compose.path), "service": compose.target.name,
                             "started": ", ".join(compose.dependencies) or "(no dependencies)"}
    if compose.not_started:
        facts["not started (outside depends_on)"] = {
            name: ("named by " + ", ".join(vars_) if vars_ else "not named by the service's environment")
            for name, vars_ in compose.not_started.items()}
    replaced = compose.replaced_mounts()
    if replaced:
        facts["mounts replaced"] = replaced
    if compose.generated:
        facts["random per-run values"] = ", ".join(sorted(compose.generated))
    if compose.unset:
        facts["unset variables (empty, as compose does)"] = ", ".join(compose.unset)
    return facts



class GateSession:
    """Lazily runs the gate's pipeline for one run and remembers every result and log."""

    def __init__(self, cfg: GateConfig, progress: Callable[[str], None] | None = None, run: Run | None = None,
                 worker: str | None = None):
        self.cfg = cfg
        self.run = run or Run()
        self.run.kept = self.run.kept or cfg.keep  # labels say so from the first resource on
        if run is None and worker and os.environ.get("AIDB_GATE_RUN_ID"):
            self.run.id = f"{self.run.id}-{worker}"  # each xdist worker runs its own stack, under its own id
        self.progress = progress or (lambda _msg: None)
        # Each pytest-xdist worker runs its own stack; its logs must not overwrite another worker's.
        self.worker = worker
        self.log_dir: Path = cfg.reports_dir / "logs" / worker if worker else cfg.reports_dir / "logs"
        self.stages = StageBook()
        self.engine: Engine | None = None
        self._base: BaseImage | None = None
        self._cache: dict[str, Any] = {}
        #: The host side of compose mounts and secrets, made per run and removed by close().
        self.mounts = MountPlan(self.run, self._make_volume)
        for value in cfg.compose.generated.values() if cfg.compose else ():
            self.run.redactor.add(value)
        self.api_key = self._api_key()
        self.reaped: Sweep | None = None
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()
        self._connect_lock = threading.Lock()
        # Steps started before a test asks: the stack and imports check early, and the fresh
        # instances tests announced (see want_fresh), so a restore does not wait for a container.
        self._ahead = Ahead()
        #: Seconds of work done on the tests' behalf after the service is up (seeding, backup,
        #: restore, the restored service's boot): part of the critical path the bench reports.
        self.work: dict[str, float] = {}

    def _api_key(self) -> str:
        """The key the service accepts. Under a compose file it is whatever the file gives the
        variable the contract names for it (`AIDB_API_KEY`): its value, or the per-run content of
        the secret its `<VAR>_FILE` names; otherwise a fresh random key the gate hands over."""
        compose = self.cfg.compose
        if compose is None:
            return self.run.secret()
        env = compose.target.environment
        for var in [v for v in [api_key_var(self.cfg)] if v]:
            if env.get(var):
                self.run.redactor.add(env[var])
                return env[var]
            path = env.get(f"{var}_FILE", "")
            secret = next((s for s in compose.target.secrets if s.target == path), None)
            if secret is not None:
                return self.mounts.secret_value(secret.name)
        return self.run.secret()

    def _make_volume(self, name: str, labels: dict[str, str]) -> None:
        client = self.connect().docker_client()
        try:
            client.volumes.create(name=name, labels=labels)
        finally:
            client.close()

    def prefetch_stack(self) -> None:
        """Provision dependency images and start the stack in the background (while the target
        builds, or while pytest still collects). Errors are cached by `_once` and raised to the
        first test that asks."""
        self._ahead.run("stack", self.stack)

    def prefetch_imports(self) -> None:
        """Build the target and run the imports check in the background (beside the stack start)."""
        self._ahead.run("imports", self.imports)

    def want_fresh(self, name: str, role: str) -> None:
        """Announce that a test will ask for `fresh_dependency(name, role)`: `start_spares()` then
        starts it in the background as soon as the stack is up (it stays empty until used)."""
        if name in self._enabled_names():
            self._ahead.want(role, lambda: self._spare(name, role))

    def start_spares(self) -> None:
        self._ahead.start_wanted()

    def want_restore_targets(self) -> None:
        for name in self._restore_names():
            self.want_fresh(name, f"{name}-restored")

    def _restore_names(self) -> list[str]:
        """The dependencies whose plug-in has a data adapter (what a backup holds)."""
        return [d.name for d in self.cfg.enabled_dependencies if plugin(d.kind).DATA]

    def _enabled_names(self) -> set[str]:
        return {d.name for d in self.cfg.enabled_dependencies}

    def _spare(self, name: str, role: str) -> Dependency:
        self.stack()  # waits for the stack: the spare must not slow the dependencies tests wait on
        if self._ahead.closing.is_set():  # the run is ending (Ctrl-C, failure): start nothing new
            raise GateError("the run ended before this fresh instance was needed", stage="dependencies")
        try:
            return self._start_fresh(name, role)
        except GateError:
            raise
        except Exception as err:
            raise GateError(f"a fresh {name} ({role}) did not start: {type(err).__name__}: {err}",
                            stage="dependencies") from err

    @contextmanager
    def _stage(self, name: str):
        begin = time.monotonic()
        ok = False
        try:
            yield
            ok = True
        finally:
            self.stages.record(name, time.monotonic() - begin, ok)

    def _once(self, key: str, stage: str, make: Callable[[], Any]) -> Any:
        # One lock per step: a test waiting for a step the background prefetch is running just waits.
        with self._locks_guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._cache:
                with self._stage(stage):
                    try:
                        self._cache[key] = make()
                    except GateError as err:
                        self._cache[key] = err
                        raise
                    except Exception as err:
                        # Cached like a GateError, so a second caller gets the same answer instead of a retry
                        # that collides with half-made resources.
                        self._cache[key] = GateError(f"the {stage} step failed: {type(err).__name__}: {err}",
                                                     stage=stage)
                        raise self._cache[key] from err
        value = self._cache[key]
        if isinstance(value, GateError):
            raise value
        return value

    # -- the pipeline -------------------------------------------------------------------------

    def preflight(self) -> None:
        """Input errors that make the whole run pointless, found before anything starts."""
        if not self.cfg.image:
            assert self.cfg.target is not None
            find_containerfile(self.cfg.target, self.cfg.containerfile)

    def connect(self) -> Engine:
        with self._connect_lock:  # background steps may ask at the same moment as a test
            return self._connect()

    def _connect(self) -> Engine:
        if self.engine is None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.log_dir.glob("*.log"):  # a report must only show this run's logs
                stale.unlink()
            with self._stage("engine"):
                self.engine = connect(self.run.id)
                configure_testcontainers(self.engine.docker_host, self.engine.api_version)
                client = self.engine.docker_client()
                try:
                    self.reaped = reap_dead_runs(client, keep_run=self.run.id)
                finally:
                    client.close()
            self.progress(f"engine: {self.engine.description}; run {self.run.id}")
            for note in self.engine.notes:
                self.progress(note)
            if self.reaped and self.reaped.total:
                self.progress(f"removed {self.reaped.total} resource(s) left by dead runs")
        return self.engine

    def base(self) -> BaseImage:
        engine = self.connect()
        with self._locks_guard:  # the stack and the build ask from two threads: one BaseImage, one build
            if self._base is None:
                self._base = BaseImage(engine, self.cfg, self.log_dir, self.progress)
            return self._base

    def dependency_images(self) -> dict[str, ImageInfo]:
        return self._once("images", "images", lambda: provision_images(
            self.connect(), self.cfg, self.log_dir, self.base(), self.progress))

    def base_ref(self) -> str | None:
        """The base image for recipes and for targets that declare `ARG BASE_IMAGE`."""
        if self.cfg.image:
            return None
        return self._once("base", "images", lambda: self.base()().ref)

    def build(self) -> BuildResult:
        # Earlier steps run outside this stage's clock, so each stage's time is its own.
        engine, base_ref = self.connect(), self.base_ref()
        result = self._once("build", "build", lambda: build_target(engine, self.cfg, self.log_dir, base_ref,
                                                                 self.progress))
        if not result.ok:
            self.stages.mark_failed("build")
        return result

    def target_image(self) -> str:
        result = self.build()
        if not result.ok:
            raise GateError(
                f"The image did not build (exit {result.exit_code}), so this stage cannot run (see the build stage). "
                f"Last lines of {result.log_path}:\n{result.log_tail}",
                stage="build",
            )
        return result.ref

    def import_env(self) -> dict[str, str]:
        """The service's environment with every dependency pointing at a host that is not there."""
        if self.cfg.compose is not None:
            return dict(self.cfg.compose.target.environment)  # the imports container has no network
        fake = {d.name: {"host": f"{d.name}.invalid", "port": str(d.port), "db": d.db, "user": d.user,
                         "password": "x", "api_key": "x", "url": f"http://{d.name}.invalid:{d.port}",
                         "critical": str(d.critical).lower()} for d in self.cfg.enabled_dependencies}
        return self.cfg.render_env(fake, self.api_key)

    def imports(self) -> ImportReport:
        image = self.target_image()

        def make() -> ImportReport:
            self.progress("imports: importing every module inside the image")
            return check_imports(self.connect(), image, self.import_env(), self.run.labels("imports"),
                                 self.cfg.import_modules, self.cfg.import_interpreter, self.cfg.pip_check,
                                 volumes=self.secret_volumes("imports", image))

        report = self._once("imports", "imports", make)
        if report.error or report.failed or not report.pip_check_ok:
            self.stages.mark_failed("imports")
        return report

    def stack(self) -> Stack:
        images = self.dependency_images()
        return self._once("stack", "dependencies",
                          lambda: start_stack(self.run, self.cfg, images, self.log_dir, self.mounts, self.progress))

    def fresh_dependency(self, name: str, role: str) -> Dependency:
        """A second, empty instance of a dependency on the run's network (e.g. a restore target).

        It carries the run's labels like everything else, so `close()` removes it too.
        """
        spare = self._ahead.take(role)
        if spare is not None:
            return spare.result()
        return self._start_fresh(name, role)

    def _start_fresh(self, name: str, role: str) -> Dependency:
        images, stack = self.dependency_images(), self.stack()
        if role in stack.extra or role in stack.deps:
            raise GateError(f"A {name} instance with role {role!r} already runs in run {self.run.id}; "
                            "give each fresh instance its own role.", stage="dependencies")
        dep = services.start(self.run, stack.network, images[name], self.cfg.dependencies[name], self.log_dir,
                             role=role, mounts=self.mounts)
        stack.extra[role] = dep
        return dep

    def boot_against(self, fresh: dict[str, Dependency], role: str) -> Boot:
        """Boot another instance of the target against fresh instances of some dependencies.

        The fresh instances answer to the original names too (an /etc/hosts entry), so a service
        whose compose environment names `postgres` reaches the fresh one unchanged."""
        image, stack = self.target_image(), self.stack()
        endpoints = {**stack.endpoints(), **{n: d.endpoint() for n, d in fresh.items()}}
        env = self.target_env(endpoints)
        hosts = {**stack.hosts(), **{n: d.ip for n, d in fresh.items()}}
        return boot_target(self.run, stack.network, image, self.cfg, env, self.log_dir, role=role, hosts=hosts,
                           runtime=self.runtime(role, image))

    def target_env(self, endpoints: dict[str, dict[str, str]] | None = None) -> dict[str, str]:
        """The service's environment: its compose environment as written, or the contract's
        templates filled from the running dependencies."""
        if self.cfg.compose is not None:
            return dict(self.cfg.compose.target.environment)
        return self.cfg.render_env(self.stack().endpoints() if endpoints is None else endpoints, self.api_key)

    def secret_volumes(self, role: str, image: str) -> dict[str, dict[str, str]] | None:
        """The compose secrets alone, as docker-py volumes (the imports check needs no data)."""
        compose = self.cfg.compose
        if compose is None or not compose.target.secrets:
            return None
        owner = image_owner(self.connect(), image, compose.target.user)
        made = self.mounts.kwargs(role, (), compose.target.secrets, owner=owner).get("volumes", [])
        return {host: {"bind": bind, "mode": mode} for host, bind, mode in made}

    def runtime(self, role: str, image: str) -> dict[str, Any]:
        """docker-py run options the compose file gives the service: mounts and secrets (per-run
        copies), memory and CPU limits, security options, user, read-only root, tmpfs."""
        compose = self.cfg.compose
        if compose is None:
            return {}
        svc = compose.target
        out: dict[str, Any] = self.mounts.kwargs(role, svc.mounts, svc.secrets, owner=image_owner(self.connect(), image,
                                                                                                   svc.user))
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

    def boot(self) -> Boot:
        image, stack, env = self.target_image(), self.stack(), self.target_env()

        def make() -> Boot:
            self.progress(f"booting {image}")
            return boot_target(self.run, stack.network, image, self.cfg, env, self.log_dir, hosts=stack.hosts(),
                               runtime=self.runtime("target", image))

        boot = self._once("boot", "boot", make)
        if not boot.ready:
            self.stages.mark_failed("boot")
        return boot

    def service_healthcheck(self) -> tuple[Healthcheck | None, str]:
        """The service's own healthcheck and where it was declared: the compose file's, else the
        image's HEALTHCHECK (kept because Podman builds use the docker format)."""
        compose = self.cfg.compose
        if compose is not None and compose.target.healthcheck is not None:
            return compose.target.healthcheck, f"the healthcheck of `{compose.target.name}` in {compose.path.name}"
        declared = image_healthcheck(self.connect(), self.target_image())
        return declared, "the image's HEALTHCHECK"

    def boot_diagnosis(self) -> diagnose.Diagnosis:
        boot = self.boot()
        if "diagnosis" not in self._cache:
            stack = self.stack()
            dep_logs = {name: d.log.snapshot() for name, d in stack.deps.items()}
            provided = {name: d.endpoint() for name, d in stack.deps.items()}
            outside = self.cfg.compose.not_started if self.cfg.compose else {}
            refusals = diagnose.refusals_of({name: plugin(d.kind) for name, d in stack.deps.items()})
            self._cache["diagnosis"] = diagnose.explain_boot(self.connect(), boot, self.cfg.port, dep_logs, provided,
                                                             outside, refusals)
        return self._cache["diagnosis"]

    def service_url(self) -> str:
        boot = self.boot()
        if not boot.ready:
            raise GateError(f"The service did not become ready, so this stage cannot run: "
                            f"{self.boot_diagnosis().verdict}", stage="boot")
        return boot.url

    # -- backup and restore -------------------------------------------------------------------

    def pg_target(self, dep: Dependency) -> PgTarget:
        engine = self.connect()
        if engine.cli is None:
            raise GateError(f"Backups run `{engine.kind} exec` in the Postgres container, and `{engine.kind}` is not on PATH.",
                            stage="backup")
        user, db = dep.extra["user"], dep.extra["db"]
        dsn = (f"host={dep.host} port={dep.host_port} user={user} password={dep.secrets.get('password', '')} "
               "connect_timeout=10")
        return PgTarget(engine.cli, dep.container_id, user, db, env=engine.env(), dsn=dsn)

    @staticmethod
    def qdrant_target(dep: Dependency) -> QdrantTarget:
        from aidb_gate.services.qdrant import url

        return QdrantTarget(url(dep), dep.secrets.get("api_key"))

    def targets(self, deps: dict[str, Dependency]) -> tuple[PgTarget | None, QdrantTarget | None]:
        """The data adapters of the dependencies whose plug-in has data (Postgres, Qdrant)."""
        by_data = {plugin(d.kind).DATA: d for d in deps.values() if plugin(d.kind).DATA}
        pg = self.pg_target(by_data["postgres"]) if "postgres" in by_data else None
        q = self.qdrant_target(by_data["qdrant"]) if "qdrant" in by_data else None
        return pg, q

    def seeded(self) -> dict[str, Any]:
        """Data written through the service's API and straight into every table (once)."""
        url, stack = self.service_url(), self.stack()

        def make() -> dict[str, Any]:
            begin = time.monotonic()
            pg, _ = self.targets(stack.deps)
            data = self.cfg.data
            docs = seed.seed_via_api(url, data, self.api_key, data["count"]) if data["documents"] else []
            tables = {}
            if pg is not None:
                seed.create_probe_objects(pg)
                tables = seed.seed_every_table(pg, data["rows_per_table"])
            self.work["seed"] = time.monotonic() - begin
            return {"documents": docs, "tables": tables}

        return self._once("seeded", "backup", make)

    def backup(self) -> BackupRun:
        seeded, stack = self.seeded(), self.stack()

        def make() -> BackupRun:
            started = time.monotonic()
            pg, q = self.targets(stack.deps)
            before = take_fingerprint(pg, q)
            folder = self.cfg.reports_dir / "backup" / self.run.id
            self.progress(f"backup: {before.summary} into {folder}")
            begin = time.monotonic()
            manifest = take_backup(folder, pg, q, self.cfg.backup_commands, cwd=self.cfg.root)
            seconds = time.monotonic() - begin
            problems = verify_backup(folder, pg)
            after = take_fingerprint(pg, q)
            self.work["backup"] = time.monotonic() - started
            return BackupRun(folder, manifest, before, after, seconds, problems, seeded)

        return self._once("backup", "backup", make)

    def restore(self) -> RestoreRun:
        backup = self.backup()

        def make() -> RestoreRun:
            names = [n for n in self._restore_names() if n in self.stack().deps]
            with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
                futures = {n: pool.submit(self.fresh_dependency, n, f"{n}-restored") for n in names}
                fresh = {n: f.result() for n, f in futures.items()}
            pg, q = self.targets(fresh)
            self.progress(f"restore: into fresh {', '.join(names)}")
            begin = time.monotonic()
            timings = restore_backup(backup.folder, pg, q)
            restored = take_fingerprint(pg, q)
            self.work["restore"] = time.monotonic() - begin
            boot = self.boot_against(fresh, role="target-restored")
            self.work["restored_boot"] = boot.seconds
            return RestoreRun(fresh, timings, restored, boot)

        return self._once("restore", "restore", make)

    # -- evidence and clean-up ----------------------------------------------------------------

    def evidence(self) -> dict[str, Any]:
        """What a reviewer needs next to a failure: versions, image ids, sources, log files."""
        facts: dict[str, Any] = {"run": self.run.id}
        if self.engine:
            facts["engine"] = self.engine.description
        images = self._cache.get("images")
        if isinstance(images, dict):
            facts["images"] = {k: (f"{v.wanted} -> stood in for by {v.ref} ({v.source}, {v.image_id[:19]})" if v.wanted
                                   else f"{v.ref} ({v.source}, {v.image_id[:19]})") for k, v in images.items()}
        if self.cfg.compose is not None:
            facts["compose"] = compose_facts(self.cfg.compose)
        stack = self._cache.get("stack")
        if isinstance(stack, Stack):
            facts["dependency_ready_s"] = {n: round(d.ready_s, 3) for n, d in stack.deps.items()}
            facts["dependency kinds"] = {n: d.kind for n, d in stack.deps.items()}
        boot = self._cache.get("boot")
        if isinstance(boot, Boot):
            facts["boot_s"] = round(boot.seconds, 3)
        if self.work:
            facts["work_s"] = {k: round(v, 3) for k, v in self.work.items()}
        build = self._cache.get("build")
        if isinstance(build, BuildResult):
            how = "reused: built earlier from the same inputs" if build.reused else "prebuilt" if build.prebuilt else "built"
            if not build.ok:
                how = f"the build failed, exit {build.exit_code}"
            facts["target image"] = f"{build.ref} ({how}" + (f", {build.image_id[:19]})" if build.image_id else ")")
        backup, restore = self._cache.get("backup"), self._cache.get("restore")
        if isinstance(backup, BackupRun):
            facts["backup"] = backup_facts(backup, restore if isinstance(restore, RestoreRun) else None)
        facts["logs"] = sorted(str(p) for p in self.log_dir.glob("*.log")) if self.log_dir.exists() else []
        return facts

    def keep_instructions(self) -> str:
        """How to reach the kept stack, from what `close()` read while the engine still answered;
        asks the engine nothing (a private API service is gone by the time this is printed)."""
        kept = self._cache.get("kept")
        if isinstance(kept, KeptStack):
            return render_keep(kept)
        return f"--gate-keep: run {self.run.id} started nothing to keep."

    def _read_kept(self, engine: Engine) -> KeptStack:
        """Host ports of every kept container, read through the engine now, and the secrets
        written to a 0600 file so the printed instructions never carry them."""
        found: list[tuple[KeptContainer, dict[str, str]]] = []
        boots = [("target", self._cache.get("boot"))]
        restore = self._cache.get("restore")
        if isinstance(restore, RestoreRun):
            boots.append(("target-restored", restore.boot))
        for role, boot in boots:
            if isinstance(boot, Boot):
                found.append((kept_port(KeptContainer(role, "service", self.run.name(role)),
                                         lambda b=boot: host_port(b.container, b.port)),
                              {"AIDB_API_KEY": self.api_key}))
        stack = self._cache.get("stack")
        if isinstance(stack, Stack):
            for dep in [*stack.deps.values(), *stack.extra.values()]:
                entry = KeptContainer(dep.name, dep.config.name, self.run.name(dep.name),
                                      user=dep.extra.get("user", ""), db=dep.extra.get("db", ""))
                found.append((kept_port(entry, lambda d=dep: d.host_port),
                              {secret_var(dep.name, key): value for key, value in dep.secrets.items()}))
        secrets = {k: v for _entry, values in found for k, v in values.items()}
        kept = KeptStack(self.run.id, [entry for entry, _values in found], engine_cli(engine),
                         health_url_path(self.cfg), self.cfg.auth.get("header") or "X-API-Key",
                         api_key_var(self.cfg))
        if secrets:
            path = kept_secrets_file(self.run.id)
            try:
                write_secrets_file(path, self.run.id, secrets)
                kept.secrets_file = path
            except OSError as err:
                kept.secrets_problem = f"the secrets file {path} could not be written: {err}"
        return kept

    def close(self) -> Sweep | None:
        """Remove everything this run made (unless kept) and stop an engine service we started.

        With --gate-keep, nothing is removed, and the kept containers' host ports are read here,
        before `engine.close()` stops a private API service, so `keep_instructions()` can always
        say how to reach the stack.
        """
        # Whatever still starts in the background would otherwise appear after the sweep.
        self._ahead.close()
        if self.engine is None:
            return None
        sweep = None
        for key in ("boot", "stack"):
            value = self._cache.get(key)
            if isinstance(value, Boot):
                value.log.snapshot()
            if isinstance(value, Stack):
                for dep in [*value.deps.values(), *value.extra.values()]:
                    dep.log.snapshot()
        if self.cfg.keep:
            self._cache["kept"] = self._read_kept(self.engine)
        else:
            client = self.engine.docker_client()
            try:
                sweep = remove_run_quietly(client, self.run.id)
            finally:
                client.close()
        if not self.cfg.keep:
            self.mounts.close()
        # Containers outlive the API service, so a kept stack survives this too.
        self.engine.close()
        return sweep
