"""The aidb-gate pytest plugin: options, session fixtures, report hooks and the CI no-skip rule.

Hooks and fixtures stay thin: each calls the library (`aidb_gate.session.GateSession` and
`aidb_gate.report`) and yields. What this plugin guarantees:
- a configuration or input error stops the run with one paragraph, before anything starts;
- every resource the run made is removed at the end, after a failure, and on Ctrl-C/SIGTERM
  (unless --gate-keep), and dead runs' leftovers are removed at the start;
- each failing test's report entry opens with a verdict and carries the logs and facts;
- in CI (CI=true), a gate test that would skip fails instead.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from aidb_gate import report as reporting
from aidb_gate.config import load_config
from aidb_gate.errors import GateError
from aidb_gate.session import GateSession

SESSION = pytest.StashKey[GateSession]()
VERDICTS = pytest.StashKey[dict]()
STARTED = pytest.StashKey[float]()
VIEW = pytest.StashKey[tuple]()
GATE_MARKERS = {"p1", "p2"}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("aidb-gate", "aidb-gate deployment gate")
    group.addoption("--gate-target", metavar="DIR", help="build context of the service to gate (has a Containerfile)")
    group.addoption("--gate-image", metavar="REF", help="gate a prebuilt image instead of building one")
    group.addoption("--gate-keep", action="store_true", default=False,
                    help="leave the stack running after the run and print how to reach it")
    group.addoption("--gate-rebuild", action="store_true", default=False,
                    help="build the target even when an image of the same context, Containerfile and args exists")
    group.addoption("--gate-config", metavar="FILE", help="a gate.toml to use instead of [tool.aidb-gate]")
    group.addoption("--gate-qdrant-image", metavar="REF", help="the Qdrant image to use (e.g. a real qdrant/qdrant)")


def _options(config: pytest.Config) -> dict:
    opts: dict = {
        "target": config.getoption("--gate-target"),
        "image": config.getoption("--gate-image"),
        "keep": config.getoption("--gate-keep"),
    }
    if config.getoption("--gate-rebuild"):
        opts["rebuild"] = True
    qdrant_image = config.getoption("--gate-qdrant-image")
    if qdrant_image:
        opts["dependencies"] = {"qdrant": {"image": qdrant_image}}
    if opts["target"]:
        opts["target"] = str(Path(opts["target"]).resolve())
    return opts


MARKERS = {
    "p1": "priority 1, the deployment gate (`pytest -m p1`)",
    "p2": "priority 2, deeper checks (properties, fault injection)",
    "gate_fresh": "gate_fresh(name, role): the test asks for fresh_dependency(name, role); the gate starts it "
                  "in the background once the stack is up",
    **{stage: f"gate stage {stage}" for stage in ("build", "imports", "startup", "health", "auth", "qdrant", "backup",
                                                  "restore", "faults")},
}


def _space_separated_target(config: pytest.Config) -> str | None:
    """pytest decides its rootdir before any plugin option is known, so in `--gate-target DIR` it
    takes DIR for a test path. Returns DIR when that happened."""
    target = config.getoption("--gate-target")
    if not target:
        return None
    raw = list(config.invocation_params.args)
    for i, arg in enumerate(raw[:-1]):
        if arg == "--gate-target" and raw[i + 1] == target:
            return target
    return None


def pytest_configure(config: pytest.Config) -> None:
    config.stash[VERDICTS] = {}
    config.stash[STARTED] = time.time()
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    spaced = _space_separated_target(config)
    if spaced and Path(spaced).exists():
        raise pytest.UsageError(
            f"write `--gate-target={spaced}` (with '='): pytest decides its root folder before plugin options are "
            f"known, so with a space it takes {spaced} for a test path and would collect the service's own files.")
    try:
        cfg = load_config(config.rootpath, _options(config),
                          config_file=Path(config.getoption("--gate-config")) if config.getoption("--gate-config") else None)
    except GateError as err:
        raise pytest.UsageError(f"aidb-gate configuration: {err}") from None
    def progress(message: str) -> None:
        # Looked up on each call: the terminal reporter may register after this hook runs.
        tr = config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"[aidb-gate] {report_redact(config, message)}")

    # The worker id comes from xdist's own config, not the environment, which a child pytest inherits.
    worker = getattr(config, "workerinput", {}).get("workerid")
    session = GateSession(cfg, progress, worker=worker)
    config.stash[SESSION] = session
    # SIGTERM (a CI runner cancelling the job) takes the same clean-up path as Ctrl-C.
    if hasattr(signal, "SIGTERM") and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)


def _raise_keyboard_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def report_redact(config: pytest.Config, text: str) -> str:
    session = config.stash.get(SESSION, None)
    return session.run.redactor(text) if session else text


def _is_gate_item(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(m) for m in GATE_MARKERS)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the stages in pipeline order, whatever the file names' alphabetical order."""
    order = {stage: i for i, stage in enumerate(reporting.STAGES)}

    def key(item: pytest.Item) -> int:
        for marker, stage in reporting.MARKER_STAGE.items():
            if item.get_closest_marker(marker):
                return order[stage]
        return -1

    items.sort(key=key)
    # A stage about a dependency the configuration switched off does not apply: deselect it
    # (in CI a skip would count as a failure, and there is nothing to check).
    gate = config.stash.get(SESSION, None)
    if gate is not None:
        disabled = {name for name, dep in gate.cfg.dependencies.items() if not dep.enabled}
        dropped = [i for i in items if any(i.get_closest_marker(name) for name in disabled)]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
            items[:] = [i for i in items if i not in dropped]


