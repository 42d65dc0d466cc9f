"""Fixtures for the push-endpoint tests: the webhooks blueprint served over real HTTP on 127.0.0.1,
real sandboxes pushing to it, a real SQLite file. Every server a test starts is stopped by the test; a
sandbox that pushed or answered outside its spec (YM's official Notification API, our MM push schema)
fails the test at teardown. (Ozon documents its notifications in prose and examples only: its pushes are
held to those in test_ozon_pushes.py.)"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from flask import Flask
from werkzeug.serving import make_server

from cloud_sync import db as cloud_db
from cloud_sync.config import AccountSettings, CloudConfig
from cloud_sync.web.app import create_app
from cloud_sync.web.push import create_webhooks_blueprint, push_url
from marketplaces import open_account
from marketplaces.base import AccountConfig, OrderEvent
from marketplaces.sandbox.core import RunningSandbox
from marketplaces.sandbox.registry import create_sandbox
from marketplaces.sandbox.yandex_market_spec import register as register_ym_specs
from marketplaces.spec import load_specs


@dataclass
class Receiver:
    url: str
    db_path: str
    accounts: dict[str, AccountConfig]
    events: list[tuple[str, OrderEvent]] = field(default_factory=list)
    worker: Any = None

    def push_url(self, name: str) -> str:
        return push_url(self.url, self.accounts[name])


def account_of(running: RunningSandbox, name: str, **options: Any) -> AccountConfig:
    app = running.app
    creds = dict(running.credentials, push_token=f"push-secret-{name}")
    if app.marketplace == "yandex_market":
        opts = {"business_id": app.business_id, "campaign_id": app.campaign_id, "push_sources": ["127.0.0.0/8"]}
    elif app.marketplace == "ozon":
        opts = dict(app.account_options())  # pushes from the loopback; its seller_id is its Client-Id
    else:
        opts = {"merchant_id": app.merchant_id, "shipping_point": app.shipping_point}
    opts.update(options)
    return AccountConfig(name=name, marketplace=app.marketplace, base_url=running.url, credentials=creds,
                         time_scale=app.time_scale, options=opts)


def wait_for(cond: Callable[[], Any], timeout: float = 15.0) -> bool:
    """Whether `cond()` came true within `timeout` seconds (looked at every 20 ms)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return bool(cond())


def push_rows(db_path: str, sql: str = "SELECT * FROM push_events ORDER BY id") -> list[sqlite3.Row]:
    """Rows of the cloud's store (either engine), by column name; the stored pushes by default."""
    conn = cloud_db.connect(db_path)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(sql).fetchall()
    finally:
        conn.close()


def post_json(url: str, body: bytes) -> httpx.Response:
    """POST a body exactly as given, as the marketplaces send their notifications."""
    return httpx.post(url, content=body, headers={"Content-Type": "application/json"}, timeout=10)


def ym_answer_errors(body: bytes, resp: httpx.Response) -> list[str]:
    """The cloud's answer to a Yandex.Market notification held to the official Notification API spec."""
    register_ym_specs()
    spec = load_specs("yandex_market_notification")
    return spec.response_errors("POST", "/notification", resp.status_code, body=resp.content,
                                content_type=resp.headers["content-type"], request_body=body)


@contextmanager
def pushing_cloud(running: RunningSandbox, name: str, db_path: str) -> Iterator[tuple[ServedCloud, str]]:
    """`served_cloud` with the sandbox pushing to it (each notification delivered twice, as the real ones
    may be), and the account's push URL as registered (a marketplace appends its paths itself)."""
    with served_cloud(running, name, db_path) as served:
        url = push_url(served.base, served.acc)
        registered = httpx.post(running.url + "/_sandbox/x/push", json={"url": url, "duplicates": 1}, timeout=10)
        assert registered.status_code == 200, registered.text
        yield served, url


def push_idle(running: RunningSandbox) -> None:
    """Wait until the sandbox has delivered every push it owes (`/_sandbox/x/push_wait`)."""
    assert httpx.post(running.url + "/_sandbox/x/push_wait", json={"timeout": 10}, timeout=15).json()["idle"]


@dataclass
class ServedCloud:
    """The cloud's whole app for one account of a sandbox, served over real HTTP (`served_cloud`)."""

    acc: AccountConfig
    cfg: Any
    adapter: Any
    app: Flask
    base: str  # http://127.0.0.1:<port>
    conn: Any  # a store connection for the test's reads


