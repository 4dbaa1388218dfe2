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

import html
import os
import signal
from pathlib import Path
from typing import IO, TYPE_CHECKING

import pytest

from aidb_gate import pipeline as stages
from aidb_gate import report as reporting
from aidb_gate.config import load_config, shown_path
from aidb_gate.errors import GateError
from aidb_gate.pipeline import StageBook, StageName
from aidb_gate.selection import (
    PRIORITIES,
    REQUIRES_MARKER,
    gate_requested,
    marker_names,
    names_gate_marker,
    suites_to_add,
    switched_off_by,
    switched_off_lines,
)

if TYPE_CHECKING:
    from aidb_gate.session import GateSession

SESSION = pytest.StashKey["GateSession"]()
VERDICTS = pytest.StashKey[dict]()
VIEW = pytest.StashKey[tuple]()
#: {worker id: the summary it sent in its workeroutput}, gathered by the xdist controller.
WORKER_SUMMARIES = pytest.StashKey[dict]()
#: The open lock file that marks this run's folder (reports_dir/runs/<id>/) as live.
RUN_LOCK = pytest.StashKey[IO[str]]()
#: The workeroutput key a worker's summary travels under.
SUMMARY_KEY = "aidb_gate_summary"
#: {nodeid: the configuration key that switched the test off}: deselected, listed in the summaries.
SWITCHED_OFF = pytest.StashKey[dict[str, str]]()
GATE_MARKERS = PRIORITIES
NOT_CONFIGURED = ("aidb-gate is not configured in this project, so its fixtures have nothing to gate: add a "
                  "[tool.aidb-gate] table to pyproject.toml (`aidb-gate init` writes one) or a gate.toml, or pass "
                  "--gate-target=DIR / --gate-image=REF.")


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
    group.addoption("--gate-compose", metavar="FILE",
                    help="the stack's compose file: gate one of its services with only what it depends on")
    group.addoption("--gate-service", metavar="NAME", help="the compose service to gate (with --gate-compose)")


GATE_OPTIONS = ("--gate-target", "--gate-image", "--gate-keep", "--gate-rebuild", "--gate-config", "--gate-qdrant-image",
                "--gate-compose", "--gate-service")


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
    compose, service = config.getoption("--gate-compose"), config.getoption("--gate-service")
    if compose:
        opts["compose"] = str(Path(compose).resolve())
    if service:
        opts["service"] = service
    return opts


