"""diagnose and imports: verdicts from evidence, without containers."""

from __future__ import annotations

from aidb_gate.stages import diagnose
from aidb_gate.stages.boot import boot_problems
from aidb_gate.stages.imports import explain_import_error

PROC_NET_TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F9B 00000000:0000 0A 00000000:00000000 00:00000000 00000000 10001        0 1 1 0000 100 0 0 10 0
   1: 00000000:1A0B 00000000:0000 0A 00000000:00000000 00:00000000 00000000 10001        0 2 1 0000 100 0 0 10 0
   2: 0100007F:1F9B 0100007F:A000 01 00000000:00000000 00:00000000 00000000 10001        0 3 1 0000 100 0 0 10 0
"""


def test_proc_net_tcp_lists_only_listening_sockets():
    assert diagnose.parse_proc_net_tcp(PROC_NET_TCP) == [("127.0.0.1", 8091), ("0.0.0.0", 6667)]


def test_ipv6_addresses_decode():
    table = "hdr\n 0: 00000000000000000000000000000000:1F9B 0:0 0A\n 1: 00000000000000000000000001000000:1F9C 0:0 0A\n"
    assert diagnose.parse_proc_net_tcp(table, ipv6=True) == [("::", 8091), ("::1", 8092)]


def test_listen_verdicts():
    assert "unreachable from outside" in diagnose.listen_verdict([("127.0.0.1", 8091)], 8091)
    assert "listens on 0.0.0.0:9000 instead" in diagnose.listen_verdict([("0.0.0.0", 9000)], 8091)
    assert "nothing listens on any TCP port" in diagnose.listen_verdict([], 8091)
    assert diagnose.listen_verdict([("0.0.0.0", 8091)], 8091) is None


def test_dependency_mismatch_names_what_the_service_used_and_what_the_stack_gives():
    pg_log = '2026-01-09 FATAL:  password authentication failed for user "aidb"'
    verdict = diagnose.dependency_mismatch("", {"postgres": pg_log}, {"postgres": {"user": "mcp", "db": "mcp"}})
    assert "uses user `aidb`" in verdict and "provides `mcp`" in verdict
    verdict = diagnose.dependency_mismatch('psycopg.OperationalError: database "aidb" does not exist', {},
                                           {"postgres": {"user": "mcp", "db": "mcp"}})
    assert "uses database `aidb`" in verdict


def test_container_state_reads_exit_and_run_time():
    attrs = {"State": {"Status": "exited", "Running": False, "ExitCode": 3, "OOMKilled": True,
                       "StartedAt": "2026-01-09T01:00:00.123456789Z", "FinishedAt": "2026-01-09T01:00:01.623456789Z"},
             "RestartCount": 2}
    state = diagnose.container_state(attrs)
    assert state["exit_code"] == 3 and state["oom_killed"] and state["restart_count"] == 2
    assert abs(state["ran_for_s"] - 1.5) < 0.01


def test_import_errors_are_explained():
    missing = "Traceback (most recent call last):\n  File ...\nModuleNotFoundError: No module named 'yaml'"
    assert "`PyYAML`" in explain_import_error(missing)
    symbol = "ImportError: cannot import name 'HealthChecker' from 'health_check' (/app/health_check.py)"
    assert "`health_check` has no `HealthChecker`" in explain_import_error(symbol)


def test_boot_problems_find_tracebacks_and_error_lines():
    log = "INFO started\nTraceback (most recent call last):\n  File x\nValueError: boom\nERROR: db down\nok\n"
    problems = boot_problems(log)
    assert problems == ["Traceback ending in: ValueError: boom", "ERROR: db down"]
    assert boot_problems("INFO all good\nerrors=0\n") == []


def test_a_failed_reach_for_a_service_outside_depends_on_is_named():
    outside = {"postgres": ["AIDB_POSTGRES_HOST"], "embeddings": ["EMBEDDING_SERVICE_URL"]}
    log = "INFO starting\nERROR postgres: could not translate host name \"postgres\" to address: Name or service not known\n"
    verdict = diagnose.outside_dependency(log, outside)
    assert verdict.startswith("the service reached for `postgres` (named by AIDB_POSTGRES_HOST)")
    assert diagnose.outside_dependency("INFO embeddings client configured\nERROR database down\n", outside) is None


def test_sigkill_under_a_memory_limit_is_read_as_the_oom_killer():
    assert diagnose.memory_limit({"HostConfig": {"Memory": 268435456}}) == 256 * 2**20
    assert diagnose.memory_limit({"HostConfig": {}}) == 0


def test_plugin_refusals_are_owned_by_their_dependency():
    from aidb_gate.services import postgres

    refusals = diagnose.refusals_of({"db": postgres})
    verdict = diagnose.dependency_mismatch('FATAL:  database "aidb" does not exist', {}, {"db": {"db": "app"}}, refusals)
    assert verdict.startswith("db: database `aidb` does not exist. The service uses database `aidb`; the stack provides `app`")


def test_a_missing_extension_is_the_environment_and_names_the_image_and_the_key():
    from aidb_gate.services import postgres

    log = 'psycopg.errors.FeatureNotSupported: extension "vector" is not available\nDETAIL: Could not open extension control file'
    verdict = diagnose.dependency_mismatch(log, {}, {"postgres": {"image": "docker.io/library/postgres:16"}},
                                           diagnose.refusals_of({"postgres": postgres}))
    assert verdict.startswith("the stack's Postgres (docker.io/library/postgres:16) has no extension `vector` - the "
                              "environment differs from production, not the code")
    assert "`dependencies.postgres.image`" in verdict
