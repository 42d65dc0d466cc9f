"""Telegram alerts: critical stock, order events, held zero-guard pushes, failed price rules.

Owns the tables `alert_outbox` (every alert waiting for or done with delivery: it survives restarts),
`alert_state` (conditions currently raised, e.g. an item below its minimum, so an alert goes out once
per episode and again only after the condition cleared), `stock_minimums` (the minimum quantity per
item) and `alert_cursor` (how far the order events were read).

Producers (`enqueue`, `check_critical_stock`, `scan_order_events`, `check_deadlines`,
`zero_guard_held`, `price_rule_failed`) only write to the outbox, inside the caller's transaction if
there is one; `deliver` sends what is due through `TelegramSender` (the Bot API's `sendMessage` over
HTTP, base URL configurable), one message per `min_interval_s` per chat, honouring a 429's
`parameters.retry_after` for the whole chat, retrying network and 5xx errors with backoff and giving up
on a message the API refuses (400/403). The same dedup key is enqueued at most once per
`dedup_window_s`. The bot token is never logged nor stored: every error text is passed through
`redact` first.

Config ([alerts] in cloud.toml): base_url, chat_id, token_env (name of the environment variable
holding the token) or token_file, min_interval_s, dedup_window_s, deadline_warning_s, max_attempts.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cloud_sync.db import transaction

log = logging.getLogger("cloud_sync.alerts")

MIGRATIONS = [
    """
    CREATE TABLE alert_outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        kind TEXT NOT NULL,        -- critical_stock, order_new, order_short, order_deadline, order_cancelled,
                                   -- zero_guard_hold, price_rule
        dedup_key TEXT NOT NULL,
        chat_id TEXT NOT NULL DEFAULT '',   -- '' = the configured default chat
        text TEXT NOT NULL,
        created_ts REAL NOT NULL,
        next_ts REAL NOT NULL,     -- not before this
        attempts INTEGER NOT NULL DEFAULT 0,
        sent_ts REAL,
        gave_up INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX alert_outbox_due ON alert_outbox(sent_ts, gave_up, next_ts);
    CREATE INDEX alert_outbox_key ON alert_outbox(dedup_key, created_ts);
    CREATE TABLE alert_state (
        key TEXT PRIMARY KEY,      -- e.g. stock:<item_id>
        raised_ts REAL NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE stock_minimums (
        item_id TEXT PRIMARY KEY,
        min_quantity INTEGER NOT NULL CHECK (min_quantity >= 0)
    );
    CREATE TABLE alert_cursor (
        name TEXT PRIMARY KEY,
        position INTEGER NOT NULL
    );
    """,
]


class AlertConfigError(ValueError):
    """The [alerts] section cannot be used; names the key, never the token."""


@dataclass
class AlertSettings:
    base_url: str = "https://api.telegram.org"
    chat_id: str = ""
    token: str = field(default="", repr=False)
    min_interval_s: float = 1.0  # Telegram: about one message a second per chat (a group: 20/min, use 3)
    dedup_window_s: float = 6 * 3600.0
    deadline_warning_s: float = 2 * 3600.0
    max_attempts: int = 20
    timeout_s: float = 10.0

    @property
    def enabled(self) -> bool:
        return bool(self.token and self.chat_id)

    @classmethod
    def from_config(cls, section: dict[str, Any] | None, env: dict[str, str] | None = None) -> AlertSettings:
        s = dict(section or {})
        env = dict(os.environ) if env is None else env
        token = ""
        if "token_env" in s:
            token = env.get(str(s["token_env"]), "")
            if not token:
                raise AlertConfigError(f"alerts.token_env: environment variable {s['token_env']!r} is not set")
        if "token_file" in s:
            try:
                token = Path(s["token_file"]).read_text().strip()
            except OSError as exc:
                raise AlertConfigError(f"alerts.token_file cannot be read: {exc.strerror}") from None
        if "token" in s:
            raise AlertConfigError("alerts.token: put the bot token in token_env or token_file, not in the config")
        out = cls(token=token, chat_id=str(s.get("chat_id", "")))
        for key in ("base_url",):
            if key in s:
                setattr(out, key, str(s[key]).rstrip("/"))
        for key in ("min_interval_s", "dedup_window_s", "deadline_warning_s", "timeout_s"):
            if key in s:
                try:
                    setattr(out, key, float(s[key]))
                except (TypeError, ValueError):
                    raise AlertConfigError(f"alerts.{key} must be a number, got {s[key]!r}") from None
        if "max_attempts" in s:
            out.max_attempts = int(s["max_attempts"])
        return out


def redact(text: str, token: str) -> str:
    """The text with the bot token (and its numeric bot id prefix form) removed."""
    if token:
        text = text.replace(token, "***")
    return text


# ---------------------------------------------------------------- the sender


@dataclass
class SendResult:
    ok: bool
    retry_after: float | None = None  # 429: wait this long before the chat's next message
    permanent: bool = False  # the API refused this message for good (400/403)
    error: str = ""


class _RedactToken(logging.Filter):
    """Strips the token from records of the HTTP libraries (httpx logs every request URL at INFO, and
    the Bot API puts the token in the URL)."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self.token = token

    def filter(self, record: logging.LogRecord) -> bool:
        if self.token:
            message = record.getMessage()
            if self.token in message:
                record.msg, record.args = redact(message, self.token), ()
        return True


HTTP_LOGGERS = ("httpx", "httpcore", "httpcore.http11", "httpcore.connection")


class TelegramSender:
    """sendMessage over HTTP. Holds the token; never puts it in an error or a log line."""

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 10.0, client: Any = None) -> None:
        import httpx

        self._url = f"{base_url.rstrip('/')}/bot{token}/sendMessage"
        self._token = token
        self._client = client or httpx.Client(timeout=timeout_s)
        self._filter = _RedactToken(token)
        for name in HTTP_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)

    def __repr__(self) -> str:
        return "TelegramSender(***)"

    def send(self, chat_id: str, text: str) -> SendResult:
        import httpx

        try:
            resp = self._client.post(self._url, json={"chat_id": chat_id, "text": text,
                                                      "disable_web_page_preview": True})
        except httpx.HTTPError as exc:
            return SendResult(False, error=redact(f"{type(exc).__name__}: {exc}", self._token))
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code == 200 and body.get("ok"):
            return SendResult(True)
        desc = redact(str(body.get("description") or resp.text[:200]), self._token)
        error = f"HTTP {resp.status_code}: {desc}"
        if resp.status_code == 429:
            params = body.get("parameters") or {}
            try:
                retry = float(params.get("retry_after") or resp.headers.get("Retry-After") or 1)
            except (TypeError, ValueError):
                retry = 1.0
            return SendResult(False, retry_after=retry, error=error)
        if resp.status_code in (400, 403):
            return SendResult(False, permanent=True, error=error)
        return SendResult(False, error=error)  # 401/404 (token), 5xx: keep and retry later

    def close(self) -> None:
        self._client.close()
        for name in HTTP_LOGGERS:
            logging.getLogger(name).removeFilter(self._filter)