MARKERS = {
    "p1": "priority 1, the deployment gate (`pytest -m p1`)",
    "p2": "priority 2, deeper checks (properties, fault injection)",
    REQUIRES_MARKER: f"{REQUIRES_MARKER}(key, ...): the test applies only while those configuration keys are true; "
                     "otherwise it is deselected and listed as switched off by the key",
    "gate_fresh": "gate_fresh(name, role): the test asks for gate_fresh_dependency(name, role); the gate starts it "
                  "in the background once the stack is up",
    **stages.marker_help(),
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


def _looks_only(config: pytest.Config) -> bool:
    """Runs that only list things (--co, --fixtures, --markers): they never touch the engine."""
    opt = config.option
    return bool(getattr(opt, "collectonly", False) or getattr(opt, "showfixtures", False)
                or getattr(opt, "show_fixtures_per_test", False) or getattr(opt, "markers", False))


@pytest.hookimpl(tryfirst=True)  # before pytest-html and junitxml read their paths
def pytest_configure(config: pytest.Config) -> None:
    config.stash[VERDICTS] = {}
    config.stash[SWITCHED_OFF] = {}
    config.stash[WORKER_SUMMARIES] = {}
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")
    # Inert unless asked: a project that never configured the gate keeps its own p1/p2 tests to itself.
    if not gate_requested(config.rootpath, (config.getoption(o) for o in GATE_OPTIONS)):
        return
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
    if not _looks_only(config) or early_steps(config.option.markexpr):
        # The run writes there (and pytest-html/junitxml would, with a traceback, when they cannot).
        problem = make_reports_folder(cfg.reports_dir)
        if problem:
            raise pytest.UsageError(f"aidb-gate configuration: {problem}")

    def progress(message: str) -> None:
        # Looked up on each call: the terminal reporter may register after this hook runs.
        tr = config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(f"[aidb-gate] {report_redact(config, message)}")

    # The worker id comes from xdist's own config, not the environment, which a child pytest inherits.
    worker = getattr(config, "workerinput", {}).get("workerid")
    # Imported here, not at the top: in the many projects that never configure the gate, loading
    # the plugin must not pull in testcontainers, docker-py and psycopg (~0.3 s on every pytest run).
    from aidb_gate.session import GateSession

    session = GateSession(cfg, progress, worker=worker)
    config.stash[SESSION] = session
    suites = suites_to_add(bool(cfg.raw["suites"]), config.option.markexpr, config.args,
                           config.args_source == pytest.Config.ArgsSource.ARGS, config.invocation_params.dir)
    if suites is not None:
        # Collected beside the project's own tests: the gate as installed, not a copy.
        config.args.append(str(suites))
    if early_steps(config.option.markexpr):
        default_reports(config, cfg.reports_dir)


def make_reports_folder(folder: Path) -> str | None:
    """Make `folder` (the configured reports_dir) and its parents; None when it is a folder now,
    else the one paragraph that says why it cannot be and what to set. Never raises OSError."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return None
    except OSError as err:
        reason = err.strerror or type(err).__name__
    return (f"the reports folder {shown_path(folder)} cannot be made ({reason}). The gate writes its reports and "
            "each run's logs there: set `reports_dir` (or AIDB_GATE_REPORTS_DIR) to a folder this user can create "
            "and write, e.g. \"reports/aidb-gate\" in the project.")


def default_reports(config: pytest.Config, reports_dir: Path) -> None:
    """A gate run leaves its reports even where the project's pytest settings name none: the HTML
    report (self-contained) and the JUnit XML, in the configured reports folder."""
    if hasattr(config.option, "htmlpath") and not config.option.htmlpath:
        config.option.htmlpath = str(reports_dir / "gate.html")
        config.option.self_contained_html = True
    if not config.option.xmlpath:
        config.option.xmlpath = str(reports_dir / "junit.xml")
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
    items.sort(key=lambda item: stages.order(_stage_of(item)))
    # A check the configuration switched off does not apply: deselect it (in CI a skip would count
    # as a failure, and there is nothing to check) and say which key did it.
    gate = config.stash.get(SESSION, None)
    if gate is None:
        return
    off = config.stash[SWITCHED_OFF]
    for item in items:
        key = switched_off(item, gate)
        if key:
            off[item.nodeid] = key
    if off:
        config.hook.pytest_deselected(items=[i for i in items if i.nodeid in off])
        items[:] = [i for i in items if i.nodeid not in off]


def pytest_report_collectionfinish(config: pytest.Config, start_path: Path, items: list[pytest.Item]) -> list[str]:
    """What the configuration switched off, said where the collection is reported (also under --co)."""
    off = config.stash.get(SWITCHED_OFF, {})
    return [f"[aidb-gate] {line}" for line in switched_off_lines(off)]


def switched_off(item: pytest.Item, gate: GateSession) -> str | None:
    """The configuration key that switches this test off, or None."""
    for name, dep in gate.cfg.dependencies.items():
        if not dep.enabled and item.get_closest_marker(name):
            return f"dependencies.{name}.enabled"
    required = [key for mark in item.iter_markers(REQUIRES_MARKER) for key in mark.args]
    try:
        return switched_off_by(required, gate.cfg.raw)
    except KeyError as err:
        raise pytest.UsageError(f"{item.nodeid}: @pytest.mark.{REQUIRES_MARKER} names the configuration key "
                                f"{err.args[0]!r}, which does not exist.") from None


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
    names = marker_names(markexpr)
    steps = {"stack"} if names_gate_marker(markexpr) else set()
    if names & {"p1", StageName.IMPORTS}:
        steps.add("imports")
    return steps


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under `-m p1` (or another gate marker), the engine, the stack and the imports check start
    while pytest collects, so collection time is not added to the run."""
    config = session.config
    gate = config.stash.get(SESSION, None)
    if gate is None or _looks_only(config):
        return
    # Held until the process ends: `prune_run_folders` never removes a live run's folder.
    try:
        config.stash[RUN_LOCK] = reporting.hold_run_folder(run_folder(gate))
    except OSError as err:
        problem = make_reports_folder(gate.cfg.reports_dir) or (
            f"the run's folder {shown_path(run_folder(gate))} cannot be made ({err.strerror or type(err).__name__}). "
            "The gate keeps each run's logs there: make the reports folder writable by this user, or set "
            "`reports_dir` to another folder.")
        pytest.exit(f"aidb-gate configuration: {problem}", returncode=pytest.ExitCode.USAGE_ERROR)
    if _is_xdist_controller(config):
        return
    steps = early_steps(config.option.markexpr)
    if steps:
        _start(gate)
        gate.prefetch_stack()
        if "imports" in steps and gate.cfg.raw["imports"]["enabled"]:
            gate.prefetch_imports()


def pytest_collection_finish(session: pytest.Session) -> None:
    if (SESSION not in session.config.stash or _looks_only(session.config)
            or not any(_is_gate_item(i) for i in session.items)):
        return
    gate = session.config.stash[SESSION]
    _start(gate)
    # An xdist worker collects every test but runs only some: it starts fresh instances on demand.
    if gate.worker is None:
        announce_fresh_instances(gate, session.items)
        gate.start_spares()


def announce_fresh_instances(gate: GateSession, items: list[pytest.Item]) -> None:
    """Tell the session which fresh instances the selected tests will ask for."""
    if any(item.get_closest_marker(StageName.RESTORE) for item in items):
        gate.want_restore_targets()
    for item in items:
        for mark in item.iter_markers("gate_fresh"):
            gate.want_fresh(*mark.args, **mark.kwargs)


def _is_xdist_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin("dsession")


def run_folder(gate: GateSession) -> Path:
    """reports_dir/runs/<run id>/: this run's own logs, backup and summary."""
    return reporting.run_folder(gate.cfg.reports_dir, gate.run.id)


def gate_view(config: pytest.Config) -> tuple[StageBook, dict, dict[str, str]] | None:
    """(stages, evidence, verdicts) of this run for the summaries. Under pytest-xdist the controller
    runs no stage itself: it merges the summaries its own workers sent through xdist's workeroutput
    (never a file another run may have written)."""
    gate = config.stash.get(SESSION, None)
    if gate is None:
        return None
    if not _is_xdist_controller(config):
        return gate.stages, gate.evidence(), config.stash[VERDICTS]
    if VIEW not in config.stash:
        config.stash[VIEW] = reporting.merge_worker_summaries(config.stash[WORKER_SUMMARIES])
    return config.stash[VIEW]


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown where xdist is not installed
def pytest_testnodedown(node, error) -> None:
    """The controller keeps the summary each of its workers sent as it finished."""
    summary = getattr(node, "workeroutput", {}).get(SUMMARY_KEY)
    if isinstance(summary, dict):
        worker = getattr(node, "workerinput", {}).get("workerid") or node.gateway.id
        node.config.stash[WORKER_SUMMARIES][worker] = summary
        if VIEW in node.config.stash:  # a view made before every worker finished is incomplete
            del node.config.stash[VIEW]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The stage table and verdicts, for CI and the corpus self-tests: in the run's folder
    (runs/<id>/summary.json), and as the latest run's reports/summary.json. An xdist worker sends
    its summary to the controller instead, which merges them."""
    config = session.config
    gate = config.stash.get(SESSION, None)
    view = gate_view(config)
    if gate is None or view is None or not view[0].rows():
        return
    stages, evidence, verdicts = view
    data = reporting.summary_data(stages, evidence, verdicts, int(exitstatus), stages_of=_stages_of_failed(config),
                                  switched_off=config.stash.get(SWITCHED_OFF, {}))
    reporting.write_json(run_folder(gate) / "summary.json", data)
    if gate.worker:
        workeroutput = getattr(config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[SUMMARY_KEY] = data
        return
    reporting.write_json(gate.cfg.reports_dir / "summary.json", data)


def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the run: its stack is removed, or (--gate-keep) kept and how to reach it printed."""
    gate = config.stash.get(SESSION, None)
    if gate is None:
        return
    try:
        sweep = gate.close()
    finally:
        lock = config.stash.get(RUN_LOCK, None)
        if lock is not None:
            lock.close()
    tr = config.pluginmanager.get_plugin("terminalreporter")
    if tr is None:
        return
    if gate.cfg.keep and gate.engine is not None:
        # Read by close() before the engine stopped; redacted in case an engine error quoted a secret.
        tr.write_line(gate.run.redactor(gate.keep_instructions()))
    elif sweep is not None:
        tr.write_line(f"[aidb-gate] removed {len(sweep.containers)} container(s), {len(sweep.networks)} "
                      f"network(s) and {len(sweep.volumes)} volume(s) of run {gate.run.id}")
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
    session = request.config.stash.get(SESSION, None)
    if session is None:
        pytest.fail(NOT_CONFIGURED, pytrace=False)
    return session


@pytest.fixture(scope="session")
def gate_config(gate: GateSession):
    """The validated GateConfig of this run."""
    return gate.cfg


@pytest.fixture(scope="session")
def gate_engine(gate: GateSession):
    """The reachable container engine (started for the run if it was idle)."""
    return _gate_call(gate.connect)


@pytest.fixture(scope="session")
def gate_build(gate: GateSession):
    """The build stage's result; a failed build is a result, not an error.

    The dependencies start in the background meanwhile, so the stack is ready when the build is."""
    gate.prefetch_stack()
    return _gate_call(gate.build)


@pytest.fixture(scope="session")
def gate_image(gate: GateSession) -> str:
    """The built target image; fails the test if the build failed."""
    return _gate_call(gate.target_image)


@pytest.fixture(scope="session")
def gate_imports(gate: GateSession):
    """Every module of the app imported inside the image (with pip check)."""
    return _gate_call(gate.imports)


@pytest.fixture(scope="session")
def gate_stack(gate: GateSession):
    """The run's network and running dependencies (Postgres, Redis, Qdrant)."""
    return _gate_call(gate.stack)


@pytest.fixture(scope="session")
def gate_dependency_images(gate: GateSession):
    """{name: ImageInfo} of every enabled dependency: local, pulled, or built from its recipe."""
    return _gate_call(gate.dependency_images)


@pytest.fixture(scope="session")
def gate_fresh_dependency(gate: GateSession):
    """A factory: `gate_fresh_dependency("qdrant", role="qdrant-restore")` starts an empty instance on the
    run's network, labelled with the run (removed with it)."""
    return lambda name, role: _gate_call(lambda: gate.fresh_dependency(name, role))


@pytest.fixture(scope="session")
def gate_boot(gate: GateSession):
    """The booted target, ready or not (the startup stage judges it)."""
    return _gate_call(gate.boot)


@pytest.fixture(scope="session")
def gate_url(gate: GateSession) -> str:
    """The ready service's URL on 127.0.0.1; fails the test if it never became ready."""
    return _gate_call(gate.service_url)


@pytest.fixture(scope="session")
def gate_backup(gate: GateSession):
    """The seeded stack backed up (Postgres dump + Qdrant snapshots + manifest), verified."""
    return _gate_call(gate.backup)


@pytest.fixture(scope="session")
def gate_restore(gate: GateSession):
    """The backup restored into fresh Postgres/Qdrant, and the service booted against them."""
    return _gate_call(gate.restore)


@pytest.fixture(scope="session")
def gate_api_key(gate: GateSession) -> str:
    """The per-run API key the service was given (redacted everywhere)."""
    return gate.api_key


# -- reporting -------------------------------------------------------------------------------

def _stage_of(item: pytest.Item) -> str | None:
    return stages.stage_of_markers(mark.name for mark in item.iter_markers())


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


#: {cause: nodeid of the first test whose report entry carries it, with the logs and facts}
SHOWN = pytest.StashKey[dict]()


def _attach_extras(item: pytest.Item, rep: pytest.TestReport, gate: GateSession) -> None:
    # `rep.extras` (read by pytest-html) and `rep.gate_blocked_like` (read below) are attributes
    # TestReport does not declare: hence the attr-defined ignores.
    html_plugin = item.config.pluginmanager.getplugin("html")
    if html_plugin is None:
        return
    from pytest_html import extras

    extra = getattr(rep, "extras", [])
    if rep.failed:
        verdict = item.config.stash[VERDICTS][item.nodeid]
        first = item.config.stash.setdefault(SHOWN, {}).setdefault(reporting.cause_key(verdict), item.nodeid)
        if first != item.nodeid:  # said once: later tests of the same cause point to the first
            extra.append(extras.html(reporting.same_cause_html(verdict, first)))
            if reporting.cause_key(verdict) == reporting.BLOCKED:
                # never ran: its log would repeat the first's word for word
                rep.gate_blocked_like = first  # type: ignore[attr-defined]
            rep.extras = extra  # type: ignore[attr-defined]
            return
        extra.append(extras.html(reporting.verdict_html(verdict)))
        for name, text in reporting.log_extras(gate.log_dir, gate.run.redactor):
            extra.append(extras.text(text, name=name))
        extra.append(extras.json(gate.evidence() | {"stages": gate.stages.rows()}, name="facts"))
    elif rep.when == "call":
        for path in sorted(gate.log_dir.glob("*.log")):
            extra.append(extras.url(str(path.relative_to(gate.cfg.reports_dir)), name=path.name))
    rep.extras = extra  # type: ignore[attr-defined]


def _stages_of_failed(config: pytest.Config) -> dict[str, str]:
    """{nodeid: stage} of the failed tests, from their reports (under xdist, the workers')."""
    tr = config.pluginmanager.get_plugin("terminalreporter")
    stats = getattr(tr, "stats", {}) if tr is not None else {}
    return reporting.stages_of_reports(rep for key in ("failed", "error") for rep in stats.get(key, []))


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_summary(prefix, summary, postfix, session):
    view = gate_view(session.config)
    if view is not None and view[0].rows():
        exit_status = getattr(session, "exitstatus", None)
        prefix.extend(reporting.summary_html(*view, stages_of=_stages_of_failed(session.config),
                                             exit_status=None if exit_status is None else int(exit_status)))
    off = switched_off_lines(session.config.stash.get(SWITCHED_OFF, {}))
    if off:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in off)
        prefix.append(f"<h3>Switched off by the configuration</h3><ul class='gate-switched-off'>{items}</ul>")


@pytest.hookimpl(optionalhook=True)
def pytest_html_results_table_html(report, data):
    first = getattr(report, "gate_blocked_like", None)
    if first:
        data[:] = [reporting.same_cause_log(first)]


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
    off = config.stash.get(SWITCHED_OFF, {})
    for line in switched_off_lines(off):
        tr.write_line(line)
    causes = reporting.group_causes(verdicts, stages, _stages_of_failed(config))
    if causes:
        tr.write_line("")
        tr.write_line("verdicts, by cause:")
        for line in reporting.causes_text(causes):
            tr.write_line(gate.run.redactor(line))
    tr.write_line("")
    banner = gate.run.redactor(reporting.banner_text(stages, causes, int(exitstatus)))
    tr.write_line(f"{banner}  (reports in {gate.cfg.reports_dir})", red=banner != "GATE: PASS",
                  green=banner == "GATE: PASS", bold=True)
