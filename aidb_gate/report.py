"""report: what a reviewer reads - secret redaction, the stage table, and per-test evidence.

Guarantees: every string that leaves the gate (log files, report extras, failure text, JUnit
XML) goes through one `Redactor`, which knows every secret the run made.
"""

from __future__ import annotations

import html
import json
import threading
from pathlib import Path

from aidb_gate.errors import GateError

MASK = "***"


class Redactor:
    """Replaces every registered secret with ***; thread-safe, longest secret first."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._lock = threading.Lock()

    def add(self, secret: str) -> None:
        if secret and len(secret) >= 4:
            with self._lock:
                self._secrets.add(secret)

    def __call__(self, text: str) -> str:
        if not text:
            return text
        with self._lock:
            secrets = sorted(self._secrets, key=len, reverse=True)
        for s in secrets:
            if s in text:
                text = text.replace(s, MASK)
        return text

    def bytes(self, data: bytes) -> bytes:
        return self(data.decode("utf-8", errors="replace")).encode()


#: The pipeline's stages in order; test markers map onto them.
STAGES = ["engine", "images", "build", "imports", "dependencies", "boot", "health", "auth", "qdrant",
          "backup", "restore", "faults"]
MARKER_STAGE = {"build": "build", "imports": "imports", "startup": "boot", "health": "health", "auth": "auth",
                "qdrant": "qdrant", "backup": "backup", "restore": "restore", "faults": "faults"}


class StageBook:
    """Per-stage time and outcome, from the session's own steps and from the tests of each stage."""

    def __init__(self) -> None:
        self._seconds: dict[str, float] = {}
        self._failed: set[str] = set()
        self._tests: dict[str, dict[str, int]] = {}

    def record(self, stage: str, seconds: float, ok: bool) -> None:
        self._seconds[stage] = self._seconds.get(stage, 0.0) + seconds
        if not ok:
            self._failed.add(stage)

    def mark_failed(self, stage: str) -> None:
        self._failed.add(stage)

    def add_test(self, stage: str, outcome: str, seconds: float) -> None:
        counts = self._tests.setdefault(stage, {"passed": 0, "failed": 0, "skipped": 0})
        counts[outcome] = counts.get(outcome, 0) + 1
        self._seconds[stage] = self._seconds.get(stage, 0.0) + seconds

    @classmethod
    def merged(cls, worker_rows: list[list[dict]]) -> StageBook:
        """The stage table of a pytest-xdist run, in which each worker ran its own stack: a stage's
        time is its slowest worker's, test counts add up, and a stage failed if it failed anywhere."""
        book = cls()
        for rows in worker_rows:
            for r in rows:
                stage = str(r["stage"])
                book._seconds[stage] = max(book._seconds.get(stage, 0.0), float(r["seconds"]))
                counts = book._tests.setdefault(stage, {"passed": 0, "failed": 0, "skipped": 0})
                for key in counts:
                    counts[key] += int(r.get(key, 0))
                if r["status"] == "failed":
                    book._failed.add(stage)
        return book

    def rows(self) -> list[dict[str, object]]:
        rows = []
        for stage in STAGES:
            tests = self._tests.get(stage, {})
            if stage not in self._seconds and not tests:
                continue
            if stage in self._failed or tests.get("failed"):
                status = "failed"
            elif tests.get("skipped") and not tests.get("passed"):
                status = "skipped"
            else:
                status = "passed"
            rows.append({"stage": stage, "status": status, "seconds": round(self._seconds.get(stage, 0.0), 2),
                         "passed": tests.get("passed", 0), "failed": tests.get("failed", 0),
                         "skipped": tests.get("skipped", 0)})
        return rows

    def first_failure(self) -> str | None:
        return next((r["stage"] for r in self.rows() if r["status"] == "failed"), None)  # type: ignore[misc]

    def as_text(self) -> str:
        lines = [f"{'stage':<14}{'status':<9}{'time':>9}  tests"]
        for r in self.rows():
            tests = f"{r['passed']} passed, {r['failed']} failed" + (f", {r['skipped']} skipped" if r["skipped"] else "")
            lines.append(f"{r['stage']:<14}{r['status']:<9}{r['seconds']:>8.1f}s  {tests}")
        return "\n".join(lines)

    def as_html(self) -> str:
        colour = {"passed": "#1a7f37", "failed": "#cf222e", "skipped": "#9a6700"}
        body = "".join(
            f"<tr><td>{r['stage']}</td><td style='color:{colour.get(str(r['status']), '#000')};font-weight:bold'>"
            f"{r['status']}</td><td>{r['seconds']:.1f} s</td><td>{r['passed']} passed, {r['failed']} failed"
            f"{', ' + str(r['skipped']) + ' skipped' if r['skipped'] else ''}</td></tr>"
            for r in self.rows()
        )
        return ("<h2>Gate stages</h2><table class='gate-stages' border='1' cellpadding='4' "
                "style='border-collapse:collapse'><tr><th>stage</th><th>status</th><th>time</th><th>tests</th></tr>"
                f"{body}</table>")


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
        text = path.read_text(errors="replace")
        if len(text) > max_chars:
            text = f"[... {len(text) - max_chars} earlier characters in {path} ...]\n" + text[-max_chars:]
        out.append((path.name, redactor(text) or "(empty: the process printed nothing)"))
    return out


