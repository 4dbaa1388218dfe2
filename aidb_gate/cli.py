"""cli: `aidb-gate doctor|prepare|clean|backup|verify|restore` - the gate's tools outside pytest.

Guarantees: every command prints one clear paragraph on a user error and exits non-zero
(4 for a bad setting, 2 otherwise), never a traceback, a file-system error included; outside
text in what it prints (names a server or a manifest gave, paths) has its control, bidi and
line-separator characters escaped. `prepare` provisions exactly the images `pytest -m p1`
would; `clean` removes one run's resources, every kept run's (--kept) or those of dead runs
that were not kept, never a live run's; `backup`, `verify` and `restore` are the same
verified procedure the backup and restore stages prove. `backup --out` refuses a folder that
is a link or holds anything and then leaves it exactly as it was; a backup that fails removes
only what it created. `--qdrant-url` with credentials in it is refused, like
`--qdrant-api-key`: the command line is visible to every user through `ps`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aidb_gate.backup import PgTarget, QdrantTarget, backup_folder, restore_backup, take_backup, verify_backup
from aidb_gate.config import load_config
from aidb_gate.core.janitor import reap_dead_runs, remove_finished_run, remove_kept_runs
from aidb_gate.core.names import escape
from aidb_gate.core.text import clip
from aidb_gate.doctor import doctor
from aidb_gate.errors import ConfigError, GateError
from aidb_gate.images import project_id, prune_target_images
from aidb_gate.keep import kept_secrets_file
from aidb_gate.session import GateSession


def _print(msg: str) -> None:
    print(f"[aidb-gate] {msg}", flush=True)


def cmd_doctor(_args: argparse.Namespace) -> int:
    report = doctor()
    for line in report.lines:
        print(line)
    print(report.verdict)
    return report.exit_code


def cmd_prepare(args: argparse.Namespace) -> int:
    cfg = load_config(Path(args.root).resolve(), {"target": args.target})
    session = GateSession(cfg, _print)
    try:
        session.preflight()
        engine = session.connect()
        if not cfg.image:
            _print(f"base: {session.base_ref()}")
        if not args.no_network_check and not network_works(engine):
            return 1
        for role, info in session.dependency_images().items():
            _print(f"{role}: {info.ref} ({info.source})")
    finally:
        session.close()
    return 0


def network_works(engine) -> bool:
    """doctor's network check, before any image is built on top of the base: a fresh machine has no
    image for `aidb-gate doctor` to try until the base exists, and a recipe build that fails on the
    network says less than this check does."""
    import uuid

    from aidb_gate.core.run import Run
    from aidb_gate.doctor import Report, check_network

    report = Report()
    check_network(engine, Run(id=f"doctor-{uuid.uuid4().hex[:6]}"), report)
    for line in report.lines:
        _print(line)
    if not report.ok:
        _print("the engine cannot run the gate's containers on a network: fix the ERR line above, then run again")
    return report.ok


def cmd_clean(args: argparse.Namespace) -> int:
    """`--run ID`: that run, kept or not, refused while it is live; `--kept`: every kept run that is
    over; neither: runs that are over and were not kept (a kept stack stays until asked). Live means
    a valid lease in the engine (see core/janitor.py), whichever host or PID namespace holds it."""
    cfg = load_config(Path(args.root).resolve())
    session = GateSession(cfg, _print)
    engine = session.connect()  # reaps dead runs on the way (never kept ones) and prints what it left alone
    client = engine.docker_client()
    clock = session.lease.clock if session.lease else None
    pruned: list[str] = []
    try:
        if args.run:
            sweep = remove_finished_run(client, args.run, clock=clock)
        elif args.kept:
            sweep = remove_kept_runs(client, clock=clock)
        else:
            # connect() just did this sweep and printed its notes: a second would find nothing new.
            sweep = session.reaped or reap_dead_runs(client, keep_run=session.run.id, clock=clock)
        if args.images and cfg.target is not None:
            # Only images built from this project's context, never one a live run uses or announced.
            pruned, problems, left = prune_target_images(engine, project_id(cfg.target))
            sweep.errors += problems
            for note in left:
                _print(f"left alone: {note}")
        if args.reports is not None:
            from aidb_gate.report import prune_run_folders

            gone, kept = prune_run_folders(cfg.reports_dir, args.reports * 86400, keep=[session.run.id])
            _print(f"removed {len(gone)} run folder(s) under {cfg.reports_dir / 'runs'} older than {args.reports:g} "
                   "day(s)")
            for note in kept:
                _print(f"left alone: {note}")
    finally:
        client.close()
        session.close()
    for run_id in sweep.runs:  # a removed kept run's secrets have nothing left to open
        kept_secrets_file(run_id).unlink(missing_ok=True)
    _print(f"removed {len(sweep.containers)} container(s), {len(sweep.networks)} network(s), "
           f"{len(sweep.volumes)} volume(s)" + (f", {len(sweep.folders)} host folder(s)" if sweep.folders else "")
           + (f", {len(pruned)} old target image tag(s)" if args.images else ""))
    for note in sweep.skipped if sweep is not session.reaped else ():
        _print(f"left alone: {note}")
    for err in sweep.errors:
        _print(f"problem: {err}")
    return 1 if sweep.errors else 0


def _targets(args: argparse.Namespace) -> tuple[PgTarget | None, QdrantTarget | None]:
    pg = q = None
    if getattr(args, "postgres_container", None):
        engine = _engine_for(args)
        user, db = args.postgres_user, args.postgres_db
        if not user or not db:
            found_user, found_db = container_defaults(engine, args.postgres_container)
            user, db = user or found_user, db or found_db
        pg = PgTarget(engine.cli or engine.kind, args.postgres_container, user, db, env=engine.env(), engine=engine)
    if getattr(args, "qdrant_api_key", None):
        raise GateError("--qdrant-api-key puts the key on the command line, where `ps` shows it to every user of this "
                        "machine: export QDRANT_API_KEY, or give --qdrant-api-key-file with a file that holds the key.")
    if getattr(args, "qdrant_url", None):
        q = QdrantTarget(_qdrant_url(args.qdrant_url), _qdrant_key(args))
    return pg, q


def _qdrant_url(url: str) -> str:
    """--qdrant-url as given, once it is an http(s) URL with a host and no credentials in it: a
    user name or password there is on the command line, where `ps` shows it, just like a key."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        parts, port_ok = None, False
    if parts is not None and (parts.username is not None or parts.password is not None):
        raise GateError("--qdrant-url holds credentials (user:password@), and the command line is where `ps` shows them "
                        "to every user of this machine: give the URL without them (e.g. http://127.0.0.1:6333) and the "
                        "key through QDRANT_API_KEY or --qdrant-api-key-file.")
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise GateError(f"--qdrant-url '{escape(url)}' is not an http(s) URL with a host: give Qdrant's REST endpoint, "
                        "e.g. http://127.0.0.1:6333.")
    return url


