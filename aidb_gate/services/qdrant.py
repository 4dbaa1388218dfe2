"""qdrant: the Qdrant plug-in (real `qdrant/qdrant` or the local Qdrant-API recipe).

Guarantees: under a compose file the server runs with the service's own environment, and the
gate reads its API key from `QDRANT__SERVICE__API_KEY` (none when production sets none);
without one, the server requires a per-run API key, as a production Qdrant should, given in
Qdrant's config/local.yaml so it shows neither in `ps` nor in `inspect`. Ready when
`GET /readyz` answers 200 - a wait on HTTP, never on a log line, so the real image and the
recipe are judged alike.
"""

from __future__ import annotations

from collections.abc import Callable

from aidb_gate.core import http
from aidb_gate.services.base import DependencyConfig, Offer, Running

KIND = "qdrant"
IMAGES = ("qdrant/qdrant",)
IMAGE = "docker.io/qdrant/qdrant:v1.12.6"
RECIPE = "qdrant-api"
PORT = 6333
CRITICAL = False
FAULTS = ("stop", "pause", "kill")
DATA = "qdrant"
REFUSALS = ((r"(Invalid api-key|Must provide an API key)", None, "Qdrant refused the API key"),)

API_KEY_VAR = "QDRANT__SERVICE__API_KEY"
#: Qdrant reads config/local.yaml (relative to /qdrant) after its other config files.
LOCAL_CONFIG = "/qdrant/config/local.yaml"


def offer(dep: DependencyConfig, secret: Callable[[], str]) -> Offer:
    url = {"url": f"http://{dep.name}:{dep.port}"}
    if dep.from_compose:
        key = dep.environment.get(API_KEY_VAR, "")
        return Offer(dict(dep.environment), dep.command, {"api_key": key} if key else {}, url)
    key = secret()
    # In Qdrant's own local config file, not QDRANT__SERVICE__API_KEY: an environment variable
    # shows in `inspect`.
    return Offer({}, None, {"api_key": key}, url, files={LOCAL_CONFIG: f'service:\n  api_key: "{key}"\n'})


def url(dependency: Running) -> str:
    """The REST URL from the host."""
    return f"http://{dependency.host}:{dependency.host_port}"


def is_ready(dependency: Running) -> bool:
    """`GET /readyz` answered 200 within 2 s."""
    return http.request("GET", url(dependency) + "/readyz", deadline_s=2).status_code == 200