@contextmanager
def served_cloud(running: RunningSandbox, name: str, db_path: str) -> Iterator[ServedCloud]:
    """The cloud's app (cloud_sync.web.app: push endpoints, their worker, pages) for account `name` of a
    running sandbox, on a free port of 127.0.0.1, with a store connection; everything stopped afterwards."""
    acc = account_of(running, name)
    cfg = CloudConfig(db_path=db_path, accounts={acc.name: AccountSettings(account=acc)})
    adapter = open_account(acc)
    app = create_app(cfg, db_path=db_path, adapters={acc.name: adapter})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    conn = cloud_db.connect(db_path)
    try:
        yield ServedCloud(acc, cfg, adapter, app, f"http://127.0.0.1:{server.server_port}", conn)
    finally:
        conn.close()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        for bp in app.blueprints.values():
            worker = getattr(bp, "push_worker", None)
            if worker is not None:
                worker.stop()


@pytest.fixture
def sandboxes() -> Iterator[Callable[..., RunningSandbox]]:
    started: list[RunningSandbox] = []

    def make(name: str, **options: Any) -> RunningSandbox:
        options.setdefault("seed", 10)
        options.setdefault("time_scale", 1000)
        app = create_sandbox(name, **options)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        running = RunningSandbox(app, f"http://127.0.0.1:{server.server_port}", dict(app.credentials), server, thread)
        started.append(running)
        return running

    yield make
    violations: list[str] = []
    for running in started:
        running.app.push.stop()
        running.stop()
        violations += running.app.spec_violations
    assert not violations, "a sandbox pushed or answered outside its spec:\n" + "\n".join(violations[:5])


@pytest.fixture
def receiver_factory(tmp_path) -> Iterator[Callable[..., Receiver]]:
    servers: list[tuple[Any, threading.Thread, Any]] = []

    def make(accounts: list[AccountConfig], on_event: Callable[[str, OrderEvent], Any] | None = None,
             db_name: str = "cloud.sqlite") -> Receiver:
        got: list[tuple[str, OrderEvent]] = []

        def record(account: str, event: OrderEvent) -> str:
            if on_event is not None:
                out = on_event(account, event)
            else:
                out = "ok"
            got.append((account, event))
            return str(out)

        db_path = str(tmp_path / db_name)
        adapters = {a.name: open_account(a) for a in accounts}
        bp = create_webhooks_blueprint(db_path, accounts, record, adapters, retry_base_s=0.05)
        app = Flask("test-cloud")
        app.register_blueprint(bp)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        thread.start()
        servers.append((server, thread, bp.push_worker))
        return Receiver(f"http://127.0.0.1:{server.server_port}", db_path, {a.name: a for a in accounts}, got,
                        bp.push_worker)

    yield make
    for server, thread, worker in servers:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        worker.stop()


@dataclass
class HeldAnswer:
    """A push's answer while another connection held the store's writer lock (`post_while_the_store_is_held`)."""

    status: int
    body: Any  # the answer's JSON
    took: float  # seconds until it was answered
    rows_meanwhile: int  # push_events rows the store held before the lock was let go


def post_while_the_store_is_held(post: Callable[[], Any], db_path: str, *, give_up_s: float) -> HeldAnswer:
    """`post()` (one push, answered as a Flask test-client or httpx response) sent while a second connection
    of the store holds its writer lock (BEGIN IMMEDIATE: a long write elsewhere — an import, a big intake
    batch); the lock is let go once the answer came, or after `give_up_s` (a push still waiting then fails
    the test, it does not hang it: on PostgreSQL the writer lock waits without limit)."""
    conn = cloud_db.connect(db_path)
    got: list[Any] = []
    try:
        conn.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        sender = threading.Thread(target=lambda: got.append(post()), daemon=True)
        sender.start()
        sender.join(give_up_s)
        took = time.monotonic() - started
        meanwhile = conn.execute("SELECT COUNT(*) FROM push_events").fetchone()[0]
        conn.execute("ROLLBACK")
        sender.join(60)
        assert got and took < give_up_s, f"not answered within {give_up_s} s while the store was held"
        answer = got[0]
        body = answer.get_json() if hasattr(answer, "get_json") else answer.json()
        return HeldAnswer(answer.status_code, body, took, meanwhile)
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()
