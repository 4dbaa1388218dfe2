"""redis: the Redis plug-in (the official image or the local recipe).

Guarantees: under a compose file the server runs with the service's own command, and the gate
reads the password from its `--requirepass` (none when it sets none, as production); without
one, the server requires a per-run random password, given in a read-only config file so it shows
neither in `ps` nor in `inspect`. Ready when PING answers.
"""

from __future__ import annotations

from collections.abc import Callable

import redis

from aidb_gate.services.base import DependencyConfig, Offer, Running

KIND = "redis"
IMAGES = ("redis", "redis/redis-stack-server", "valkey/valkey", "bitnami/redis")
IMAGE = "docker.io/library/redis:7"
RECIPE = "redis"
PORT = 6379
CRITICAL = False
FAULTS = ("stop", "pause", "kill")
DATA = ""
REFUSALS = ((r"(WRONGPASS|NOAUTH)[^\n]*", None, "Redis refused the password"),)
#: Where the gate's own Redis reads its password (a config file, as `redis-server <file>` takes).
CONF = "/run/secrets/aidb-gate-redis.conf"


def offer(dep: DependencyConfig, secret: Callable[[], str]) -> Offer:
    if dep.from_compose:
        command = list(dep.command) if dep.command else None
        password = dep.environment.get("REDIS_PASSWORD", "")
        if command and "--requirepass" in command[:-1]:
            password = command[command.index("--requirepass") + 1]
        return Offer(dict(dep.environment), command, {"password": password} if password else {}, {})
    password = secret()
    # From a config file, not `--requirepass`: a command line shows in `ps` and `inspect`.
    return Offer({}, ["redis-server", CONF], {"password": password}, {}, files={CONF: f"requirepass {password}\n"})


def is_ready(dependency: Running) -> bool:
    client = redis.Redis(host=dependency.host, port=dependency.host_port,
                         password=dependency.secrets.get("password") or None, socket_timeout=2, socket_connect_timeout=2)
    try:
        return bool(client.ping())
    finally:
        client.close()
