"""restore: prove that a backup restores without loss, into a fresh stack, and serves again.

Guarantees: the `RESTORE` step restores the run's backup into fresh instances of every
dependency that holds data (started in the background as soon as the stack is up), boots the
service against them under the original host names, and keeps both for the comparisons;
`compare_stacks` (backup/fingerprint.py) sets the original's fingerprint beside the restored one's and
names every table, sequence, object, point, payload and vector that was lost or changed (a
changed float or vector value by its value and bits before and after, where the column is small
enough for the fingerprint to list it; NaNs by meaning, as the dump writes them);
`compare_service` asks the original and the restored service for the same documents and the
same searches and names every difference. Exit codes are never trusted: a data-only or
single-schema dump exits 0 and still loses data, and these comparisons catch it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aidb_gate.backup.fingerprint import Fingerprint, take_fingerprint
from aidb_gate.core import http
from aidb_gate.core.steps import Pipeline, Step
from aidb_gate.pipeline import StageName
from aidb_gate.stages.backup import BACKUP

if TYPE_CHECKING:
    from aidb_gate.services.lifecycle import Dependency
    from aidb_gate.stages.boot import Boot


def read_back(base_url: str, docs: list[dict[str, Any]], data: dict[str, Any]) -> list[dict[str, Any] | None]:
    """Each document as GET answers it now (None where it does not answer 200)."""
    found = []
    for doc in docs:
        resp = http.request("GET", base_url + data["get_path"].replace("{id}", str(doc["id"])), deadline_s=30)
        found.append(_json(resp) if resp.status_code == 200 else None)
    return found


def _json(resp: Any) -> Any:
    """The service's JSON answer, or an AssertionError in one paragraph (a service that answers a
    data call with a web page fails the check, never with a JSONDecodeError)."""
    return http.json_of(resp, error=AssertionError, hint="The service must answer its data API with JSON.")


def compare_service(original_url: str, restored_url: str, docs: list[dict[str, Any]], data: dict[str, Any]) -> list[str]:
    """The restored service serves the same documents and the same search results."""
    problems = []
    for doc in docs:
        path = data["get_path"].replace("{id}", str(doc["id"]))
        before = http.request("GET", original_url + path, deadline_s=30)
        after = http.request("GET", restored_url + path, deadline_s=30)
        if after.status_code != 200:
            problems.append(f"GET {path} on the restored service answered {after.status_code} (the original: "
                            f"{before.status_code})")
        elif _json(before) != _json(after):
            problems.append(f"GET {path} differs after the restore: {_diff(_json(before), _json(after))}")
    if data.get("search"):
        for doc in docs[:: max(1, len(docs) // 5)]:
            body = {"query": doc["content"], "limit": 5}
            before = http.request("POST", original_url + data["search_path"], json=body, deadline_s=30)
            after = http.request("POST", restored_url + data["search_path"], json=body, deadline_s=30)
            if before.status_code != 200:
                # The original cannot search either (e.g. no vector store configured): only the answers must agree.
                if after.status_code != before.status_code:
                    problems.append(f"POST {data['search_path']} answered {before.status_code} before the restore and "
                                    f"{after.status_code} after")
                continue
            if after.status_code != 200:
                problems.append(f"POST {data['search_path']} on the restored service answered {after.status_code}")
                continue
            ids_before = [(r["id"], round(float(r["score"]), 5)) for r in _json(before).get("results", [])]
            ids_after = [(r["id"], round(float(r["score"]), 5)) for r in _json(after).get("results", [])]
            if ids_before != ids_after:
                problems.append(f"search for document {doc['id']}'s text gives {ids_after} after the restore, "
                                f"{ids_before} before")
    return problems


def _diff(before: Any, after: Any) -> str:
    if isinstance(before, dict) and isinstance(after, dict):
        keys = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
        return "; ".join(f"{k}: {before.get(k)!r:.80} -> {after.get(k)!r:.80}" for k in keys)
    return f"{before!r:.100} -> {after!r:.100}"


@dataclass
class RestoreRun:
    """The backup restored into fresh dependencies, and the service booted against them."""

    deps: dict[str, Dependency]
    timings: dict[str, float]
    fingerprint: Fingerprint
    boot: Boot


def _restore(session: Pipeline) -> RestoreRun:
    from aidb_gate.backup import restore_backup
    from aidb_gate.backup.targets import data_targets

    backup, stack = session.backup(), session.stack()
    names = [n for n in session.restore_names() if n in stack.deps]
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        futures = {n: pool.submit(session.fresh_dependency, n, f"{n}-restored") for n in names}
        fresh = {n: f.result() for n, f in futures.items()}
    pg, q = data_targets(session.connect(), fresh)
    session.progress(f"restore: into fresh {', '.join(names)}")
    begin = time.monotonic()
    cfg = session.cfg
    timings = restore_backup(backup.folder, pg, q, commands=cfg.restore_commands, cwd=cfg.root,
                             command_timeout_s=cfg.backup_timeout_s)
    restored = take_fingerprint(pg, q)
    session.work["restore"] = time.monotonic() - begin
    boot = session.boot_against(fresh, role="target-restored")
    session.work["restored_boot"] = boot.seconds
    return RestoreRun(fresh, timings, restored, boot)


#: The backup restored into fresh dependencies and the service booted against them.
RESTORE: Step[RestoreRun] = Step("restore", StageName.RESTORE, _restore, needs=(BACKUP,))
