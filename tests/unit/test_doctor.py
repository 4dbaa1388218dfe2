"""doctor: the engine's own error texts map to the right fix, and doctor cleans up after itself.

Every error string below is copied verbatim from a real engine on Debian 12 (Podman 4.3.1,
netavark 1.4, runc), reproduced by breaking one setting at a time, except the two quoted from
elsewhere (said where); where each came from is noted.
"""

from __future__ import annotations

import pytest

from aidb_gate import doctor as doc

# /tmp/engine-errors/err-run-no-iptables.txt: `podman run --network X` before iptables was installed.
NO_IPTABLES_CLI = "Error: netavark: No such file or directory (os error 2)"
# The same failure through the API service (PATH without /usr/sbin, so netavark finds no iptables).
NO_IPTABLES_API = (
    '500 Server Error for http+docker://localhost/v1.41/containers/e67cc0e3178a89730880e5b3614b9295f8b77830669143ac17e3669f957eeeae'
    '/start: Internal Server Error ("netavark: No such file or directory (os error 2)")'
)
# /tmp/engine-errors/err-nofile.txt: `podman run` without the project's containers.conf.
NOFILE_CLI = (
    "Error: runc: runc create failed: unable to start container process: error during container init: error setting "
    "rlimits for ready process: error setting rlimit type 7: operation not permitted: OCI permission denied"
)
# The same through the API service (CONTAINERS_CONF with runc but no default_ulimits).
NOFILE_API = (
    '500 Server Error for http+docker://localhost/v1.41/containers/df15ab0c91eef50c918ba793029ed3cca85909d13ce0b0b2c0b4852905e57a75'
    '/start: Internal Server Error ("runc: runc create failed: unable to start container process: error during container '
    'init: error setting rlimits for ready process: error setting rlimit type 7: operation not permitted: OCI permission '
    'denied")'
)
# /tmp/engine-errors/err-cni.txt: network_backend = "cni" without the CNI plugins.
CNI = (
    'time="2026-11-29T23:16:26Z" level=warning msg="Error validating CNI config file /etc/cni/net.d/87-podman-bridge.conflist: '
    '[failed to find plugin \\"bridge\\" in path [/usr/local/libexec/cni /usr/libexec/cni /usr/local/lib/cni /usr/lib/cni '
    '/opt/cni/bin] failed to find plugin \\"portmap\\" in path [/usr/local/libexec/cni /usr/libexec/cni /usr/local/lib/cni '
    '/usr/lib/cni /opt/cni/bin] failed to find plugin \\"firewall\\" in path [/usr/local/libexec/cni /usr/libexec/cni '
    '/usr/local/lib/cni /usr/lib/cni /opt/cni/bin] failed to find plugin \\"tuning\\" in path [/usr/local/libexec/cni '
    '/usr/libexec/cni /usr/local/lib/cni /usr/lib/cni /opt/cni/bin]]"\n'
    "Error: unable to find network with name or ID cninet: network not found"
)
# CONTAINERS_CONF with runtime = "crun" (not installed) / a runtime that does not exist.
CRUN_MISSING = 'Error: default OCI runtime "crun" not found: invalid argument'
RUNTIME_MISSING = 'Error: default OCI runtime "nosuchrt" not found: invalid argument'
# CONTAINERS_CONF with network_backend = "bogus".
BAD_BACKEND = 'Error: unsupported network backend "bogus", check network_backend in containers.conf'
# CONTAINERS_CONF with helper_binaries_dir pointing at an empty folder (no netavark).
NO_NETAVARK = (
    'Error: could not find "netavark" in one of [/tmp/doctor-repro/empty].  To resolve this error, set the '
    "helper_binaries_dir key in the `[engine]` section of containers.conf to the directory containing your helper binaries."
)
# helper_binaries_dir holding netavark only: the container starts, names do not resolve.
NO_AARDVARK_WARNING = ('time="2026-11-29T23:18:08Z" level=warning msg="aardvark-dns binary not found, container dns will '
                       'not be enabled"')
NO_AARDVARK_PROBE = "dns failed: [Errno -2] Name or service not known"
# `podman --root <fresh> --storage-driver btrfs|zfs|bogus info` on ext4, and another driver on an existing store.
STORAGE_BTRFS = ('Error: "/tmp/doctor-repro/st/root/btrfs" is not on a btrfs filesystem: prerequisites for driver not '
                 "satisfied (wrong filesystem?)")
