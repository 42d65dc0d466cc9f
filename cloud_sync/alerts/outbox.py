"""The alerts' outbox and its delivery to Telegram.

Owns the tables `alert_outbox` (every alert waiting for or done with delivery: it survives restarts),
`alert_state` (conditions currently raised, e.g. an item below its minimum, so an alert goes out once
per episode and again only after the condition cleared), `stock_minimums` (the minimum quantity per
item) and `alert_cursor` (how far the order events were read).

Alerts go to the main chat ([alerts] chat_id) unless `alert_chats` routes their kind: a kind ticked for
one or more chats goes to those chats (the main one among them only if ticked there too); a kind no chat
has ticked goes to the main chat. So with no chats added everything goes where it always did.

Producers only write to the outbox (`enqueue`, and `zero_guard_held` / `price_rule_failed` for the stock
and price rooms), inside the caller's transaction if there is one; `deliver` sends what is due through
`TelegramSender` (the Bot API's `sendMessage` over HTTP, base URL configurable), one message per
`min_interval_s` per chat, honouring a 429's `parameters.retry_after` for the whole chat, retrying
network and 5xx errors with backoff and giving up on a message the API refuses (400/403). The same
dedup key is enqueued at most once per `dedup_window_s`. The bot token is never logged nor stored:
every error text is passed through `redact` first.

Config ([alerts] in cloud.toml, read at load into cloud_sync.config_sections.AlertsConfig): base_url,
chat_id, token_env (name of the environment variable holding the token) or token_file, min_interval_s,
dedup_window_s, deadline_warning_s, max_attempts, timeout_s, tick_s; `AlertSettings.from_config` reads
the token at the moment it is asked.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cloud_sync import leases
from cloud_sync.config_sections import AlertsConfig
from cloud_sync.db import transaction
from cloud_sync.i18n import domain_text, translations

log = logging.getLogger("cloud_sync.alerts.outbox")


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
    # more chats than the main one, each with the kinds of alerts it takes (`route`)
    """
    CREATE TABLE alert_chats (
        chat_id TEXT PRIMARY KEY,          -- a chat's number (a group's -100…) or @channel
        title TEXT NOT NULL DEFAULT '',    -- the seller's name for it («Склад», «Цены»)
        kinds TEXT NOT NULL DEFAULT '[]',  -- JSON list of KINDS sent there
        added_ts REAL NOT NULL
    );
    """,
]

# Every kind of alert, as producers enqueue them (the settings page lets a person send each to chats).
KINDS = ("order_new", "order_short", "order_problem", "order_deadline", "order_deadline_moved", "order_cancelled",
         "critical_stock", "zero_guard_hold", "price_rule", "price_source")


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
    fbo_min_quantity: int = 3  # FBO stock alert: at or below this (an item's own critical level wins)
    fbo_cover_days: float = 7.0  # FBO stock alert: fewer days of cover than this at the recent sales

    @property
    def enabled(self) -> bool:
        return bool(self.token and self.chat_id)

    @classmethod
    def from_config(cls, section: AlertsConfig | None, env: dict[str, str] | None = None) -> AlertSettings:
        """The settings in use now: [alerts] as read at load (None: no such section, alerts off) with the
        token read from where it names, at this moment (a token entered in Settings changes `token_env`)."""
        s = section or AlertsConfig()
        env = dict(os.environ) if env is None else env
        token = ""
        if s.token_env is not None:
            token = env.get(s.token_env, "")
            if not token:
                raise AlertConfigError(f"alerts.token_env: environment variable {s.token_env!r} is not set")
        if s.token_file is not None:
            try:
                token = Path(s.token_file).read_text().strip()
            except OSError as exc:
                raise AlertConfigError(f"alerts.token_file cannot be read: {exc.strerror}") from None
        return cls(base_url=s.base_url.rstrip("/"), chat_id=s.chat_id, token=token, min_interval_s=s.min_interval_s,
                   dedup_window_s=s.dedup_window_s, deadline_warning_s=s.deadline_warning_s,
                   max_attempts=s.max_attempts, timeout_s=s.timeout_s, fbo_min_quantity=s.fbo_min_quantity,
                   fbo_cover_days=s.fbo_cover_days)


def redact(text: str, token: str) -> str:
    """The text with the bot token (and its numeric bot id prefix form) removed."""
    if token:
        text = text.replace(token, "***")
    return text


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
        self._url = f"{base_url.rstrip('/')}/bot{token}/sendMessage"
        self._token = token
        self._client = client or httpx.Client(timeout=timeout_s)
        self._filter = _RedactToken(token)
        for name in HTTP_LOGGERS:
            logging.getLogger(name).addFilter(self._filter)

    def __repr__(self) -> str:
        return "TelegramSender(***)"

    def send(self, chat_id: str, text: str) -> SendResult:
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


def enqueue(conn: sqlite3.Connection, kind: str, dedup_key: str, text: str, *, chat_id: str = "",
            dedup_window_s: float = 6 * 3600.0, now: float | None = None) -> int | None:
    """Put an alert in the outbox, one row per chat its kind is routed to (`route`); the first row's id,
    None when the same key was enqueued within the window."""
    now = time.time() if now is None else now
    with transaction(conn):
        if conn.execute("SELECT 1 FROM alert_outbox WHERE dedup_key=? AND created_ts>?",
                        (dedup_key, now - dedup_window_s)).fetchone():
            return None
        first = None
        for chat in [chat_id] if chat_id else route(conn, kind):
            cur = conn.execute("INSERT INTO alert_outbox(kind, dedup_key, chat_id, text, created_ts, next_ts)"
                               " VALUES (?,?,?,?,?,?)", (kind, dedup_key, chat, text[:4000], now, now))
            first = first or int(cur.lastrowid or 0)
        return first


@dataclass
class AlertChat:
    chat_id: str
    title: str
    kinds: list[str]


def chats(conn: sqlite3.Connection) -> list[AlertChat]:
    return [AlertChat(r["chat_id"], r["title"], json.loads(r["kinds"]))
            for r in conn.execute("SELECT * FROM alert_chats ORDER BY added_ts, chat_id")]


def route(conn: sqlite3.Connection, kind: str) -> list[str]:
    """The chats an alert of this kind goes to: those that ticked it, else [''] (the main chat)."""
    routed = [c.chat_id for c in chats(conn) if kind in c.kinds]
    return routed or [""]


def save_chat(conn: sqlite3.Connection, chat_id: str, title: str, kinds: list[str], *, now: float | None = None) -> None:
    """Add a chat or change its name and kinds (unknown kinds refused with ValueError)."""
    unknown = set(kinds) - set(KINDS)
    if unknown:
        raise ValueError(f"unknown alert kinds: {', '.join(sorted(unknown))}")
    with transaction(conn):
        conn.execute("INSERT INTO alert_chats(chat_id, title, kinds, added_ts) VALUES (?,?,?,?) ON CONFLICT(chat_id)"
                     " DO UPDATE SET title=excluded.title, kinds=excluded.kinds",
                     (chat_id, title, json.dumps([k for k in KINDS if k in kinds]),
                      time.time() if now is None else now))


def remove_chat(conn: sqlite3.Connection, chat_id: str) -> bool:
    """The chat takes no more alerts (what is still queued for it is sent)."""
    with transaction(conn):
        return conn.execute("DELETE FROM alert_chats WHERE chat_id=?", (chat_id,)).rowcount > 0


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
        # claimed, so no other cloud process sends the same message (cloud_sync.leases)
        if not leases.claim(conn, "alert_outbox", {"id": row["id"]}, due="sent_ts IS NULL AND gave_up=0"):
            continue
        result = sender.send(chat, row["text"])
        now = clock()
        last_sent[chat] = now
        error = redact(result.error, settings.token)
        with transaction(conn):
            leases.unclaim(conn, "alert_outbox", {"id": row["id"]})
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


def zero_guard_held(conn: sqlite3.Connection, account: str, zeroed: int, listed: int, *, reason: str = "",
                    hold_id: str = "", now: float | None = None) -> int | None:
    """Alert that a stock push was held by the zero guard until someone confirms it."""
    share = f"{zeroed * 100 / listed:.0f}%" if listed else "?"
    _ = translations().gettext  # the service's language ([ui] language)
    text = "🛑 " + _("Stock push to %(account)s held: it would zero %(zeroed)s of %(listed)s listed cards (%(share)s).") % {
        "account": account, "zeroed": zeroed, "listed": listed, "share": share}
    text += (" " + domain_text(reason, _) if reason else "") + " " + _("Confirm it in marketsync to send.")
    return enqueue(conn, "zero_guard_hold", f"zero_guard:{account}:{hold_id or zeroed}", text, now=now)


def price_rule_failed(conn: sqlite3.Connection, rule_name: str, detail: str, *, now: float | None = None) -> int | None:
    _ = translations().gettext
    text = "💸 " + _("Price rule %(rule)s: %(detail)s") % {"rule": repr(rule_name), "detail": domain_text(detail, _)}
    return enqueue(conn, "price_rule", f"price_rule:{rule_name}", text[:1000], now=now)


def sender_for(settings: AlertSettings) -> TelegramSender | None:
    return TelegramSender(settings.base_url, settings.token, timeout_s=settings.timeout_s) if settings.enabled else None


def outbox_summary(conn: sqlite3.Connection) -> dict[str, int]:
    r = conn.execute("SELECT SUM(sent_ts IS NOT NULL), SUM(sent_ts IS NULL AND gave_up=0), SUM(gave_up)"
                     " FROM alert_outbox").fetchone()
    return {"sent": r[0] or 0, "pending": r[1] or 0, "gave_up": r[2] or 0}