#: Engines the running command connected to; main() closes them (a Podman service it started stops).
_ENGINES: list = []


def _engine_for(args: argparse.Namespace):
    """The engine the backup commands exec in, through its API (no CLI): DOCKER_HOST, else the
    Podman socket, else Docker's (first with --engine docker), else a Podman service started for
    this command and stopped when it ends."""
    import os
    import uuid

    from aidb_gate.core.engine import DOCKER_SOCKET, connect

    environ = dict(os.environ)
    if args.engine == "docker" and not environ.get("DOCKER_HOST") and Path(DOCKER_SOCKET).exists():
        environ["DOCKER_HOST"] = f"unix://{DOCKER_SOCKET}"
    engine = connect(f"cli-{uuid.uuid4().hex[:6]}", environ)
    _ENGINES.append(engine)
    return engine


def container_defaults(engine, container: str) -> tuple[str, str]:
    """The user and database the official Postgres image set up in `container`: its POSTGRES_USER
    (default `postgres`) and POSTGRES_DB (default: the user), read from its inspect through the API."""
    from aidb_gate.core import api

    try:
        env = (api.inspect(engine, container).get("Config") or {}).get("Env") or []
    except Exception as err:
        said = clip(" ".join(str(err).split()), 300)
        raise GateError(f"the {engine.kind} engine at {engine.docker_host} has no container '{escape(container)}' it can "
                        f"inspect ({escape(said)}). Name a running Postgres container (--postgres-container), or give "
                        "--postgres-user and --postgres-db.") from None
    pairs = dict(item.split("=", 1) for item in env if isinstance(item, str) and "=" in item)
    user = pairs.get("POSTGRES_USER") or "postgres"
    return user, pairs.get("POSTGRES_DB") or user