STORAGE_ZFS = "Error: the 'zfs' command is not available: prerequisites for driver not satisfied (wrong filesystem?)"
STORAGE_BOGUS = "Error: failed to GetDriver graph bogus /tmp/doctor-repro/st/root: driver not supported"
STORAGE_MISMATCH = ('Error: database storage graph driver "" does not match our storage graph driver "vfs": database '
                    "configuration mismatch")
# Rootless Podman (user nobody, no /etc/subuid entry) loading the base image.
NO_SUBUID = (
    "potentially insufficient UIDs or GIDs available in user namespace (requested 0:42 for /etc/gshadow): Check "
    "/etc/subuid and /etc/subgid if configured locally and run podman-system-migrate: lchown /etc/gshadow: invalid "
    "argument exit status 1"
)
# Docker's daemon, quoted from moby/moby#45806 (no Docker daemon here): a fixed address on a network without a subnet.
DOCKER_NO_SUBNET = ("Error response from daemon: user specified IP address is supported only when connecting to networks "
                    "with user configured subnets")
# Rootless Podman 4.3.1 as a user made with `useradd -m` on this machine (doctor's network check): with
# /dev/net/tun at mode 0600, and with XDG_RUNTIME_DIR pointing at a folder the user made in /tmp.
ROOTLESS_TUN = ('starting a container from localhost/aidb-gate/base:bookworm failed: /usr/bin/slirp4netns failed: '
                '"open("/dev/net/tun"): Permission denied\nWARNING: Support for seccomp is experimental\nchild failed(1)\n"')
ROOTLESS_NETNS = "failed to mount runtime directory for rootless netns: no such file or directory"
# Quoted in /work/shared/ENGINE-NOTES.md (crun on hybrid cgroups); crun is not installed here.
CRUN_HYBRID = "cgroups in hybrid mode not supported"


@pytest.mark.parametrize(("text", "fix"), [
    (NO_IPTABLES_CLI, doc.FIX_FIREWALL),
    (NO_IPTABLES_API, doc.FIX_FIREWALL),
    (NOFILE_CLI, doc.FIX_RLIMIT),
    (NOFILE_API, doc.FIX_RLIMIT),
    (CNI, doc.FIX_CNI),
    (CRUN_MISSING, doc.FIX_RUNTIME),
    (RUNTIME_MISSING, doc.FIX_RUNTIME),
    (BAD_BACKEND, doc.FIX_BACKEND),
    (NO_NETAVARK, doc.FIX_NETAVARK),
    (NO_AARDVARK_WARNING, doc.FIX_DNS),
    (NO_AARDVARK_PROBE, doc.FIX_DNS),
    (STORAGE_BTRFS, doc.FIX_STORAGE),
    (STORAGE_ZFS, doc.FIX_STORAGE),
    (STORAGE_BOGUS, doc.FIX_STORAGE),
    (STORAGE_MISMATCH, doc.FIX_STORAGE_MISMATCH),
    (NO_SUBUID, doc.FIX_SUBUID),
    (CRUN_HYBRID, doc.FIX_HYBRID),
    (DOCKER_NO_SUBNET, doc.FIX_DOCKER_SUBNET),
    (ROOTLESS_TUN, doc.FIX_TUN),
    (ROOTLESS_NETNS, doc.FIX_ROOTLESS_NETNS),
])
def test_each_real_engine_error_maps_to_its_fix(text, fix):
    assert doc.fix_for(text) == fix


def test_the_fixes_name_the_package_to_install():
    assert "iptables" in doc.fix_for(NO_IPTABLES_CLI)
    assert "runc" in doc.fix_for(CRUN_MISSING)
    assert "containernetworking-plugins" in doc.fix_for(CNI)
    assert "usermod --add-subuids" in doc.fix_for(NO_SUBUID)
    assert "aardvark-dns" in doc.fix_for(NO_AARDVARK_PROBE)


@pytest.mark.parametrize("text", [
    "",
    "Error: no such image: localhost/nothing:latest",
    '500 Server Error: Internal Server Error ("container exited on its own")',
])
def test_unknown_errors_get_no_invented_fix(text):
    assert doc.fix_for(text) is None


