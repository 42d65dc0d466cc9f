"""`marketsync link status` and `marketsync link dead-letters` read a real database file."""

from __future__ import annotations

import json
import os
import re
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
    assert "причина: not JSON" in out.stdout and "содержимое: garbage" in out.stdout  # Russian by default


def test_missing_database_is_a_clear_error(tmp_path, capsys):
    assert cli.main(["status", "--db", str(tmp_path / "nope.db")]) == 2
    assert "no database" in capsys.readouterr().err


def run_marketsync(*args: str, cwd, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "marketsync.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env={**os.environ, **env})


def test_status_and_dead_letters_find_cloud_toml_and_speak_russian(tmp_path):
    """Without --db `marketsync link` reads the database of the cloud.toml the service reads ($MARKETSYNC_CONFIG
    here), in its `[ui] language` (Russian by default, plural forms and dates by Babel)."""
    db = make_db(tmp_path)
    conf = tmp_path / "cloud.toml"
    conf.write_text(f'[cloud]\ndb_path = "{db}"\n')
    env = {"MARKETSYNC_CONFIG": str(conf)}
    out = run_marketsync("link", "status", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "к отправке: 3 сообщения ждут подтверждения" in out.stdout
    assert "site-1: ждут 3, самое давнее с " in out.stdout and "site-1: нет связи с " in out.stdout
    assert "1 сообщение не удалось применить" in out.stdout and "None" not in out.stdout
    assert re.search(r"\d\d\.\d\d\.\d{4}, \d\d:\d\d", out.stdout)  # a date as Babel writes it for ru
    out = run_marketsync("link", "dead-letters", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "причина: not JSON" in out.stdout and "содержимое: garbage" in out.stdout
    assert json.loads(run_marketsync("link", "status", "--json", cwd=tmp_path, env=env).stdout)["dead_letters"] == 1
    conf.write_text(f'[cloud]\ndb_path = "{db}"\n[ui]\nlanguage = "en"\n')
    out = run_marketsync("link", "status", cwd=tmp_path, env=env)
    assert "outbox: 3 messages waiting for acknowledgement" in out.stdout and "site-1: offline since" in out.stdout


def test_link_errors_name_the_config_read(tmp_path):
    conf = tmp_path / "cloud.toml"
    conf.write_text(f'[cloud]\ndb_path = "{tmp_path / "nope.sqlite"}"\n')
    out = run_marketsync("link", "status", cwd=tmp_path, env={"MARKETSYNC_CONFIG": str(conf)})
    assert out.returncode == 2 and "нет базы данных" in out.stderr and f"настройки: {conf}" in out.stderr
    (tmp_path / "empty.sqlite").write_bytes(b"")
    out = run_marketsync("link", "dead-letters", "--db", str(tmp_path / "empty.sqlite"), cwd=tmp_path,
                         env={"MARKETSYNC_CONFIG": str(conf)})
    assert out.returncode == 2 and "нет таблиц связи" in out.stderr and str(conf) in out.stderr
    out = run_marketsync("link", "status", "--config", str(tmp_path / "missing.toml"), cwd=tmp_path, env={})
    assert out.returncode == 2 and "missing.toml" in out.stderr


def test_an_edge_box_gives_its_database_and_no_cloud_toml_is_needed(tmp_path):
    """The site's database given with --db, no cloud.toml anywhere: Russian, and nothing to show is said."""
    db = tmp_path / "site.sqlite"
    conn = sqlite.connect(db)
    store.ensure_schema(conn)
    conn.close()
    env = {"MARKETSYNC_CONFIG": ""}
    out = run_marketsync("link", "dead-letters", "--db", str(db), cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "сообщений, которые не удалось применить, нет"
    out = run_marketsync("link", "status", "--db", str(db), cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "другая сторона связи: ещё ни разу не выходила на связь" in out.stdout
    assert "0 сообщений не удалось применить" in out.stdout
