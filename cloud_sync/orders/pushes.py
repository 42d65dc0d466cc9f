"""Order events the marketplaces push (Yandex.Market and Ozon notifications, Megamarket order/new and cancel):
the `push_events` table — every accepted event stored durably before the marketplace gets its answer,
duplicates counted, not stored again — and `PushWorker`, which hands each stored event to the order
intake after the answer went out, retrying while it fails and replaying what a previous run left.
The HTTP endpoints are in cloud_sync/web/push.py; parsing is the adapter's (`Marketplace.parse_push`).

Also what the seller enters in each pushing account's cabinet (`push_doors`: the URL(s) from [cloud]
public_url and the marketplace's profile, where in the cabinet, whether the push token is set, the last
event received and the last connection check — a ping, answered at once, its moment kept in `push_pings`),
read by `marketsync cloud push-urls` (the token in the URL) and the Settings page (masked).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from cloud_sync.config import CloudConfig
from cloud_sync.db import connect, transaction
from marketplaces import profiles
from marketplaces.base import MarketplaceError, OrderEvent

log = logging.getLogger("cloud_sync.orders.pushes")
STORE_RETRY_S = 2.0  # a store that did not answer is asked again after this long (the worker never ends on it)

OnEvent = Callable[[str, OrderEvent], Any]


class PushSource(Protocol):
    """An account that pushes: its running adapter parses the stored body again."""

    @property
    def adapter(self) -> Any: ...

MIGRATIONS = [
    """
    CREATE TABLE push_events (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        marketplace TEXT NOT NULL,
        push TEXT NOT NULL,               -- 'notification', 'order/new', 'order/cancel'
        kind TEXT NOT NULL,               -- OrderEvent.kind
        dedup_key TEXT NOT NULL,
        order_native_id TEXT NOT NULL DEFAULT '',
        native_status TEXT NOT NULL DEFAULT '',
        body TEXT NOT NULL,               -- the push exactly as received
        received_at REAL NOT NULL,
        duplicates INTEGER NOT NULL DEFAULT 0,
        handled_at REAL,                  -- when on_event accepted it
        outcome TEXT NOT NULL DEFAULT '',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_try_at REAL NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        UNIQUE (account, dedup_key)
    );
    CREATE INDEX push_events_pending ON push_events(handled_at) WHERE handled_at IS NULL;
    """,
    # the last event of each account at a glance (the Settings page, `marketsync cloud push-urls`)
    "CREATE INDEX push_events_last ON push_events(account, received_at);",
    # the last connection check (a ping: Ozon's TYPE_PING, Yandex.Market's PING) of each account, stored
    # nowhere else: one row per account, overwritten by each authentic ping (`record_ping`)
    """
    CREATE TABLE push_pings (
        account TEXT PRIMARY KEY,
        marketplace TEXT NOT NULL,
        received_at REAL NOT NULL
    );
    """,
]


def store_keys(account: str) -> tuple[str]:
    """The key of an account's stored pushes (`store_events`' keyed transaction): its own `push_events` rows
    (new ones, and a duplicate's count). Nothing else writes them in a keyed transaction — the worker's marks
    (`PushWorker._handle`) are ordinary transactions, which exclude every keyed one — so two pushes of one
    account store one after the other and pushes of different accounts at once. Not the stock sender's
    `push:<account>` (`cloud_sync.stock.push.push_keys`): a push must not queue behind a stock round."""
    return (f"push_events:{account}",)


def store_events(conn: sqlite3.Connection, account: str, marketplace: str, push: str, body: bytes,
                 events: list[OrderEvent]) -> int:
    """Store a push's events durably (before the marketplace gets its answer); a duplicate delivery is
    counted, not stored again. Returns how many events were new. A keyed transaction (`store_keys`): on
    PostgreSQL it takes the store's writer lock shared, so it runs beside other keyed writers (a batch of new
    orders, the stock senders) and waits only for an ordinary write transaction (an import, the worker's
    marks) — how long, the caller bounds (cloud_sync.web.push); on SQLite it is BEGIN IMMEDIATE as always."""
    text = body.decode("utf-8")
    new = 0
    now = time.time()
    with transaction(conn, keys=store_keys(account)):
        for e in events:
            cur = conn.execute(
                "INSERT OR IGNORE INTO push_events(account, marketplace, push, kind, dedup_key, order_native_id,"
                " native_status, body, received_at) VALUES (?,?,?,?,?,?,?,?,?)",
                (account, marketplace, push, e.kind, e.dedup_key, e.order_native_id, e.native_status, text, now))
            if cur.rowcount == 1:
                new += 1
            else:  # a duplicate delivery: acknowledged, counted, not handed on again
                conn.execute("UPDATE push_events SET duplicates=duplicates+1 WHERE account=? AND dedup_key=?",
                             (account, e.dedup_key))
    return new


def record_ping(conn: sqlite3.Connection, account: str, marketplace: str, now: float | None = None) -> None:
    """When the marketplace last checked the connection (an authentic ping): one small UPSERT, inside the
    marketplace's answer time (Ozon pauses pushes answered in more than 5 s). One statement on its own, not
    a write transaction: on PostgreSQL it then takes no writer lock (a row nothing else writes), on SQLite
    it waits for the file's one writer as long as the connection's busy timeout (the caller bounds it)."""
    conn.execute("INSERT INTO push_pings(account, marketplace, received_at) VALUES (?,?,?) ON CONFLICT(account)"
                 " DO UPDATE SET marketplace=excluded.marketplace, received_at=excluded.received_at",
                 (account, marketplace, time.time() if now is None else now))


class PushWorker:
    """Hands stored events to `on_event` in the background, in order; retries failures with backoff
    (the event stays unhandled in the table until `on_event` returns); replays what a previous run
    left unhandled."""

    def __init__(self, db_path: str, accounts: dict[str, PushSource], on_event: OnEvent | None, *,
                 retry_base_s: float = 1.0, retry_max_s: float = 300.0) -> None:
        self.db_path = db_path
        self.accounts = accounts
        self.on_event = on_event
        self.retry_base_s = retry_base_s
        self.retry_max_s = retry_max_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.on_event is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="push-events", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._idle.clear()
        self._wake.set()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Until no stored event is waiting to be handled now (tests, shutdown)."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while not self._stop.is_set():
                try:
                    if conn is None:
                        conn = connect(self.db_path)
                    delay = self._pass(conn)
                except sqlite3.Error as exc:  # the store out of reach (PostgreSQL restarted, a full disk)
                    log.warning("push events: the store did not answer (%s); looked at again in %.0f s",
                                exc.__class__.__name__, STORE_RETRY_S)
                    conn = _closed(conn)  # a connection the server dropped is not used again
                    delay = STORE_RETRY_S
                if delay is None:
                    self._idle.set()
                    delay = 30.0
                self._wake.wait(delay)
                self._wake.clear()
        finally:
            _closed(conn)

    def _pass(self, conn: sqlite3.Connection) -> float | None:
        """Handle every due event; the seconds until the next retry is due, None when nothing waits."""
        rows = conn.execute("SELECT * FROM push_events WHERE handled_at IS NULL ORDER BY id").fetchall()
        for row in rows:
            if self._stop.is_set():
                return 0.0
            if row["next_try_at"] <= time.time():
                self._handle(conn, row)
        left = conn.execute("SELECT MIN(next_try_at) FROM push_events WHERE handled_at IS NULL").fetchone()[0]
        return None if left is None else max(0.05, left - time.time())

    def _handle(self, conn: sqlite3.Connection, row: sqlite3.Row) -> None:
        account = self.accounts.get(row["account"])
        try:
            if account is None:
                raise MarketplaceError(f"account {row['account']} is no longer configured")
            headers = {"x-push-path": row["push"]}
            events = [e for e in account.adapter.parse_push(headers, row["body"].encode()) if e.dedup_key == row["dedup_key"]]
            if not events:
                raise MarketplaceError(f"stored push {row['id']} no longer parses to its event")
            outcome = self.on_event(row["account"], events[0]) if self.on_event else "stored"
        except Exception as exc:  # noqa: BLE001 - any failure leaves the event for a retry
            log.warning("push event %s (%s) not handled yet: %s", row["id"], row["dedup_key"], exc)
            wait = min(self.retry_max_s, self.retry_base_s * 2 ** row["attempts"])
            with transaction(conn):
                conn.execute("UPDATE push_events SET attempts=attempts+1, last_error=?, next_try_at=? WHERE id=?",
                             (str(exc)[:500], time.time() + wait, row["id"]))
            return
        with transaction(conn):
            conn.execute("UPDATE push_events SET handled_at=?, outcome=?, attempts=attempts+1, last_error='' "
                         "WHERE id=?", (time.time(), str(outcome or "")[:200], row["id"]))


def _closed(conn: sqlite3.Connection | None) -> None:
    """Close a connection that may be broken already; None."""
    if conn is not None:
        try:
            conn.close()
        except sqlite3.Error:
            pass
    return None


def pending(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Stored events not handled yet (for the manager's health page)."""
    return [dict(r) for r in conn.execute(
        "SELECT id, account, kind, dedup_key, attempts, last_error FROM push_events WHERE handled_at IS NULL")]


