"""doctor: `aidb-gate doctor` - check the container engine the way the gate uses it, and say what to fix.

Guarantees: the check is real, in the gate's own shape - a labelled network, two containers on
it at fixed addresses, and one reaching the other by name over TCP - so a host that passes
can run the gate's stacks. Every wait has a deadline. Everything it makes carries the labels of
a run `doctor-<random>` (so the janitor can remove it if doctor is killed) and is removed before
it returns, also on failure and Ctrl-C; the API service it started is always stopped. Each
missing piece (firewall tool, runtime, network backend, subuid range, storage driver) is one
line that says how to fix it, and the mapping from the engine's own error text to that fix is
the pure function `fix_for`. doctor reports; it never raises.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aidb_gate.core.engine import PROJECT_CONTAINERS_CONF, ROOTLESS_V1_LIMITS, Engine, connect, containers_conf_reasons

#: The project's base image: it has python3, and `make gate` builds it where nothing else exists.
BASE_IMAGE = "localhost/aidb-gate/base:bookworm"
#: Whole network check (both containers up, one reaching the other); a healthy host needs ~2 s.
NETWORK_DEADLINE_S = 30.0
#: The port A serves on; B connects to it by A's name.
PORT = 8080

# Where Podman 4 looks for netavark/aardvark-dns and the CNI plugins (its built-in defaults).
HELPER_DIRS = ("/usr/local/libexec/podman", "/usr/local/lib/podman", "/usr/libexec/podman", "/usr/lib/podman")
CNI_DIRS = ("/usr/local/libexec/cni", "/usr/libexec/cni", "/usr/local/lib/cni", "/usr/lib/cni", "/opt/cni/bin")
# A non-root PATH often lacks the sbin folders where iptables and runc live, but Podman finds them.
SBIN_DIRS = ("/usr/local/sbin", "/usr/sbin", "/sbin")

FIX_FIREWALL = ("netavark (Podman's network stack) sets up every network with the `iptables` command, which is "
                "missing: install it (`sudo apt-get install -y iptables`, `sudo dnf install -y iptables`).")
FIX_RUNTIME = ("install runc (`sudo apt-get install -y runc`); where crun is installed but fails, set "
               f'`runtime = "runc"` under [engine] in containers.conf, as {PROJECT_CONTAINERS_CONF} does.')
FIX_HYBRID = ("crun refuses hybrid cgroups: install runc (`sudo apt-get install -y runc`) and leave "
              f"CONTAINERS_CONF unset so the gate applies {PROJECT_CONTAINERS_CONF}, which selects runc.")
FIX_RLIMIT = ("Podman's default nofile/nproc limits are above this host's hard limit: leave CONTAINERS_CONF "
              f"unset so the gate applies {PROJECT_CONTAINERS_CONF} (or copy its default_ulimits line into yours).")
FIX_NETAVARK = ("install Podman's network stack: `sudo apt-get install -y netavark aardvark-dns iptables` (or set "
                "helper_binaries_dir under [engine] in containers.conf to where netavark is).")
FIX_DNS = ("containers cannot look each other up by name: install aardvark-dns (`sudo apt-get install -y "
           "aardvark-dns`); with CNI, the dnsname plugin. The gate itself resolves through /etc/hosts.")
FIX_CNI = ("the CNI plugins are missing: `sudo apt-get install -y containernetworking-plugins`, or better switch to "
           "netavark: `sudo apt-get install -y netavark aardvark-dns iptables`, set `network_backend = \"netavark\"` "
           "under [network] in containers.conf, then `podman system reset` (it deletes all containers and images).")
FIX_BACKEND = ('network_backend in containers.conf ([network] section) must be "netavark" or "cni"; remove the line '
               "to let Podman choose.")
FIX_SUBUID = ("rootless Podman needs a subordinate uid/gid range for this user: `sudo usermod --add-subuids "
              "100000-165535 --add-subgids 100000-165535 $USER`, then `podman system migrate`.")
FIX_STORAGE = ("the storage driver cannot work here: set `driver = \"overlay\"` (or \"vfs\", slower) in storage.conf "
               "(~/.config/containers/storage.conf when rootless, /etc/containers/storage.conf as root); rootless "
               "overlay on older kernels also needs fuse-overlayfs.")
FIX_STORAGE_MISMATCH = ("the storage was created with another driver than the one configured now: configure the "
                        "old driver again, or `podman system reset` (it deletes all containers and images).")
FIX_DOCKER_SUBNET = ("Docker gives a container a fixed address only on a network created with an explicit subnet; "
                     "the gate names one (aidb_gate/core/network.py), so an engine that still refuses is older or "
                     "configured otherwise: upgrade it, or run the gate on Podman.")
FIX_TABLES = ("containers on one network cannot reach each other: the host firewall drops their traffic; allow "
              "forwarding on Podman's bridges (e.g. `sudo iptables -P FORWARD ACCEPT`) or ask your admin.")

FIX_REACH = ("the gate connects to published ports on 127.0.0.1, and that reaches the engine's containers only when "
             "the engine shares this machine's network: if the engine runs elsewhere (another host, a CI service, "
             "another network namespace), set DOCKER_HOST=tcp://<its address>:2375 so the gate connects to that host.")
FIX_REACH_REMOTE = ("the gate connects to published ports at the host DOCKER_HOST names: make that host's published ports "
                    "reachable from here (a firewall between them, or a DOCKER_HOST that names a proxy, stops them).")

FIX_TUN = ("rootless Podman's network (slirp4netns) opens /dev/net/tun, which this user may not: give it its usual "
           "mode (`sudo chmod 0666 /dev/net/tun`), or run the gate as root.")
FIX_ROOTLESS_NETNS = ("rootless Podman could not set up its network namespace: check that this user may open "
                      "/dev/net/tun (`sudo chmod 0666 /dev/net/tun`, its usual mode), then run `podman system migrate` as "
                      "this user to clear the half-made namespace; seen after a first attempt failed on /dev/net/tun.")

# (pattern, fix), first match wins. Every pattern is a real engine message seen on Debian 12 with
# Podman 4.3.1, except where a comment says otherwise; see tests/unit/test_doctor.py.
_FIXES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p, re.IGNORECASE), fix) for p, fix in (
    # netavark runs `iptables`; when it is not found, it reports only the OS error.
    (r"netavark: .*no such file or directory \(os error 2\)", FIX_FIREWALL),
    (r"could not find \"(netavark|aardvark-dns)\"", FIX_NETAVARK),
    (r"aardvark-dns binary not found", FIX_DNS),
    # Rootless, both seen on Debian 12 with Podman 4.3.1 as a user made with `useradd -m`.
    (r"open\(\"/dev/net/tun\"\): Permission denied", FIX_TUN),
    (r"failed to mount runtime directory for rootless netns", FIX_ROOTLESS_NETNS),
    (r"failed to find plugin \\?\"", FIX_CNI),
    (r"unsupported network backend", FIX_BACKEND),
    # Quoted in ENGINE-NOTES.md (crun itself is not installed on the machine the rest were seen on).
    (r"cgroups in hybrid mode not supported", FIX_HYBRID),
    (r"OCI runtime \"[^\"]*\" not found|no valid executable found for OCI runtime", FIX_RUNTIME),
    (r"error setting rlimit|setrlimit RLIMIT_", FIX_RLIMIT),
    (r"insufficient UIDs or GIDs|no subuid ranges found|cannot find UID/GID for user|newuidmap", FIX_SUBUID),
    (r"database storage graph driver .* does not match", FIX_STORAGE_MISMATCH),
    (r"prerequisites for driver not satisfied|driver not supported|kernel does not support overlay", FIX_STORAGE),
    # Docker's words (moby/moby#45806); no Docker daemon was at hand to reproduce it.
    (r"supported only when connecting to networks with user configured subnets", FIX_DOCKER_SUBNET),
    # What doctor's own probe prints inside the container (Python's resolver messages).
    (r"Name or service not known|Temporary failure in name resolution|No address associated", FIX_DNS),
    (r"could not reach .* within", FIX_TABLES),
))


def fix_for(error_text: str) -> str | None:
    """What to do about an engine error, from its own words; None when it is not a known set-up problem."""
    for pattern, fix in _FIXES:
        if pattern.search(error_text):
            return fix
    return None


def subuid_problem(user: str, uid: int, subuid_text: str | None) -> str | None:
    """Why rootless Podman cannot map this user's images (None when /etc/subuid has a range for it)."""
    if uid == 0:
        return None
    for line in (subuid_text or "").splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, str(uid)) and parts[2].isdigit() and int(parts[2]) >= 65536:
            return None
        if len(parts) == 3 and parts[0] in (user, str(uid)):
            return f"/etc/subuid gives {user} only {parts[2]} ids; images need 65536"
    return f"/etc/subuid has no range for {user}"


