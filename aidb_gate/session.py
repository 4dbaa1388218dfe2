"""session: one gate run - a step runner over the stage modules' steps, and the run's clean-up.

Guarantees: each step (images, build, imports, stack, boot, seeding, backup, restore, ...) is
defined in its stage's module and runs at most once per run through `core.steps`, timed into
the stage book; the session holds only what every step shares (configuration, run identity,
engine, mounts, API key, work started ahead of the tests) and `close()`, which removes everything
labelled with the run - on success, failure and Ctrl-C alike - unless the user asked to keep the
stack. From `connect()` to `close()` the run holds a lease in the engine (made before anything
else of the run, before the janitor looks at other runs), so no other gate run takes it for dead;
a kept run's lease is released at `close()`. The pytest fixtures and the CLI are thin callers of
this class.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from aidb_gate.backup import PgTarget, QdrantTarget
from aidb_gate.backup.targets import data_targets, pg_target, qdrant_target
from aidb_gate.compose import Healthcheck
from aidb_gate.config import GateConfig
from aidb_gate.core.ahead import Ahead
from aidb_gate.core.container import configure_testcontainers
from aidb_gate.core.engine import ROOTLESS_V1_LIMITS, Engine, connect
from aidb_gate.core.firewall import host_leftovers
from aidb_gate.core.janitor import Sweep, reap_dead_runs, remove_run_quietly
from aidb_gate.core.mounts import MountPlan
from aidb_gate.core.run import RENEW_TIMEOUT_S, Lease, Run, lease_seconds
from aidb_gate.core.steps import Step, StepRunner
from aidb_gate.errors import GateError
from aidb_gate.images import ImageInfo
from aidb_gate.keep import KeptStack, api_key_var, read_kept, render_keep
from aidb_gate.pipeline import StageBook, StageName
from aidb_gate.report import run_folder
from aidb_gate.services import lifecycle, plugin
from aidb_gate.services.lifecycle import Dependency
from aidb_gate.stack import BASE, IMAGES, STACK, BaseImage, Stack
from aidb_gate.stages import diagnose
from aidb_gate.stages.backup import BACKUP, SEEDED, BackupRun, backup_facts
from aidb_gate.stages.boot import BOOT, Boot, boot_target, runtime_options, service_env, service_files
from aidb_gate.stages.build import BUILD, BuildResult, find_containerfile
from aidb_gate.stages.health import declared_healthcheck
from aidb_gate.stages.imports import IMPORTS, ImportReport
from aidb_gate.stages.restore import RESTORE, RestoreRun

T = TypeVar("T")

__all__ = ["BackupRun", "GateSession", "RestoreRun"]


class GateSession:
    """Runs the gate's steps for one run, each once, and cleans up after it."""

    def __init__(self, cfg: GateConfig, progress: Callable[[str], None] | None = None, run: Run | None = None,
                 worker: str | None = None):
        self.cfg = cfg
        self.run = run or Run()
        self.run.kept = self.run.kept or cfg.keep  # labels say so from the first resource on
        if run is None and worker and os.environ.get("AIDB_GATE_RUN_ID"):
            self.run.id = f"{self.run.id}-{worker}"  # each xdist worker runs its own stack, under its own id
        self.progress = progress or (lambda _msg: None)
        self.worker = worker
        # In the run's own folder (each xdist worker is a run of its own): no other run writes or
        # deletes there, so concurrent runs sharing reports/ keep each other's logs.
        self.log_dir: Path = run_folder(cfg.reports_dir, self.run.id) / "logs"
        self.stages = StageBook()
        self.engine: Engine | None = None
        self._base: BaseImage | None = None
        self.steps = StepRunner(self.stages)
        self._kept: KeptStack | None = None
        #: The host side of compose mounts and secrets, made per run and removed by close().
        self.mounts = MountPlan(self.run, self._make_volume)
        for value in cfg.compose.secret_values() if cfg.compose else ():
            self.run.redactor.add(value)
        self.api_key = self._api_key()
        self.reaped: Sweep | None = None
        #: This run's claim to be alive, renewed from connect() to close().
        self.lease: Lease | None = None
        self._base_lock = threading.Lock()
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
        builds, or while pytest still collects). Errors are kept by the step runner and raised to
        the first test that asks."""
        self._ahead.run("stack", self.stack)

    def prefetch_imports(self) -> None:
        """Build the target and run the imports check in the background (beside the stack start)."""
        self._ahead.run("imports", self.imports)

    def want_fresh(self, name: str, role: str) -> None:
        """Announce that a test will ask for `fresh_dependency(name, role)`: `start_spares()` then
        starts it in the background as soon as the stack is up (it stays empty until used)."""
        if name in {d.name for d in self.cfg.enabled_dependencies}:
            self._ahead.want(role, lambda: self._spare(name, role))

    def start_spares(self) -> None:
        self._ahead.start_wanted()

    def want_restore_targets(self) -> None:
        for name in self.restore_names():
            self.want_fresh(name, f"{name}-restored")

    def restore_names(self) -> list[str]:
        """The dependencies whose plug-in has a data adapter (what a backup holds)."""
        return [d.name for d in self.cfg.enabled_dependencies if plugin(d.kind).DATA]

    def _spare(self, name: str, role: str) -> Dependency:
        self.stack()  # waits for the stack: the spare must not slow the dependencies tests wait on
        if self._ahead.closing.is_set():  # the run is ending (Ctrl-C, failure): start nothing new
            raise GateError("the run ended before this fresh instance was needed", stage=StageName.DEPENDENCIES)
        try:
            return self._start_fresh(name, role)
        except GateError:
            raise
        except Exception as err:
            raise GateError(f"a fresh {name} ({role}) did not start: {type(err).__name__}: {err}",
                            stage=StageName.DEPENDENCIES) from err

    # -- the step runner ------------------------------------------------------------------------

    def step(self, step: Step[T]) -> T:
        """Run a step once (see core/steps.py) and return its result."""
        return self.steps.run(step, self)

    def finished(self, step: Step[T]) -> T | None:
        """A step's result if it already finished well, without running anything."""
        return self.steps.result(step)

    # -- the pipeline: each method runs its step, whose needs the runner makes first, so each
    # -- stage's clock holds only its own work ------------------------------------------------

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
            begin, ok = time.monotonic(), False
            try:
                seconds = lease_seconds()  # a bad AIDB_GATE_LEASE_S fails before the engine is started
                self.engine = connect(self.run.id)
                configure_testcontainers(self.engine.docker_host, self.engine.api_version)
                # The lease exists before any other resource of the run, so a janitor that lists this
                # run's resources always lists its lease too (leases are listed last).
                engine = self.engine
                self.lease = Lease(self.run, lambda: engine.docker_client(timeout=RENEW_TIMEOUT_S), seconds)
                self.lease.start()
                client = self.engine.docker_client()
                try:
                    self.reaped = reap_dead_runs(client, keep_run=self.run.id, clock=self.lease.clock)
                finally:
                    client.close()
                ok = True
            finally:
                self.stages.record(StageName.ENGINE, time.monotonic() - begin, ok)
            self.progress(f"engine: {self.engine.description}; run {self.run.id}")
            for note in self.engine.notes:
                self.progress(note)
            if self.reaped and self.reaped.total:
                self.progress(f"removed {self.reaped.total} resource(s) left by dead runs")
            for note in self.reaped.skipped if self.reaped else ():
                self.progress(f"left alone: {note}")
            for found in host_leftovers(self.engine)[0]:  # a stale port-forward can capture this run's ports
                self.progress(f"warning: a dead run left {found.line()}")
            if self.engine.ignores_limits():
                self.progress(f"warning: {ROOTLESS_V1_LIMITS}")
        return self.engine

    def base(self) -> BaseImage:
        engine = self.connect()
        with self._base_lock:  # the stack and the build ask from two threads: one BaseImage, one build
            if self._base is None:
                self._base = BaseImage(engine, self.cfg, self.log_dir, self.progress)
            return self._base

    def _run(self, step: Step[T]) -> T:
        """The engine first (its own stage's clock), then the step and what it needs (core/steps.py)."""
        self.connect()
        return self.step(step)

    def dependency_images(self) -> dict[str, ImageInfo]:
        return self._run(IMAGES)

    def base_ref(self) -> str | None:
        """The base image for recipes and for targets that declare `ARG BASE_IMAGE`."""
        return self._run(BASE)

    def build(self) -> BuildResult:
        return self._run(BUILD)

    def target_image(self) -> str:
        result = self.build()
        if not result.ok:
            raise GateError(
                f"The image did not build (exit {result.exit_code}), so this stage cannot run (see the build stage). "
                f"Last lines of {result.log_path}:\n{result.log_tail}",
                stage=StageName.BUILD,
            )
        return result.ref

    def imports(self) -> ImportReport:
        return self._run(IMPORTS)

    def stack(self) -> Stack:
        return self._run(STACK)

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
                            "give each fresh instance its own role.", stage=StageName.DEPENDENCIES)
        dep = lifecycle.start(self.run, stack.network, images[name], self.cfg.dependencies[name], self.log_dir,
                             role=role, mounts=self.mounts)
        stack.extra[role] = dep
        return dep

    def boot(self) -> Boot:
        return self._run(BOOT)

    def boot_against(self, fresh: dict[str, Dependency], role: str) -> Boot:
        """Boot another instance of the target against fresh instances of some dependencies.

        The fresh instances answer to the original names too (an /etc/hosts entry), so a service
        whose compose environment names `postgres` reaches the fresh one unchanged."""
        image, stack = self.target_image(), self.stack()
        endpoints = {**stack.endpoints(), **{n: d.endpoint() for n, d in fresh.items()}}
        env, files = service_env(self.cfg, endpoints, self.api_key), service_files(self.cfg, endpoints, self.api_key)
        hosts = {**stack.hosts(), **{n: d.ip for n, d in fresh.items()}}
        return boot_target(self.run, stack.network, image, self.cfg, env, self.log_dir, role=role, hosts=hosts,
                           runtime=runtime_options(self.cfg, self.mounts, self.connect(), role, image, files))

    def boot_diagnosis(self) -> diagnose.Diagnosis:
        return self._run(diagnose.BOOT_DIAGNOSIS)

    def service_url(self) -> str:
        boot = self.boot()
        if not boot.ready:
            raise GateError(f"The service did not become ready, so this stage cannot run: "
                            f"{self.boot_diagnosis().verdict}", stage=StageName.BOOT)
        return boot.url

    def service_healthcheck(self) -> tuple[Healthcheck | None, str]:
        """The service's own healthcheck (compose's, else the image's) and where it was declared."""
        return declared_healthcheck(self.cfg, self.connect(), self.target_image())

    # -- backup and restore -------------------------------------------------------------------

    def pg_target(self, dep: Dependency) -> PgTarget:
        return pg_target(self.connect(), dep)

    @staticmethod
    def qdrant_target(dep: Dependency) -> QdrantTarget:
        return qdrant_target(dep)

    def targets(self, deps: dict[str, Dependency]) -> tuple[PgTarget | None, QdrantTarget | None]:
        """The data adapters of the dependencies whose plug-in has data (Postgres, Qdrant)."""
        return data_targets(self.connect(), deps)

    def seeded(self) -> dict[str, Any]:
        """Data written through the service's API and straight into every table (once)."""
        return self._run(SEEDED)

    def backup(self) -> BackupRun:
        return self._run(BACKUP)

    def restore(self) -> RestoreRun:
        return self._run(RESTORE)

    # -- evidence and clean-up ----------------------------------------------------------------

    def evidence(self) -> dict[str, Any]:
        """What a reviewer needs next to a failure: versions, image ids, sources, log files."""
        facts: dict[str, Any] = {"run": self.run.id}
        if self.engine:
            facts["engine"] = self.engine.description
        images = self.finished(IMAGES)
        if images is not None:
            facts["images"] = {k: (f"{v.wanted} -> stood in for by {v.ref} ({v.source}, {v.image_id[:19]})" if v.wanted
                                   else f"{v.ref} ({v.source}, {v.image_id[:19]})") for k, v in images.items()}
        if self.cfg.compose is not None:
            facts["compose"] = self.cfg.compose.facts()
        stack = self.finished(STACK)
        if stack is not None:
            facts["dependency_ready_s"] = {n: round(d.ready_s, 3) for n, d in stack.deps.items()}
            facts["dependency kinds"] = {n: d.kind for n, d in stack.deps.items()}
        boot = self.finished(BOOT)
        if boot is not None:
            facts["boot_s"] = round(boot.seconds, 3)
        if self.work:
            facts["work_s"] = {k: round(v, 3) for k, v in self.work.items()}
        build = self.finished(BUILD)
        if build is not None:
            how = "reused: built earlier from the same inputs" if build.reused else "prebuilt" if build.prebuilt else "built"
            if not build.ok:
                how = f"the build failed, exit {build.exit_code}"
            facts["target image"] = f"{build.ref} ({how}" + (f", {build.image_id[:19]})" if build.image_id else ")")
        backup, restore = self.finished(BACKUP), self.finished(RESTORE)
        if backup is not None:
            facts["backup"] = backup_facts(backup, restore.timings if restore is not None else None)
        facts["logs"] = sorted(str(p) for p in self.log_dir.glob("*.log")) if self.log_dir.exists() else []
        return facts

    def keep_instructions(self) -> str:
        """How to reach the kept stack, from what `close()` read while the engine still answered;
        asks the engine nothing (a private API service is gone by the time this is printed)."""
        if self._kept is not None:
            return render_keep(self._kept)
        return f"--gate-keep: run {self.run.id} started nothing to keep."

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
        boot, stack = self.finished(BOOT), self.finished(STACK)
        if boot is not None:
            boot.log.snapshot()
        if stack is not None:
            for dep in [*stack.deps.values(), *stack.extra.values()]:
                dep.log.snapshot()
        if self.lease is not None:
            # Stopped before anything is removed, so no renewal makes a lease for a run that is gone;
            # a kept run's lease is released, so `clean --run` need not wait for it to expire.
            self.lease.stop(release=self.cfg.keep)
        if self.cfg.keep:
            self._kept = read_kept(self, self.engine)
        else:
            client = self.engine.docker_client()
            try:
                sweep = remove_run_quietly(client, self.run.id)
            finally:
                client.close()
            self.mounts.close()
        # Containers outlive the API service, so a kept stack survives this too.
        self.engine.close()
        return sweep