# ---------------------------------------------------------------- what the seller enters in the cabinet

MASK = "••••••"  # the push token where a page shows the URL (a secret never appears on a page)
NO_TOKEN = "<push_token>"  # where the URL has no token yet


@dataclass(frozen=True)
class PushDoor:
    """What the seller enters in one pushing account's cabinet, and how its pushes stand."""

    account: str
    marketplace: str
    urls: tuple[str, ...]  # each URL to enter (Yandex.Market: the one its Notification API appends to)
    appended: tuple[str, ...]  # what the marketplace appends to it itself (Yandex.Market: notification)
    token_set: bool
    cabinet: str  # where in the cabinet (English: the profile's push `cabinet`, translated where it is shown)
    last_received: float | None = None  # when the last event of the account was stored (push_events)
    last_ping: float | None = None  # when the marketplace last checked the connection (push_pings)


def cloud_base(cfg: CloudConfig) -> str:
    """The address the push URLs start with: [cloud] public_url, else http://host:port (which no marketplace
    reaches); a seller of several (`cfg.tenant`) is served under /t/<id> (cloud_sync.service.tenants)."""
    host = cfg.host if ":" not in cfg.host else f"[{cfg.host}]"
    base = cfg.public_url or f"http://{host}:{cfg.port}"
    return base.rstrip("/") + (f"/t/{cfg.tenant}" if cfg.tenant else "")