# ---------------------------------------------------------------- the outbox


def enqueue(conn: sqlite3.Connection, kind: str, dedup_key: str, text: str, *, chat_id: str = "",
            dedup_window_s: float = 6 * 3600.0, now: float | None = None) -> int | None:
    """Put an alert in the outbox; None when the same key was enqueued within the window."""
    now = time.time() if now is None else now
    with transaction(conn):
        if conn.execute("SELECT 1 FROM alert_outbox WHERE dedup_key=? AND created_ts>?",
                        (dedup_key, now - dedup_window_s)).fetchone():
            return None
        cur = conn.execute("INSERT INTO alert_outbox(kind, dedup_key, chat_id, text, created_ts, next_ts)"
                           " VALUES (?,?,?,?,?,?)", (kind, dedup_key, chat_id, text[:4000], now, now))
        return int(cur.lastrowid or 0)


@dataclass
class DeliveryStats:
    sent: int = 0
    failed: int = 0  # will be retried
    gave_up: int = 0
    throttled_until: float | None = None


def pending(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(
        "SELECT * FROM alert_outbox WHERE sent_ts IS NULL AND gave_up=0 ORDER BY id")]


def deliver(conn: sqlite3.Connection, sender: Any, settings: AlertSettings, *, clock: Callable[[], float] = time.time,
            sleep: Callable[[float], None] = time.sleep, limit: int = 100) -> DeliveryStats:
    """Send what is due, oldest first, at most one message per `min_interval_s` per chat."""
    stats = DeliveryStats()
    last_sent: dict[str, float] = {}
    paused: dict[str, float] = {}
    rows = conn.execute("SELECT id, chat_id, text, attempts FROM alert_outbox WHERE sent_ts IS NULL AND gave_up=0"
                        " AND next_ts<=? ORDER BY id LIMIT ?", (clock(), limit)).fetchall()
    for row in rows:
        chat = row["chat_id"] or settings.chat_id
        if chat in paused:
            continue
        wait = last_sent.get(chat, -1e18) + settings.min_interval_s - clock()
        if wait > 0:
            sleep(wait)
        result = sender.send(chat, row["text"])
        now = clock()
        last_sent[chat] = now
        error = redact(result.error, settings.token)
        with transaction(conn):
            if result.ok:
                conn.execute("UPDATE alert_outbox SET sent_ts=?, attempts=attempts+1, last_error='' WHERE id=?",
                             (now, row["id"]))
                stats.sent += 1
            elif result.retry_after is not None:
                until = now + result.retry_after
                paused[chat] = until
                stats.throttled_until = until
                conn.execute("UPDATE alert_outbox SET next_ts=MAX(next_ts, ?), last_error=? WHERE sent_ts IS NULL"
                             " AND gave_up=0 AND (chat_id=? OR (chat_id='' AND ?=?))",
                             (until, error, chat, chat, settings.chat_id))
                stats.failed += 1
            elif result.permanent or row["attempts"] + 1 >= settings.max_attempts:
                conn.execute("UPDATE alert_outbox SET gave_up=1, attempts=attempts+1, last_error=? WHERE id=?",
                             (error, row["id"]))
                stats.gave_up += 1
                log.warning("alert %s given up: %s", row["id"], error)
            else:
                backoff = min(3600.0, 5.0 * 2 ** row["attempts"])
                conn.execute("UPDATE alert_outbox SET next_ts=?, attempts=attempts+1, last_error=? WHERE id=?",
                             (now + backoff, error, row["id"]))
                stats.failed += 1
                log.warning("alert %s not sent (retry in %.0f s): %s", row["id"], backoff, error)
    return stats