def find_tool(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path=os.pathsep.join(SBIN_DIRS))


def _find_in(dirs: tuple[str, ...], name: str) -> str | None:
    return next((f"{d}/{name}" for d in dirs if Path(d, name).is_file()), None)


def one_line(text: str, limit: int = 300) -> str:
    """The engine's words on one line: docker-py wraps them in an HTTP status, Podman in log syntax."""
    text = str(text).strip()
    match = re.search(r'\("(.*)"\)\s*$', text, re.DOTALL)  # docker-py: 500 Server Error ... ("<engine words>")
    if match:
        text = match.group(1)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    line = (errors or lines or [""])[-1]
    return line.replace('\\"', '"')[:limit]


@dataclass
class Report:
    """doctor's lines; one ERR line per problem, each fix said once."""

    lines: list[str] = field(default_factory=list)
    ok: bool = True
    #: Checks that could not run, with why: a report with any is never "all good".
    skipped: list[str] = field(default_factory=list)
    _fixes: set[str] = field(default_factory=set)

    def good(self, text: str) -> None:
        self.lines.append(f"ok  {text}")

    def note(self, text: str) -> None:
        self.lines.append(f"--  {text}")

    def skip(self, check: str, why: str) -> None:
        """A check that could not run: named, with why, and remembered for the verdict."""
        self.skipped.append(check)
        self.lines.append(f"--  {check} check could not run: {why}")

    @property
    def verdict(self) -> str:
        """The last line: "all good" only when every check ran and passed."""
        if not self.ok:
            return "doctor: fix the ERR lines above, then run it again"
        if self.skipped:
            return (f"doctor: no problem found, but {len(self.skipped)} check(s) could not run "
                    f"({', '.join(self.skipped)}): see the lines above; this is not a clean bill of health")
        return "doctor: all good"

    @property
    def exit_code(self) -> int:
        """0 all good, 1 a problem, 3 no problem found but a check could not run."""
        return 1 if not self.ok else 3 if self.skipped else 0

    def error(self, what: str, fix: str | None = None) -> None:
        self.ok = False
        if fix and fix in self._fixes:
            fix = "see the fix above."
        elif fix:
            self._fixes.add(fix)
        self.lines.append(f"ERR {what}" + (f" Fix: {fix}" if fix else ""))

    def engine_error(self, what: str, err: object) -> None:
        words = one_line(str(err))
        self.error(f"{what}: {words}.", fix_for(str(err)))


