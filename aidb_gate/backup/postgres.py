"""postgres: dump, list, restore and fingerprint a database through its own container.

Guarantees: every command runs inside the Postgres container, exec'd through the engine's API
(what the seed's operators did by hand with `podman exec`, with no CLI needed), so the client
always matches the server and the database need not be reachable from the host. Dumps are custom format and streamed to
disk. `fingerprint` reads, in SQL, everything a lossy dump would lose - each table's row count
and ordered content hash in every schema, the binary form of float and vector columns (bit-exact,
whatever their text output rounds; only a NaN's payload and sign, which a dump writes as the text
`NaN`, are not compared), sequence states, views, types, constraints, indexes,
triggers, functions, comments and large objects - so a restore is judged by content, never by
an exit code. `compare` names what changed; for a float or vector column of up to
`LIST_MAX_VALUES` values it names the values themselves, before and after, with their bits.
"""

from __future__ import annotations

import contextlib
import gzip
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aidb_gate.backup.manifest import BackupError, open_private, sha256_file
from aidb_gate.backup.pg_values import value_changes
from aidb_gate.core.names import escape
from aidb_gate.core.text import clip

FIELD, RECORD = "\x1f", "\x1e"
#: Seconds one dump, restore or query in the container may take (a deadline, never "forever").
DEFAULT_TIMEOUT_S = 3600.0
SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema')"
USER_SCHEMA = f"n.nspname NOT IN {SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'"


@dataclass
class PgTarget:
    """A database inside a running Postgres container, reached through its engine's API.

    `cli` is only handed to a user's backup script (CONTAINER_ENGINE), never run by the gate."""

    cli: str
    container: str
    user: str
    db: str
    # Kept out of repr: a failure report must show neither the process environment nor the DSN.
    env: dict[str, str] | None = field(default=None, repr=False)
    #: Optional libpq DSN (without dbname) from the host; queries then skip `exec` and run much faster.
    dsn: str | None = field(default=None, repr=False)
    #: The longest one command in the container (a dump, a restore) may take.
    timeout_s: float = DEFAULT_TIMEOUT_S
    #: The engine whose API runs the commands: no CLI, so a remote engine, a shared socket from
    #: another mount or PID namespace and a machine without `podman`/`docker` on PATH all work.
    #: None only where nothing is exec'd (queries over `dsn`).
    engine: Any = field(default=None, repr=False)

    def with_db(self, db: str) -> PgTarget:
        return PgTarget(self.cli, self.container, self.user, db, self.env, self.dsn, self.timeout_s, self.engine)

    def exec(self, argv: list[str], *, stdin: Any = None, stdout: Any = subprocess.PIPE,
             check: bool = True) -> subprocess.CompletedProcess:
        """Run argv in the container through the engine's API: stdin from an open host file (copied
        into the container first, streamed, fed to the command there, then removed), stdout to PIPE
        (kept), DEVNULL or a file (streamed)."""
        import io
        import uuid

        from aidb_gate.core import api
        from aidb_gate.errors import GateError

        command, inside = argv, None
        try:
            if stdin is not None:
                inside = api.put_file(self.engine, self.container, Path(stdin.name), "/tmp", f".aidb-gate-{uuid.uuid4().hex}",
                                      mode=0o644, timeout_s=self.timeout_s)
                command = ["sh", "-c", 'f="$1"; shift; exec "$@" < "$f"', "sh", inside, *argv]
            kept = io.BytesIO() if stdout is subprocess.PIPE else None
            sink = kept if kept is not None else _Discard() if stdout in (None, subprocess.DEVNULL) else stdout
            code, err = api.exec_to(self.engine, self.container, command, sink, timeout_s=self.timeout_s)
        except GateError as failure:
            raise BackupError(f"`{' '.join(argv[:2])}` in container {self.container}: {failure}") from None
        finally:
            if inside is not None:
                with contextlib.suppress(Exception):
                    api.exec_to(self.engine, self.container, ["rm", "-f", inside], io.BytesIO(), timeout_s=60)
        proc = subprocess.CompletedProcess(argv, code, kept.getvalue() if kept is not None else None, err.encode())
        if check and code != 0:
            said = clip(err.strip(), 1500, tail=True)
            raise BackupError(f"`{' '.join(argv[:2])}` in container {self.container} failed (exit {code}): {said}")
        return proc

    def sql(self, query: str, db: str | None = None) -> list[list[str]]:
        """Rows of a query, every value as text (NULL as '')."""
        if self.dsn:
            import psycopg

            try:
                with psycopg.connect(f"{self.dsn} dbname={db or self.db}", autocommit=True) as conn:
                    rows = conn.execute(query).fetchall()
            except psycopg.Error as err:
                raise BackupError(f"query on {db or self.db} in {self.container} failed: {err}") from None
            return [["" if v is None else str(v) for v in row] for row in rows]
        proc = self.exec(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-F", FIELD, "-R", RECORD,
                          "-U", self.user, "-d", db or self.db, "-c", query])
        text = proc.stdout.decode()
        if text.endswith("\n"):  # psql ends its output with one newline; values keep their own
            text = text[:-1]
        return [rec.split(FIELD) for rec in text.split(RECORD) if rec]

    def scalar(self, query: str, db: str | None = None) -> str:
        rows = self.sql(query, db)
        return rows[0][0].strip() if rows else ""


