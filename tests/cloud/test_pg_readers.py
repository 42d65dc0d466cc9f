"""Readers from outside the service see the cloud's store on either engine (`cloud_sync.db.connect_readonly`):
`marketsync link status` / `dead-letters`, the demo's and the soak's looks. On PostgreSQL they read the
store through its URL, read-only; an SQLite file stays `mode=ro` (an edge box's database is always one)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from cloud_sync import db, pg
from cloud_sync.cli import link as link_cli
from cloud_sync.pg_cluster import Cluster, available
from cloud_sync.schema import open_db
from marketsync import soak_judge
from sitelink import sqlite, store

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pg_url() -> Iterator[str]:
    """A PostgreSQL server: the PostgreSQL leg's cluster, else one of this module's own."""
    leg = os.environ.get(db.TEST_URL_ENV)
    if leg:
        yield leg
        return
    if not available():
        pytest.fail("PostgreSQL server binaries not installed: make install provides it")
    with Cluster() as c:
        yield c.url


def store_url(pg_url: str, schema: str) -> str:
    """The URL of one cloud store: a schema of the cluster, chosen by the URL's search_path."""
    pg.connect(pg_url, schema=schema).close()
    return pg_url.replace("/postgres?", f"/postgres?options=-csearch_path%3D{schema}&")


def fill_link_tables(conn) -> None:
    for i in range(3):
        store.enqueue(conn, "cloud", "site-1", "pick_task",
                      {"task_id": f"t{i}", "order_id": f"o{i}", "marketplace": "wildberries", "lines": []})
    store.dead_letter(conn, topic="ms/v1/site-1/up", reason="not JSON: Expecting value", payload=b"garbage",
                      peer="site-1")
    store.set_peer_state(conn, "site-1", "offline")


def test_link_status_reads_a_postgresql_store(pg_url: str, tmp_path: Path, capsys) -> None:
    url = store_url(pg_url, "readers_link")
    conn = open_db(url)
    fill_link_tables(conn)
    conn.close()
    (tmp_path / "cloud.toml").write_text(f'[db]\nurl = "{url}"\n[ui]\nlanguage = "en"\n')
    assert link_cli.main(["status", "--config", str(tmp_path / "cloud.toml")]) == 0
    text = capsys.readouterr().out
    assert "outbox: 3 messages waiting for acknowledgement" in text and "site-1: offline since" in text
    assert "1 message could not be applied" in text
    # the command as a person runs it, Russian by default, the store's URL given with --db
    out = subprocess.run([sys.executable, "-m", "marketsync.cli", "link", "status", "--db", url, "--json"],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "MARKETSYNC_CONFIG": ""})
    assert out.returncode == 0, out.stderr
    found = json.loads(out.stdout)
    assert found["outbox"]["site-1"]["depth"] == 3 and found["dead_letters"] == 1
    out = subprocess.run([sys.executable, "-m", "marketsync.cli", "link", "dead-letters", "--db", url],
                         capture_output=True, text=True, timeout=120, cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(ROOT), "MARKETSYNC_CONFIG": ""})
    assert out.returncode == 0, out.stderr
    assert "причина: not JSON" in out.stdout and "содержимое: garbage" in out.stdout


def test_link_status_of_a_missing_postgresql_store_is_a_clear_error_and_creates_nothing(pg_url: str,
                                                                                           capsys) -> None:
    url = pg_url.replace("/postgres?", "/postgres?options=-csearch_path%3Dreaders_nothing_here&")
    assert link_cli.main(["status", "--db", url]) == 2
    err = capsys.readouterr().err
    assert "нет базы данных" in err and "readers_nothing_here" in err
    check = pg.connect(pg_url)
    assert check.execute("SELECT 1 FROM pg_namespace WHERE nspname = 'readers_nothing_here'").fetchone() is None
    check.close()


def test_the_readers_door_is_read_only_on_both_engines(pg_url: str, tmp_path: Path) -> None:
    url = store_url(pg_url, "readers_ro")
    open_db(url).close()
    file = tmp_path / "site.sqlite"  # an SQLite file (an edge box's): read as the file, even on the PG leg
    raw = sqlite.connect(file)
    store.ensure_schema(raw)
    raw.close()
    for where in (url, file):
        conn = db.connect_readonly(where)
        try:
            assert conn.execute("SELECT COUNT(*) FROM link_outbox").fetchone()[0] == 0
            with pytest.raises(sqlite3.Error):
                conn.execute("DELETE FROM link_outbox")
        finally:
            conn.close()
    with pytest.raises(FileNotFoundError):
        db.connect_readonly(tmp_path / "nope.sqlite")


def test_the_soak_judge_gathers_the_cloud_side_from_a_postgresql_store(pg_url: str) -> None:
    """The judge's cloud half (`_ro` + its queries) on PostgreSQL: the link's tables as the soak reads them."""
    url = store_url(pg_url, "readers_soak")
    conn = open_db(url)
    fill_link_tables(conn)
    conn.close()
    ev = soak_judge.Evidence()
    with closing(soak_judge._ro(url)) as ro:  # type: ignore[arg-type]
        soak_judge._link(ro, "cloud", ev, looks=1)
    assert ev.outbox["cloud"] == 3 and ev.dead_letters["cloud"] == 1