def _start(gate: GateSession) -> None:
    """Input errors (no engine, no Containerfile, missing image) stop the run before it starts."""
    try:
        gate.preflight()
        gate.connect()
    except GateError as err:
        pytest.exit(f"aidb-gate: {err}", returncode=pytest.ExitCode.USAGE_ERROR)


def early_steps(markexpr: str) -> set[str]:
    """What to start before collection ends, from `-m`: the stack when the expression names a gate
    marker, and the build + imports check too when it names p1 or imports. (A run that then
    collects no gate test just removes what was started.)"""
    names = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", markexpr or "")) - {"and", "or", "not"}
    steps = {"stack"} if names & (GATE_MARKERS | set(reporting.MARKER_STAGE)) else set()
    if names & {"p1", "imports"}:
        steps.add("imports")
    return steps


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under `-m p1` (or another gate marker), the engine, the stack and the imports check start
    while pytest collects, so collection time is not added to the run."""
    config = session.config
    gate = config.stash.get(SESSION, None)
    if gate is None or config.option.collectonly or _is_xdist_controller(config):
        return
    steps = early_steps(config.option.markexpr)
    if steps:
        _start(gate)
        gate.prefetch_stack()
        if "imports" in steps:
            gate.prefetch_imports()


def pytest_collection_finish(session: pytest.Session) -> None:
    if not any(_is_gate_item(i) for i in session.items) or session.config.option.collectonly:
        return
    gate = session.config.stash[SESSION]
    _start(gate)
    # An xdist worker collects every test but runs only some: it starts fresh instances on demand.
    if gate.worker is None:
        announce_fresh_instances(gate, session.items)
        gate.start_spares()


def announce_fresh_instances(gate: GateSession, items: list[pytest.Item]) -> None:
    """Tell the session which fresh instances the selected tests will ask for."""
    if any(item.get_closest_marker("restore") for item in items):
        gate.want_restore_targets()
    for item in items:
        for mark in item.iter_markers("gate_fresh"):
            gate.want_fresh(*mark.args, **mark.kwargs)


def _is_xdist_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin("dsession")


def gate_view(config: pytest.Config) -> tuple[reporting.StageBook, dict, dict[str, str]] | None:
    """(stages, evidence, verdicts) of this run for the summaries. Under pytest-xdist the controller
    runs no stage itself: it merges what its workers wrote (this run's files only)."""
    gate = config.stash.get(SESSION, None)
    if gate is None:
        return None
    if not _is_xdist_controller(config):
        return gate.stages, gate.evidence(), config.stash[VERDICTS]
    if VIEW not in config.stash:
        since = config.stash[STARTED]
        summaries = {}
        for path in sorted(gate.cfg.reports_dir.glob("summary-gw*.json")):
            if path.stat().st_mtime >= since:
                summaries[path.stem.removeprefix("summary-")] = json.loads(path.read_text())
        config.stash[VIEW] = reporting.merge_worker_summaries(summaries)
    return config.stash[VIEW]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """reports/summary.json: the stage table and verdicts, for CI and the corpus self-tests."""
    gate = session.config.stash.get(SESSION, None)
    view = gate_view(session.config)
    if gate is None or view is None or not view[0].rows():
        return
    name = f"summary-{gate.worker}.json" if gate.worker else "summary.json"
    stages, evidence, verdicts = view
    reporting.write_summary(gate.cfg.reports_dir / name, stages, evidence, verdicts, int(exitstatus))


def pytest_unconfigure(config: pytest.Config) -> None:
    gate = config.stash.get(SESSION, None)
    if gate is None:
        return
    sweep = gate.close()
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is None:
        return
    if gate.cfg.keep and gate.engine is not None:
        tr.write_line(gate.keep_instructions())
    elif sweep is not None:
        tr.write_line(f"[aidb-gate] removed {len(sweep.containers)} container(s) and {len(sweep.networks)} "
                      f"network(s) of run {gate.run.id}")
        for error in sweep.errors:
            tr.write_line(f"[aidb-gate] clean-up problem: {error}")


# -- fixtures: each asks the session for one step of the pipeline ------------------------------

def _gate_call(fn):
    """Turn a GateError into a one-paragraph failure (no traceback from inside the library)."""
    try:
        return fn()
    except GateError as err:
        message = str(err)
    # Outside the except block, so the report shows the message, not a chained traceback.
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="session")
def gate(request: pytest.FixtureRequest) -> GateSession:
    """The run's GateSession: configuration, engine, run id, stage book."""
    return request.config.stash[SESSION]


