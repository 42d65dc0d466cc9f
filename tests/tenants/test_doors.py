"""A seller's own doors under its prefix: its marketplaces' push URLs and its 1C exchange answer at
/t/<id>/... with its own push token and 1C password (and the main seller's doors refuse them), its 1C
uploads go to its own folder, and its cookies are scoped to its prefix."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from cloud_sync import tenants
from cloud_sync.access import users
from cloud_sync.config import load_config
from cloud_sync.schema import open_db
from cloud_sync.service.tenants import TenantHost

pytestmark = pytest.mark.slow

PING = b'{"notificationType": "PING"}'


def test_a_sellers_push_urls_and_1c_exchange_live_under_its_prefix(tmp_path: Path, free_port: int) -> None:
    main_file = tmp_path / "cloud.toml"
    main_file.write_text(f'[cloud]\ndb_path = "main/cloud.sqlite"\nport = 0\nsync_on_start = false\n[tenants]\n'
                         f'[link]\nport = {free_port}\nenabled = false\n'
                         '[onec]\npassword = "main-1c-password-1"\n', "utf-8")
    main = load_config(main_file)
    conn = open_db(main.db_path)
    try:
        users.add_user(conn, "main-owner", "main-owner-password-1", "owner")
    finally:
        conn.close()
    made = tenants.add(main, "lavka", admin="boss")
    conf = made.tenant.folder / "cloud.toml"
    text = conf.read_text("utf-8").replace("[cloud]\n", "[cloud]\nsync_on_start = false\n")
    conf.write_text(re.sub(r"^\[link\].*$", "[link]\nenabled = false", text, flags=re.M) + (
        '\n[onec]\npassword = "lavka-1c-password-1"\n\n[accounts.ym-lavka]\nmarketplace = "yandex_market"\n'
        'base_url = "http://127.0.0.1:9"\ncredentials = { "Api-Key" = "k", push_token = "lavka-push-token" }\n'
        'options = { push_sources = ["127.0.0.1/32"], business_id = 1, campaign_id = 2 }\n'), "utf-8")
    host = TenantHost(main)
    url = host.start()
    try:
        with httpx.Client(base_url=url, timeout=10, follow_redirects=False) as web:
            push = "/push/yandex_market/ym-lavka/lavka-push-token/notification"
            assert web.post(f"/t/lavka{push}", content=PING).status_code == 200
            assert web.post(push, content=PING).status_code == 404  # the main seller has no such account
            assert web.post(f"/t/lavka{push.replace('lavka-push-token', 'x')}", content=PING).status_code == 403

            def checkauth(root: str, password: str) -> httpx.Response:
                return web.get(f"{root}/1c/exchange", params={"type": "catalog", "mode": "checkauth"},
                               auth=("1c", password))
            ok = checkauth("/t/lavka", "lavka-1c-password-1")
            assert ok.text.startswith("success\n"), ok.text
            name, sid = ok.text.splitlines()[1:3]
            assert not checkauth("", "lavka-1c-password-1").text.startswith("success")  # not the main's 1C
            assert not checkauth("/t/lavka", "main-1c-password-1").text.startswith("success")
            as_main = web.get("/1c/exchange", params={"type": "catalog", "mode": "init"}, headers={"Cookie": f"{name}={sid}"})
            assert not as_main.text.startswith("zip="), as_main.text  # its 1C session is not the main seller's
            cookie = {"Cookie": f"{name}={sid}"}
            init = web.get("/t/lavka/1c/exchange", params={"type": "catalog", "mode": "init"}, headers=cookie)
            assert "zip=" in init.text, init.text
            up = web.post("/t/lavka/1c/exchange", params={"type": "catalog", "mode": "file", "filename": "import.xml"},
                          content=b"<?xml version='1.0'?><x/>", headers=cookie)
            assert up.text.startswith("success"), up.text
            assert any((made.tenant.folder / "onec-exchange").rglob("import.xml"))  # its uploads, its folder
            assert not (tmp_path / "main" / "onec-exchange").exists() or not any(
                (tmp_path / "main" / "onec-exchange").rglob("import.xml"))
            # its cookies are scoped to its prefix: a browser sends them nowhere else
            web.get("/t/lavka/login")
            token = web.cookies.get("ms_login_csrf")
            r = web.post("/t/lavka/login", data={"name": "boss", "password": made.password, "csrf_token": token})
            assert r.status_code == 302 and r.headers["location"] == "/t/lavka/"
            scoped = [h for h in r.headers.get_list("set-cookie") if h.startswith("ms_session=")]
            assert scoped and "Path=/t/lavka/" in scoped[0]
            main_login = web.get("/login").headers.get_list("set-cookie")
            assert any("Path=/;" in h or h.endswith("Path=/") for h in main_login)
    finally:
        host.stop()