# ---------------------------------------------------------------- producers


def set_minimum(conn: sqlite3.Connection, item_id: str, min_quantity: int | None) -> None:
    """The critical stock level of an item (None removes it)."""
    with transaction(conn):
        if min_quantity is None:
            conn.execute("DELETE FROM stock_minimums WHERE item_id=?", (item_id,))
            conn.execute("DELETE FROM alert_state WHERE key=?", (f"stock:{item_id}",))
            return
        if isinstance(min_quantity, bool) or not isinstance(min_quantity, int) or min_quantity < 0:
            raise ValueError(f"minimum quantity must be a whole number >= 0, got {min_quantity!r}")
        if not conn.execute("SELECT 1 FROM items WHERE id=?", (item_id,)).fetchone():
            raise ValueError(f"unknown item {item_id!r}")
        conn.execute("INSERT INTO stock_minimums(item_id, min_quantity) VALUES (?,?)"
                     " ON CONFLICT(item_id) DO UPDATE SET min_quantity=excluded.min_quantity", (item_id, min_quantity))


def check_critical_stock(conn: sqlite3.Connection, *, now: float | None = None) -> list[str]:
    """Raise an alert for each item whose available stock (all own warehouses) fell to its minimum or
    below; once per episode: the alert is raised again only after the item recovered."""
    now = time.time() if now is None else now
    raised: list[str] = []
    rows = conn.execute(
        "SELECT m.item_id, m.min_quantity, i.name, i.article,"
        " COALESCE((SELECT SUM(on_hand - reserved) FROM stock_levels s WHERE s.item_id=m.item_id), 0) AS available"
        " FROM stock_minimums m JOIN items i ON i.id=m.item_id").fetchall()
    with transaction(conn):
        for r in rows:
            key = f"stock:{r['item_id']}"
            active = conn.execute("SELECT 1 FROM alert_state WHERE key=?", (key,)).fetchone()
            if r["available"] <= r["min_quantity"]:
                if active:
                    continue
                conn.execute("INSERT INTO alert_state(key, raised_ts, detail) VALUES (?,?,?)",
                             (key, now, str(r["available"])))
                text = (f"⚠️ Critical stock: {r['name']} ({r['article'] or r['item_id']}) — "
                        f"{r['available']} available, minimum {r['min_quantity']}")
                enqueue(conn, "critical_stock", f"{key}:{now:.0f}", text, now=now)
                raised.append(r["item_id"])
            elif active:
                conn.execute("DELETE FROM alert_state WHERE key=?", (key,))
    return raised


ORDER_EVENT_KINDS = {"reserved": "order_new", "short": "order_short", "problem": "order_problem",
                     "cancelled": "order_cancelled"}