class _Discard:
    """A writable that keeps nothing (stdout=DEVNULL through the API)."""

    def write(self, data: bytes) -> int:
        return len(data)


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def user_tables(pg: PgTarget, db: str | None = None) -> list[str]:
    rows = pg.sql("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  f"WHERE c.relkind = 'r' AND {USER_SCHEMA} ORDER BY 1, 2", db)
    return [f"{quote_ident(s)}.{quote_ident(t)}" for s, t in rows]


def row_counts(pg: PgTarget, db: str | None = None) -> dict[str, int]:
    tables = user_tables(pg, db)
    if not tables:
        return {}
    query = " UNION ALL ".join(f"SELECT {_literal(t)}, count(*) FROM {t}" for t in tables)
    return {name: int(n) for name, n in pg.sql(query, db)}


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def dump(pg: PgTarget, dest: Path) -> dict[str, Any]:
    """`pg_dump -Fc` of the whole database into dest; returns the manifest entry."""
    begin = time.monotonic()
    tmp = dest.with_name(f".{dest.name}.partial")
    with open_private(tmp) as out:
        pg.exec(["pg_dump", "-Fc", "-U", pg.user, "-d", pg.db], stdout=out)
    tmp.replace(dest)
    return {
        "file": dest.name,
        "sha256": sha256_file(dest),
        "size": dest.stat().st_size,
        "database": pg.db,
        "format": "custom",
        "server_version": pg.scalar("SHOW server_version"),
        "pg_dump_version": pg.exec(["pg_dump", "--version"]).stdout.decode().strip(),
        "tables": row_counts(pg),
        "duration_s": round(time.monotonic() - begin, 3),
    }


def dump_globals(pg: PgTarget, dest: Path) -> dict[str, Any]:
    """The roles and memberships the database's grants and owners name (`pg_dumpall --globals-only`),
    without role passwords: those belong to the secret store, and a restore must not change the
    target's own login."""
    tmp = dest.with_name(f".{dest.name}.partial")
    with open_private(tmp) as out:
        pg.exec(["pg_dumpall", "--globals-only", "--no-role-passwords", "-U", pg.user], stdout=out)
    tmp.replace(dest)
    return {"file": dest.name, "sha256": sha256_file(dest), "size": dest.stat().st_size}


def dump_format(path: Path) -> str:
    """"custom" (pg_dump -Fc), "plain.gz" or "plain", from the file's first bytes only."""
    with path.open("rb") as fh:
        head = fh.read(5)
    if head == b"PGDMP":
        return "custom"
    return "plain.gz" if head[:2] == b"\x1f\x8b" else "plain"


def feed_sql(pg: PgTarget, path: Path, args: list[str]) -> tuple[int, str]:
    """Stream a SQL file (gzipped or not) into `psql -X -q -U <user> <args>` in pg's container;
    (exit status, stderr). Nothing is held in memory but one block."""
    with tempfile.NamedTemporaryFile(prefix=".aidb-gate-sql-") as plain:
        source = path
        if dump_format(path) == "plain.gz":  # psql reads plain SQL; the container gets a decompressed copy
            with gzip.open(path, "rb") as src:
                shutil.copyfileobj(src, plain, 1 << 20)
            plain.flush()
            source = Path(plain.name)
        with source.open("rb") as fh:
            proc = pg.exec(["psql", "-X", "-q", "-U", pg.user, *args], stdin=fh, stdout=subprocess.DEVNULL, check=False)
    return proc.returncode, proc.stderr.decode(errors="replace")


def restore_globals(pg: PgTarget, path: Path) -> None:
    """Create the backup's roles and memberships in the target (plain or gzipped SQL); a role that
    already exists (the image's own superuser) is kept as it is."""
    status, stderr = feed_sql(pg, path, ["-d", "postgres"])
    errors = [line for line in stderr.splitlines() if "ERROR" in line and "already exists" not in line]
    if status != 0 or errors:
        said = clip("; ".join(errors[:5]), 1500) or f"psql exited {status}: {clip(stderr.strip(), 600, tail=True) or '(no output)'}"
        raise BackupError(f"{path}: the roles of the backup could not be created in {pg.container} (connecting as "
                          f"{pg.user}): {said}")


def role_names(pg: PgTarget) -> set[str]:
    return {row[0] for row in pg.sql("SELECT rolname FROM pg_roles", "postgres")}


def drop_roles(pg: PgTarget, names: set[str]) -> list[str]:
    """Drop roles a failed restore created (they own nothing once its transaction rolled back);
    the names it could not drop."""
    left = []
    for name in sorted(names):
        proc = pg.exec(["psql", "-X", "-q", "-U", pg.user, "-d", "postgres", "-c", f"DROP ROLE IF EXISTS {quote_ident(name)}"],
                       check=False)
        if proc.returncode != 0:
            left.append(name)
    return left


def recreate_database(pg: PgTarget, db: str) -> None:
    """Replace a database by an empty one with the same owner, encoding and locale (what --force
    means): `pg_restore --clean` cannot drop what the dump's own objects depend on, such as the
    primary key of a partition."""
    owner, encoding, collate, ctype = pg.sql(
        "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate, datctype FROM pg_database "
        f"WHERE datname = {_literal(db)}", "postgres")[0]
    drop_database(pg, db)
    pg.exec(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", pg.user, "-d", "postgres", "-c",
             f"CREATE DATABASE {quote_ident(db)} OWNER {quote_ident(owner)} TEMPLATE template0 ENCODING "
             f"{_literal(encoding)} LC_COLLATE {_literal(collate)} LC_CTYPE {_literal(ctype)}"])


