"""postgres: dump, list, restore and fingerprint a database through its own container.

Guarantees: every command runs inside the Postgres container with the engine's CLI
(`podman exec`), as the seed's operators did by hand, so the client always matches the server
and the database need not be reachable from the host. Dumps are custom format and streamed to
disk. `fingerprint` reads, in SQL, everything a lossy dump would lose - each table's row count
and ordered content hash in every schema, the binary form of float and vector columns (bit-exact,
whatever their text output rounds), sequence states, views, types, constraints, indexes,
triggers, functions, comments and large objects - so a restore is judged by content, never by
an exit code.
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
from aidb_gate.report import clip

FIELD, RECORD = "\x1f", "\x1e"
#: Seconds one dump, restore or query in the container may take (a deadline, never "forever").
DEFAULT_TIMEOUT_S = 3600.0
SYSTEM_SCHEMAS = "('pg_catalog', 'information_schema')"
USER_SCHEMA = f"n.nspname NOT IN {SYSTEM_SCHEMAS} AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'"


@dataclass
class PgTarget:
    """A database inside a running Postgres container, reached with `<cli> exec`."""

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

    def with_db(self, db: str) -> PgTarget:
        return PgTarget(self.cli, self.container, self.user, db, self.env, self.dsn, self.timeout_s)

    def exec(self, argv: list[str], *, stdin: Any = None, stdout: Any = subprocess.PIPE,
             check: bool = True) -> subprocess.CompletedProcess:
        cmd = [self.cli, "exec"] + (["-i"] if stdin is not None else []) + [self.container, *argv]
        try:
            proc = subprocess.run(cmd, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=self.env, check=False,
                                  timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            raise BackupError(f"`{' '.join(argv[:2])}` in container {self.container} was still running after "
                              f"{self.timeout_s:g} s and was stopped: the database did not answer, or is larger "
                              "than one command may take here.") from None
        if check and proc.returncode != 0:
            err = clip(proc.stderr.decode(errors="replace").strip(), 1500, tail=True)
            raise BackupError(f"`{' '.join(argv[:2])}` in container {self.container} failed (exit {proc.returncode}): {err}")
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
    gz = dump_format(path) == "plain.gz"
    cmd = [pg.cli, "exec", "-i", pg.container, "psql", "-X", "-q", "-U", pg.user, *args]
    with tempfile.TemporaryFile() as err, (gzip.open(path, "rb") if gz else path.open("rb")) as src:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err, env=pg.env)
        # A broken pipe means psql stopped reading (ON_ERROR_STOP): its exit status and stderr say why.
        with contextlib.suppress(BrokenPipeError):
            try:
                shutil.copyfileobj(src, proc.stdin, 1 << 20)
            finally:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
        try:
            status = proc.wait(timeout=pg.timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise BackupError(f"psql in container {pg.container} was still reading {path} after {pg.timeout_s:g} s "
                              "and was stopped: the database did not answer, or the dump is larger than one "
                              "command may take here.") from None
        err.seek(0)
        return status, err.read().decode(errors="replace")


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
        # `podman exec` losing the output of a short-lived process (containers/podman#9096), seen
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
    """Everything a restore must preserve, as {section: {object: digest or value}}."""
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
    print_["binary values"] = binary_values(pg, db)
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


def binary_values(pg: PgTarget, db: str | None = None) -> dict[str, str]:
    """{table.column: count and hash of the values' binary (send) form} for float and extension
    columns, so a vector that comes back one ulp off is a difference, whatever its text says."""
    columns = pg.sql(BINARY_COLUMNS, db)
    if not columns:
        return {}
    query = " UNION ALL ".join(
        f"SELECT {_literal(table + '.' + column)}, count({column})::text || ' values ' || coalesce(md5(string_agg("
        f"encode({send}({column}), 'hex'), ',' ORDER BY encode({send}({column}), 'hex'))), '') FROM {table}"
        for table, column, send in columns)
    return {name: value for name, value in pg.sql(query, db)}


def compare(original: dict[str, dict[str, str]], restored: dict[str, dict[str, str]]) -> list[str]:
    """What the restore lost or changed, object by object, in words."""
    problems = []
    for section in sorted(set(original) | set(restored)):
        before, after = original.get(section, {}), restored.get(section, {})
        for name in sorted(set(before) - set(after)):
            detail = f" ({before[name].split(' rows ')[0]} rows lost)" if section == "tables" else ""
            problems.append(f"postgres {section}: {name} is missing after the restore{detail}")
        for name in sorted(set(after) - set(before)):
            problems.append(f"postgres {section}: {name} appeared after the restore")
        for name in sorted(set(before) & set(after)):
            if before[name] != after[name]:
                problems.append(_changed(section, name, before[name], after[name]))
    return problems


def _changed(section: str, name: str, before: str, after: str) -> str:
    if section == "tables":
        n_before, n_after = before.split(" rows ")[0], after.split(" rows ")[0]
        if n_before != n_after:
            return f"postgres table {name}: {n_before} rows before, {n_after} after the restore"
        return f"postgres table {name}: same {n_before} rows, but their content differs (a value was altered or lost)"
    if section in ("privileges", "default privileges"):
        lost = sorted(set(before.split(",")) - set(after.split(",")) - {""})
        gained = sorted(set(after.split(",")) - set(before.split(",")) - {""})
        said = f"postgres {section}: {name} lost " + (", ".join(lost) or "nothing")
        return said + (f" and gained {', '.join(gained)}" if gained else "") + " in the restore (grantee=privilege)"
    if section == "binary values":
        return (f"postgres column {name}: its values differ bit for bit after the restore ({before.split(' values ')[0]} "
                f"before, {after.split(' values ')[0]} after) - a float or vector was rounded or altered on the way")
    if section == "sequences":
        return (f"postgres sequence {name}: last_value {before} before, {after} after the restore - the next insert "
                "can collide with a restored row")
    return f"postgres {section}: {name} differs after the restore ({before[:60]!r} -> {after[:60]!r})"


def create_database(pg: PgTarget, name: str, template: str = "template0") -> None:
    pg.exec(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", pg.user, "-d", "postgres", "-c",
             f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(template)} ENCODING 'UTF8'"])


def drop_database(pg: PgTarget, name: str) -> None:
    pg.exec(["psql", "-X", "-q", "-U", pg.user, "-d", "postgres", "-c",
             f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)"], check=False)
