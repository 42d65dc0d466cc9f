"""Secrets at rest used by the running service (stored credentials merged into an account, the bot
token handed to alerts without a file in clear), and the users/token command line."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from cloud_sync import db as cloud_db
from cloud_sync.access import secrets, users
from cloud_sync.config import parse_config
from cloud_sync.schema import open_db


def _cfg(tmp_path, **account):
    return parse_config({"cloud": {"db_path": str(tmp_path / "c.sqlite")}, "alerts": {"chat_id": "42"},
                         "accounts": {"wb1": {"marketplace": "wildberries", "base_url": "http://127.0.0.1:9",
                                              **account}}})


def test_stored_credentials_and_bot_token_reach_the_config(tmp_path, monkeypatch):
    monkeypatch.delenv(secrets.BOT_TOKEN_ENV, raising=False)
    cfg = _cfg(tmp_path, credentials_secret="account/wb1")
    conn = open_db(cfg.db_path)
    store = secrets.SecretStore(secrets.key_file_for(cfg))
    store.put(conn, "account/wb1", {"Authorization": "stored-wb-token-1"})
    store.put(conn, "account/wb1", {"X-Extra": "second"})  # merged, the first field kept
    store.put(conn, secrets.BOT_TOKEN, "123456:bot-token-value-abcdefghijklmnop")
    secrets.put_setting(conn, "status_map", "ozon", "weird_status", "packed")
    assert secrets.apply_to_config(conn, cfg) == ["wb1"]
    assert cfg.accounts["wb1"].account.credentials == {"Authorization": "stored-wb-token-1", "X-Extra": "second"}
    assert cfg.status_map["ozon"]["weird_status"] == "packed"
    from cloud_sync.alerts.outbox import AlertSettings

    assert AlertSettings.from_config(cfg.alerts).token == "123456:bot-token-value-abcdefghijklmnop"
    assert not any("bot-token-value" in p.read_text(errors="replace") for p in tmp_path.rglob("*")
                   if p.is_file() and p.suffix != ".sqlite" and "sqlite" not in p.name)
    assert "bot-token-value" not in repr(store) and "stored-wb-token" not in repr(cfg.accounts["wb1"].account)
    conn.close()


def test_a_missing_stored_secret_is_named_or_the_account_waits_for_it(tmp_path):
    cfg = _cfg(tmp_path, credentials_secret="account/none")
    conn = open_db(cfg.db_path)
    with pytest.raises(secrets.SecretError, match="no stored secret 'account/none'"):
        secrets.apply_to_config(conn, cfg)
    waiting: list[str] = []  # the running service's way: the account waits, the rest starts
    assert secrets.apply_to_config(conn, cfg, waiting=waiting) == [] and waiting == ["wb1"]
    conn.close()


def test_a_secret_from_another_key_cannot_be_read(tmp_path):
    cfg = _cfg(tmp_path)
    conn = open_db(cfg.db_path)
    secrets.SecretStore(tmp_path / "k1").put(conn, "x", "value-1")
    with pytest.raises(secrets.SecretError, match="cannot be decrypted"):
        secrets.SecretStore(tmp_path / "k2").get(conn, "x")
    conn.close()


def _ms(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "marketsync.cli", *args], capture_output=True, text=True, timeout=60)


def test_user_and_token_commands(tmp_path):
    db = str(tmp_path / "c.sqlite")
    pw = tmp_path / "owner-password"
    out = _ms("cloud", "user", "add", "owner", "--role", "owner", "--generate", str(pw), "--db", db)
    assert out.returncode == 0, out.stderr
    password = pw.read_text().strip()
    assert len(password) >= 16 and password not in out.stdout + out.stderr
    assert oct(pw.stat().st_mode & 0o777) == "0o600"
    tok = tmp_path / "token"
    out = _ms("cloud", "token", "owner", "--out", str(tok), "--db", db)
    assert out.returncode == 0 and tok.read_text().strip() not in out.stdout
    conn = open_db(db)
    assert users.login(conn, "owner", password).role == "owner"
    assert users.token_user(conn, tok.read_text().strip()).name == "owner"
    weak = tmp_path / "weak"
    weak.write_text("short\n")
    out = _ms("cloud", "user", "add", "bob", "--role", "manager", "--password-file", str(weak), "--db", db)
    assert out.returncode == 2 and "не короче 10 символов" in out.stderr and "short" not in out.stderr
    out = _ms("cloud", "user", "add", "bob", "--role", "admin", "--password-file", str(weak), "--db", db)
    assert out.returncode == 2
    assert [u["name"] for u in users.list_users(conn)] == ["owner"]
    assert "user" in _ms("cloud", "--help").stdout
    conn.close()
    assert os.path.exists(db) or cloud_db.is_postgres(db)  # the file the commands wrote (a schema on PostgreSQL)


def test_secrets_through_the_api_are_write_only_and_for_owners(cloud):
    app, conn, _ = cloud
    owner, manager = users.new_token(conn, "olga"), users.new_token(conn, "masha")
    c = app.test_client()
    body = {"name": "account/wb1", "fields": {"Authorization": "api-entered-token-777"}}
    assert c.post("/api/settings/secrets", json=body, headers={"Authorization": f"Bearer {manager}"}).status_code == 403
    r = c.post("/api/settings/secrets", json=body, headers={"Authorization": f"Bearer {owner}"})
    assert r.status_code == 200 and "api-entered-token-777" not in r.text
    listed = c.get("/api/settings/secrets", headers={"Authorization": f"Bearer {owner}"})
    assert listed.get_json()[0]["fields"] == ["Authorization"] and "api-entered-token-777" not in listed.text
    bad = c.post("/api/settings/secrets", json={"name": "account/ghost", "fields": {"a": "b"}},
                 headers={"Authorization": f"Bearer {owner}"})
    assert bad.status_code == 422
