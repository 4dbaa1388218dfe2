"""run: the identity of one gate run, the labels it stamps on everything, and its secrets.

Guarantees: every container, network and volume the gate makes carries `aidb-gate.run=<id>`
and an owner label that lets a later run tell whether this run is still alive; a run made with
--gate-keep also carries `aidb-gate.kept=true`, which the janitor never reaps. Secrets are
random per run and registered with the redactor the moment they are made.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
import uuid
from dataclasses import dataclass, field

from aidb_gate.report import Redactor

RUN_LABEL = "aidb-gate.run"
OWNER_LABEL = "aidb-gate.owner"
ROLE_LABEL = "aidb-gate.role"
#: Set at creation on everything of a --gate-keep run (labels cannot change later): the stack
#: outlives its owner on purpose, so only `aidb-gate clean --run ID` or `--kept` removes it.
KEPT_LABEL = "aidb-gate.kept"


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of pid (clock ticks since boot), or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name may hold spaces and parentheses; the fields after the last ')' are fixed.
    return stat.rsplit(")", 1)[1].split()[19]


def owner_token(pid: int | None = None) -> str:
    pid = pid or os.getpid()
    return f"{socket.gethostname()}:{pid}:{process_start_time(pid) or '?'}"


def owner_alive(token: str) -> bool:
    """True unless the owner is provably dead: same host, and its pid is gone or was reused."""
    try:
        host, pid, started = token.rsplit(":", 2)
    except ValueError:
        return True  # unknown format: never remove what we cannot judge
    if host != socket.gethostname():
        return True
    return process_start_time(int(pid)) == started


@dataclass
class Run:
    """One gate run: its id, its owner, and the secrets it made."""

    # AIDB_GATE_RUN_ID lets a caller (CI, a self-test) name the run it will look for afterwards.
    id: str = field(default_factory=lambda: os.environ.get("AIDB_GATE_RUN_ID")
                    or time.strftime("%Y%m%d%H%M%S") + "-" + uuid.uuid4().hex[:6])
    owner: str = field(default_factory=owner_token)
    redactor: Redactor = field(default_factory=Redactor)
    #: The user asked to keep the stack (--gate-keep): everything is labelled as kept.
    kept: bool = False

    def labels(self, role: str) -> dict[str, str]:
        labels = {RUN_LABEL: self.id, OWNER_LABEL: self.owner, ROLE_LABEL: role}
        if self.kept:
            labels[KEPT_LABEL] = "true"
        return labels

    def name(self, role: str) -> str:
        """A container or network name unique to this run, readable in `podman ps`."""
        return f"aidb-gate-{self.id}-{role}"

    def secret(self, nbytes: int = 18) -> str:
        value = secrets.token_urlsafe(nbytes).replace("-", "x").replace("_", "y")
        self.redactor.add(value)
        return value
