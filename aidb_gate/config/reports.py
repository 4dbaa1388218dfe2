"""reports: the reports folder policy.

Guarantees: the gate writes, replaces and prunes only in a folder of its own: new, empty, an
earlier run's (with its summary.json), or holding only reports; anything else, a link out of
it, or a place no folder can be made is one paragraph saying which folder to use instead.
"""

from __future__ import annotations

import itertools
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from aidb_gate.config.schema import MAX_REPORTS_PATH, NAME_MAX, REPORT_FOLDERS, REPORT_SUFFIXES
from aidb_gate.config.sources import _file_kind, _reason, shown_path
from aidb_gate.config.words import _text
from aidb_gate.errors import ConfigError


def _check_reports_dir(path: Path, where: str, environ: Mapping[str, str]) -> Path:
    """The reports folder, resolved. Guarantees: it is not the filesystem root, not a home folder
    nor above one, not a file, its logs/ is no link out of it, and, when it exists, it is an
    earlier run's reports folder (summary.json or summary-gw*.json) or holds nothing but reports
    (REPORT_FOLDERS, REPORT_SUFFIXES, hidden files). The gate writes there, replaces the latest
    report and removes old run folders under runs/, so anything else is a ConfigError that says why
    and what to set instead. So is a folder the gate could not make: a name part over NAME_MAX
    bytes, a path over MAX_REPORTS_PATH bytes, a file where a parent folder must be, or any error
    the system gives while looking at it (no permission, a loop of links) - never an OSError."""
    rule = ("the gate writes its reports there, replaces the latest run's report and removes old run folders "
            "under it, so it must be a folder of its own: new, empty, an earlier run's reports folder (with its "
            "summary.json), or holding only reports (*.html, *.xml, *.json, *.log, *.txt, runs/, logs/, backup/, "
            "assets/, bench/ and hidden files). Set "
            "`reports_dir` to such a folder, e.g. \"reports/aidb-gate\"")
    shown = shown_path(path)
    try:
        real = path.resolve()
        homes = {Path(h).resolve() for h in (environ.get("HOME"), os.path.expanduser("~")) if h and Path(h).is_absolute()}
    except (OSError, RuntimeError, ValueError) as err:
        raise ConfigError(f"{where}: `reports_dir` {shown} cannot be resolved ({err}); {rule}.") from None
    if real == Path(real.anchor):
        raise ConfigError(f"{where}: `reports_dir` is {shown}, the filesystem root; {rule}.")
    for home in homes:
        if real == home or real in home.parents:
            what = "your home folder" if real == home else f"a folder above your home folder {home}"
            raise ConfigError(f"{where}: `reports_dir` is {shown}, {what}; {rule}.")
    unusable = _unmakeable(real)
    if unusable:
        raise ConfigError(f"{where}: `reports_dir` {shown} cannot be made: {unusable}. Set `reports_dir` to a folder "
                          "the gate can create and write, e.g. \"reports/aidb-gate\" in the project.")
    try:
        return _check_reports_content(real, shown, where, rule)
    except OSError as err:
        raise ConfigError(f"{where}: `reports_dir` {shown} cannot be used ({_reason(err)}); {rule}.") from None


def _unmakeable(real: Path) -> str | None:
    """Why no folder can be made at the absolute path `real`, or None when nothing known stops it.
    Guarantees: never raises OSError; looks only (no folder is made)."""
    longest = max(real.parts, key=lambda part: len(os.fsencode(part)))
    if len(os.fsencode(longest)) > NAME_MAX:
        return (f"one name in its path ({shown_path(longest, 40)}) is {len(os.fsencode(longest))} bytes long, and a "
                f"file name may have at most {NAME_MAX}")
    if len(os.fsencode(str(real))) > MAX_REPORTS_PATH:
        return (f"it is {len(os.fsencode(str(real)))} bytes long, and what the gate writes under it must stay within "
                f"the system's 4096-byte limit on a path (at most {MAX_REPORTS_PATH} bytes)")
    try:
        ancestor = real
        while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        st = os.stat(ancestor)
    except OSError as err:
        return f"{shown_path(ancestor)} cannot be looked up ({_reason(err)})"
    if not stat.S_ISDIR(st.st_mode):
        if ancestor == real:
            return None  # the folder itself is a file: the caller says so in its own words
        kind = "a file" if stat.S_ISREG(st.st_mode) else _file_kind(st.st_mode)
        return f"{shown_path(ancestor)} is {kind}, not a folder the gate can make it in"
    return None


def _check_reports_content(real: Path, shown: str, where: str, rule: str) -> Path:
    """`real` when it may serve as the reports folder (see `_check_reports_dir`); may raise OSError."""
    if real.exists() and not real.is_dir():
        raise ConfigError(f"{where}: `reports_dir` is {shown}, which is a file; {rule}.")
    if not real.is_dir():
        return real
    for sub in ("runs", "logs"):
        if (real / sub).is_symlink():
            # A prune would follow the link and delete run folders wherever it points.
            raise ConfigError(f"{where}: `reports_dir` is {shown}, whose {sub}/ is a link out of it; {rule}.")
    try:
        if (real / "summary.json").is_file() or next(real.glob("summary-gw*.json"), None) is not None:
            return real  # an earlier run's: what the user keeps beside its reports is theirs, and untouched
        strangers = list(itertools.islice((e.name for e in real.iterdir() if not _is_report(e)), 3))
    except OSError as err:
        raise ConfigError(f"{where}: `reports_dir` {shown} cannot be listed ({err.strerror or err}); {rule}.") from None
    if strangers:
        names = ", ".join(_text(n) for n in strangers)
        raise ConfigError(f"{where}: `reports_dir` is {shown}, which holds {names} - not reports, and no summary.json "
                          f"of an earlier run; {rule}.")
    return real


def _is_report(entry: Path) -> bool:
    """True for what a reports folder may hold: hidden entries, the gate's folders (not links
    out of the folder) and report files."""
    if entry.name.startswith("."):
        return True
    if entry.is_symlink():
        return False
    if entry.is_dir():
        return entry.name in REPORT_FOLDERS
    return entry.suffix in REPORT_SUFFIXES