def doctor(run_id: str | None = None) -> Report:
    """Check the engine set-up for real: build, run, exec, names on a labelled network and a published
    port reached from here; the Report's lines say what passed, what failed and what could not run."""
    from aidb_gate.core.run import Run

    run = Run(id=run_id or f"doctor-{uuid.uuid4().hex[:6]}")
    report = Report()
    for tool in ("podman", "docker"):
        path = find_tool(tool)
        (report.good if path else report.note)(f"{tool}: {path or 'not found'}")
    reasons = containers_conf_reasons()  # when non-empty, the engine's notes below say so
    if os.environ.get("CONTAINERS_CONF"):
        report.good(f"CONTAINERS_CONF={os.environ['CONTAINERS_CONF']} (yours, respected)")
    try:
        engine = connect(run.id)
    except Exception as err:  # doctor reports, it never raises
        report.error(f"engine: {err}", fix_for(str(err)))
        return report
    try:
        report.good(f"engine: {engine.description}")
        for note in engine.notes:
            report.good(note)
        if engine.kind == "podman" and engine.cli and engine.docker_host.startswith("unix://"):
            check_podman_host(engine, report, needs_runc=bool(reasons))
        check_leftovers(engine, report)
        check_network(engine, run, report)
    finally:
        engine.close()
    if not find_tool("debootstrap"):
        report.note("debootstrap: not found (needed only to build the base image where no registry is reachable; "
                    "`make gate` installs it then)")
    return report