def list_dump(pg: PgTarget, path: Path) -> list[str]:
    """`pg_restore --list` of a dump (the table of contents); raises when it cannot be read."""
    for _attempt in range(3):
        with path.open("rb") as fh:
            proc = pg.exec(["pg_restore", "--list"], stdin=fh, check=False)
        # pg_restore always prints a header for a readable dump: exit 0 with no output at all is
        # an exec losing the output of a short-lived process (containers/podman#9096), seen
        # here on Podman 4.3 right after a container started. Asking again is safe: it only reads.
        if proc.returncode != 0 or proc.stdout.strip():
            break
    if proc.returncode != 0:
        err = clip(proc.stderr.decode(errors="replace").strip(), 600, tail=True)
        raise BackupError(f"{path}: pg_restore cannot read this dump ({err}); it is damaged or not a custom-format dump")
    return [ln for ln in proc.stdout.decode().splitlines() if ln and not ln.startswith(";")]


def tables_with_data(pg: PgTarget, path: Path, fmt: str = "custom") -> set[str]:
    """`schema.table` of every table whose rows the dump carries (custom: its TOC; plain: COPY lines)."""
    if fmt == "custom":
        entries = [ln.split() for ln in list_dump(pg, path) if " TABLE DATA " in ln]
        return {f"{e[e.index('DATA') + 1]}.{e[e.index('DATA') + 2]}" for e in entries}
    import re

    copy = re.compile(rb'^COPY ("?[^ ."]+"?)\.("?[^ ("]+"?) ')
    found = set()
    with (gzip.open(path, "rb") if fmt == "plain.gz" else path.open("rb")) as fh:  # streamed: any size
        for line in fh:
            m = copy.match(line)
            if m:
                found.add(f"{m.group(1).decode(errors='replace')}.{m.group(2).decode(errors='replace')}".replace('"', ""))
    return found


