"""What is entered on the Settings page is in use at once, in the running service.

Real pieces: the cloud service (`CloudService`: waitress on 127.0.0.1, the jobs, the stock pusher) over
HTTP, logged in as the owner like a browser, the Wildberries sandbox over HTTP (its token check is the
marketplace's), a Bot API stand-in over HTTP for Telegram. Every exchange the adapter makes is held
against the official spec (`ContractChecker`), except the one sent on purpose to a moved path.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from cloud_sync.access import secrets, users
from cloud_sync.alerts import outbox
from cloud_sync.config import parse_config
from cloud_sync.db import connect
from cloud_sync.schema import open_db
from cloud_sync.service import accounts
from cloud_sync.service import sync as service_sync
from cloud_sync.service.cloud import CloudService
from cloud_sync.stock import push as stock_push
from marketplaces.base import MarketplaceError
from marketplaces.contract import ContractChecker
from marketplaces.http import Exchange, add_exchange_hook, remove_exchange_hook, reset_limiters
from marketplaces.sandbox.registry import start_sandbox
from marketsync.demo_catalog import seed_demo

from .conftest import wait_for

OWNER, PASSWORD = "olga", "owner password 1"
EXPIRED = "wb-expired-token-0000-never-log-me"
BOT_TOKEN = "123456789:AAF-settings-bot-token-never-log-me"
MOVED = "/api/v3/warehouses-moved"


@pytest.fixture
def wb() -> Iterator[Any]:
    """The WB sandbox; it records the token each request carried (to show which token reached it)."""
    reset_limiters()
    running = start_sandbox("wildberries", seed=6, time_scale=20.0)
    seen: list[str] = []
    check = running.app.check_auth

    def recording(req):  # noqa: ANN001, ANN202
        seen.append(req.headers.get("authorization", ""))
        return check(req)

    running.app.check_auth = recording
    running.seen = seen
    yield running
    running.stop()
    reset_limiters()


@pytest.fixture
def exchanges() -> Iterator[list[Exchange]]:
    """Every exchange the adapters make, checked against the spec (all but the moved path's)."""
    seen: list[Exchange] = []
    checker = ContractChecker()
    add_exchange_hook(seen.append)
    add_exchange_hook(checker)
    yield seen
    remove_exchange_hook(checker)
    remove_exchange_hook(seen.append)
    checker.violations = [v for v in checker.violations if MOVED not in v]
    checker.assert_clean()


def start_cloud(tmp_path: Path, wb: Any, token: str | None, *, demo_items: int = 0, **extra: Any) -> CloudService:
    """The service with account `wb` taking its credentials from Settings (`token` stored before start;
    None: nothing stored, the account waits for it); `demo_items` of the demo catalog loaded as 1C's."""
    data: dict[str, Any] = {
        "cloud": {"db_path": str(tmp_path / "cloud.sqlite"), "port": 0, "sync_on_start": False, "time_scale": 20.0},
        "link": {"enabled": False},
        "jobs": {"orders_poll_s": 0.1, "push_idle_s": 0.1},
        "accounts": {"wb": {"marketplace": "wildberries", "base_url": wb.url, "credentials_secret": "account/wb",
                            "min_stock_interval_s": 0}},
    }
    for section, values in extra.items():
        data.setdefault(section, {}).update(values)
    cfg = parse_config(data, env={})
    conn = open_db(cfg.db_path)
    users.add_user(conn, OWNER, PASSWORD, "owner")
    if demo_items:
        seed_demo(conn, cfg, demo_items)
    store = secrets.SecretStore(secrets.key_file_for(cfg))
    if token is not None:
        store.put(conn, "account/wb", {"Authorization": token})
    for name in data["accounts"]:
        if name != "wb":
            store.put(conn, f"account/{name}", {"Api-Key": "ym-key-stored-before-start"})
    conn.close()
    service = CloudService(cfg)
    service.start()
    return service


def owner_client(url: str) -> httpx.Client:
    c = httpx.Client(base_url=url, timeout=30)
    page = c.get("/login")
    r = c.post("/login", data={"name": OWNER, "password": PASSWORD, "csrf_token": csrf(page.text), "next": "/orders"})
    assert r.status_code == 302, r.text
    return c


def csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "the page carries a CSRF token"
    return m.group(1)


def message(html: str) -> str:
    found = re.findall(r'<p class="msg (\w+)">([^<]*)</p>', html)
    assert found, "the page says what happened"
    return " | ".join(f"{kind}: {text}" for kind, text in found)


def test_a_new_token_is_used_at_once_by_the_jobs_and_the_pusher(tmp_path, wb, exchanges, caplog):
    new = wb.credentials["Authorization"]  # the sandbox accepts only this one: the stored one has expired
    caplog.set_level("DEBUG")
    service = start_cloud(tmp_path, wb, EXPIRED, demo_items=6)
    try:
        assert service.jobs.adapters is service.adapters and service.pusher.adapters is service.adapters
        poll = next(j for j in service.jobs.jobs if j.name == "orders:wb")
        wait_for("the expired token refused", lambda: poll.errors >= 1 and "401" in poll.last_error, timeout=20)
        with pytest.raises(MarketplaceError, match="401"):
            service.adapters["wb"].warehouses()
        old_adapter = service.adapters["wb"]

        c = owner_client(service.url)
        r = c.post("/settings/token", data={"csrf_token": csrf(c.get("/settings").text), "account": "wb",
                                            "field": "Authorization", "value": new})
        assert r.status_code == 200 and "уже используется" in message(r.text), message(r.text)
        after = len(wb.seen)

        assert service.adapters["wb"] is not old_adapter  # swapped for the web app, the jobs and the pusher
        errors_then = poll.errors
        runs_then = poll.runs
        wait_for("the orders poll succeeding with the new token",
                 lambda: poll.runs > runs_then + 2 and poll.last_error == "", timeout=20)
        assert poll.errors - errors_then <= 1  # at most the run already under way with the old token
        assert service.adapters["wb"].warehouses()

        # cards imported through the shared holder, then the running pusher sends the stock with the new token
        conn = connect(service.db_path)
        try:
            report = service_sync.sync_cards(conn, service.cfg, service.adapters)
            assert not report.errors, report.errors
            stock_push.plan_all(conn, service.cfg)
        finally:
            conn.close()
        service.pusher.wake()
        wait_for("stock pushed to WB", lambda: len(wb.app.state()["stocks"]) >= 6, timeout=30)

        late = wb.seen[after + 5:]  # past any request already on the wire when the token was stored
        assert late and all(t.removeprefix("Bearer ").strip() == new for t in late)
        page = c.get("/settings").text
        assert new not in page and EXPIRED not in page and new not in r.text
    finally:
        service.stop()
    assert new not in caplog.text and EXPIRED not in caplog.text


def test_an_endpoint_override_applies_at_once_and_a_failed_reopen_is_said(tmp_path, wb, exchanges, caplog):
    token = wb.credentials["Authorization"]
    caplog.set_level("DEBUG")
    ym = {"ym": {"marketplace": "yandex_market", "base_url": "http://127.0.0.1:9", "credentials_secret": "account/ym"}}
    service = start_cloud(tmp_path, wb, token, accounts=ym)  # ym lacks its required options: it cannot open
    try:
        c = owner_client(service.url)
        assert {w.native_id for w in service.adapters["wb"].warehouses()}

        r = c.post("/settings/endpoint", data={"csrf_token": csrf(c.get("/settings").text), "ep_account": "wb",
                                               "endpoint": "warehouses", "path": MOVED})
        assert r.status_code == 200 and "уже используется" in message(r.text), message(r.text)
        with pytest.raises(MarketplaceError) as refused:
            service.adapters["wb"].warehouses()
        assert refused.value.status == 404
        assert exchanges[-1].path == MOVED  # the running service sent it to the new path

        r = c.post("/settings/endpoint", data={"csrf_token": csrf(r.text), "ep_account": "wb",
                                               "endpoint": "warehouses", "path": "/api/v3/warehouses"})
        assert "уже используется" in message(r.text)
        assert service.adapters["wb"].warehouses() and exchanges[-1].path == "/api/v3/warehouses"
        assert "warehouses: /api/v3/warehouses" in r.text  # the page shows the override in use

        ym_key = "ym-api-key-entered-now-never-log-me"
        r = c.post("/settings/token", data={"csrf_token": csrf(r.text), "account": "ym", "field": "Api-Key",
                                            "value": ym_key})
        said = message(r.text)
        assert r.status_code == 200 and said.startswith("error:") and "business_id and campaign_id" in said
        assert "уже используется" not in said and ym_key not in r.text and "ym" not in service.adapters
        assert token not in c.get("/settings").text
    finally:
        service.stop()
    assert token not in caplog.text and "ym-api-key-entered-now" not in caplog.text


def test_a_bot_token_stored_in_settings_sends_the_waiting_alerts(tmp_path, wb, bot_api_for, monkeypatch, caplog):
    monkeypatch.setenv(secrets.BOT_TOKEN_ENV, "x")
    monkeypatch.delenv(secrets.BOT_TOKEN_ENV)  # whatever the test leaves in the environment is undone
    caplog.set_level("DEBUG")
    bot = bot_api_for(BOT_TOKEN)
    service = start_cloud(tmp_path, wb, wb.credentials["Authorization"],
                          alerts={"chat_id": "42", "base_url": bot.url, "tick_s": 0.1, "min_interval_s": 0})
    try:
        conn = connect(service.db_path)
        try:
            outbox.enqueue(conn, "test", "settings-live-1", "the first alert")
        finally:
            conn.close()
        time.sleep(0.5)
        assert bot.paths == []  # no token yet: nothing is sent
        c = owner_client(service.url)
        r = c.post("/settings/telegram", data={"csrf_token": csrf(c.get("/settings").text), "bot_token": BOT_TOKEN})
        assert r.status_code == 200 and "уже используется" in message(r.text) and BOT_TOKEN not in r.text
        wait_for("the waiting alert sent with the stored token", lambda: bot.paths, timeout=10)
        assert bot.paths[0] == f"/bot{BOT_TOKEN}/sendMessage"
    finally:
        service.stop()
    assert BOT_TOKEN not in caplog.text


def test_the_old_adapter_is_closed_only_after_its_round(tmp_path, wb, exchanges):
    cfg = parse_config({"cloud": {"db_path": str(tmp_path / "c.sqlite")},
                        "accounts": {"wb": {"marketplace": "wildberries", "base_url": wb.url,
                                            "credentials": dict(wb.credentials)}}}, env={})
    conn = open_db(cfg.db_path)
    holder = accounts.AccountAdapters(cfg, accounts.open_adapters(cfg), drain_s=0.2)
    closed: list[str] = []

    def spy(adapter: Any, label: str) -> None:
        real = adapter.close
        adapter.close = lambda: (closed.append(label), real())

    try:
        with holder.lease("wb") as first:
            spy(first, "first")
            holder.reopen("wb", conn)
            assert holder["wb"] is not first and dict(holder.items())["wb"] is holder["wb"]
            time.sleep(0.5)  # past the drain time: still leased, so still open
            assert first.warehouses() and closed == []
        assert closed == ["first"]  # closed as the round ended

        second = holder["wb"]
        spy(second, "second")
        holder.reopen("wb", conn)  # nobody holds it: closed once the drain time has passed
        assert second.warehouses()
        wait_for("the unleased old adapter closed", lambda: "second" in closed, timeout=5, every=0.05)
        assert holder["wb"].warehouses()
    finally:
        holder.close_all()
        conn.close()


def test_a_token_stored_through_the_api_is_in_use_at_once(tmp_path, wb, exchanges, caplog):
    new = wb.credentials["Authorization"]
    caplog.set_level("DEBUG")
    service = start_cloud(tmp_path, wb, EXPIRED)
    try:
        with pytest.raises(MarketplaceError, match="401"):
            service.adapters["wb"].warehouses()
        conn = connect(service.db_path)
        try:
            api_token = users.new_token(conn, OWNER)
        finally:
            conn.close()
        r = httpx.post(f"{service.url}/api/settings/secrets", timeout=30,
                       json={"name": "account/wb", "fields": {"Authorization": new}},
                       headers={"Authorization": f"Bearer {api_token}"})
        assert r.status_code == 200, r.text
        assert r.json()["message"].endswith("уже используется") and new not in r.text
        assert service.adapters["wb"].warehouses()  # the swapped adapter carries the new token
        assert wb.seen[-1].removeprefix("Bearer ").strip() == new
    finally:
        service.stop()
    assert new not in caplog.text and EXPIRED not in caplog.text


def test_a_push_token_stored_in_settings_guards_the_push_url_at_once(tmp_path, wb, caplog):
    """Yandex.Market pushes to /push/yandex_market/<account>/<push_token>/notification: the token entered on
    the Settings page is the one checked from the next push, the previous one is refused (a PING: the
    endpoint answers it at once, with the Notification API's shape)."""
    caplog.set_level("DEBUG")
    ym = {"ym": {"marketplace": "yandex_market", "base_url": "http://127.0.0.1:9", "credentials_secret": "account/ym",
                 "options": {"business_id": 1, "campaign_id": 2, "push_sources": ["127.0.0.0/8"]}}}
    service = start_cloud(tmp_path, wb, wb.credentials["Authorization"], accounts=ym)
    ping = b'{"notificationType": "PING", "time": "2026-11-27T10:00:00.000Z"}'

    def push(token: str) -> int:  # Yandex.Market's side, through the standard library (which logs no URL)
        req = urllib.request.Request(f"{service.url}/push/yandex_market/ym/{token}/notification", data=ping,
                                     headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=10) as answer:
                return answer.status
        except urllib.error.HTTPError as refused:
            return refused.code

    first, second = "push-token-first-never-log-me", "push-token-second-never-log-me"
    try:
        assert push(first) == 403  # no push token stored yet: every push is refused
        c = owner_client(service.url)
        page = c.get("/settings").text
        for token in (first, second):
            r = c.post("/settings/token", data={"csrf_token": csrf(page), "account": "ym", "field": "push_token",
                                                "value": token})
            assert r.status_code == 200 and "уже используется" in message(r.text), message(r.text)
            page = r.text
            assert push(token) == 200 and token not in page
        assert push(first) == 403  # the replaced token no longer opens the door
    finally:
        service.stop()
    assert first not in caplog.text and second not in caplog.text


def test_an_account_waiting_for_its_credentials_starts_working_once_they_are_entered(tmp_path, wb, exchanges, caplog):
    """A new account whose token is to be entered in Settings: the cloud starts without it (it does not refuse
    to start, so that the page can be reached), the page says the account waits; once the token is stored
    the account opens, its orders job polls, its cards are read and linked, and its stock goes out — all
    without a restart."""
    token = wb.credentials["Authorization"]
    caplog.set_level("DEBUG")
    service = start_cloud(tmp_path, wb, None, demo_items=6)
    try:
        assert service.waiting == ["wb"] and "wb" not in service.adapters
        assert not [j for j in service.jobs.jobs if j.name.endswith(":wb")]
        assert "account wb waits for its credentials" in caplog.text
        c = owner_client(service.url)
        page = c.get("/settings").text
        assert "ждёт ключей доступа" in page and not wb.seen  # nothing was sent without a token

        r = c.post("/settings/token", data={"csrf_token": csrf(page), "account": "wb", "field": "Authorization",
                                            "value": token})
        assert r.status_code == 200 and "уже используется" in message(r.text), message(r.text)
        assert "wb" in service.adapters and service.waiting == []
        poll = next(j for j in service.jobs.jobs if j.name == "orders:wb")
        wait_for("the new account's orders polled", lambda: poll.runs >= 2 and poll.errors == 0, timeout=20)
        conn = connect(service.db_path)
        try:
            wait_for("its cards read and linked", lambda: conn.execute(
                "SELECT COUNT(*) FROM card_links WHERE account='wb' AND item_id IS NOT NULL").fetchone()[0] >= 6, timeout=30)
        finally:
            conn.close()
        wait_for("its stock pushed by the running pusher", lambda: len(wb.app.state()["stocks"]) >= 6, timeout=30)
        assert "ждёт ключей доступа" not in c.get("/settings").text
    finally:
        service.stop()
    assert token not in caplog.text


def test_a_token_stored_through_another_cloud_process_is_put_in_use_here(tmp_path, wb, exchanges, caplog):
    """Several cloud processes on one store: the Settings page answered by one of them stores the token;
    this one finds it stored (cloud_sync.service.accounts.follow_stored) and opens the account, its jobs
    included, without a restart."""
    token = wb.credentials["Authorization"]
    caplog.set_level("DEBUG")
    service = start_cloud(tmp_path, wb, None, demo_items=6)
    try:
        assert service.waiting == ["wb"] and "wb" not in service.adapters
        conn = connect(service.db_path)
        try:  # what the other process's Settings page does: the token stored, encrypted with the shared key
            secrets.SecretStore(secrets.key_file_for(service.cfg)).put(conn, "account/wb", {"Authorization": token})
        finally:
            conn.close()
        wait_for("the account opened here", lambda: "wb" in service.adapters, timeout=20)
        # its jobs are added right after the adapter is published (the account's `when_added` callbacks)
        wait_for("its jobs added", lambda: any(j.name == "orders:wb" for j in service.jobs.jobs), timeout=10)
        poll = next(j for j in service.jobs.jobs if j.name == "orders:wb")
        wait_for("its orders polled with the stored token", lambda: poll.runs >= 2 and poll.errors == 0, timeout=20)
        opened = service.adapters["wb"]
        time.sleep(6)  # a round of the follower later: nothing changed, nothing reopened
        assert service.adapters["wb"] is opened
    finally:
        service.stop()
    assert token not in caplog.text