def check_podman_host(engine: Engine, report: Report, needs_runc: bool) -> None:
    """What Podman itself says about its runtime, network stack, storage and user mapping."""
    try:
        proc = subprocess.run([engine.cli or "podman", "info", "--format", "json"], env=engine.env(),
                              capture_output=True, text=True, timeout=30, check=False)
    except subprocess.TimeoutExpired:
        report.error("`podman info` did not answer within 30 s. Run it by hand to see what it waits for.")
        return
    if proc.returncode != 0:
        report.engine_error("`podman info` failed", proc.stderr or proc.stdout)
        return
    info = json.loads(proc.stdout)
    host, store = info.get("host", {}), info.get("store", {})
    runtime = host.get("ociRuntime") or {}
    report.good(f"runtime: {runtime.get('name', '?')} ({runtime.get('path', '?')})")
    if needs_runc and not find_tool("runc"):
        report.error("runtime: runc is missing, and this host needs it (crun refuses hybrid cgroups).", FIX_RUNTIME)
    backend = host.get("networkBackend", "?")
    if backend == "netavark":
        report.good(f"network backend: netavark ({_find_in(HELPER_DIRS, 'netavark') or 'helper_binaries_dir'})")
        firewall = find_tool("iptables")
        if firewall:
            report.good(f"firewall tool: {firewall}")
        else:
            report.error("firewall tool: iptables not found.", FIX_FIREWALL)
        if not _find_in(HELPER_DIRS, "aardvark-dns"):
            report.note(f"aardvark-dns: not found; {FIX_DNS}")
    elif backend == "cni":
        bridge = _find_in(CNI_DIRS, "bridge")
        if bridge:
            report.good(f"network backend: CNI ({Path(bridge).parent})")
        else:
            report.error(f"network backend: CNI, but no \"bridge\" plugin in {', '.join(CNI_DIRS)}.", FIX_CNI)
    else:
        report.note(f"network backend: {backend}")
    report.good(f"storage driver: {store.get('graphDriverName', '?')} ({store.get('graphRoot', '?')})")
    if (host.get("security") or {}).get("rootless"):
        user = pwd.getpwuid(os.getuid()).pw_name
        try:
            subuid = Path("/etc/subuid").read_text()
        except OSError:
            subuid = None
        problem = subuid_problem(user, os.getuid(), subuid)
        if problem:
            report.error(f"subuid range: {problem}.", FIX_SUBUID)
        else:
            report.good(f"subuid range for {user} (rootless)")
        if host.get("cgroupVersion") == "v1":
            report.note(ROOTLESS_V1_LIMITS)


# Runs in container B: poll A by the /etc/hosts name (the gate's way) until the deadline, then
# ask the engine's DNS for A's network alias (used by people, not by the gate).
_PROBE = """
import socket, sys, time
end = time.monotonic() + {deadline}
last = "no attempt"
while True:
    try:
        with socket.create_connection(("doctor-a", {port}), timeout=2) as s:
            s.sendall(b"GET / HTTP/1.0\\r\\nHost: doctor-a\\r\\n\\r\\n")
            if s.recv(12).startswith(b"HTTP/1."):
                print("reached doctor-a", flush=True)
                break
            last = "no HTTP reply"
    except OSError as err:
        last = str(err)
    if time.monotonic() > end:
        print(f"could not reach doctor-a:{port} within {deadline:.0f} s: {{last}}", flush=True)
        sys.exit(1)
    time.sleep(0.1)
try:
    print("dns ok " + socket.gethostbyname("doctor-a-dns"), flush=True)
except OSError as err:
    print(f"dns failed: {{err}}", flush=True)
"""


def pick_image(tags: list[str]) -> str | None:
    """The project's base image, else another project image (built on it), else any local image."""
    if BASE_IMAGE in tags:
        return BASE_IMAGE
    ours = sorted(t for t in tags if t.startswith("localhost/aidb-gate/"))
    return next(iter(ours or sorted(tags)), None)


