"""diagnose: evidence -> a short verdict that names the likely cause.

Guarantees: for a target that did not become ready, the verdict says which of these happened
and shows the evidence: it exited (exit code, OOMKilled, restarts, run time, the complete log,
or "no output"); it runs but never answers (what listens inside, on which address, the
process list); it started but never completed startup (how far it got); or a dependency
rejected it (the dependency's own log lines, set against what the stack provides). Verdicts
are built from engine state and standard server messages, never from one service's strings.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from aidb_gate.core import api
from aidb_gate.core.engine import Engine
from aidb_gate.core.steps import Pipeline, Step
from aidb_gate.core.text import clip
from aidb_gate.pipeline import StageName
from aidb_gate.stages.boot import BOOT

TCP_LISTEN = "0A"


@dataclass
class Diagnosis:
    verdict: str
    evidence: dict[str, str] = field(default_factory=dict)

    def render(self) -> str:
        parts = [f"VERDICT: {self.verdict}"]
        for name, text in self.evidence.items():
            parts.append(f"--- {name} ---\n{text.rstrip()}")
        return "\n".join(parts)


def _parse_time(value: str | None) -> datetime | None:
    if not value or value.startswith("0001-"):
        return None
    value = re.sub(r"(\.\d{6})\d+", r"\1", value.replace("Z", "+00:00"))
    value = re.sub(r" [A-Z]{3,4}$", "", value)  # podman-py may append a zone name
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def container_state(attrs: dict[str, Any]) -> dict[str, Any]:
    """The parts of `inspect` that explain a dead or flapping container."""
    state = attrs.get("State") or {}
    started, finished = _parse_time(state.get("StartedAt")), _parse_time(state.get("FinishedAt"))
    ran_for = (finished - started).total_seconds() if started and finished and finished >= started else None
    return {
        "status": state.get("Status", "?"),
        "running": bool(state.get("Running")),
        "exit_code": state.get("ExitCode"),
        "oom_killed": bool(state.get("OOMKilled")),
        "restart_count": attrs.get("RestartCount", state.get("RestartCount", 0)) or 0,
        "error": state.get("Error") or "",
        "pid": state.get("Pid") or 0,
        "ran_for_s": ran_for,
    }


def parse_proc_net_tcp(text: str, ipv6: bool = False) -> list[tuple[str, int]]:
    """(address, port) of every listening socket in a /proc/net/tcp{,6} table."""
    found = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 4 or cols[3] != TCP_LISTEN:
            continue
        addr_hex, port_hex = cols[1].split(":")
        found.append((_decode_addr(addr_hex, ipv6), int(port_hex, 16)))
    return found


def _decode_addr(hexaddr: str, ipv6: bool) -> str:
    if not ipv6:
        return ".".join(str(int(hexaddr[i : i + 2], 16)) for i in (6, 4, 2, 0))
    words = [hexaddr[i : i + 8] for i in range(0, 32, 8)]
    raw = b"".join(bytes.fromhex(w)[::-1] for w in words)
    if raw == bytes(16):
        return "::"
    if raw == bytes(15) + b"\x01":
        return "::1"
    if raw[:12] == bytes(10) + b"\xff\xff":
        return ".".join(str(b) for b in raw[12:])
    return ":".join(raw[i : i + 2].hex() for i in range(0, 16, 2))


def listening_sockets(engine: Engine, container_id: str, pid: int) -> list[tuple[str, int]] | None:
    """What listens inside the container's network namespace; None when it cannot be read."""
    tables = {}
    for name in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{name}") if pid else None
        try:
            # Same machine: the host can read the container's namespace without any tool in the image.
            tables[name] = path.read_text() if path else ""
        except OSError:
            try:
                code, out, _ = api.exec_in(engine, container_id, ["cat", f"/proc/net/{name}"])
                tables[name] = out if code == 0 else ""
            except Exception:
                return None
    if not any(tables.values()):
        return None
    return parse_proc_net_tcp(tables.get("tcp", "")) + parse_proc_net_tcp(tables.get("tcp6", ""), ipv6=True)


def is_loopback(addr: str) -> bool:
    return addr.startswith("127.") or addr == "::1"


def listen_verdict(sockets: list[tuple[str, int]], port: int) -> str | None:
    """What the listening sockets say about an unreachable port, or None if they explain nothing."""
    on_port = [a for a, p in sockets if p == port]
    if on_port and all(is_loopback(a) for a in on_port):
        return (f"it listens on {on_port[0]}:{port} inside the container, so it is unreachable from outside: "
                f"bind 0.0.0.0 (or ::) instead")
    if not on_port:
        others = sorted({f"{a}:{p}" for a, p in sockets})
        if others:
            return f"nothing listens on the contract's port {port}; it listens on {', '.join(others)} instead"
        return f"nothing listens on any TCP port inside the container (the contract's port is {port})"
    return None