def unquoted(table: str) -> str:
    """"public"."documents" -> public.documents (how dump listings name tables)."""
    return table.replace('"', "")


def is_empty(pg: PgTarget, db: str | None = None) -> bool:
    return not user_tables(pg, db) and pg.scalar("SELECT count(*) FROM pg_largeobject_metadata", db) == "0"


def restore(pg: PgTarget, path: Path, force: bool = False, db: str | None = None) -> float:
    """pg_restore a dump into pg's database; refuses a non-empty database unless forced."""
    target_db = db or pg.db
    empty = is_empty(pg, target_db)
    if not empty and not force:
        raise BackupError(f"refusing to restore {path} into database {target_db} in {pg.container}: it is not empty "
                          f"({len(user_tables(pg, target_db))} tables). Restore into a fresh database, or pass --force to "
                          "replace its contents.")
    begin = time.monotonic()
    if force and not empty:
        recreate_database(pg, target_db)
    # Owners and privileges are restored as they were: the roles they name come first (restore_globals).
    args = ["pg_restore", "-U", pg.user, "-d", target_db, "--exit-on-error", "--single-transaction"]
    with path.open("rb") as fh:
        pg.exec(args, stdin=fh)
    return time.monotonic() - begin


FINGERPRINT_QUERIES = {
    "schemas": f"SELECT n.nspname, '' FROM pg_namespace n WHERE {USER_SCHEMA} AND n.nspname <> 'public'",
    "sequences": "SELECT format('%I.%I', schemaname, sequencename), coalesce(last_value::text, 'not called') "
                 f"FROM pg_sequences WHERE schemaname NOT IN {SYSTEM_SCHEMAS}",
    "views": "SELECT format('%I.%I', schemaname, viewname), md5(definition) FROM pg_views "
             f"WHERE schemaname NOT IN {SYSTEM_SCHEMAS} "
             "UNION ALL SELECT format('%I.%I', schemaname, matviewname), md5(definition) FROM pg_matviews "
             f"WHERE schemaname NOT IN {SYSTEM_SCHEMAS}",
    "types": "SELECT format('%I.%I', n.nspname, t.typname), t.typtype::text || ':' || coalesce((SELECT string_agg(e.enumlabel, ',' "
             "ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid), '') FROM pg_type t "
             f"JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {USER_SCHEMA} AND t.typtype IN ('e', 'd', 'r', 'c') "
             "AND (t.typtype <> 'c' OR (SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid) = 'c')",
    "constraints": "SELECT format('%s %I', c.conrelid::regclass, c.conname), pg_get_constraintdef(c.oid) FROM pg_constraint c "
                   f"JOIN pg_namespace n ON n.oid = c.connamespace WHERE {USER_SCHEMA}",
    "indexes": "SELECT format('%I.%I', schemaname, indexname), indexdef FROM pg_indexes "
               f"WHERE schemaname NOT IN {SYSTEM_SCHEMAS}",
    "triggers": "SELECT format('%s %I', tgrelid::regclass, tgname), md5(pg_get_triggerdef(oid)) FROM pg_trigger "
                "WHERE NOT tgisinternal",
    "functions": "SELECT p.oid::regprocedure::text, md5(pg_get_functiondef(p.oid)) FROM pg_proc p "
                 f"JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {USER_SCHEMA} AND p.prokind IN ('f', 'p')",
    "comments": "SELECT pg_describe_object(classoid, objoid, objsubid), description FROM pg_description "
                "WHERE objoid >= 16384",
    # NULL means the built-in default (the owner holds everything): acldefault() spells it out, so a
    # restore that drops explicit grants shows exactly the grants lost, not the owner's implicit ones.
    "privileges": " UNION ALL ".join(
        f"SELECT {label}, coalesce((SELECT string_agg(coalesce(r.rolname, 'PUBLIC') || '=' || a.privilege_type "
        f"|| CASE WHEN a.is_grantable THEN '*' ELSE '' END, ',' ORDER BY 1) FROM aclexplode({acl}) a "
        f"LEFT JOIN pg_roles r ON r.oid = a.grantee), '') {source}" for label, acl, source in (
            ("'schema ' || quote_ident(n.nspname)", "coalesce(n.nspacl, acldefault('n', n.nspowner))",
             f"FROM pg_namespace n WHERE {USER_SCHEMA}"),
            ("CASE c.relkind WHEN 'S' THEN 'sequence ' WHEN 'v' THEN 'view ' WHEN 'm' THEN 'view ' ELSE 'table ' END "
             "|| format('%I.%I', n.nspname, c.relname)",
             "coalesce(c.relacl, acldefault(CASE WHEN c.relkind = 'S' THEN 's' ELSE 'r' END::\"char\", c.relowner))",
             f"FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMA} "
             "AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"),
            ("'function ' || p.oid::regprocedure::text", "coalesce(p.proacl, acldefault('f', p.proowner))",
             f"FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {USER_SCHEMA}"),
            ("'type ' || format('%I.%I', n.nspname, t.typname)", "coalesce(t.typacl, acldefault('T', t.typowner))",
             f"FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE {USER_SCHEMA} "
             "AND t.typtype IN ('e', 'd', 'r')"))),
    "owners": f"SELECT 'schema ' || quote_ident(n.nspname), pg_get_userbyid(n.nspowner) FROM pg_namespace n WHERE {USER_SCHEMA} "
              "UNION ALL SELECT format('%I.%I', n.nspname, c.relname), pg_get_userbyid(c.relowner) FROM pg_class c "
              f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE {USER_SCHEMA} AND c.relkind IN ('r','p','v','m','S','f') "
              "UNION ALL SELECT 'function ' || p.oid::regprocedure::text, pg_get_userbyid(p.proowner) FROM pg_proc p "
              f"JOIN pg_namespace n ON n.oid = p.pronamespace WHERE {USER_SCHEMA}",
    "default privileges": "SELECT pg_get_userbyid(d.defaclrole) || ' in ' || coalesce(quote_ident(n.nspname), "
                          "'every schema') || ' on ' || CASE d.defaclobjtype WHEN 'r' THEN 'tables' "
                          "WHEN 'S' THEN 'sequences' WHEN 'f' THEN 'functions' WHEN 'T' THEN 'types' "
                          "WHEN 'n' THEN 'schemas' ELSE d.defaclobjtype::text END, "
                          "coalesce((SELECT string_agg(coalesce(r.rolname, 'PUBLIC') || '=' || a.privilege_type, ',' "
                          "ORDER BY 1) FROM aclexplode(d.defaclacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee), '') "
                          "FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace",
    "row security": "SELECT format('%I.%I', n.nspname, c.relname), CASE WHEN c.relforcerowsecurity THEN 'forced' ELSE 'enabled' "
                    "END FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relrowsecurity "
                    f"AND {USER_SCHEMA}",
    "policies": "SELECT format('%I.%I %I', schemaname, tablename, policyname), concat_ws(' ', permissive, cmd, "
                "array_to_string(roles, ','), 'using', md5(coalesce(qual, '')), 'check', md5(coalesce(with_check, ''))) "
                f"FROM pg_policies WHERE schemaname NOT IN {SYSTEM_SCHEMAS}",
    "extensions": "SELECT extname, extversion FROM pg_extension",
    "roles": "SELECT r.rolname, concat_ws(' ', CASE WHEN r.rolcanlogin THEN 'login' END, "
             "CASE WHEN r.rolsuper THEN 'superuser' END, CASE WHEN r.rolbypassrls THEN 'bypassrls' END, "
             "'member of:' || coalesce((SELECT string_agg(g.rolname, ',' ORDER BY g.rolname) FROM pg_auth_members m "
             "JOIN pg_roles g ON g.oid = m.roleid WHERE m.member = r.oid), '')) FROM pg_roles r WHERE r.rolname !~ '^pg_'",
    "large objects": "SELECT 'count', count(*)::text FROM pg_largeobject_metadata UNION ALL "
                     "SELECT 'content', coalesce(md5(string_agg(md5(lo_get(oid)), '' ORDER BY md5(lo_get(oid)))), '') "
                     "FROM pg_largeobject_metadata",
}


