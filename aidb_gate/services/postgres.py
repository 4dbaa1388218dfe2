"""postgres: the PostgreSQL plug-in (the official image, pgvector's, or the local recipe).

Guarantees: under a compose file the server runs with the service's own `POSTGRES_*`
environment, and the gate reads user, database and password from it as the official image
does (user `postgres` and database = user when unset); without one, database and user come
from the configuration (default `mcp`, as the seed found) and the password is random per run,
given as POSTGRES_PASSWORD_FILE so it shows neither in `ps` nor in `inspect`.
Ready when a query over TCP from the host answers - the official image and the recipe alike.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from aidb_gate.services.base import DependencyConfig, Offer, Running

KIND = "postgres"
IMAGES = ("postgres", "pgvector/pgvector")
IMAGE = "docker.io/pgvector/pgvector:0.8.1-pg18"
RECIPE = "postgres"
PORT = 5432
CRITICAL = True
FAULTS = ("stop", "pause", "kill")
DATA = "postgres"
#: Standard server messages that mean it turned a client away: (pattern, the endpoint field its
#: captured value is compared with, meaning). The diagnosis sets them against what the stack offers.
REFUSALS = (
    (r'password authentication failed for user "?([^"\s]+)"?', "user", "password authentication failed for user `{0}`"),
    (r'role "([^"]+)" does not exist', "user", "role `{0}` does not exist"),
    (r'database "([^"]+)" does not exist', "db", "database `{0}` does not exist"),
    (r'no pg_hba\.conf entry for host "[^"]+", user "([^"]+)"', "user", "no pg_hba entry for user `{0}`"),
    (r'extension "([^"]+)" is not available', None,
     "the stack's Postgres ({image}) has no extension `{0}` - the environment differs from production, not the code: "
     "run an image that has it (`dependencies.{dep}.image`, or the compose file's `image:` for `{dep}`)"),
)


#: Where the gate's own Postgres reads its superuser password.
PASSWORD_FILE = "/run/secrets/aidb-gate-postgres-password"


def offer(dep: DependencyConfig, secret: Callable[[], str]) -> Offer:
    if dep.from_compose:
        env = dict(dep.environment)
        user = env.get("POSTGRES_USER") or "postgres"
        db = env.get("POSTGRES_DB") or user
        password = env.get("POSTGRES_PASSWORD", "")
        return Offer(env, dep.command, {"password": password} if password else {}, {"db": db, "user": user})
    password = secret()
    # POSTGRES_PASSWORD_FILE (the official image's *_FILE form): an environment variable would show
    # in `inspect`.
    env = {"POSTGRES_USER": dep.user, "POSTGRES_PASSWORD_FILE": PASSWORD_FILE, "POSTGRES_DB": dep.db}
    return Offer(env, None, {"password": password}, {"db": dep.db, "user": dep.user},
                 files={PASSWORD_FILE: password})


def is_ready(dependency: Running) -> bool:
    with psycopg.connect(dsn(dependency)) as conn:
        return conn.execute("SELECT 1").fetchone() == (1,)


def dsn(dependency: Running, dbname: str | None = None) -> str:
    """A libpq connection string from the host, through the loopback port."""
    return (f"host={dependency.host} port={dependency.host_port} dbname={dbname or dependency.extra['db']} "
            f"user={dependency.extra['user']} password={dependency.secrets.get('password', '')} connect_timeout=5")