BLOCKED = "so this stage cannot run"


def condensed_verdicts(verdicts: dict[str, str]) -> tuple[dict[str, str], int]:
    """The verdicts that name a cause, and how many tests were only blocked by an earlier stage."""
    own = {k: v for k, v in verdicts.items() if BLOCKED not in v.split("\n", 1)[0]}
    return own, len(verdicts) - len(own)


def image_lines(evidence: dict) -> list[str]:
    lines = []
    if evidence.get("engine"):
        lines.append(f"engine: {evidence['engine']}")
    for role, desc in (evidence.get("images") or {}).items():
        lines.append(f"image {role}: {desc}")
    if evidence.get("target image"):
        lines.append(f"image target: {evidence['target image']}")
    return lines


def summary_html(stages: StageBook, evidence: dict, verdicts: dict[str, str]) -> list[str]:
    """The report's opening: the stage table, what ran where, and every verdict."""
    parts = [stages.as_html()]
    facts = "".join(f"<li>{html.escape(line)}</li>" for line in image_lines(evidence))
    parts.append(f"<h3>What ran</h3><ul>{facts}<li>run id: {html.escape(str(evidence.get('run')))}</li></ul>")
    backup = evidence.get("backup") or {}
    if backup:
        rows = "".join(
            f"<tr><td>{html.escape(dep)}</td><td>{f['size_bytes'] / 1024:.1f} KiB</td><td>{f['backup_s']:.2f} s</td>"
            f"<td>{_seconds(f['restore_s'])}</td><td>{html.escape(f['invariants'])}</td></tr>"
            for dep, f in backup.items())
        parts.append("<h3>Backup and restore</h3><table border='1' cellpadding='4' style='border-collapse:collapse'>"
                     "<tr><th>dependency</th><th>backup size</th><th>backup time</th><th>restore time</th>"
                     f"<th>invariants checked</th></tr>{rows}</table>")
    if verdicts:
        own, blocked = condensed_verdicts(verdicts)
        items = "".join(f"<li><code>{html.escape(k)}</code>: {html.escape(v.splitlines()[0])}</li>"
                        for k, v in own.items())
        if blocked:
            items += f"<li>{blocked} more test(s) could not run because an earlier stage failed</li>"
        parts.append(f"<h3>Verdicts</h3><ul>{items}</ul>")
    return parts


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


def write_summary(path: Path, stages: StageBook, evidence: dict, verdicts: dict[str, str], exit_status: int) -> None:
    """The machine-readable verdict of a run, written atomically."""
    data = {"exit_status": exit_status, "first_failure": stages.first_failure(), "stages": stages.rows(),
            "verdicts": verdicts, "evidence": evidence}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)


def _seconds(value: float | None) -> str:
    return "not run" if value is None else f"{value:.2f} s"