@pytest.fixture(scope="session")
def gate_config(gate: GateSession):
    """The validated GateConfig of this run."""
    return gate.cfg


@pytest.fixture(scope="session")
def engine(gate: GateSession):
    """The reachable container engine (started for the run if it was idle)."""
    return _gate_call(gate.connect)


@pytest.fixture(scope="session")
def target_build(gate: GateSession):
    """The build stage's result; a failed build is a result, not an error.

    The dependencies start in the background meanwhile, so the stack is ready when the build is."""
    gate.prefetch_stack()
    return _gate_call(gate.build)


@pytest.fixture(scope="session")
def target_image(gate: GateSession) -> str:
    """The built target image; fails the test if the build failed."""
    return _gate_call(gate.target_image)


@pytest.fixture(scope="session")
def import_report(gate: GateSession):
    """Every module of the app imported inside the image (with pip check)."""
    return _gate_call(gate.imports)


@pytest.fixture(scope="session")
def stack(gate: GateSession):
    """The run's network and running dependencies (Postgres, Redis, Qdrant)."""
    return _gate_call(gate.stack)


@pytest.fixture(scope="session")
def dependency_images(gate: GateSession):
    """{name: ImageInfo} of every enabled dependency: local, pulled, or built from its recipe."""
    return _gate_call(gate.dependency_images)


@pytest.fixture(scope="session")
def fresh_dependency(gate: GateSession):
    """A factory: `fresh_dependency("qdrant", role="qdrant-restore")` starts an empty instance on the
    run's network, labelled with the run (removed with it)."""
    return lambda name, role: _gate_call(lambda: gate.fresh_dependency(name, role))


@pytest.fixture(scope="session")
def target_boot(gate: GateSession):
    """The booted target, ready or not (the startup stage judges it)."""
    return _gate_call(gate.boot)


@pytest.fixture(scope="session")
def base_url(gate: GateSession) -> str:
    """The ready service's URL on 127.0.0.1; fails the test if it never became ready."""
    return _gate_call(gate.service_url)


@pytest.fixture(scope="session")
def backup_run(gate: GateSession):
    """The seeded stack backed up (Postgres dump + Qdrant snapshots + manifest), verified."""
    return _gate_call(gate.backup)