def _days(text: str) -> float:
    """A finite, positive number of days (argparse type)."""
    try:
        days = float(text)
    except ValueError:
        days = float("nan")
    if not (0 < days < 36500):
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days above 0")
    return days


def _qdrant_key(args: argparse.Namespace) -> str | None:
    """The Qdrant API key from --qdrant-api-key-file, else $QDRANT_API_KEY: never from an argument."""
    import os

    path = getattr(args, "qdrant_api_key_file", None)
    if not path:
        return os.environ.get("QDRANT_API_KEY") or None
    try:
        key = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as err:
        raise GateError(f"--qdrant-api-key-file {path} cannot be read ({getattr(err, 'strerror', None) or err}): give "
                        "a readable file that holds the key, or export QDRANT_API_KEY instead.") from None
    if not key:
        raise GateError(f"--qdrant-api-key-file {path} is empty: put the Qdrant API key in it.")
    return key


def cmd_backup(args: argparse.Namespace) -> int:
    """Back up into --out, then verify. A refused --out is left as it was; a backup that fails
    removes only what this command created (see `take_backup`)."""
    pg, q = _targets(args)
    if pg is None and q is None:
        raise GateError("Nothing to back up: give --postgres-container and/or --qdrant-url.")
    out = backup_folder(Path(args.out))  # resolved once: every later step uses this folder
    manifest = take_backup(out, pg, q, remove_on_failure=True)
    problems = verify_backup(out, pg)
    _print(f"backup written to {escape(out)} in {manifest['duration_s']:.1f} s")
    if manifest.get("postgres"):
        tables = manifest["postgres"].get("tables") or {}
        _print(f"postgres {escape(pg.db) if pg else ''}: {manifest['postgres']['size']} bytes, {len(tables)} tables, "
               f"{sum(tables.values())} rows")
    for name, entry in (manifest.get("qdrant") or {}).get("collections", {}).items():
        _print(f"qdrant {escape(name)}: {entry['points']} points, {entry['size']} bytes")
    for problem in problems:
        _print(f"VERIFY FAILED: {escape(problem)}")
    return 1 if problems else 0


def cmd_verify(args: argparse.Namespace) -> int:
    pg, _ = _targets(args)
    problems = verify_backup(Path(args.folder), pg)
    for problem in problems:
        _print(f"VERIFY FAILED: {escape(problem)}")
    if not problems:
        _print(f"{escape(args.folder)}: every artifact matches its manifest" + ("" if pg else
               " (pass --postgres-container to also have pg_restore read the dump)"))
    return 1 if problems else 0


def cmd_restore(args: argparse.Namespace) -> int:
    pg, q = _targets(args)
    timings = restore_backup(Path(args.folder), pg, q, force=args.force)
    for part, seconds in timings.items():
        _print(f"restored {part} in {seconds:.1f} s")
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from aidb_gate.init import init

    for line in init(Path(args.root), requirement=args.requirement, force=args.force):
        print(line)
    return 0


