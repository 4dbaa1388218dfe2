"""seed: realistic data for the backup round trip - through the service's API and straight into tables.

Guarantees: `seed_via_api` writes documents the way users do (so vectors land in Qdrant too) and
keeps, per document, what was sent, what the create call answered and what a GET right after
returned, so `round_trip_verdict` can name any field the service changed on the way;
`seed_every_table` inserts rows into every user table of any schema, with values generated from
each column's type (unicode, quotes, backslashes, JSON, bytes, extreme numbers, pgvector
vectors), so the round
trip covers tables the gate has never seen;
`create_probe_objects` adds one of each object kind a lossy dump drops (schema, enum, domain,
view, sequence state, constraint, index, trigger, function, comment, large object) and what a
read-only role depends on (a role, grants, a default privilege, a row-level security policy).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aidb_gate.backup.postgres import PgTarget, quote_ident
from aidb_gate.core import http
from aidb_gate.core.text import clip

PROBE_SCHEMA = "aidb_gate_probe"
#: A read-only reporting role the probe objects grant to (a global: backups must carry it).
PROBE_ROLE = "aidb_gate_reader"
#: What to fix when the data API answers a write or read with something other than JSON.
SEED_HINT = "The data API (data.create_path / data.get_path) must answer with the document as JSON."

# Awkward on purpose: quotes, backslashes, right-to-left, combining marks, emoji, astral plane.
TEXT_SAMPLES = [
    "plain ascii",
    "quote ' double \" backslash \\ tab \t end",
    "Zürich naïve façade",
    "مرحبا بالعالم",
    "e\u0301 a\u0308 combining",
    "emoji \U0001F680\U0001F9EA and \U0001D518\U0001D52B astral",
    "",
]


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def value_expr(data_type: str, max_len: int | None, i_expr: str = "g", full_type: str = "") -> str | None:
    """A SQL expression of the column's type that varies with the series index; None if unknown.
    `full_type` is format_type()'s spelling (`vector(384)`), which names extension types."""
    texts = "ARRAY[" + ", ".join(_sql_text(t) for t in TEXT_SAMPLES) + "]"
    dt = data_type.lower()
    vector = re.fullmatch(r"(?:\w+\.)?(vector|halfvec)\((\d+)\)", full_type)
    if vector:
        # pgvector: components no short decimal spells exactly, so a rounding hop shows.
        kind, dims = vector.groups()
        return (f"(SELECT array_agg(((({i_expr}) * 7919 + k * 104729) % 2003)::real / 1999 - 0.5 ORDER BY k) "
                f"FROM generate_series(1, {dims}) k)::{kind}")
    if dt in ("text", "character varying", "character", "citext", "name"):
        expr = f"'gate-' || {i_expr} || ' ' || ({texts})[1 + {i_expr} % {len(TEXT_SAMPLES)}]"
        return f"left({expr}, {max_len})" if max_len else expr
    if dt == "smallint":
        return f"(({i_expr} * 7919) % 32000)::smallint"
    if dt == "integer":
        return f"(2000000000 - {i_expr})::integer"
    if dt == "bigint":
        return f"(9223372036854775000 - {i_expr})::bigint"
    if dt in ("numeric", "decimal"):
        return f"({i_expr} * 1234.5678)::numeric"
    if dt in ("real", "double precision"):
        return f"({i_expr}::double precision / 3)"
    if dt == "boolean":
        return f"({i_expr} % 2 = 0)"
    if dt.startswith("timestamp"):
        return f"(timestamptz '2026-01-09 01:04:39+00' + {i_expr} * interval '1 minute')"
    if dt == "date":
        return f"(date '2026-01-09' + {i_expr})"
    if dt in ("json", "jsonb"):
        return (f"json_build_object('gate', {i_expr}, 'nested', json_build_object('list', json_build_array(1, 'ü', null)), "
                f"'text', ({texts})[1 + {i_expr} % {len(TEXT_SAMPLES)}])::{dt}")
    if dt == "bytea":
        return f"decode(lpad(to_hex({i_expr}), 8, '0') || '00ff', 'hex')"
    if dt == "uuid":
        return f"md5('gate' || {i_expr})::uuid"
    return None


