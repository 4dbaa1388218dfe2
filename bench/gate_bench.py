"""The gate's benchmark: cold and warm p1 runs, the critical path, flakiness, and backup at scale.

Writes reports/bench/bench.json and reports/bench/bench.md. Every number comes from real runs on this
machine, in this invocation:

- cold_p1_s: `pytest -m p1` after every project image was removed (base, recipes, target);
- warm_p1_median_s: the median of --repeat warm `pytest -m p1` runs; flaky_runs counts the
  ones that failed (a failure here is a bug to fix, not a timeout to raise);
- per-stage times, from each run's reports/summary.json;
- critical_path_s: the slowest dependency's time to ready + the service's time to ready + the
  tests' own work, measured in the same warm runs - the lower bound the warm time is compared
  with. The tests' own work is their call phases plus the work session fixtures do for them once
  the service is up and that no gate can skip or run earlier: seeding, backup + verify, restore,
  and the restored service's time to ready. Not in it: interpreter start and collection, engine
  start, image look-ups, the build cache check, the imports check (it runs beside the dependency
  start), fresh restore targets (started in the background), and clean-up. critical_path_calls_s
  is the narrower figure with the call phases alone;
- backup_scale_s / raw_dump_restore_s: backup + verify + restore of ~1,000,000 Postgres rows
  next to raw `pg_dump -Fc` + `pg_restore` of the same data; the Qdrant side (50,000 points of
  384 dimensions) next to a raw snapshot + download + upload of the same collection;
- qdrant_engines: the Qdrant-API recipe's Qdrant Edge engine beside the old local-mode recipe
  (built from git history) on the same collection: round trip, identity, search agreement and
  recall (bench/qdrant_engines.py).

- docker_warm_p1_median_s, docker_over_podman (--docker): the same warm p1 on Docker 20.10 in a
  network namespace of its own reached over TCP (scripts/docker-netns.sh), its runs interleaved
  with the Podman ones, and the ratio of the two medians.

The bench fails (exit 1) when a gate run fails, a run leaves no stage times, or the scale round
trip finds a problem; `--smoke` (one run per engine, a small scale) runs in `make test`.

Usage: python bench/gate_bench.py [--repeat 10] [--skip-cold] [--skip-scale] [--skip-engines] [--rows N] [--points N]
       [--docker] [--smoke]
       python bench/gate_bench.py --only-engines [--points N] [--queries N]  (into the last bench.json)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: Everything the bench writes: a folder of its own in reports/, which the gate's reports-folder
#: policy knows (config.REPORT_FOLDERS), so a bench before the first gate run blocks nothing.
REPORTS = ROOT / "reports" / "bench"
PYTEST = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
#: The last commit whose Qdrant-API recipe ran qdrant-client's local mode (bench/qdrant_engines.py).
OLD_QDRANT_REV = "b7b8d2f"


def log(msg: str) -> None:
    print(f"[bench] {msg}", flush=True)


def p1_run(label: str, docker_host: str | None = None) -> dict:
    """One `pytest -m p1` in its own reports folder (on the engine at `docker_host`, else the one
    the gate finds); its wall time, outcome and stage data."""
    out = REPORTS / "runs" / label
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "AIDB_GATE_REPORTS_DIR": str(out)}
    if docker_host:
        env["DOCKER_HOST"] = docker_host
    begin = time.monotonic()
    proc = subprocess.run([*PYTEST, "-m", "p1", "suites", "-q", f"--html={out}/gate.html", f"--junitxml={out}/junit.xml",
                           "-o", "junit_duration_report=call"], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.monotonic() - begin
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else {}
    calls = sum(float(tc.get("time", 0)) for tc in ET.parse(out / "junit.xml").iter("testcase")) \
        if (out / "junit.xml").exists() else 0.0
    ev = summary.get("evidence", {})
    deps_ready = ev.get("dependency_ready_s", {})
    work = ev.get("work_s", {})
    ready = (max(deps_ready.values()) if deps_ready else 0.0) + ev.get("boot_s", 0.0)
    critical = ready + calls + sum(work.values())
    tail = "\n".join(proc.stdout.strip().splitlines()[-3:])
    log(f"{label}: exit {proc.returncode} in {wall:.1f} s (critical path {critical:.1f} s) {tail.splitlines()[-1] if tail else ''}")
    return {"label": label, "exit": proc.returncode, "wall_s": round(wall, 2), "critical_path_s": round(critical, 2),
            "critical_path_calls_s": round(ready + calls, 2), "tests_call_s": round(calls, 2), "work_s": work,
            "stages": {r["stage"]: r["seconds"] for r in summary.get("stages", [])},
            "dependency_ready_s": deps_ready, "boot_s": ev.get("boot_s")}


class DockerEngine:
    """The Docker engine of scripts/docker-netns.sh (its own network namespace, reached over TCP as
    docker:dind is), started if it is not running and then stopped again at the end."""

    def __enter__(self) -> str:
        script = ROOT / "scripts" / "docker-netns.sh"
        sock = "/run/aidb-dk/docker.sock"
        self.started = subprocess.run(["curl", "-fsS", "--max-time", "2", "--unix-socket", sock, "http://d/_ping"],
                                      capture_output=True).returncode != 0
        subprocess.run(["bash", str(script), "start"], check=True)
        env = subprocess.run(["bash", str(script), "env"], check=True, capture_output=True, text=True).stdout.strip()
        return env.split("=", 1)[1]

    def __exit__(self, *exc: object) -> None:
        if self.started:
            subprocess.run(["bash", str(ROOT / "scripts" / "docker-netns.sh"), "stop"], check=False)


def remove_project_images() -> None:
    env = {**os.environ}
    from aidb_gate.core.engine import _conf_env

    env.update(_conf_env(os.environ)[0])
    refs = subprocess.run(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter",
                           "reference=localhost/aidb-gate/*"], capture_output=True, text=True, env=env).stdout.split()
    if refs:
        subprocess.run(["podman", "rmi", "-f", *refs], capture_output=True, env=env)
    log(f"removed {len(refs)} project images for the cold run")


def scale(rows: int, points: int) -> dict:
    """Backup, verify and restore at scale, beside raw pg_dump + pg_restore of the same data."""
    from aidb_gate.backup import postgres as pg_backup
    from aidb_gate.backup import qdrant as q_backup
    from aidb_gate.backup import restore_backup, take_backup, verify_backup
    from aidb_gate.config import load_config
    from aidb_gate.session import GateSession

    work = REPORTS / "scale"
    shutil.rmtree(work, ignore_errors=True)  # scratch of an earlier bench: a backup folder is never reused
    cfg = load_config(ROOT, {"reports_dir": str(work), "dependencies": {"redis": {"enabled": False}}})
    session = GateSession(cfg, progress=log)
    result: dict = {"rows": rows, "points": points}
    try:
        stack = session.stack()
        pg = session.pg_target(stack.of_kind("postgres"))
        q = session.qdrant_target(stack.of_kind("qdrant"))
        log(f"loading {rows} rows")
        pg.exec(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", pg.user, "-d", pg.db, "-c",
                 "CREATE TABLE bench_rows (id bigserial PRIMARY KEY, title text, body text, score double precision, "
                 f"meta jsonb); INSERT INTO bench_rows (title, body, score, meta) SELECT 'title ' || g, "
                 "repeat(md5(g::text), 4), g / 7.0, jsonb_build_object('g', g, 'tag', 'ü' || (g % 100)) "
                 f"FROM generate_series(1, {rows}) g"])
        q.result("PUT", "/collections/bench_points", json={"vectors": {"size": 384, "distance": "Cosine"}})
        log(f"loading {points} points of 384 dimensions")
        rnd = random.Random(7)
        for start in range(0, points, 500):
            batch = [{"id": i + 1, "vector": [rnd.uniform(-1, 1) for _ in range(384)], "payload": {"i": i, "t": f"p{i}"}}
                     for i in range(start, min(points, start + 500))]
            q.result("PUT", "/collections/bench_points/points", params={"wait": "true"}, json={"points": batch})

        # Raw baseline: what an operator would run by hand, on the same data, in the same run.
        raw = work / "raw.dump"
        begin = time.monotonic()
        with raw.open("wb") as out:
            pg.exec(["pg_dump", "-Fc", "-U", pg.user, "-d", pg.db], stdout=out)
        raw_db = pg.with_db(f"bench_raw_{uuid.uuid4().hex[:6]}")
        pg_backup.create_database(pg, raw_db.db)
        with raw.open("rb") as fh:
            pg.exec(["pg_restore", "-U", pg.user, "-d", raw_db.db, "--no-owner", "--no-privileges"], stdin=fh)
        result["raw_dump_restore_s"] = round(time.monotonic() - begin, 2)
        pg_backup.drop_database(pg, raw_db.db)

        # The gate's procedure, Postgres part: backup + verify + restore into a fresh database.
        folder = work / "backup-pg"
        begin = time.monotonic()
        take_backup(folder, pg, None)
        problems = verify_backup(folder, pg)
        target = pg.with_db(f"bench_restore_{uuid.uuid4().hex[:6]}")
        pg_backup.create_database(pg, target.db)
        restore_backup(folder, target, None)
        result["backup_scale_s"] = round(time.monotonic() - begin, 2)
        result["backup_scale_problems"] = problems
        result["backup_over_raw"] = round(result["backup_scale_s"] / result["raw_dump_restore_s"], 3)
        pg_backup.drop_database(pg, target.db)

        # Qdrant raw baseline: what an operator would do with curl - create, download, upload into a
        # fresh server - so the gate's Qdrant procedure is compared with the engine's own cost.
        raw_q = session.qdrant_target(session.fresh_dependency("qdrant", "qdrant-raw"))
        begin = time.monotonic()
        snap = q.result("POST", "/collections/bench_points/snapshots", params={"wait": "true"})["name"]
        raw_snap = work / "raw.snapshot"
        with raw_snap.open("wb") as out:  # streamed to the file, as curl -o would
            q.request("GET", f"/collections/bench_points/snapshots/{snap}", into=out, max_bytes=None)
        with raw_snap.open("rb") as fh:
            raw_q.request("POST", "/collections/bench_points/snapshots/upload", params={"priority": "snapshot", "wait": "true"},
                          files={"snapshot": (raw_snap.name, fh, "application/octet-stream")})
        result["qdrant_raw_s"] = round(time.monotonic() - begin, 2)
        q.request("DELETE", f"/collections/bench_points/snapshots/{snap}")

        # Qdrant part, on its own: snapshot, verify, restore into a fresh server.
        # Both sides get their fresh server before the clock starts.
        folder = work / "backup-qdrant"
        fresh = session.qdrant_target(session.fresh_dependency("qdrant", "qdrant-bench"))
        begin = time.monotonic()
        take_backup(folder, None, q)
        problems = verify_backup(folder, None)
        restore_backup(folder, None, fresh)
        result["qdrant_scale_s"] = round(time.monotonic() - begin, 2)
        result["qdrant_points_restored"] = q_backup.count(fresh, "bench_points")
        result["qdrant_over_raw"] = round(result["qdrant_scale_s"] / result["qdrant_raw_s"], 3)
        result["qdrant_scale_problems"] = problems
    finally:
        session.close()
    return result


def markdown(data: dict) -> str:
    rows = [
        ("cold `pytest -m p1`", data.get("cold_p1_s")),
        (f"warm `pytest -m p1`, median of {data.get('repeat_runs')}", data.get("warm_p1_median_s")),
        ("critical path (slowest dependency + service ready + tests' own work)", data.get("critical_path_s")),
        ("warm / critical path", data.get("warm_over_critical")),
        ("critical path, call phases only as the tests' work", data.get("critical_path_calls_s")),
        ("warm / call-phase critical path", data.get("warm_over_critical_calls")),
        ("flaky runs", f"{data.get('flaky_runs')} of {data.get('repeat_runs')}"),
        (f"warm `pytest -m p1` on Docker over TCP, median of {data.get('repeat_runs')}", data.get("docker_warm_p1_median_s")),
        ("Docker / Podman (warm medians)", data.get("docker_over_podman")),
        (f"backup + verify + restore, {data.get('scale', {}).get('rows', '-')} Postgres rows", data.get("backup_scale_s")),
        ("raw pg_dump + pg_restore of the same data", data.get("raw_dump_restore_s")),
        ("gate / raw", data.get("scale", {}).get("backup_over_raw")),
        (f"Qdrant snapshot + verify + restore, {data.get('scale', {}).get('points', '-')} points x 384",
         data.get("scale", {}).get("qdrant_scale_s")),
        ("raw Qdrant snapshot + download + upload of the same collection", data.get("scale", {}).get("qdrant_raw_s")),
        ("gate / raw (Qdrant)", data.get("scale", {}).get("qdrant_over_raw")),
    ]
    lines = ["| measure | value |", "|---|---|"]
    lines += [f"| {name} | {'-' if value is None else value} |" for name, value in rows if value is not None]
    if data.get("warm_stage_median_s"):
        lines += ["", "| stage (warm, median) | seconds |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in data["warm_stage_median_s"].items()]
    engines = data.get("qdrant_engines")
    if engines:
        edge, local = engines["edge"], engines["local-mode"]
        lines += ["", f"| Qdrant-API recipe, {engines['points']} points x 384, {engines['queries']} queries | Qdrant Edge "
                  f"| local mode ({engines['old_rev']}) |", "|---|---|---|"]
        for key, name in (("round_trip_s", "snapshot + verify + restore, s"), ("load_s", "upsert, 500 a request, s"),
                          ("snapshot_bytes", "snapshot size, bytes"), ("points_restored", "points restored"),
                          ("identical_after_restore", "every point identical after restore"),
                          ("indexed_vectors_count", "indexed vectors (HNSW)"),
                          ("exact_queries_s", "exact searches, s"), ("default_queries_s", "default searches, s"),
                          ("recall_at_10_default_vs_exact", "recall@10, default search vs exact")):
            lines.append(f"| {name} | {edge.get(key, '-')} | {local.get(key, '-')} |")
        lines.append(f"| exact top-10 identical on both engines | {engines['exact_top10_agreement']} | |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--skip-cold", action="store_true")
    parser.add_argument("--skip-scale", action="store_true")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--points", type=int, default=50_000)
    parser.add_argument("--skip-engines", action="store_true", help="skip the Qdrant engines side by side")
    parser.add_argument("--only-engines", action="store_true", help="measure the Qdrant engines side by side only")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--docker", action="store_true",
                        help="also run the warm p1 on Docker (scripts/docker-netns.sh), interleaved with the Podman "
                             "runs, for docker_over_podman")
    parser.add_argument("--smoke", action="store_true",
                        help="one run per engine (no Docker warm-up), a small scale, no cold run and no engines "
                             "comparison, into bench-smoke.json: proves the bench and p1 on both engines still run "
                             "(make test); its figures are not measurements")
    parser.add_argument("--old-qdrant-rev", default=OLD_QDRANT_REV,
                        help="the commit whose qdrant-api recipe is the local-mode engine (default: %(default)s)")
    args = parser.parse_args()
    if args.only_engines:
        from qdrant_engines import compare

        # Into the last full bench's bench.json (its other figures kept), or a new one.
        REPORTS.mkdir(parents=True, exist_ok=True)
        path = REPORTS / "bench.json"
        data = json.loads(path.read_text()) if path.exists() else {"machine": {"cpus": os.cpu_count()}}
        data["qdrant_engines"] = compare(args.points, args.queries, args.old_qdrant_rev, log)
        data["qdrant_engines"]["measured_at"] = time.strftime("%F %T")
        path.write_text(json.dumps(data, indent=2))
        (REPORTS / "bench.md").write_text(markdown(data))
        print(markdown(data))
        return 0
    if args.smoke:
        args.repeat, args.skip_cold, args.skip_engines = 1, True, True
        args.rows, args.points = min(args.rows, 20_000), min(args.points, 1_000)
    name = "bench-smoke" if args.smoke else "bench"
    REPORTS.mkdir(parents=True, exist_ok=True)
    data: dict = {"machine": {"cpus": os.cpu_count()}, "repeat_runs": args.repeat, "measured_at": time.strftime("%F %T")}
    if not args.skip_cold:
        remove_project_images()
        cold = p1_run("cold")
        data["cold_p1_s"], data["cold_exit"] = cold["wall_s"], cold["exit"]
    with contextlib.ExitStack() as stack:
        docker_host = stack.enter_context(DockerEngine()) if args.docker else None
        if docker_host and not args.smoke:  # the smoke proves the code path; its figures are not measurements
            first = p1_run("docker-warm-up", docker_host)  # builds what that engine lacks; not counted
            data["docker_warm_up_s"], data["docker_warm_up_exit"] = first["wall_s"], first["exit"]
        warm, docker = [], []
        for i in range(args.repeat):  # interleaved, so that both engines see the same machine
            warm.append(p1_run(f"warm-{i + 1}"))
            if docker_host:
                docker.append(p1_run(f"docker-warm-{i + 1}", docker_host))
    data["warm_runs"] = warm
    data["warm_p1_median_s"] = round(statistics.median(r["wall_s"] for r in warm), 2)
    data["critical_path_s"] = round(statistics.median(r["critical_path_s"] for r in warm), 2)
    data["warm_over_critical"] = round(data["warm_p1_median_s"] / data["critical_path_s"], 3)
    data["critical_path_calls_s"] = round(statistics.median(r["critical_path_calls_s"] for r in warm), 2)
    data["warm_over_critical_calls"] = round(data["warm_p1_median_s"] / data["critical_path_calls_s"], 3)
    data["flaky_runs"] = sum(1 for r in warm if r["exit"] != 0)
    from aidb_gate.report import STAGES

    data["warm_stage_median_s"] = stage_medians(warm, STAGES)
    if docker:
        data["docker_runs"] = docker
        data["docker_warm_p1_median_s"] = round(statistics.median(r["wall_s"] for r in docker), 2)
        data["docker_over_podman"] = round(data["docker_warm_p1_median_s"] / data["warm_p1_median_s"], 3)
        data["docker_flaky_runs"] = sum(1 for r in docker if r["exit"] != 0)
        data["docker_stage_median_s"] = stage_medians(docker, STAGES)
    if not args.skip_scale:
        data["scale"] = scale(args.rows, args.points)
        data["backup_scale_s"] = data["scale"]["backup_scale_s"]
        data["raw_dump_restore_s"] = data["scale"]["raw_dump_restore_s"]
    if not args.skip_engines:
        from qdrant_engines import compare

        data["qdrant_engines"] = compare(args.points, args.queries, args.old_qdrant_rev, log)
    (REPORTS / f"{name}.json").write_text(json.dumps(data, indent=2))
    (REPORTS / f"{name}.md").write_text(markdown(data))
    print(markdown(data))
    problems = failures(data)
    for problem in problems:
        log(f"FAILED: {problem}")
    return 1 if problems else 0


def stage_medians(runs: list[dict], order: tuple[str, ...] | list[str]) -> dict[str, float]:
    """{stage: median seconds} over runs, in the pipeline's order (stages no run had are left out)."""
    seen = {s for r in runs for s in r["stages"]}
    return {s: round(statistics.median(r["stages"].get(s, 0.0) for r in runs), 2) for s in order if s in seen}


def failures(data: dict) -> list[str]:
    """What makes this bench a failure: a failed gate run (a flaky gate is a bug), a figure a run
    should have produced and did not, or a problem the scale round trip found."""
    problems = [f"{r['label']} exited {r['exit']}" for r in data.get("warm_runs", []) + data.get("docker_runs", [])
                if r["exit"] != 0]
    if data.get("cold_exit", 0) != 0:
        problems.append(f"the cold run exited {data['cold_exit']}")
    if data.get("docker_warm_up_exit", 0) != 0:
        problems.append(f"the Docker warm-up run exited {data['docker_warm_up_exit']}")
    for run in data.get("warm_runs", []) + data.get("docker_runs", []):
        if not run["stages"] or not run["critical_path_s"]:
            problems.append(f"{run['label']} left no stage times (reports/summary.json)")
    scale = data.get("scale") or {}
    for key in ("backup_scale_problems", "qdrant_scale_problems"):
        if scale.get(key):
            problems.append(f"scale {key}: {scale[key]}")
    if scale and scale.get("qdrant_points_restored") != scale.get("points"):
        problems.append(f"Qdrant restored {scale.get('qdrant_points_restored')} of {scale.get('points')} points")
    return problems

if __name__ == "__main__":
    sys.exit(main())