#: Refusals that belong to no dependency kind: a host the service names does not resolve.
#: (pattern, endpoint key the matched value is compared with or None, meaning, owner or "").
GENERIC_REFUSALS = [
    (re.compile(r"""(?:could not translate host name|Name or service not known|getaddrinfo failed)[^\n]*?"?([\w.-]+)?"?"""),
     None, "a host name does not resolve on the stack's network", ""),
]


def refusals_of(kinds: dict[str, Any]) -> list[tuple[re.Pattern[str], str | None, str, str]]:
    """Every running dependency's refusal patterns (its plug-in's REFUSALS), owned by its name,
    then the generic ones. `kinds` maps a dependency's name to its plug-in module."""
    found = [(re.compile(pattern), key, meaning, name)
             for name, module in kinds.items() for pattern, key, meaning in getattr(module, "REFUSALS", ())]
    return found + GENERIC_REFUSALS


def dependency_mismatch(target_log: str, dep_logs: dict[str, str], provided: dict[str, dict[str, str]],
                        refusals: list[tuple[re.Pattern[str], str | None, str, str]] | None = None) -> str | None:
    """Match a dependency's refusals (in its own log, or echoed by the service) to what the stack provides."""
    if refusals is None:
        from aidb_gate.services import plugin, registry

        refusals = refusals_of({name: plugin(name) for name in provided if name in registry()})
    for source, text in [*dep_logs.items(), ("target", target_log)]:
        for pattern, key, meaning, owner in refusals:
            if source != "target" and owner and owner != source:
                continue  # one dependency's log is read with its own plug-in's patterns only
            m = pattern.search(text)
            if not m:
                continue
            value = m.group(1) if m.groups() else ""
            dep = source if source != "target" else owner
            said = meaning.format(value, dep=dep or "the dependency", image=provided.get(dep, {}).get("image", "its image"))
            if key and dep in provided and value and value != provided[dep].get(key):
                names = {"user": "user", "db": "database"}
                return (f"{dep}: {said}. The service uses {names[key]} `{value}`; the stack provides "
                        f"`{provided[dep].get(key)}`. Take the {names[key]} from the environment "
                        f"(the contract's variables), not from code")
            where = f"{source}'s log" if source != "target" else "the service's log"
            return f"{said} ({where}). Check the service's configuration against the stack's environment"
    return None


#: An access-log line of an HTTP request, e.g. uvicorn's `"GET /health/startup HTTP/1.1" 503`.
ACCESS_LOG = re.compile(r'"(GET|HEAD|POST|PUT|DELETE|PATCH|OPTIONS) \S+ HTTP/[\d.]+"')


def last_lines(text: str, n: int = 30) -> str:
    lines = text.rstrip().splitlines()
    return "\n".join(lines[-n:])


def last_progress(text: str) -> str:
    """The service's last own log line - not an access-log line of the gate's own probes."""
    own = [ln for ln in text.rstrip().splitlines() if ln.strip() and not ACCESS_LOG.search(ln)]
    return own[-1].strip() if own else ""


#: Words of a line that says a connection to a host failed (resolver, TCP, client library).
REACH_FAILED = re.compile(r"resolve|translate host|name or service|not known|getaddrinfo|connect|refused|unreachable|"
                          r"timed? ?out|no route|errno|failed|error", re.IGNORECASE)


def outside_dependency(log_text: str, not_started: dict[str, list[str]]) -> str | None:
    """A compose service the service's log names although it is outside its depends_on (so
    neither compose nor the gate started it before the service): the missing dependency."""
    for name, variables in not_started.items():
        named = re.compile(rf"(?<![\w.-]){re.escape(name)}(?![\w-])")
        if any(named.search(line) and REACH_FAILED.search(line) for line in log_text.splitlines()):
            by = f" (named by {', '.join(variables)})" if variables else ""
            return (f"the service reached for `{name}`{by}, a compose service that is not in its depends_on, so "
                    f"it was not started first - nor by the gate. Add `{name}` to the service's depends_on (with "
                    "condition: service_healthy where it has a healthcheck)")
    return None


def memory_limit(attrs: dict[str, Any]) -> int:
    """The container's memory limit in bytes (0: none)."""
    return int((attrs.get("HostConfig") or {}).get("Memory") or 0)


