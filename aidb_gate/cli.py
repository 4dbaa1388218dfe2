"""cli: `aidb-gate doctor|prepare|clean` - the gate's set-up and upkeep outside pytest.

Guarantees: every command prints one clear paragraph on a user error and exits non-zero,
never a traceback; `prepare` provisions exactly the images `pytest -m p1` would; `clean`
removes one run's resources or those of dead runs, never a live run's.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aidb_gate.config import load_config
from aidb_gate.core.janitor import reap_dead_runs, remove_run
from aidb_gate.engine import doctor
from aidb_gate.errors import GateError
from aidb_gate.session import GateSession


def _print(msg: str) -> None:
    print(f"[aidb-gate] {msg}", flush=True)


def cmd_doctor(_args: argparse.Namespace) -> int:
    ok, lines = doctor()
    for line in lines:
        print(line)
    print("doctor: all good" if ok else "doctor: fix the ERR lines above, then run it again")
    return 0 if ok else 1


def cmd_prepare(args: argparse.Namespace) -> int:
    cfg = load_config(Path(args.root).resolve(), {"target": args.target})
    session = GateSession(cfg, _print)
    try:
        session.preflight()
        session.connect()
        for role, info in session.dependency_images().items():
            _print(f"{role}: {info.ref} ({info.source})")
        if not cfg.image:
            _print(f"base: {session.base_ref()}")
    finally:
        session.close()
    return 0


def cmd_clean(args: argparse.Namespace) -> int:
    cfg = load_config(Path(args.root).resolve())
    session = GateSession(cfg, _print)
    engine = session.connect()  # reaps dead runs on the way
    client = engine.docker_client()
    try:
        sweep = remove_run(client, args.run) if args.run else reap_dead_runs(client, keep_run=session.run.id)
    finally:
        client.close()
        session.close()
    _print(f"removed {len(sweep.containers)} container(s), {len(sweep.networks)} network(s), "
           f"{len(sweep.volumes)} volume(s)")
    for err in sweep.errors:
        _print(f"problem: {err}")
    return 1 if sweep.errors else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aidb-gate", description="The aidb-gate deployment gate's tools.")
    parser.add_argument("--root", default=".", help="the project folder holding pyproject.toml/gate.toml")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check the container engine set-up and say what to fix").set_defaults(fn=cmd_doctor)
    prep = sub.add_parser("prepare", help="provision the dependency images (local, pulled or built)")
    prep.add_argument("--target", help="build context of the service (as --gate-target)")
    prep.set_defaults(fn=cmd_prepare)
    clean = sub.add_parser("clean", help="remove a run's resources, or those of dead runs")
    clean.add_argument("--run", help="the run id to remove (default: every dead run)")
    clean.set_defaults(fn=cmd_clean)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except GateError as err:
        print(f"aidb-gate: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aidb-gate: interrupted; resources of this run were removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