def check_network(engine: Engine, run, report: Report, deadline_s: float = NETWORK_DEADLINE_S) -> None:
    """Two containers on a labelled network, B reaching A by name over TCP; everything removed after."""
    from aidb_gate.core.container import reach_for
    from aidb_gate.core.network import FIRST_HOST, create_bridge, fixed_endpoint

    where = reach_for(engine.docker_host)
    client = engine.docker_client(timeout=int(deadline_s) + 15)
    start = time.monotonic()
    try:
        try:
            image = pick_image([t for img in client.images.list() for t in img.tags])
        except Exception as err:
            report.engine_error("listing images failed", err)
            return
        if image is None:
            why = (f"it needs a local image with python3 and there is none yet; `make gate` builds {BASE_IMAGE}, then "
                   "run `aidb-gate doctor` again")
            for check in ("build", "network", "exec", "published port"):
                report.skip(check, why)
            return
        check_build(engine, client, image, run, report)
        try:
            net, subnet = create_bridge(client, run.name("net"), run.labels("network"))
        except Exception as err:
            report.engine_error("creating a network failed", err)
            return

        def attach(alias: str, offset: int) -> tuple[str, dict]:
            ip = str(subnet.network_address + FIRST_HOST + offset)
            return ip, {"network": net.name, "networking_config": {net.name: fixed_endpoint(alias, ip)}}

        ip_a, attach_a = attach("doctor-a-dns", 0)
        _ip_b, attach_b = attach("doctor-b", 1)
        try:
            a = client.containers.create(image, entrypoint=["python3", "-m", "http.server", str(PORT), "--directory",
                                                            "/tmp"], name=run.name("a"), labels=run.labels("doctor-a"),
                                         ports={f"{PORT}/tcp": (where.publish, None)}, **attach_a)
            a.start()
            probe = _PROBE.format(deadline=max(deadline_s - 10, 5), port=PORT)
            b = client.containers.create(image, entrypoint=["python3", "-c", probe], name=run.name("b"),
                                         labels=run.labels("doctor-b"), extra_hosts={"doctor-a": ip_a}, **attach_b)
            b.start()
        except Exception as err:
            text = str(err)
            if image != BASE_IMAGE and "python3" in text and "not found" in text:
                for check in ("network", "exec", "published port"):
                    report.skip(check, f"{image} has no python3; `make gate` builds {BASE_IMAGE}")
                return
            report.engine_error(f"starting a container from {image} failed", err)
            return
        try:
            status = b.wait(timeout=deadline_s)["StatusCode"]
        except Exception:
            status = None
        output = b.logs().decode(errors="replace").strip()
        if status == 0:
            report.good(f"network: two containers from {image} on a labelled network, one reached the other by "
                        f"name over TCP ({time.monotonic() - start:.1f} s)")
            dns = next((ln for ln in output.splitlines() if ln.startswith("dns ")), "dns failed: no answer")
            if dns.startswith("dns ok"):
                report.good("network DNS: containers also find each other by network alias")
            else:
                report.note(f"network DNS: {dns.removeprefix('dns failed: ')}; {FIX_DNS}")
            check_exec(a, report)
            check_published(engine, a, where, report)
            return
        a.reload()
        a_state = a.attrs.get("State", {}).get("Status", "?")
        a_logs = a.logs(tail=5).decode(errors="replace").strip()
        why = output or (f"no result within {deadline_s:.0f} s" if status is None else f"exit {status}")
        detail = f" (A is {a_state}{': ' + one_line(a_logs) if a_state != 'running' and a_logs else ''})"
        report.error(f"network: a container could not reach another on the same network by name: {one_line(why)}"
                     f"{detail}.", fix_for(why))
    finally:
        remove_run_things(client, run.id, report)
        client.close()


def check_leftovers(engine: Engine, report: Report) -> None:
    """Port-forward rules and bridges of networks the engine no longer has (a dead run's), each an
    ERR with the commands that remove it: a stale rule captures the port a later run is given."""
    from aidb_gate.core.firewall import host_leftovers

    found, why = host_leftovers(engine)
    if why:
        report.note(f"host firewall: not checked, {why}")
        return
    for item in found:
        report.error(f"host firewall: {item.what}.", f"{' && '.join(item.remove)}")
    if not found:
        report.good("host firewall: no port-forward rule or bridge of a network the engine no longer has")