def explain_boot(engine: Engine, boot: Any, cfg_port: int, dep_logs: dict[str, str],
                 provided: dict[str, dict[str, str]], not_started: dict[str, list[str]] | None = None,
                 refusals: list[tuple[re.Pattern[str], str | None, str, str]] | None = None) -> Diagnosis:
    """Why the target did not become ready, with the evidence."""
    try:
        attrs = api.inspect(engine, boot.container_id)
    except Exception as err:
        return Diagnosis(f"the container is gone ({err})", {"log": boot.log.snapshot()})
    state = container_state(attrs)
    log_text = boot.log.snapshot()
    evidence = {
        "state": ", ".join(f"{k}={v}" for k, v in state.items() if k != "pid"),
        "log": log_text or "(no output)",
    }
    mismatch = (outside_dependency(log_text, not_started or {})
                or dependency_mismatch(log_text, dep_logs, provided, refusals))
    if not state["running"]:
        ran = f" after {state['ran_for_s']:.1f} s" if state["ran_for_s"] is not None else ""
        head = f"the container exited with code {state['exit_code']}{ran}"
        limit = memory_limit(attrs)
        if state["oom_killed"] or (state["exit_code"] == 137 and limit):
            # Podman on cgroup v1 reports OOMKilled=false for a kernel OOM kill; SIGKILL (137) under a
            # memory limit, with nothing else killing it, is that kill.
            cap = f" of {limit / 2**20:.0f} MiB" if limit else ""
            verdict = (f"{head}: it was killed (SIGKILL) by the kernel's OOM killer at its memory limit{cap} while "
                       "starting - raise the limit (compose mem_limit / deploy.resources.limits.memory) or lower "
                       "what the service loads at startup")
            return Diagnosis(verdict, evidence)
        if state["restart_count"]:
            head += f", after {state['restart_count']} restart(s)"
        if not log_text.strip():
            return Diagnosis(
                head + ". It printed no output: either it crashed before logging anything, or Python buffered "
                "its output (stdout is not a TTY). Run the entrypoint by hand with unbuffered output, e.g. "
                "`podman run --rm -it --entrypoint python3 IMAGE -u <entry point>`, or set PYTHONUNBUFFERED=1",
                evidence,
            )
        cause = mismatch or _last_exception(log_text) or f"its last line was: {last_lines(log_text, 1)}"
        return Diagnosis(f"{head}; {cause}", evidence)
    sockets = listening_sockets(engine, boot.container_id, state["pid"])
    evidence["listening"] = "\n".join(f"{a}:{p}" for a, p in sockets) if sockets else "(nothing, or unreadable)"
    evidence["processes"] = api.top(engine, boot.container_id)
    if boot.last_status is None:
        explained = listen_verdict(sockets or [], cfg_port) if sockets is not None else None
        verdict = explained or f"port {cfg_port} never answered HTTP"
        if mismatch:
            verdict += f"; {mismatch}"
        return Diagnosis(f"the container runs but never answered: {verdict}. Last log line: "
                         f"{last_lines(log_text, 1) or '(no output)'}", evidence)
    progress = last_progress(log_text) or "(no output besides request logs)"
    verdict = (f"startup did not complete by the deadline: the startup endpoint still answered "
               f"{boot.last_status} after {boot.seconds:.0f} s; the last thing it logged was: {clip(progress, 400)}")
    if mismatch:  # the cause leads, so the banner and the verdict list show it first
        verdict = f"{mismatch} - so {verdict}"
    return Diagnosis(verdict, evidence)


def _last_exception(log_text: str) -> str | None:
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    for line in reversed(lines):
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b.*", line):
            return f"it raised {clip(line, 300)}"
    return None


def _diagnose_boot(session: Pipeline) -> Diagnosis:
    from aidb_gate.services import plugin

    boot, stack, cfg = session.boot(), session.stack(), session.cfg
    dep_logs = {name: d.log.snapshot() for name, d in stack.deps.items()}
    provided = {name: {**d.endpoint(), "image": d.image.wanted or d.image.ref} for name, d in stack.deps.items()}
    outside = cfg.compose.not_started if cfg.compose else {}
    refusals = refusals_of({name: plugin(d.kind) for name, d in stack.deps.items()})
    return explain_boot(session.connect(), boot, cfg.port, dep_logs, provided, outside, refusals)


#: Why the service did not boot, with the evidence (asked for only when it did not).
BOOT_DIAGNOSIS: Step[Diagnosis] = Step("diagnosis", StageName.BOOT, _diagnose_boot, needs=(BOOT,))
