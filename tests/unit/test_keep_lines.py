"""--gate-keep's client lines follow a dependency's kind, not its service name: a compose
Postgres service called `db` still gets its psql line."""

from __future__ import annotations

from types import SimpleNamespace

from aidb_gate import keep


def test_a_dependency_named_by_compose_gets_the_client_line_of_its_kind(monkeypatch, tmp_path):
    from aidb_gate.stack import STACK

    monkeypatch.setattr(keep, "kept_secrets_file", lambda run_id: tmp_path / "kept.env")
    monkeypatch.setattr(keep, "engine_cli", lambda engine: "podman")

    class Container:
        def get_exposed_port(self, port: int) -> int:
            return 41000 + port % 1000

    def dep(name: str, kind: str, port: int) -> SimpleNamespace:
        return SimpleNamespace(name=name, kind=kind, container=Container(), config=SimpleNamespace(name=name, port=port),
                               extra={"user": "app", "db": "appdb"} if kind == "postgres" else {},
                               secrets={"password": "s3cret-value"})

    stack = SimpleNamespace(deps={"db": dep("db", "postgres", 5432), "cache": dep("cache", "redis", 6379)}, extra={})
    session = SimpleNamespace(run=SimpleNamespace(id="r1", name=lambda role: f"aidb-gate-r1-{role}"),
                              cfg=SimpleNamespace(auth={}, health={}, raw={}), api_key="k",
                              finished=lambda step: stack if step is STACK else None)
    monkeypatch.setattr(keep, "health_url_path", lambda cfg: "/health")
    monkeypatch.setattr(keep, "api_key_var", lambda cfg: "")
    text = keep.render_keep(keep.read_kept(session, SimpleNamespace(kind="podman")))
    assert 'PGPASSWORD="$DB_PASSWORD" psql -h' in text and "-U app appdb" in text
    assert 'REDISCLI_AUTH="$CACHE_PASSWORD" redis-cli -h' in text
    assert "s3cret-value" not in text