def check_build(engine: Engine, client, image: str, run, report: Report) -> None:
    """A one-line image built the way the gate builds (core/imagebuild.py, through the engine's
    API), then removed."""
    import tempfile

    from aidb_gate.core import imagebuild

    tag = f"localhost/aidb-gate/doctor:{run.id}"
    begin = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="aidb-gate-doctor-") as tmp:
            (Path(tmp) / "Containerfile").write_text(f"FROM {image}\nRUN true\n")
            with (Path(tmp) / "build.log").open("w") as log:
                code, text = imagebuild.build(engine, Path(tmp), tag, log, labels=run.labels("doctor-build"),
                                              timeout_s=NETWORK_DEADLINE_S * 4)
    except Exception as err:
        code, text = 1, str(err)
    finally:
        # Never built, or already gone: nothing of doctor's is left either way.
        with contextlib.suppress(Exception):
            client.images.remove(tag, force=True)
    if code != 0:
        report.engine_error(f"build: a one-line image FROM {image} did not build through the API", text)
        return
    report.good(f"build: a one-line image FROM {image} built through the engine's API ({time.monotonic() - begin:.1f} s)")


def check_exec(container, report: Report) -> None:
    """A command exec'd into a running container answers (the gate's imports check and backups exec)."""
    try:
        code, output = container.exec_run(["python3", "-c", "print('exec ok')"])
    except Exception as err:
        report.engine_error("exec: running a command in a running container failed", err)
        return
    if code == 0 and b"exec ok" in (output or b""):
        report.good("exec: a command ran inside a running container and answered")
    else:
        report.error(f"exec: a command in a running container exited {code}: {one_line((output or b'').decode(errors='replace'))}.")


def check_published(engine: Engine, container, where, report: Report) -> None:
    """The container's published port answers where the gate will connect to it (see
    core.container.reach_for): a refusal there is an address problem, never a dependency's fault."""
    from aidb_gate.core import http

    try:
        container.reload()
        host_port = container.ports[f"{PORT}/tcp"][0]["HostPort"]
    except Exception as err:
        report.error(f"published port: the engine published no port for a container that asked for one ({one_line(str(err))}).")
        return
    url = f"http://{where.url_host()}:{host_port}/"
    try:
        resp = http.request("GET", url, deadline_s=10)
    except Exception as err:
        report.error(f"published port: the engine at {engine.docker_host} publishes on {where.publish}, and "
                     f"{where.host}:{host_port} does not answer from here ({one_line(str(err))}){_elsewhere(engine)}.",
                     FIX_REACH if not where.remote else FIX_REACH_REMOTE)
        return
    if resp.status_code >= 500:
        report.error(f"published port: {where.host}:{host_port} answered HTTP {resp.status_code}, but the container "
                     "behind it serves files: another server holds that address (a stale port-forward rule?).", FIX_REACH)
        return
    report.good(f"published port: reached the container at {where.host}:{host_port} from here")


def _elsewhere(engine: Engine) -> str:
    """Why a local socket's published ports may not be this machine's: the engine's own network."""
    from aidb_gate.core.firewall import engine_netns

    try:
        netns = engine_netns(engine.docker_host)
    except OSError:
        return ""
    return (f"; the engine's process runs in another network namespace ({netns}), whose 127.0.0.1 is not this one"
            if netns else "")


def remove_run_things(client, run_id: str, report: Report) -> None:
    """Remove everything labelled with this run, found by label (a Ctrl-C during a create leaves a
    container the code never got a handle to); what resists is named, with how to remove it later."""
    from aidb_gate.core.janitor import remove_run_quietly
    from aidb_gate.core.run import RUN_LABEL

    leftovers = [one_line(err) for err in remove_run_quietly(client, run_id).errors]
    if leftovers:
        report.note(f"could not remove {', '.join(leftovers)}; the next gate run removes them (label "
                    f"{RUN_LABEL}={run_id}), or `aidb-gate clean --run {run_id}`")