@pytest.fixture(scope="session")
def restore_run(gate: GateSession):
    """The backup restored into fresh Postgres/Qdrant, and the service booted against them."""
    return _gate_call(gate.restore)


@pytest.fixture(scope="session")
def api_key(gate: GateSession) -> str:
    """The per-run API key the service was given (redacted everywhere)."""
    return gate.api_key


# -- reporting -------------------------------------------------------------------------------

def _stage_of(item: pytest.Item) -> str | None:
    for marker, stage in reporting.MARKER_STAGE.items():
        if item.get_closest_marker(marker):
            return stage
    return None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    rep: pytest.TestReport = outcome.get_result()
    config = item.config
    gate = config.stash.get(SESSION, None)
    if gate is None:
        return
    if rep.skipped and _is_gate_item(item) and os.environ.get("CI", "").lower() in ("true", "1") \
            and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"skipped in CI, which counts as a failure (a skipped check is not a pass): {reason}"
    stage = _stage_of(item)
    if stage and (rep.when == "call" or (rep.when == "setup" and not rep.passed)):
        outcome_name = "failed" if rep.failed else rep.outcome
        gate.stages.add_test(stage, outcome_name, rep.duration)
    if rep.longrepr is not None and not isinstance(rep.longrepr, tuple):
        text = gate.run.redactor(str(rep.longrepr))
        if text != str(rep.longrepr):
            rep.longrepr = text
    rep.sections = [(title, gate.run.redactor(body)) for title, body in rep.sections]
    if rep.failed:
        verdicts = config.stash[VERDICTS]
        verdicts[item.nodeid] = gate.run.redactor(reporting.verdict_of(rep, verdicts.get(item.nodeid), call.excinfo))
    if rep.when == "call" or not rep.passed:
        _attach_extras(item, rep, gate)


def _attach_extras(item: pytest.Item, rep: pytest.TestReport, gate: GateSession) -> None:
    html_plugin = item.config.pluginmanager.getplugin("html")
    if html_plugin is None:
        return
    from pytest_html import extras

    extra = getattr(rep, "extras", [])
    if rep.failed:
        extra.append(extras.html(reporting.verdict_html(item.config.stash[VERDICTS][item.nodeid])))
        for name, text in reporting.log_extras(gate.log_dir, gate.run.redactor):
            extra.append(extras.text(text, name=name))
        extra.append(extras.json(gate.evidence() | {"stages": gate.stages.rows()}, name="facts"))
    elif rep.when == "call":
        for path in sorted(gate.log_dir.glob("*.log")):
            extra.append(extras.url(str(path.relative_to(gate.cfg.reports_dir)), name=path.name))
    rep.extras = extra


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(prefix, summary, postfix, session):
    view = gate_view(session.config)
    if view is not None:
        prefix.extend(reporting.summary_html(*view))


@pytest.hookimpl(optionalhook=True)
def pytest_html_report_title(report):
    report.title = "aidb-gate deployment gate"


def pytest_terminal_summary(terminalreporter, exitstatus, config: pytest.Config) -> None:
    gate, view = config.stash.get(SESSION, None), gate_view(config)
    if gate is None or view is None or not view[0].rows():
        return
    stages, evidence, verdicts = view
    tr = terminalreporter
    tr.section("aidb-gate")
    tr.write_line(stages.as_text())
    for line in reporting.image_lines(evidence):
        tr.write_line(line)
    if verdicts:
        own, blocked = reporting.condensed_verdicts(verdicts)
        tr.write_line("")
        tr.write_line("verdicts:")
        for nodeid, verdict in own.items():
            tr.write_line(f"  {nodeid}: {gate.run.redactor(verdict).splitlines()[0][:600]}")
        if blocked:
            tr.write_line(f"  ... and {blocked} test(s) that could not run because an earlier stage failed")
    first = stages.first_failure()
    tr.write_line("")
    tr.write_line(f"GATE: {'FAIL at stage ' + first if first else 'PASS' if exitstatus == 0 else 'FAIL'}"
                  f"  (reports in {gate.cfg.reports_dir})")
