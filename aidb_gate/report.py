"""report: what a reviewer reads - the stage table, the verdicts grouped by cause, and per-test
evidence, all redacted (core/text.py) before they are written.
"""

from __future__ import annotations

import contextlib
import fcntl
import html
import json
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# Re-exported: the report's callers and the self-tests name them here too.
from aidb_gate.core.text import Redactor, clip
from aidb_gate.errors import GateError
from aidb_gate.pipeline import NAMES, ORDER, StageBook, stage_of_markers

#: The pipeline's stages in order (the table is aidb_gate/pipeline.py).
STAGES = NAMES


def verdict_of(rep, stored: str | None, excinfo=None) -> str:
    """The verdict line(s) for a failed test: the test's own, else its failure message."""
    if stored:
        return stored
    if excinfo is not None:
        value = excinfo.value
        text = str(value).strip()
        # Our own failures read as sentences; anything else keeps its exception type.
        if not text or not (isinstance(value, (AssertionError, GateError)) or type(value).__name__ == "Failed"):
            text = excinfo.exconly().strip()
        return text
    crash = getattr(rep.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(rep.longrepr)
    for prefix in ("AssertionError: ", "Failed: ", "E   "):
        text = text.removeprefix(prefix)
    return text.strip()


def verdict_html(verdict: str) -> str:
    first, _, rest = verdict.partition("\n")
    more = f"<pre style='white-space:pre-wrap'>{html.escape(rest)}</pre>" if rest.strip() else ""
    return (f"<div class='gate-verdict' style='border-left:4px solid #cf222e;padding:6px;margin:4px 0'>"
            f"<b>Verdict:</b> {html.escape(first)}{more}</div>")


def log_extras(log_dir: Path, redactor: Redactor, max_chars: int = 200_000) -> list[tuple[str, str]]:
    """(name, text) of every log of the run, target first, trimmed from the front if huge."""
    if not log_dir.exists():
        return []
    paths = sorted(log_dir.glob("*.log"), key=lambda p: (p.stem != "target", p.name))
    out = []
    for path in paths:
        text = redactor(path.read_text(errors="replace"))
        if len(text) > max_chars:
            text = f"[... {len(text) - max_chars} earlier characters in {path} ...]\n" + clip(text, max_chars, tail=True)
        out.append((path.name, text or "(empty: the process printed nothing)"))
    return out


BLOCKED = "so this stage cannot run"


def headline(verdict: str) -> str:
    """A verdict's normalised first line (whitespace collapsed): what identifies its cause."""
    text = verdict.strip()
    return " ".join(text.split("\n", 1)[0].split()) if text else ""


def cause_key(verdict: str) -> str:
    """What two verdicts share when they have one cause: the headline; every test blocked by an
    earlier stage shares one."""
    line = headline(verdict)
    return BLOCKED if BLOCKED in line else line


@dataclass
class Cause:
    """One reason the gate failed, and every test it failed: said once, however many tests it hit.
    `blocked` marks the tests that could not run because `stage` broke earlier."""

    stage: str | None
    verdict: str
    tests: list[str] = field(default_factory=list)
    detail: str = ""
    blocked: bool = False

    def as_dict(self) -> dict[str, object]:
        return {"stage": self.stage, "verdict": self.verdict, "tests": list(self.tests), "blocked": self.blocked}




def stages_of_reports(reports: Iterable) -> dict[str, str]:
    """{nodeid: stage} of the given test reports, from their markers (kept in `keywords`, also
    in the reports an xdist controller receives)."""
    out: dict[str, str] = {}
    for rep in reports:
        nodeid = getattr(rep, "nodeid", "")
        stage = stage_of_markers(getattr(rep, "keywords", {}) or {}, nodeid)
        if nodeid and stage:
            out.setdefault(nodeid, stage)
    return out


def _rest(verdict: str) -> str:
    return verdict.strip().partition("\n")[2].strip()


def _breaking_stage(blocked: list[str], stages: StageBook | None, stages_of: dict[str, str]) -> str | None:
    """The stage whose failure blocked these tests: the last failed stage before the earliest of
    them (a stage's own blocked checks, e.g. the build's metadata tests, name that stage)."""
    failed = [str(r["stage"]) for r in stages.rows() if r["status"] == "failed"] if stages else []
    known = [s for s in (stages_of.get(n) for n in blocked) if s in ORDER]
    if not known:
        return failed[0] if failed else None
    earliest = min(known, key=ORDER.__getitem__)
    before = [s for s in failed if s in ORDER and ORDER[s] < ORDER[earliest]]
    return before[-1] if before else earliest


def group_causes(verdicts: dict[str, str], stages: StageBook | None = None,
                 stages_of: dict[str, str] | None = None) -> list[Cause]:
    """The run's verdicts grouped by cause (their normalised first line), in pipeline order. The
    tests blocked by an earlier stage are one group, named after the stage that broke."""
    stages_of = stages_of or {}
    own: dict[str, Cause] = {}
    blocked: list[str] = []
    blocked_verdict = ""
    for nodeid, verdict in verdicts.items():
        line = headline(verdict) or "(the test failed without a message)"
        if cause_key(verdict) == BLOCKED:
            blocked.append(nodeid)
            blocked_verdict = blocked_verdict or verdict
            continue
        stage = stages_of.get(nodeid)  # from the test's markers; a file name never decides
        cause = own.get(line)
        if cause is None:
            own[line] = Cause(stage, line, [nodeid], _rest(verdict))
            continue
        cause.tests.append(nodeid)
        if stage in ORDER and (cause.stage not in ORDER or ORDER[stage] < ORDER[cause.stage]):
            cause.stage = stage
    causes = list(own.values())
    if blocked:
        causes.append(Cause(_breaking_stage(blocked, stages, stages_of), headline(blocked_verdict), blocked,
                            _rest(blocked_verdict), blocked=True))
    # Stable: within a stage, a cause of its own comes before the tests it blocked.
    causes.sort(key=lambda c: (ORDER.get(c.stage or "", len(ORDER)), c.blocked))
    return causes


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "\u2026"


def banner_text(stages: StageBook, causes: list[Cause], exit_status: int | None = None, limit: int = 300) -> str:
    """`GATE: PASS`, or `GATE: FAIL at <stage>: <verdict>`: the first failing stage and the first
    verdict of that stage (its own cause before the tests it blocked)."""
    first = stages.first_failure()
    if first is None:
        if exit_status == 0 or (exit_status is None and not causes):
            return "GATE: PASS"
        return "GATE: FAIL" + (f": {_clip(causes[0].verdict, limit)}" if causes else "")
    mine = [c for c in causes if c.stage == first]
    verdict = next((c.verdict for c in mine if not c.blocked), None) or next((c.verdict for c in mine), None)
    return f"GATE: FAIL at {first}" + (f": {_clip(verdict, limit)}" if verdict else "")


def causes_text(causes: list[Cause], max_tests: int = 5, width: int = 600) -> list[str]:
    """The terminal summary's verdicts: each cause once, then the tests it failed."""
    lines = []
    for c in causes:
        where = f"[{c.stage}] " if c.stage else ""
        what = (f"{len(c.tests)} test(s) could not run because the {c.stage or 'an earlier'} stage failed: "
                if c.blocked else "")
        lines.append(f"  {where}{what}{_clip(c.verdict, width)}")
        shown = c.tests if len(c.tests) <= max_tests else c.tests[: max_tests - 1]
        lines += [f"      {t}" for t in shown]
        if len(shown) < len(c.tests):
            lines.append(f"      ... and {len(c.tests) - len(shown)} more")
    return lines


def image_lines(evidence: dict) -> list[str]:
    lines = []
    if evidence.get("engine"):
        lines.append(f"engine: {evidence['engine']}")
    for role, desc in (evidence.get("images") or {}).items():
        lines.append(f"image {role}: {desc}")
    if evidence.get("target image"):
        lines.append(f"image target: {evidence['target image']}")
    compose = evidence.get("compose") or {}
    if compose:
        lines.append(f"stack: {compose['file']}, service {compose['service']}; started: {compose['started']}")
        for name, why in (compose.get("not started (outside depends_on)") or {}).items():
            lines.append(f"not started (outside depends_on): {name}, {why}")
        lines += [f"mount replaced: {mount}" for mount in compose.get("mounts replaced") or []]
        for key in ("random per-run values", "unset variables (empty, as compose does)"):
            if compose.get(key):
                lines.append(f"{key}: {compose[key]}")
        lines += [f"notice, secret on a command line: {line}" for line in compose.get("secrets on command lines") or []]
    return lines


_RED, _GREEN = "#cf222e", "#1a7f37"

#: The report's own look; pytest-html's page is grey 12px text.
REPORT_CSS = f"""<style>
.gate-banner {{ font-size: 22px; font-weight: bold; color: #fff; padding: 14px 18px; margin: 10px 0 14px;
  border-radius: 6px; line-height: 1.35; overflow-wrap: anywhere; }}
.gate-banner.gate-fail {{ background: {_RED}; }}
.gate-banner.gate-pass {{ background: {_GREEN}; }}
.gate-report {{ color: #1f2328; font-size: 13px; max-width: 1100px; }}
.gate-report h2, .gate-report h3 {{ color: #1f2328; margin: 14px 0 6px; }}
.gate-report table {{ border-collapse: collapse; }}
.gate-report th, .gate-report td {{ border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; }}
.gate-cause {{ border-left: 4px solid {_RED}; background: #fff8f8; padding: 6px 10px; margin: 6px 0; }}
.gate-cause.gate-blocked {{ border-left-color: #9a6700; background: #fffbea; }}
.gate-cause .gate-stage {{ font-weight: bold; }}
.gate-cause ul {{ margin: 4px 0; }}
.gate-cause pre, .gate-verdict pre {{ white-space: pre-wrap; max-height: 24em; overflow: auto; background: #f6f8fa;
  padding: 6px; }}
details.gate-environment {{ margin: 10px 0; }}
details.gate-environment summary {{ cursor: pointer; font-weight: bold; }}
</style>"""

#: pytest-html draws its Environment table (pytest-metadata) at the top of the page, from the
#: report's JSON, before the summary. Once its script has run, fold that table into the
#: <details> below the verdicts, so the page opens with the banner.
FOLD_ENVIRONMENT = """<details class="gate-environment" id="gate-environment">\
<summary>Environment (pytest-metadata)</summary></details>
<script>
document.addEventListener("DOMContentLoaded", function () {
  var fold = document.getElementById("gate-environment");
  var table = document.getElementById("environment");
  var header = document.getElementById("environment-header");
  if (!fold || !table) { return; }
  table.classList.remove("hidden");
  fold.appendChild(table);
  if (header) { header.remove(); }
});
</script>"""


def banner_html(text: str) -> str:
    kind = "gate-pass" if text == "GATE: PASS" else "gate-fail"
    return f"<div class='gate-banner {kind}' id='gate-banner'>{html.escape(text)}</div>"


def causes_html(causes: list[Cause]) -> str:
    """Each cause once: its stage, its verdict (the details folded), and the tests it failed."""
    if not causes:
        return ""
    blocks = []
    for c in causes:
        stage = html.escape(c.stage or "no stage")
        if c.blocked:
            title = (f"<span class='gate-stage'>{stage}</span> broke: {len(c.tests)} test(s) could not run. "
                     f"{html.escape(c.verdict)}")
        else:
            title = f"<span class='gate-stage'>{stage}</span>: {html.escape(c.verdict)}"
        detail = (f"<details><summary>details</summary><pre>{html.escape(c.detail)}</pre></details>"
                  if c.detail else "")
        tests = "".join(f"<li><code>{html.escape(t)}</code></li>" for t in c.tests)
        listing = (f"<ul>{tests}</ul>" if len(c.tests) <= 10 else
                   f"<details><summary>{len(c.tests)} tests</summary><ul>{tests}</ul></details>")
        blocks.append(f"<div class='gate-cause{' gate-blocked' if c.blocked else ''}'>{title}{detail}{listing}</div>")
    return f"<h3>Verdicts, by cause</h3>{''.join(blocks)}"


def summary_html(stages: StageBook, evidence: dict, verdicts: dict[str, str], stages_of: dict[str, str] | None = None,
                 exit_status: int | None = None) -> list[str]:
    """The report's opening: the banner, the stage table, each cause once, what ran where; then
    pytest-metadata's environment, folded."""
    causes = group_causes(verdicts, stages, stages_of)
    parts = [REPORT_CSS, "<div class='gate-report'>", banner_html(banner_text(stages, causes, exit_status)),
             stages.as_html(), causes_html(causes)]
    facts = "".join(f"<li>{html.escape(line)}</li>" for line in image_lines(evidence))
    parts.append(f"<h3>What ran</h3><ul>{facts}<li>run id: {html.escape(str(evidence.get('run')))}</li></ul>")
    backup = evidence.get("backup") or {}
    if backup:
        rows = "".join(
            f"<tr><td>{html.escape(dep)}</td><td>{f['size_bytes'] / 1024:.1f} KiB</td><td>{f['backup_s']:.2f} s</td>"
            f"<td>{_seconds(f['restore_s'])}</td><td>{html.escape(f['invariants'])}</td></tr>"
            for dep, f in backup.items())
        parts.append("<h3>Backup and restore</h3><table>"
                     "<tr><th>dependency</th><th>backup size</th><th>backup time</th><th>restore time</th>"
                     f"<th>invariants checked</th></tr>{rows}</table>")
    parts += [FOLD_ENVIRONMENT, "</div>"]
    return parts


def same_cause_log(first: str) -> str:
    """The log of a test that could not run, in place of a copy of the first such test's."""
    return html.escape(f"Not run: an earlier stage failed. The failure text and the logs are in the entry of {first}.")


def same_cause_html(verdict: str, first: str) -> str:
    """A test's report entry when an earlier test already carries its cause, logs and facts."""
    return (f"<div class='gate-verdict' style='border-left:4px solid #9a6700;padding:6px;margin:4px 0'>"
            f"<b>Verdict:</b> {html.escape(headline(verdict))} <i>(the same cause as <code>{html.escape(first)}</code>,"
            f" whose entry has the logs; the summary at the top lists every cause once)</i></div>")


def merge_worker_summaries(summaries: dict[str, dict]) -> tuple[StageBook, dict, dict[str, str]]:
    """(stage book, evidence, verdicts) of an xdist run, from each worker's summary-<worker>.json."""
    book = StageBook.merged([s.get("stages", []) for s in summaries.values()])
    verdicts: dict[str, str] = {}
    evidence: dict = {}
    for _, summary in sorted(summaries.items()):
        verdicts.update(summary.get("verdicts", {}))
        for key, value in summary.get("evidence", {}).items():
            evidence.setdefault(key, value)  # the same images in every worker; the backup where it ran
    evidence["run"] = ", ".join(f"{w}: {s.get('evidence', {}).get('run')}" for w, s in sorted(summaries.items()))
    evidence["workers"] = {w: s.get("evidence", {}) for w, s in sorted(summaries.items())}
    return book, evidence, verdicts


def summary_data(stages: StageBook, evidence: dict, verdicts: dict[str, str], exit_status: int,
                 stages_of: dict[str, str] | None = None, switched_off: dict[str, str] | None = None) -> dict:
    """The machine-readable verdict of a run as plain JSON types (its schema: the README's
    "summary.json"). `causes` is the verdicts grouped by cause ({stage, verdict, tests, blocked});
    `stages_of` ({nodeid: stage}) places each test, else its file name does (test_<stage>.py);
    `switched_off` is {nodeid: the configuration key that deselected it}; `test_stages` is
    {nodeid: stage} of every failed test, from its markers."""
    data = {"exit_status": exit_status, "first_failure": stages.first_failure(), "stages": stages.rows(),
            "verdicts": verdicts, "evidence": evidence,
            "causes": [c.as_dict() for c in group_causes(verdicts, stages, stages_of)],
            "switched_off": dict(switched_off or {}), "test_stages": dict(stages_of or {})}
    # Round-tripped so that it crosses to the xdist controller (execnet) exactly as it is written.
    return json.loads(json.dumps(data, default=str))


def write_summary(path: Path, stages: StageBook, evidence: dict, verdicts: dict[str, str], exit_status: int,
                  stages_of: dict[str, str] | None = None, switched_off: dict[str, str] | None = None) -> None:
    """`summary_data` written to path atomically."""
    write_json(path, summary_data(stages, evidence, verdicts, exit_status, stages_of, switched_off))


def write_json(path: Path, data: dict) -> None:
    """data as JSON at path, atomically: a reader (or a concurrent run writing the same file) sees a
    whole file, never a mix; the temporary file is unique to this process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


# -- the reports folder: the latest run's reports on top, each run's own files in runs/<id>/ ------

#: reports_dir/RUNS/<run id>/ holds one run's logs, backup and summary; nothing else writes there.
RUNS = "runs"
#: The lock file a run holds (flock) for as long as its process lives: its folder is never pruned then.
LIVE_LOCK = ".live"
#: `prune_run_folders` never removes a folder with anything written more recently than this.
MIN_PRUNE_AGE_S = 3600.0


def run_folder(reports_dir: Path, run_id: str) -> Path:
    """The folder of one run's own reports (run ids are plain names: config/sources.py checks them)."""
    return reports_dir / RUNS / run_id


def hold_run_folder(folder: Path):
    """Make folder and lock it as a live run's: the returned open file holds an exclusive flock,
    which the kernel drops when the process ends however it ends. Keep it for the run's life."""
    folder.mkdir(parents=True, exist_ok=True)
    fh = open(folder / LIVE_LOCK, "a")  # noqa: SIM115 - held open on purpose, for the run's life
    # Already held by a run of the same id (AIDB_GATE_RUN_ID): that one keeps the folder alive too.
    with contextlib.suppress(OSError):
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return fh


def run_folder_live(folder: Path) -> bool:
    """True while some process holds the folder's lock (see `hold_run_folder`)."""
    lock = folder / LIVE_LOCK
    if lock.is_symlink() or not lock.is_file():
        return False
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
    return False


def _newest_write(folder: Path) -> float:
    newest = folder.lstat().st_mtime
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):
            newest = max(newest, path.lstat().st_mtime)
    return newest


def prune_run_folders(reports_dir: Path, older_than_s: float, now: float | None = None,
                      keep: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """Remove the run folders under reports_dir/runs/ that nothing was written to for older_than_s
    (at least MIN_PRUNE_AGE_S); (removed, left alone with why). Never a folder whose run is live (its
    lock is held), one named in keep, a symlink, or anything outside reports_dir/runs/."""
    older_than_s = max(older_than_s, MIN_PRUNE_AGE_S)
    now = time.time() if now is None else now
    removed: list[str] = []
    left: list[str] = []
    root = reports_dir / RUNS
    if root.is_symlink() or not root.is_dir():
        return removed, left
    for folder in sorted(root.iterdir()):
        if folder.is_symlink() or not folder.is_dir() or folder.name in set(keep):
            continue
        if run_folder_live(folder):
            left.append(f"{folder.name}: its run is still going")
            continue
        age = now - _newest_write(folder)
        if age < older_than_s:
            continue
        try:
            shutil.rmtree(folder)
            removed.append(folder.name)
        except OSError as err:
            left.append(f"{folder.name}: {err.strerror or err}")
    return removed, left


def _seconds(value: float | None) -> str:
    return "not run" if value is None else f"{value:.2f} s"