def fingerprint(pg: PgTarget, db: str | None = None) -> dict[str, dict[str, str]]:
    """Everything a restore must preserve, as {section: {object: digest or value}}. The section
    `LISTED_VALUES` is detail, not a check: the values of small float and vector columns, so a
    verdict can name the values that changed (`compare` reads it only to explain a difference)."""
    print_ = {name: {k: v for k, v in pg.sql(q, db)} for name, q in FINGERPRINT_QUERIES.items()}
    tables = user_tables(pg, db)
    if tables:
        # Rows hash in a stable order (by their own text), so physical order after a restore is irrelevant.
        query = " UNION ALL ".join(
            f"SELECT {_literal(t)}, count(*)::text || ' rows ' || coalesce(md5(string_agg(md5(x::text), '' "
            f"ORDER BY md5(x::text))), '') FROM {t} x" for t in tables)
        print_["tables"] = {name: value for name, value in pg.sql(query, db)}
    else:
        print_["tables"] = {}
    print_["binary values"], print_[LISTED_VALUES] = binary_values(pg, db)
    return print_


#: Columns whose text form is not the stored bits by definition: floats (text is rounded unless
#: extra_float_digits says otherwise) and every type an extension brings (pgvector's `vector`,
#: `halfvec`, ...), whose text output is the extension's own choice.
BINARY_COLUMNS = ("SELECT format('%I.%I', n.nspname, c.relname), quote_ident(a.attname), t.typsend::regproc::text "
                  "FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                  f"JOIN pg_type t ON t.oid = a.atttypid WHERE c.relkind IN ('r', 'p') AND {USER_SCHEMA} AND a.attnum > 0 "
                  "AND NOT a.attisdropped AND t.typsend <> 0 AND (t.typname IN ('float4', 'float8') OR EXISTS ("
                  "SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_type'::regclass AND d.objid = t.oid AND d.deptype = 'e')) "
                  "ORDER BY 1, 2")