def _target_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", default="podman", choices=("podman", "docker"),
                   help="which local engine's socket to use when DOCKER_HOST is unset (commands run through its API)")
    p.add_argument("--postgres-container", help="name or id of the running Postgres container")
    p.add_argument("--postgres-user", help="the role to connect as, inside the container (default: the container's "
                                           "POSTGRES_USER, else postgres)")
    p.add_argument("--postgres-db", help="the database to back up or restore into (default: the container's "
                                         "POSTGRES_DB, else the user's name)")
    p.add_argument("--qdrant-url", help="Qdrant REST URL, e.g. http://127.0.0.1:6333")
    p.add_argument("--qdrant-api-key-file", help="a file holding the Qdrant API key (default: $QDRANT_API_KEY; "
                                                 "never on the command line, where ps shows it)")
    p.add_argument("--qdrant-api-key", help=argparse.SUPPRESS)  # refused with the reason


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aidb-gate", description="The aidb-gate deployment gate's tools.")
    parser.add_argument("--root", default=".", help="the project folder holding pyproject.toml/gate.toml")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check the container engine set-up and say what to fix").set_defaults(fn=cmd_doctor)
    init = sub.add_parser("init", help="write a starter [tool.aidb-gate] and CI jobs into the service's repository")
    init.add_argument("--requirement", default="aidb-gate",
                      help="what the CI jobs `pip install` (a version, a wheel URL or a git URL); default: aidb-gate")
    init.add_argument("--force", action="store_true", help="replace an existing configuration and CI jobs")
    init.set_defaults(fn=cmd_init)
    prep = sub.add_parser("prepare", help="provision the dependency images (local, pulled or built)")
    prep.add_argument("--target", help="build context of the service (as --gate-target)")
    prep.add_argument("--no-network-check", action="store_true",
                      help="skip doctor's two-container network check (run once the base image exists)")
    prep.set_defaults(fn=cmd_prepare)
    clean = sub.add_parser("clean", help="remove a run's resources, or those of dead runs")
    which = clean.add_mutually_exclusive_group()
    which.add_argument("--run", help="the run id to remove, kept or not; refused while that run is still going "
                                     "(default: every dead run that was not kept with --gate-keep)")
    which.add_argument("--kept", action="store_true", help="remove every kept stack (--gate-keep) whose run has ended")
    clean.add_argument("--reports", type=_days, metavar="DAYS",
                       help="also remove run folders under reports_dir/runs/ untouched for DAYS days (never a live "
                            "run's; at least an hour)")
    clean.add_argument("--images", action="store_true",
                       help="also untag this project's target images older than the newest of each target (never one a "
                       "container uses or a live run chose)")
    clean.set_defaults(fn=cmd_clean)
    backup = sub.add_parser("backup", help="back up Postgres (pg_dump in its container) and Qdrant (snapshots)")
    _target_options(backup)
    backup.add_argument("--out", required=True, help="a new folder for the backup")
    backup.set_defaults(fn=cmd_backup)
    verify = sub.add_parser("verify", help="check a backup's artifacts against its manifest")
    verify.add_argument("folder", help="the backup folder (the one holding manifest.json)")
    _target_options(verify)
    verify.set_defaults(fn=cmd_verify)
    restore = sub.add_parser("restore", help="verify, then restore a backup into Postgres and Qdrant")
    restore.add_argument("folder", help="the backup folder (the one holding manifest.json)")
    _target_options(restore)
    restore.add_argument("--force", action="store_true", help="replace non-empty targets: the database is dropped and made "
                         "again empty, collections are overwritten")
    restore.set_defaults(fn=cmd_restore)
    return parser


#: What an interrupt leaves, for the commands that start no gate run.
INTERRUPTED = {
    "backup": "what this backup had written was removed (a backup without its manifest is never left looking "
              "complete); a folder you gave is left as it was",
    "verify": "nothing was changed",
    "restore": "the restore may be partial: a Postgres restore is one transaction and rolled back, Qdrant "
               "collections restored before the interrupt stay; restore again into fresh targets",
    "init": "files already written stay; run `aidb-gate init --force` to write them again",
}


#: Commands whose every message is one line: outside names in them are escaped whole (a newline included).
ONE_LINE = frozenset({"backup", "verify", "restore"})


def _shown(args: argparse.Namespace, err: BaseException) -> str:
    """An error as printed: unsafe characters escaped (bidi overrides, separators, CR); a newline kept
    only where a command's message may span lines (a build log's tail)."""
    text = str(err)
    if args.command in ONE_LINE:
        return escape(text)
    return "\n".join(escape(line) for line in text.split("\n"))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except ConfigError as err:  # a bad setting: exit 4, as pytest's usage error in a gate run
        print(f"aidb-gate: {_shown(args, err)}", file=sys.stderr)
        return 4
    except GateError as err:
        print(f"aidb-gate: {_shown(args, err)}", file=sys.stderr)
        return 2
    except OSError as err:
        # The last net under the file system (no room, no permission, a name too long): one paragraph, not a
        # traceback. The commands turn the problems they expect into GateErrors with better advice.
        where = f" ({escape(err.filename)})" if err.filename else ""
        print(f"aidb-gate: {args.command} failed: {escape(err.strerror or err)}{where}. Fix that (room on the disk, "
              "permissions, names of at most 255 bytes) and run it again.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"aidb-gate: interrupted; {INTERRUPTED.get(args.command, 'resources of this run were removed')}",
              file=sys.stderr)
        return 130
    finally:
        while _ENGINES:
            _ENGINES.pop().close()


if __name__ == "__main__":
    sys.exit(main())
