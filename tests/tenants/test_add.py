"""`marketsync tenant add` end to end (the command, a running `marketsync cloud serve` picking the seller
up without a restart, its first owner logging in under its prefix with the printed password), what it
refuses, `tenant list`, a seller's file that sets an installation key stopping the start with one line,
a seller's config (its own sections, the installation's from the main file), and on PostgreSQL each
seller as the schema t_<id> of the installation's database."""

from __future__ import annotations

import argparse
import os
import re
import secrets
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from cloud_sync import pg, tenants
from cloud_sync.access import users
from cloud_sync.cli import load as cli_load
from cloud_sync.config import ConfigError, load_config
from cloud_sync.db import TEST_URL_ENV
from cloud_sync.schema import open_db
from cloud_sync.service.tenants import TenantHost
from marketsync.procs import Service, marketsync_argv

from .conftest import login, wait_for


def _installation(tmp_path: Path, port: int, extra: str = "") -> Path:
    main = tmp_path / "cloud.toml"
    main.write_text(f'[cloud]\ndb_path = "main/cloud.sqlite"\nport = 0\n[tenants]\ndir = "sellers"\n'
                    f"[link]\nport = {port}\n{extra}", "utf-8")
    conn = open_db(load_config(main).db_path)
    try:
        users.add_user(conn, "main-owner", "main-owner-password-1", "owner")
    finally:
        conn.close()
    return main


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(marketsync_argv(*args), capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_tenant_add_is_served_at_once_and_its_owner_logs_in(tmp_path: Path, broker) -> None:
    main = _installation(tmp_path, broker.port)
    serve = Service("cloud", marketsync_argv("cloud", "serve", "--config", str(main)), tmp_path / "serve.log")
    said = serve.start(timeout=90)
    try:
        url = said["url"]
        assert said["tenants"] == []
        r = httpx.get(f"{url}/t/romashka/login", timeout=10)
        assert r.status_code == 404 and "Продавца «romashka» на этой установке нет" in r.text
        done = _cli("tenant", "add", "romashka", "--name", "ООО «Ромашка»", "--admin", "boss", "--config", str(main))
        assert done.returncode == 0, done.stderr
        out = done.stdout
        password = re.search(r"пароль: (\S+)", out).group(1)  # type: ignore[union-attr]
        assert "продавец romashka (ООО «Ромашка») добавлен" in out and "/t/romashka/" in out
        assert "romashka.cloud" in out and "tenant = \"romashka\"" in out  # the broker users, the sites' edge.toml
        added = time.monotonic()
        wait_for("the new seller served", lambda: httpx.get(f"{url}/t/romashka/login", timeout=10).status_code == 200,
                 15)
        assert time.monotonic() - added < 10
        sid, _csrf = login(url, "/t/romashka", "boss", password)
        me = httpx.get(f"{url}/t/romashka/api/me", headers={"Cookie": f"ms_session={sid}"}, timeout=10).json()
        assert me["name"] == "boss"
        # the seller's session is no session of the main seller's, and the password opens nothing there
        assert httpx.get(f"{url}/api/me", headers={"Cookie": f"ms_session={sid}"}, timeout=10).status_code == 401
        with httpx.Client(base_url=url, timeout=10) as web:
            web.get("/login")
            r = web.post("/login", data={"name": "boss", "password": password,
                                         "csrf_token": web.cookies.get("ms_login_csrf")})
            assert r.status_code == 401
        listed = _cli("tenant", "list", "--config", str(main))
        assert listed.returncode == 0 and "romashka «ООО «Ромашка»»: пункты site-1; кабинеты —" in listed.stdout
        again = _cli("tenant", "add", "romashka", "--config", str(main))
        assert again.returncode == 2 and "продавец 'romashka' уже есть" in again.stderr
        bad = _cli("tenant", "add", "Bad_Id", "--config", str(main))
        assert bad.returncode == 2 and "неподходящий id продавца 'Bad_Id'" in bad.stderr
        assert not (tmp_path / "sellers" / "Bad_Id").exists()
    finally:
        serve.stop()
    # printed once, kept nowhere: no file of the installation (logs, configs, stores) holds the password
    holding = [p for p in tmp_path.rglob("*") if p.is_file() and password.encode() in p.read_bytes()]
    assert holding == []


def test_a_sellers_file_setting_an_installation_key_stops_the_start(tmp_path: Path, free_port: int) -> None:
    main = _installation(tmp_path, free_port)
    made = tenants.add(load_config(main), "lavka")
    conf = made.tenant.folder / "cloud.toml"
    conf.write_text(conf.read_text("utf-8") + '\n[db]\nurl = "postgresql://ms@db.example/ms"\n', "utf-8")
    done = _cli("cloud", "serve", "--config", str(main))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("marketsync cloud: ") and f"{conf}: db.url: is the installation's setting" in \
        lines[-1] and str(main.resolve()) in lines[-1], done.stderr
    for table, line in (("cloud", "port = 9000"), ("link", 'host = "10.0.0.1"'), ("auth", "secure_cookies = true")):
        conf.write_text(f"[{table}]\n{line}\n", "utf-8")
        with pytest.raises(ConfigError, match=rf"{table}\.{line.split()[0]}: is the installation's setting"):
            tenants.load(load_config(main), "lavka")


def test_no_tenants_section_no_second_seller(tmp_path: Path) -> None:
    main = tmp_path / "cloud.toml"
    main.write_text('[cloud]\ndb_path = "c.sqlite"\n', "utf-8")
    done = _cli("tenant", "add", "romashka", "--config", str(main))
    assert done.returncode == 2 and "нет раздела [tenants]" in done.stderr
    assert load_config(main).tenants_dir == ""  # and `cloud serve` stays the one seller's


def test_a_sellers_config_its_own_sections_and_the_installations(tmp_path: Path) -> None:
    main_file = tmp_path / "cloud.toml"
    main_file.write_text('[cloud]\nport = 8111\nhost = "127.0.0.2"\n[tenants]\n[link]\nhost = "broker.local"\n'
                         'port = 8883\nusername = "cloud"\n[ui]\nlanguage = "en"\n', "utf-8")
    main = load_config(main_file)
    assert main.tenants_dir == str(tmp_path / "tenants")
    for bad in ("cloud", "a", "Romashka", "-x", "x_y", "a" * 32, "../x", ""):
        with pytest.raises(tenants.TenantError):
            tenants.check_id(bad)
    made = tenants.add(main, "ro-ma", sites=["msk", "spb"])
    cfg = tenants.load(main, "ro-ma")
    folder = tmp_path / "tenants" / "ro-ma"
    assert (cfg.host, cfg.port, cfg.link.host, cfg.link.port) == ("127.0.0.2", 8111, "broker.local", 8883)
    assert cfg.link.username == "ro-ma.cloud" and cfg.link.password  # its own broker user, not the main one's
    assert cfg.db_path == str(folder / "cloud.sqlite") and cfg.tenant == "ro-ma" and cfg.tenants_dir == ""
    assert sorted(cfg.sites) == ["msk", "spb"] and cfg.ui.language == "ru"  # its own [ui], not the main's
    assert made.broker_users == {"cloud": "ro-ma.cloud", "msk": "ro-ma.msk", "spb": "ro-ma.spb"}
    acl = (folder / "broker" / "acl").read_text()
    assert "user ro-ma.msk\ntopic write ms/t/ro-ma/v1/msk/up" in acl and "ms/v1/" not in acl
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    assert tenants.ids(main) == ["ro-ma"]
    url = tenants.schema_url("postgresql://u:p@h:5432/db?sslmode=disable&options=-csearch_path%3Dmain", "t_ro_ma")
    assert pg.reveal(url).endswith("sslmode=disable&options=-csearch_path%3Dt_ro_ma") and "p@" not in str(url)
    assert tenants.schema_of("ro-ma") == "t_ro_ma"
    # every command about one seller: $MARKETSYNC_TENANT with the installation's file (its store, its users)
    assert cli_load(argparse.Namespace(config=str(main_file)), env={"MARKETSYNC_TENANT": "ro-ma"}).db_path == cfg.db_path
    with pytest.raises(ConfigError, match="no seller 'nobody'"):
        cli_load(argparse.Namespace(config=str(main_file)), env={"MARKETSYNC_TENANT": "nobody"})
    # two sellers' accounts of one name are two marketplace accounts: their rate limits are not shared
    conf = folder / "cloud.toml"
    conf.write_text(conf.read_text("utf-8") + '\n[accounts.wb-main]\nmarketplace = "wildberries"\n'
                    'base_url = "http://127.0.0.1:9"\n', "utf-8")
    assert tenants.load(main, "ro-ma").accounts["wb-main"].account.options["limit_key"] == "ro-ma/wb-main"


@pytest.mark.skipif(not os.environ.get(TEST_URL_ENV), reason="the PostgreSQL leg (MARKETSYNC_TEST_PG=1)")
def test_on_postgresql_each_seller_is_a_schema_of_the_installations_database(tmp_path: Path, free_port: int) -> None:
    base = os.environ[TEST_URL_ENV]
    own = f"m_{secrets.token_hex(4)}"
    pg.connect(base, schema=own).close()
    main_file = tmp_path / "cloud.toml"
    main_file.write_text(f'[cloud]\ndb_path = "main/cloud.sqlite"\nport = 0\n[tenants]\n[db]\n'
                         f'url = "{pg.reveal(tenants.schema_url(base, own))}"\n[link]\nport = {free_port}\n', "utf-8")
    main = load_config(main_file)
    tid = f"pg-{secrets.token_hex(3)}"
    made = tenants.add(main, tid, admin="boss")
    assert made.store == f"PostgreSQL t_{tid.replace('-', '_')}"
    conn = pg.connect(base, schema=tenants.schema_of(tid))
    try:
        assert [r[0] for r in conn.execute("SELECT name FROM users")] == ["boss"]
    finally:
        conn.close()
    conn = open_db(main.db_path)
    try:
        assert conn.schema == own and not users.any_users(conn)  # type: ignore[attr-defined]
        users.add_user(conn, "main-owner", "main-owner-password-1", "owner")
    finally:
        conn.close()
    assert (tmp_path / "tenants" / tid / "cloud.sqlite").exists() is False  # no SQLite file on PostgreSQL
    host = TenantHost(main)
    url = host.start()
    try:
        sid, _ = login(url, f"/t/{tid}", "boss", made.password)
        assert httpx.get(f"{url}/t/{tid}/api/me", headers={"Cookie": f"ms_session={sid}"}, timeout=10).json()[
            "name"] == "boss"
        assert httpx.get(f"{url}/api/me", headers={"Cookie": f"ms_session={sid}"}, timeout=10).status_code == 401
        leases = pg.connect(base, schema=tenants.schema_of(tid))
        try:
            wait_for("the seller's leases in its own schema", lambda: leases.execute(
                "SELECT COUNT(*) FROM cloud_processes").fetchone()[0], 15)
        finally:
            leases.close()
    finally:
        host.stop()