def scan_order_events(conn: sqlite3.Connection, *, now: float | None = None) -> int:
    """Alert on order events logged since the last scan: a new order reserved, a new order that cannot
    be covered (short) or has a problem, a cancellation. Reads the orders' `order_events`; the very
    first scan only marks where it stands (events from before alerts were on are not announced)."""
    now = time.time() if now is None else now
    pos_row = conn.execute("SELECT position FROM alert_cursor WHERE name='order_events'").fetchone()
    if pos_row is None:  # first scan: start from now, no storm of alerts about old orders
        with transaction(conn):
            conn.execute("INSERT INTO alert_cursor(name, position) VALUES ('order_events',"
                         " (SELECT COALESCE(MAX(id), 0) FROM order_events))")
        return 0
    pos = pos_row[0]
    rows = conn.execute(
        "SELECT e.id, e.kind, e.detail, o.account, o.number, o.native_id, o.ship_by FROM order_events e"
        " LEFT JOIN orders o ON o.id=e.order_id WHERE e.id>? ORDER BY e.id LIMIT 5000", (pos,)).fetchall()
    n = 0
    with transaction(conn):
        for r in rows:
            pos = r["id"]
            kind = ORDER_EVENT_KINDS.get(r["kind"])
            if not kind or r["account"] is None:
                continue
            number = r["number"] or r["native_id"]
            text = {
                "order_new": f"🛒 New order {number} ({r['account']}), ship by {_when(r['ship_by'])}",
                "order_short": f"❗ New order {number} ({r['account']}) cannot be covered from stock: {r['detail']}",
                "order_problem": f"❗ Order {number} ({r['account']}) needs attention: {r['detail']}",
                "order_cancelled": f"✖️ Order {number} ({r['account']}) cancelled {r['detail']}".rstrip(),
            }[kind]
            if enqueue(conn, kind, f"{kind}:{r['account']}:{r['native_id']}", text, now=now) is not None:
                n += 1
        conn.execute("INSERT INTO alert_cursor(name, position) VALUES ('order_events', ?)"
                     " ON CONFLICT(name) DO UPDATE SET position=excluded.position", (pos,))
    return n


def check_deadlines(conn: sqlite3.Connection, orders: Iterable[dict[str, Any]], *, now: float | None = None,
                    dedup_window_s: float = 7 * 86400.0) -> int:
    """Alert once per order whose ship-by deadline is near or past. `orders` are dicts with account,
    number (or key) and ship_by (ISO UTC) - e.g. cloud_sync.orders.deadlines_near(conn, within_s)."""
    now = time.time() if now is None else now
    n = 0
    for o in orders:
        ship_by = o.get("ship_by")
        if not ship_by:
            continue
        left = datetime.fromisoformat(ship_by).timestamp() - now
        state = "overdue" if left < 0 else "near"
        mins = int(abs(left) // 60)
        text = (f"⏰ Order {o.get('number') or o.get('key')} ({o.get('account')}): ship-by deadline "
                + (f"passed {mins} min ago" if left < 0 else f"in {mins} min") + f" ({_when(ship_by)})")
        if enqueue(conn, "order_deadline", f"deadline:{state}:{o.get('account')}:{o.get('key') or o.get('number')}",
                   text, dedup_window_s=dedup_window_s, now=now) is not None:
            n += 1
    return n


def zero_guard_held(conn: sqlite3.Connection, account: str, zeroed: int, listed: int, *, reason: str = "",
                    hold_id: str = "", now: float | None = None) -> int | None:
    """Alert that a stock push was held by the zero guard until someone confirms it."""
    share = f"{zeroed * 100 / listed:.0f}%" if listed else "?"
    text = (f"🛑 Stock push to {account} held: it would zero {zeroed} of {listed} listed cards ({share})."
            f"{' ' + reason if reason else ''} Confirm it in marketsync to send.")
    return enqueue(conn, "zero_guard_hold", f"zero_guard:{account}:{hold_id or zeroed}", text, now=now)


def price_rule_failed(conn: sqlite3.Connection, rule_name: str, detail: str, *, now: float | None = None) -> int | None:
    return enqueue(conn, "price_rule", f"price_rule:{rule_name}", f"💸 Price rule {rule_name!r}: {detail}"[:1000],
                   now=now)


def _when(iso: str | None) -> str:
    if not iso:
        return "—"
    try:
        return datetime.fromisoformat(iso).astimezone(UTC).strftime("%d.%m %H:%M UTC")
    except ValueError:
        return iso


def tick(conn: sqlite3.Connection, settings: AlertSettings, sender: Any | None, *,
         now: float | None = None) -> DeliveryStats:
    """What the cloud's jobs loop calls: raise stock, order and deadline alerts, then deliver."""
    now = time.time() if now is None else now
    check_critical_stock(conn, now=now)
    if _table_exists(conn, "order_events"):
        scan_order_events(conn, now=now)
    if _table_exists(conn, "orders"):
        from cloud_sync import orders

        check_deadlines(conn, orders.deadlines_near(conn, settings.deadline_warning_s, now=now), now=now)
    if sender is None or not settings.enabled:
        return DeliveryStats()
    return deliver(conn, sender, settings)


def _table_exists(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


def sender_for(settings: AlertSettings) -> TelegramSender | None:
    return TelegramSender(settings.base_url, settings.token, timeout_s=settings.timeout_s) if settings.enabled else None


def outbox_summary(conn: sqlite3.Connection) -> dict[str, int]:
    r = conn.execute("SELECT SUM(sent_ts IS NOT NULL), SUM(sent_ts IS NULL AND gave_up=0), SUM(gave_up)"
                     " FROM alert_outbox").fetchone()
    return {"sent": r[0] or 0, "pending": r[1] or 0, "gave_up": r[2] or 0}