#: Send functions of the types whose NaNs are compared as one value. pg_dump writes every NaN as
#: the text `NaN` (float4out/float8out), so a dump keeps neither a NaN's payload nor its sign,
#: and PostgreSQL itself treats all NaNs as equal. pgvector's types refuse NaN outright.
NAN_SENDS = ("float4send", "float8send")
#: The fingerprint section that lists small columns' values: {table.column: "<send> <hex>,<hex>,..."}.
LISTED_VALUES = "binary values listed"
#: A column is listed value by value when it holds at most this many values and this many hex digits;
#: a larger one is compared by its hash alone (its verdict says the values were too many to list).
LIST_MAX_VALUES = 1000
LIST_MAX_HEX = 1 << 17


def binary_values_query(columns: list[list[str]]) -> str:
    """The query behind `binary_values` for [table, quoted column, send function] rows: per column
    its name, "<count> values <md5 of the sorted hex send forms>" and, for a small column,
    "<send> <sorted hex send forms, comma-separated>" (NULL otherwise). Every float NaN is
    replaced by the one NaN PostgreSQL parses from `NaN` before it is sent, so NaN payloads and
    signs, which no dump keeps, never count as a difference; everything else (-0.0 included)
    is compared bit for bit."""
    parts = []
    for table, column, send in columns:
        value = f"CASE WHEN {column} = 'NaN' THEN 'NaN' ELSE {column} END" if send in NAN_SENDS else column
        # The listing repeats the hash's own string_agg, which PostgreSQL computes once for both.
        parts.append(
            f"SELECT {_literal(table + '.' + column)}, count(h)::text || ' values ' || coalesce(md5(string_agg(h, ',' "
            f"ORDER BY h)), ''), CASE WHEN count(h) <= {LIST_MAX_VALUES} AND coalesce(sum(length(h)), 0) <= {LIST_MAX_HEX} "
            f"THEN {_literal(send)} || ' ' || coalesce(string_agg(h, ',' ORDER BY h), '') END "
            f"FROM (SELECT encode({send}({value}), 'hex') AS h FROM {table}) v")
    return " UNION ALL ".join(parts)