def seed_every_table(pg: PgTarget, rows: int = 5) -> dict[str, str]:
    """Insert `rows` rows into every user table; {table: "n rows" or why it was left alone}."""
    columns = pg.sql(
        "SELECT format('%I.%I', c.table_schema, c.table_name), c.column_name, c.data_type, "
        "coalesce(c.character_maximum_length::text, ''), c.is_nullable, coalesce(c.column_default, ''), c.is_identity, "
        "c.is_generated, format_type(a.atttypid, a.atttypmod) "
        "FROM information_schema.columns c JOIN pg_attribute a ON a.attrelid = format('%I.%I', c.table_schema, "
        "c.table_name)::regclass AND a.attname = c.column_name JOIN information_schema.tables t "
        "ON t.table_schema = c.table_schema AND t.table_name = c.table_name AND t.table_type = 'BASE TABLE' "
        f"WHERE c.table_schema NOT IN ('pg_catalog', 'information_schema') AND c.table_schema <> '{PROBE_SCHEMA}' "
        "ORDER BY 1, c.ordinal_position")
    by_table: dict[str, list[list[str]]] = {}
    for row in columns:
        by_table.setdefault(row[0], []).append(row[1:])
    outcome = {}
    for table, cols in by_table.items():
        names, exprs, skipped = [], [], None
        for name, dtype, maxlen, nullable, default, identity, generated, full_type in cols:
            if default or identity == "YES" or generated == "ALWAYS":
                continue
            expr = value_expr(dtype, int(maxlen) if maxlen else None, full_type=full_type)
            if expr is None:
                if nullable == "YES":
                    continue
                skipped = f"column {name} has type {dtype}, which the seeder cannot generate"
                break
            names.append(quote_ident(name))
            exprs.append(expr)
        if skipped:
            outcome[table] = f"left alone: {skipped}"
            continue
        if names:
            sql = f"INSERT INTO {table} ({', '.join(names)}) SELECT {', '.join(exprs)} FROM generate_series(1, {rows}) g"
        else:
            sql = f"INSERT INTO {table} SELECT FROM generate_series(1, {rows}) g"
        proc = pg.exec(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", pg.user, "-d", pg.db, "-c", sql], check=False)
        if proc.returncode == 0:
            outcome[table] = f"{rows} rows"
        else:
            outcome[table] = "left alone: " + clip(proc.stderr.decode(errors="replace").strip().splitlines()[-1], 200)
    return outcome


PROBE_SQL = f"""
CREATE SCHEMA {PROBE_SCHEMA};
COMMENT ON SCHEMA {PROBE_SCHEMA} IS 'aidb-gate backup probe';
CREATE TYPE {PROBE_SCHEMA}.mood AS ENUM ('calm', 'tense', 'ünïcode');
CREATE DOMAIN {PROBE_SCHEMA}.positive AS integer CHECK (VALUE > 0);
CREATE TABLE {PROBE_SCHEMA}.parent (id integer PRIMARY KEY, label text UNIQUE NOT NULL);
CREATE TABLE {PROBE_SCHEMA}.notes (
    id bigserial PRIMARY KEY,
    parent_id integer REFERENCES {PROBE_SCHEMA}.parent (id),
    mood {PROBE_SCHEMA}.mood NOT NULL DEFAULT 'calm',
    weight {PROBE_SCHEMA}.positive,
    body text,
    extra jsonb,
    raw bytea,
    big numeric,
    CONSTRAINT body_not_blank CHECK (body IS NULL OR length(body) > 0)
);
CREATE INDEX notes_body_idx ON {PROBE_SCHEMA}.notes (lower(body));
COMMENT ON TABLE {PROBE_SCHEMA}.notes IS 'notes with every awkward value';
COMMENT ON COLUMN {PROBE_SCHEMA}.notes.body IS 'the body: ünïcode comment';
CREATE SEQUENCE {PROBE_SCHEMA}.ticket START 100;
SELECT setval('{PROBE_SCHEMA}.ticket', 4242);
CREATE VIEW {PROBE_SCHEMA}.calm_notes AS SELECT id, body FROM {PROBE_SCHEMA}.notes WHERE mood = 'calm';
CREATE FUNCTION {PROBE_SCHEMA}.touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.body := NEW.body; RETURN NEW; END $$;
CREATE TRIGGER notes_touch BEFORE UPDATE ON {PROBE_SCHEMA}.notes FOR EACH ROW EXECUTE FUNCTION {PROBE_SCHEMA}.touch();
INSERT INTO {PROBE_SCHEMA}.parent VALUES (1, 'one'), (2, 'two ''quoted''');
INSERT INTO {PROBE_SCHEMA}.notes (parent_id, mood, weight, body, extra, raw, big) VALUES
    (1, 'tense', 7, 'back\\slash and ''quote''', '{{"nested": {{"a": [1, 2, {{"b": null}}]}}}}', '\\x00ff10', 1e30),
    (2, 'ünïcode', 1, 'مرحبا 🚀 e\u0301', '{{"rtl": "עברית"}}', NULL, -0.000001),
    (NULL, 'calm', NULL, NULL, NULL, NULL, NULL);
CREATE TABLE {PROBE_SCHEMA}.audit (id bigserial PRIMARY KEY, event text NOT NULL);
INSERT INTO {PROBE_SCHEMA}.audit (event) VALUES ('created'), ('seeded ✓'), ('backed up');
SELECT lo_from_bytea(0, convert_to('large object: ünïcode 🚀', 'UTF8'));
-- What a read-only reporting role depends on: grants, a default privilege, row-level security.
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{PROBE_ROLE}') THEN CREATE ROLE {PROBE_ROLE} NOLOGIN; END IF;
END $$;
GRANT USAGE ON SCHEMA {PROBE_SCHEMA} TO PUBLIC;
GRANT USAGE ON SCHEMA {PROBE_SCHEMA} TO {PROBE_ROLE};
GRANT SELECT ON {PROBE_SCHEMA}.notes, {PROBE_SCHEMA}.calm_notes TO {PROBE_ROLE};
GRANT SELECT ON {PROBE_SCHEMA}.parent TO PUBLIC;
GRANT USAGE ON SEQUENCE {PROBE_SCHEMA}.ticket TO {PROBE_ROLE};
ALTER DEFAULT PRIVILEGES IN SCHEMA {PROBE_SCHEMA} GRANT SELECT ON TABLES TO {PROBE_ROLE};
ALTER TABLE {PROBE_SCHEMA}.audit ENABLE ROW LEVEL SECURITY;
CREATE POLICY hide_backup_events ON {PROBE_SCHEMA}.audit FOR SELECT USING (event <> 'backed up');
GRANT SELECT ON {PROBE_SCHEMA}.audit TO {PROBE_ROLE};
"""


def create_probe_objects(pg: PgTarget) -> None:
    pg.exec(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", pg.user, "-d", pg.db, "-c", PROBE_SQL])


@dataclass
class Written:
    """One document written through the service: what was sent, what the create call answered,
    and what a GET right after returned (None: the GET did not answer 200, see `read_error`)."""

    sent: dict[str, str]
    created: dict[str, Any]
    read: dict[str, Any] | None = None
    read_error: str = ""


def seed_via_api(base_url: str, api: dict[str, Any], api_key: str, count: int) -> list[Written]:
    """POST `count` documents through the service and GET each one back right after."""
    written = []
    for i in range(count):
        topic = ["postgres", "redis", "qdrant", "backups", "restores"][i % 5]
        if i % 4 == 3:  # plain ASCII: tells a service that mangles every write from one that mangles non-ASCII
            body = {"title": f"gate doc {i}: plain", "content": f"document {i} about {topic}, in plain ASCII"}
        else:
            body = {"title": f"gate doc {i}: {TEXT_SAMPLES[i % len(TEXT_SAMPLES)][:40] or 'untitled'}",
                    "content": f"document {i} about {topic} {TEXT_SAMPLES[(i + 3) % len(TEXT_SAMPLES)]} "
                               + "lorem ipsum " * (i % 7)}
        resp = http.request("POST", base_url + api["create_path"], json=body, headers={api["key_header"]: api_key},
                            deadline_s=30)
        if resp.status_code not in (200, 201):
            raise AssertionError(f"seeding through POST {api['create_path']} answered {resp.status_code}: {clip(resp.text, 300)}")
        doc = Written(body, http.json_of(resp, error=AssertionError, hint=SEED_HINT))
        path = api["get_path"].replace("{id}", str(doc.created.get("id")))
        got = http.request("GET", base_url + path, headers={api["key_header"]: api_key}, deadline_s=30)
        if got.status_code == 200:
            doc.read = http.json_of(got, error=AssertionError, hint=SEED_HINT)
        else:
            doc.read_error = f"GET {path} answered {got.status_code}: {clip(got.text, 200)}"
        written.append(doc)
    return written


def round_trip_problems(sent: dict[str, str], returned: dict[str, Any] | None, where: str) -> list[str]:
    """Every field that was sent and came back different (or not at all) in `returned`."""
    if returned is None:
        return [f"{where}: no document came back"]
    problems = []
    for field_name, value in sent.items():
        if field_name not in returned:
            problems.append(f"{where}: field `{field_name}` is missing (sent {value!r})")
        elif returned[field_name] != value:
            problems.append(f"{where}: field `{field_name}` was sent as {value!r} and came back as {returned[field_name]!r}")
    return problems


def round_trip_verdict(docs: list[tuple[dict[str, str], dict[str, Any] | None]], where: str) -> list[str]:
    """The round-trip problems of many documents, led by the smallest failing example, and saying
    whether plain-ASCII documents came back intact: if they do and others do not, the service (or
    the database's encoding) mangles non-ASCII text, not every write."""
    failing = [(sent, returned, round_trip_problems(sent, returned, where)) for sent, returned in docs]
    failing = [f for f in failing if f[2]]
    if not failing:
        return []
    ascii_docs = [(s, r) for s, r in docs if all(v.isascii() for v in s.values())]
    ascii_ok = ascii_docs and not any(round_trip_problems(s, r, where) for s, r in ascii_docs)
    smallest = min(failing, key=lambda f: sum(len(v) for v in f[0].values()))
    scope = ("plain-ASCII documents come back intact, so it is the non-ASCII text that is changed"
             if ascii_ok else "plain-ASCII documents are changed too" if ascii_docs else "no plain-ASCII document was sent")
    return [f"{len(failing)} of {len(docs)} documents written through the data API do not come back as sent; "
            f"smallest example: {smallest[2][0]} ({scope})", *[p for f in failing for p in f[2]][1:20]]
