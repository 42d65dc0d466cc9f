"""Settings → the marketplaces' notifications: for each account whose marketplace pushes, whether its push
token is set, the URL to enter with the token masked (a secret never appears on a page), where in the
cabinet, the command that prints the full URL, when the last notification came in (after a real push
to the running endpoint, stored in SQLite) and when the marketplace last checked the connection (its ping,
which stores no event) — in Russian by default, in English when asked."""

from __future__ import annotations

import re

import pytest

from cloud_sync.config import ConfigError, parse_config
from cloud_sync.i18n import when
from cloud_sync.orders.pushes import last_pings, last_received
from cloud_sync.schema import open_db
from cloud_sync.web.app import create_app

from .conftest import form_token, login, start_db

TOKEN = "oz-push-secret-never-on-a-page"
NEW = (b'{"message_type": "TYPE_NEW_POSTING", "posting_number": "40000001-0001-1", "products": [{"sku": 900000001,'
       b' "offer_id": "MS-00001", "quantity": 1}], "in_process_at": "2026-11-26T10:00:00Z", "warehouse_id": 5,'
       b' "shipment_date": "2026-11-27T10:00:00Z", "is_express": false, "seller_id": 15}')


def _accounts() -> dict:
    return {"oz-main": {"marketplace": "ozon", "base_url": "http://127.0.0.1:9",
                        "credentials": {"Client-Id": "15", "Api-Key": "k", "push_token": TOKEN},
                        "options": {"push_sources": ["127.0.0.0/8"]}},
            "ym-main": {"marketplace": "yandex_market", "base_url": "http://127.0.0.1:9",
                        "credentials": {"Api-Key": "k"}, "options": {"business_id": 1, "campaign_id": 2}},
            "wb1": {"marketplace": "wildberries", "base_url": "http://127.0.0.1:9",
                    "credentials": {"Authorization": "sandbox-secret-wb1"}}}


def _door(page: str, account: str) -> str:
    m = re.search(rf'<div class="push-door" data-account="{account}">(.*?)</div>', page, re.S)
    assert m, f"no notifications block of {account}"
    return m.group(1)


@pytest.fixture
def app(tmp_path, users_db):
    start_db(users_db, tmp_path / "cloud.sqlite")
    cfg = parse_config({"cloud": {"db_path": str(tmp_path / "cloud.sqlite"), "public_url": "https://seller.example.ru"},
                        "accounts": _accounts()})
    app = create_app(cfg)
    yield app, cfg
    for bp in app.blueprints.values():
        worker = getattr(bp, "push_worker", None)
        if worker is not None:
            worker.stop()


def test_the_owner_sees_the_masked_url_and_the_last_notification(app) -> None:
    flask_app, cfg = app
    c = flask_app.test_client()
    assert login(c, "olga").status_code == 302
    page = c.get("/settings").text
    assert "Уведомления площадки" in page and TOKEN not in page
    oz = _door(page, "oz-main")
    assert "<code>https://seller.example.ru/push/ozon/oz-main/••••••/notification</code>" in oz
    assert "Токен уведомлений (<code>push_token</code>): задан" in oz
    assert "Настройки → Уведомления" in oz and "полный адрес покажет команда <code>marketsync cloud push-urls</code>" in oz
    assert "уведомлений ещё не было" in oz
    ym = _door(page, "ym-main")
    assert "не задан: все уведомления отклоняются" in ym and "<code>https://seller.example.ru/push/yandex_market/ym-main/" in ym
    assert 'data-account="wb1"' not in page  # Wildberries does not push
    assert 'id="push-no-public-url"' not in page

    # Ozon pushes a new posting to the running endpoint (stored before the answer); the page says when
    pushed = c.post(f"/push/ozon/oz-main/{TOKEN}/notification", data=NEW)
    assert pushed.status_code == 200 and pushed.get_json() == {"result": True}, pushed.text
    conn = open_db(cfg.db_path)
    try:
        at = last_received(conn)["oz-main"]
    finally:
        conn.close()
    page = c.get("/settings").text
    oz = _door(page, "oz-main")
    assert "уведомлений ещё не было" not in oz
    assert f'Последнее уведомление: <span class="ts">{when(at, "ru", cfg.ui.timezone)}</span>' in oz
    assert "уведомлений ещё не было" in _door(page, "ym-main")  # another account's push is not this one's
    assert TOKEN not in page

    # English when the owner chooses it
    page = c.post("/language", data={"csrf_token": form_token(page), "language": "en", "back": "/settings"},
                  follow_redirects=True).text
    oz = _door(page, "oz-main")
    assert "Marketplace notifications" in oz and f"Last notification: <span class=\"ts\">{when(at, 'en', cfg.ui.timezone)}" in oz
    assert "the full address is shown by the command" in oz and TOKEN not in page


PING = b'{"message_type": "TYPE_PING", "time": "2026-12-07T10:00:00Z"}'