def binary_values(pg: PgTarget, db: str | None = None) -> tuple[dict[str, str], dict[str, str]]:
    """({table.column: count and hash of the values' binary (send) form}, {table.column: the
    values themselves, for columns small enough to list}) for float and extension columns, so a
    vector that comes back one ulp off is a difference, whatever its text says, and can be named."""
    columns = pg.sql(BINARY_COLUMNS, db)
    if not columns:
        return {}, {}
    rows = pg.sql(binary_values_query(columns), db)
    return {row[0]: row[1] for row in rows}, {row[0]: row[2] for row in rows if len(row) > 2 and row[2]}


def compare(original: dict[str, dict[str, str]], restored: dict[str, dict[str, str]]) -> list[str]:
    """What the restore lost or changed, object by object, in words (names escaped, one line each).
    A float or vector column whose values both fingerprints list is explained value by value."""
    problems = []
    for section in sorted(set(original) | set(restored)):
        if section == LISTED_VALUES:  # detail for the "binary values" verdicts, not a check of its own
            continue
        before, after = original.get(section, {}), restored.get(section, {})
        for name in sorted(set(before) - set(after)):
            detail = f" ({before[name].split(' rows ')[0]} rows lost)" if section == "tables" else ""
            problems.append(f"postgres {section}: {escape(name)} is missing after the restore{detail}")
        for name in sorted(set(after) - set(before)):
            problems.append(f"postgres {section}: {escape(name)} appeared after the restore")
        for name in sorted(set(before) & set(after)):
            if before[name] != after[name]:
                listed = (original.get(LISTED_VALUES, {}).get(name), restored.get(LISTED_VALUES, {}).get(name))
                problems.append(_changed(section, name, before[name], after[name], listed))
    return problems


def _changed(section: str, name: str, before: str, after: str,
             listed: tuple[str | None, str | None] = (None, None)) -> str:
    shown = escape(name)
    if section == "tables":
        n_before, n_after = before.split(" rows ")[0], after.split(" rows ")[0]
        if n_before != n_after:
            return f"postgres table {shown}: {n_before} rows before, {n_after} after the restore"
        return f"postgres table {shown}: same {n_before} rows, but their content differs (a value was altered or lost)"
    if section in ("privileges", "default privileges"):
        lost = sorted(set(before.split(",")) - set(after.split(",")) - {""})
        gained = sorted(set(after.split(",")) - set(before.split(",")) - {""})
        said = f"postgres {section}: {shown} lost " + escape(", ".join(lost) or "nothing")
        return said + (f" and gained {escape(', '.join(gained))}" if gained else "") + " in the restore (grantee=privilege)"
    if section == "binary values":
        if listed[0] is not None and listed[1] is not None:
            which = value_changes(listed[0], listed[1]) or "the same values, differently hashed"
        else:
            which = f"the column holds more than {LIST_MAX_VALUES} values or {LIST_MAX_HEX // 2} bytes, too many to list here"
        return (f"postgres column {shown}: its values differ bit for bit after the restore ({before.split(' values ')[0]} "
                f"before, {after.split(' values ')[0]} after): {which} - a float or vector was rounded or altered on the way")
    if section == "sequences":
        return (f"postgres sequence {shown}: last_value {escape(before)} before, {escape(after)} after the restore - the "
                "next insert can collide with a restored row")
    return f"postgres {section}: {shown} differs after the restore ({escape(repr(before[:60]))} -> {escape(repr(after[:60]))})"


def create_database(pg: PgTarget, name: str, template: str = "template0") -> None:
    pg.exec(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", pg.user, "-d", "postgres", "-c",
             f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(template)} ENCODING 'UTF8'"])


def drop_database(pg: PgTarget, name: str) -> None:
    pg.exec(["psql", "-X", "-q", "-U", pg.user, "-d", "postgres", "-c",
             f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)"], check=False)