def test_one_line_keeps_the_engines_words_not_the_http_wrapper():
    assert doc.one_line(NO_IPTABLES_API) == "netavark: No such file or directory (os error 2)"
    assert doc.one_line(CNI) == "Error: unable to find network with name or ID cninet: network not found"


@pytest.mark.parametrize(("subuid", "problem"), [
    ("alice:100000:65536\n", None),
    ("1000:100000:65536\n", None),
    ("bob:100000:65536\n", "/etc/subuid has no range for alice"),
    ("alice:100000:1000\n", "/etc/subuid gives alice only 1000 ids; images need 65536"),
    (None, "/etc/subuid has no range for alice"),
])
def test_subuid_range(subuid, problem):
    assert doc.subuid_problem("alice", 1000, subuid) == problem


def test_root_needs_no_subuid_range():
    assert doc.subuid_problem("root", 0, None) is None


def test_the_project_base_image_is_preferred_and_no_image_is_none():
    assert doc.pick_image(["docker.io/library/busybox:latest", doc.BASE_IMAGE]) == doc.BASE_IMAGE
    assert doc.pick_image(["docker.io/x:1", "localhost/aidb-gate/redis:r-1"]) == "localhost/aidb-gate/redis:r-1"
    assert doc.pick_image([]) is None


def test_a_fix_is_said_once():
    report = doc.Report()
    report.error("firewall tool: iptables not found.", doc.FIX_FIREWALL)
    report.engine_error("starting a container failed", NO_IPTABLES_API)
    assert not report.ok
    assert sum(doc.FIX_FIREWALL in line for line in report.lines) == 1
    assert report.lines[-1].endswith("Fix: see the fix above.")
    assert all("\n" not in line for line in report.lines)


class _FakeEngine:
    kind, cli, docker_host, notes, description = "docker", None, "unix:///fake.sock", [], "fake"

    def __init__(self):
        self.closed = False

    def close(self):
        self.closed = True


def test_doctor_stops_the_engine_it_started_even_on_ctrl_c(monkeypatch):
    engine = _FakeEngine()
    monkeypatch.setattr(doc, "connect", lambda run_id: engine)

    def interrupted(*_args, **_kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(doc, "check_network", interrupted)
    with pytest.raises(KeyboardInterrupt):
        doc.doctor()
    assert engine.closed


class _FakeClient:
    """No local images; records what doctor asks to remove."""

    def __init__(self):
        self.images = type("I", (), {"list": staticmethod(lambda: [])})()
        self.closed = False
        self.filters = {}
        client = self

        class _Listing:
            def __init__(self, kind):
                self.kind = kind

            def list(self, all=False, filters=None, **_options):
                client.filters[self.kind] = filters
                return []

        self.containers, self.networks, self.volumes = (_Listing(k) for k in ("containers", "networks", "volumes"))

    def close(self):
        self.closed = True


def test_no_local_image_names_the_checks_it_could_not_run_never_all_good_and_the_run_is_swept_by_label():
    from aidb_gate.core.run import RUN_LABEL, Run

    client, run, report = _FakeClient(), Run(id="doctor-unit"), doc.Report()
    engine = type("E", (), {"docker_client": lambda self, timeout=60: client, "docker_host": "unix:///fake.sock"})()
    doc.check_network(engine, run, report)
    assert report.ok and report.skipped == ["build", "network", "exec", "published port"]
    assert "network check could not run" in report.lines[1] and "make gate" in report.lines[1]
    assert "all good" not in report.verdict and "could not run" in report.verdict and report.exit_code == 3
    by_label = {"label": f"{RUN_LABEL}=doctor-unit"}
    assert client.closed and client.filters == {"containers": by_label, "networks": by_label, "volumes": by_label}
    assert not any(line.startswith("--  could not remove") for line in report.lines), report.lines


def test_verdict_is_all_good_only_when_every_check_ran_and_passed():
    report = doc.Report()
    report.good("engine")
    assert (report.verdict, report.exit_code) == ("doctor: all good", 0)
    report.skip("published port", "no image")
    assert report.exit_code == 3 and "all good" not in report.verdict
    report.error("network: refused.")
    assert report.exit_code == 1 and "fix the ERR lines" in report.verdict