def test_the_cabinets_check_is_visible_right_after_setup(app) -> None:
    """The cabinet's «Check» sends a PING: answered at once, no notification stored, and the block says when
    the check reached us; a ping with a wrong token (refused 403) or to another account shows nothing."""
    flask_app, cfg = app
    c = flask_app.test_client()
    assert login(c, "olga").status_code == 302
    oz = _door(c.get("/settings").text, "oz-main")
    assert "проверки связи ещё не было: нажмите «Проверить» в кабинете" in oz and "Последняя проверка связи" not in oz

    foreign = c.post("/push/ozon/oz-main/another-sellers-token/notification", data=PING)
    assert foreign.status_code == 403
    assert "проверки связи ещё не было" in _door(c.get("/settings").text, "oz-main")

    ping = c.post(f"/push/ozon/oz-main/{TOKEN}/notification", data=PING)
    assert ping.status_code == 200 and set(ping.get_json()) == {"version", "name", "time"}, ping.text
    conn = open_db(cfg.db_path)
    try:
        at = last_pings(conn)["oz-main"]
        assert last_received(conn) == {}  # a check is no notification
    finally:
        conn.close()
    page = c.get("/settings").text
    oz = _door(page, "oz-main")
    assert f'Последняя проверка связи: <span class="ts">{when(at, "ru", cfg.ui.timezone)}</span>' in oz
    assert "уведомлений ещё не было" in oz  # the last notification stays what it was
    assert "проверки связи ещё не было" in _door(page, "ym-main")  # another account was not checked
    page = c.post("/language", data={"csrf_token": form_token(page), "language": "en", "back": "/settings"},
                  follow_redirects=True).text
    assert f'Last connection check: <span class="ts">{when(at, "en", cfg.ui.timezone)}</span>' in _door(page, "oz-main")


def test_without_public_url_the_page_says_marketplaces_cannot_reach_it(tmp_path, users_db) -> None:
    start_db(users_db, tmp_path / "cloud.sqlite")
    cfg = parse_config({"cloud": {"db_path": str(tmp_path / "cloud.sqlite"), "port": 8111}, "accounts": _accounts()})
    flask_app = create_app(cfg)
    try:
        c = flask_app.test_client()
        assert login(c, "olga").status_code == 302
        page = c.get("/settings").text
        warning = re.search(r'id="push-no-public-url">(.*?)</b>', page, re.S)
        assert warning and "http://127.0.0.1:8111" in warning.group(1) and "не достучаться" in warning.group(1)
        assert "http://127.0.0.1:8111/push/ozon/oz-main/••••••/notification" in page and TOKEN not in page
        assert login(manager := flask_app.test_client(), "masha").status_code == 302
        assert manager.get("/settings").status_code == 403  # owners only, as the page ever was
    finally:
        for bp in flask_app.blueprints.values():
            if getattr(bp, "push_worker", None) is not None:
                bp.push_worker.stop()


@pytest.mark.parametrize(("url", "said"), [
    ("seller.example.ru", "must be an http:// or https:// address with a host"),
    ("ftp://seller.example.ru", "must be an http:// or https:// address with a host"),
    ("https://", "must be an http:// or https:// address with a host"),
    ("https://seller.example.ru/?x=1", "must be the address alone"),
    ("https://user:pw@seller.example.ru", "must be the address alone"),
    ("https://seller.example.ru:port", "must be an http:// or https:// address"),
    ("https://seller .example.ru", "must not contain spaces"),
])
def test_public_url_is_checked_at_load(url, said) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({"cloud": {"public_url": url}})
    assert str(e.value).startswith(f"cloud.toml: cloud.public_url: {said}"), str(e.value)


def test_a_good_public_url_is_kept_without_its_trailing_slash() -> None:
    assert parse_config({"cloud": {"public_url": "https://seller.example.ru/ms/"}}).public_url == \
        "https://seller.example.ru/ms"
    assert parse_config({"cloud": {"public_url": "http://10.0.0.5:8080"}}).public_url == "http://10.0.0.5:8080"
    assert parse_config({}).public_url == ""


def test_a_pushing_marketplace_that_names_no_cabinet_place_shows_no_line_for_it(app) -> None:
    """`cabinet` is optional in a profile's push terms: the block then says nothing of where — not the
    translation of "" (gettext's catalog header: Project-Id-Version...) — and still shows the rest."""
    from flask import render_template

    from cloud_sync.orders.pushes import PushDoor

    flask_app, _ = app
    doors = [PushDoor("tm-main", "ozon", ("https://seller.example.ru/push/ozon/tm-main/••••••/notification",), (),
                      True, ""),
             PushDoor("oz-main", "ozon", ("https://seller.example.ru/push/ozon/oz-main/••••••/notification",), (),
                      True, "Ozon seller cabinet: Settings → Notifications, «Push notifications» tab: enable them,"
                      " paste the address, press «Check» and «Save»; under «Notification types» tick new postings,"
                      " cancellations, status changes and shipping date changes")]
    with flask_app.test_request_context("/settings"):
        page = render_template("cloud/settings_push.html", push_doors=doors, public_url="https://seller.example.ru",
                               push_base="https://seller.example.ru")
    none, oz = _door(page, "tm-main"), _door(page, "oz-main")
    assert "Project-Id-Version" not in page and "push-where" not in none and "tm-main/••••••/notification" in none
    assert '<p class="push-where">Кабинет продавца Ozon: Настройки → Уведомления' in oz  # translated as it is shown