def push_root(base: str, marketplace: str, account: str, token: str) -> str:
    """The start of an account's push URLs (`<base>/push/<marketplace>/<account>/<token>`): the marketplace
    appends its profile's paths, or the seller enters each path's whole URL."""
    return f"{base.rstrip('/')}/push/{marketplace}/{quote(account, safe='')}/{quote(token, safe='')}"


def push_doors(cfg: CloudConfig, last: Mapping[str, float] | None = None, *, masked: bool = True,
               pings: Mapping[str, float] | None = None) -> list[PushDoor]:
    """Each account of `cfg` whose marketplace pushes (its profile's `push`), by name: the URL(s) to enter
    in the cabinet — the push token in them only when not `masked` (the operator's own terminal), else
    MASK — and `last` (`last_received`) and `pings` (`last_pings`) put in."""
    known = profiles()
    base = cloud_base(cfg)
    out = []
    for name, settings in sorted(cfg.accounts.items()):
        terms = known[settings.marketplace].push if settings.marketplace in known else None
        if terms is None:
            continue
        token = str(settings.account.credentials.get("push_token") or "")
        if token and not masked:
            root = push_root(base, settings.marketplace, name, token)
        else:  # the token's place (ends with "/") shown masked, or marked as not set
            root = push_root(base, settings.marketplace, name, "") + (MASK if token else NO_TOKEN)
        urls = (root,) if terms.appends else tuple(f"{root}/{path}" for path in terms.paths)
        out.append(PushDoor(name, settings.marketplace, urls, terms.paths if terms.appends else (), bool(token),
                            terms.cabinet, (last or {}).get(name), (pings or {}).get(name)))
    return out


def last_received(conn: sqlite3.Connection) -> dict[str, float]:
    """When the last event of each account was stored (a ping or a type not used is stored nowhere)."""
    return {str(account): float(ts) for account, ts in conn.execute(
        "SELECT account, MAX(received_at) FROM push_events GROUP BY account") if ts is not None}


def last_pings(conn: sqlite3.Connection) -> dict[str, float]:
    """When the marketplace last checked each account's connection (its ping, `record_ping`)."""
    return {str(account): float(ts) for account, ts in conn.execute("SELECT account, received_at FROM push_pings")}
