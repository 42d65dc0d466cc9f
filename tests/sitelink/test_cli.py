"""`marketsync link status` and `marketsync link dead-letters` read a real database file."""

from __future__ import annotations

import json
import subprocess
import sys

from sitelink import cli, sqlite, store

from .conftest import pick_body


def make_db(tmp_path):
    db = tmp_path / "cloud.db"
    conn = sqlite.connect(db)
    store.ensure_schema(conn)
    for i in range(3):
        store.enqueue(conn, "cloud", "site-1", "pick_task", pick_body(i))
    store.dead_letter(
        conn, topic="ms/v1/site-1/up", reason="not JSON: Expecting value", payload=b"garbage", peer="site-1"
    )
    store.set_peer_state(conn, "site-1", "offline")
    conn.close()
    return db


def test_status_text_and_json(tmp_path, capsys):
    db = make_db(tmp_path)
    assert cli.main(["status", "--db", str(db)]) == 0
    text = capsys.readouterr().out
    assert "outbox: 3 message(s)" in text and "site-1: 3 waiting" in text
    assert "dead letters: 1" in text and "not JSON" in text and "site-1: offline" in text
    assert cli.main(["status", "--db", str(db), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["outbox"]["site-1"]["depth"] == 3 and st["dead_letters"] == 1


def test_dead_letters_through_the_marketsync_command(tmp_path):
    db = make_db(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "marketsync.cli", "link", "dead-letters", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "reason:  not JSON" in out.stdout and "payload: garbage" in out.stdout


def test_missing_database_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["status", "--db", str(tmp_path / "nope.db")]) == 2
    assert "no database" in capsys.readouterr().err
