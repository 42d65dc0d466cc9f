"""The PostgreSQL leg's fresh schemas are copies of one migrated template (cloud_sync.pg_template): a copy
must be the schema the migrations make — every table, column, default, index, trigger and function, and
the record of what was applied — and a migration set that changes gets a template of its own."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from cloud_sync import db, pg, pg_template, schema
from cloud_sync.pg_cluster import Cluster


def catalog(url: str, name: str) -> dict[str, list[tuple]]:
    """What schema `name` is made of, its own name taken out (read beside the layer, from the catalog)."""
    raw = psycopg.connect(url, autocommit=True)

    def rows(sql: str) -> list[tuple]:
        return sorted(tuple(str(v).replace(name, "<schema>") for v in r) for r in raw.execute(sql, (name,)).fetchall())
    try:
        return {
            "columns": rows("SELECT table_name, column_name, data_type, column_default, is_nullable, is_identity"
                            " FROM information_schema.columns WHERE table_schema = %s"),
            "indexes": rows("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s"),
            "triggers": rows("SELECT trigger_name, event_object_table, action_timing, event_manipulation,"
                             " action_statement FROM information_schema.triggers WHERE trigger_schema = %s"),
            "functions": rows("SELECT routine_name, routine_definition FROM information_schema.routines"
                              " WHERE routine_schema = %s"),
            "constraints": rows("SELECT c.conname, pg_get_constraintdef(c.oid) FROM pg_constraint c"
                                " JOIN pg_namespace n ON n.oid = c.connamespace WHERE n.nspname = %s"),
            "applied": rows(f'SELECT module, idx::text FROM "{name}".schema_migrations WHERE %s <> \'\''),
        }
    finally:
        raw.close()


def test_a_copied_schema_is_the_schema_the_migrations_make(cluster: Cluster, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(db.TEST_URL_ENV, cluster.url)
    copied = schema.open_db(tmp_path / "cloud.sqlite")  # the facility: t_<hash of the path>, copied
    assert copied.schema.startswith("t_")  # type: ignore[attr-defined]
    made = pg.connect(cluster.url, schema="made_one_by_one")  # not a facility schema: migrated in service's way
    schema.migrate(made)  # type: ignore[arg-type]
    parts = [(key, schema.scripts(module, postgres=True)) for key, module in schema.PARTS]
    template = pg_template.fingerprint(parts)
    with psycopg.connect(cluster.url) as raw:
        assert raw.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (template,)).fetchone(), \
            "the copy came from the template"
    got = catalog(cluster.url, copied.schema)  # type: ignore[attr-defined]
    want = catalog(cluster.url, made.schema)
    for kind in want:
        assert want[kind], kind
        assert got[kind] == want[kind], kind
    # and it works as a store: the layer writes and reads it
    assert schema.migrate(copied) == []  # nothing left to apply
    copied.close()
    made.close()


def test_a_changed_migration_set_gets_its_own_template(cluster: Cluster, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(db.TEST_URL_ENV, cluster.url)
    base = [("demo.part", ["CREATE TABLE a (id INTEGER PRIMARY KEY, x TEXT)"])]
    grown = [("demo.part", [*base[0][1], "CREATE TABLE b (id INTEGER PRIMARY KEY, a_id INTEGER REFERENCES a(id))"])]
    assert pg_template.fingerprint(base) != pg_template.fingerprint(grown)
    first = db.connect(tmp_path / "one.sqlite")
    assert db.migrate(first, base) == ["demo.part#0"]
    second = db.connect(tmp_path / "two.sqlite")
    assert db.migrate(second, grown) == ["demo.part#0", "demo.part#1"]
    with psycopg.connect(cluster.url) as raw:
        tables = {r[0] for r in raw.execute("SELECT table_name FROM information_schema.tables"
                                            " WHERE table_schema = %s", (second.schema,))}  # type: ignore[attr-defined]
    assert {"a", "b", "schema_migrations"} <= tables
    second.execute("INSERT INTO a(x) VALUES ('one')")
    assert second.execute("SELECT id, x FROM a").fetchall() == [(1, "one")]
    # a copy is made only into an empty schema: opening it again applies nothing and keeps the row
    assert db.migrate(second, grown) == []
    assert second.execute("SELECT COUNT(*) FROM a").fetchone()[0] == 1
    first.close()
    second.close()
