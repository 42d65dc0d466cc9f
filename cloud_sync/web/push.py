"""The push endpoints the cloud exposes to the marketplaces that push order events (today Yandex.Market's
Notification API, Megamarket's order/new and order/cancel and Ozon's push notifications): which ones,
their URL suffixes, default source networks and answer shapes come from each marketplace's profile
(`MarketplaceProfile.push`).

Owns: a Flask blueprint (`create_blueprint(cfg, adapters, on_event)`, or `create_webhooks_blueprint`
without a CloudConfig) with one URL family per account, the `push_events` table (every accepted
event, stored durably BEFORE the marketplace gets its answer), refusing pushes that are not
authentic, parsing through the account's adapter (`Marketplace.parse_push`: the marketplace's shapes
stay in its module), ignoring duplicates, and a worker that hands each new event to `on_event`
after the answer went out, retrying it while it fails, and replaying unhandled events at start.

URLs (the secret is part of the URL because no marketplace can send our headers), one per path of
the marketplace's profile:
    POST /push/yandex_market/<account>/<push_token>/notification
    POST /push/megamarket/<account>/<push_token>/order/new
    POST /push/megamarket/<account>/<push_token>/order/cancel
    POST /push/ozon/<account>/<push_token>/notification   (the one URL the seller types in Ozon's cabinet)
Per account: `credentials["push_token"]` (the secret; from the environment or the secrets file, like
every credential, or stored on the Settings page: checked from the next push on, as the account's
config stands at each push), `options["push_sources"]` (CIDRs allowed to push; else the profile's
published ranges — Yandex.Market 5.45.207.0/25, 141.8.142.0/25, 5.255.253.0/25, Ozon 195.34.21.0/24,
185.73.192.0/22, 91.223.93.0/24, Megamarket any),
`options["push_trusted_proxies"]` (CIDRs of our own reverse proxies, whose X-Forwarded-For is used).

Answers, each in the marketplace's shape (`PushTerms.answer`): PING at once (no event stored, no work but
its moment in `push_pings`, one row per account, for Settings; Ozon's TYPE_PING `{"version","name","time"}`); a stored or duplicate event 200 (YM `{"name","version","time"}`,
MM `{"data":{},"meta":{},"success":1}`, Ozon `{"result":true}`); a type the product does not use (chats,
products...) 200 as well, stored nowhere; malformed 400 (YM `{"error":{"type":"WRONG_EVENT_FORMAT",…}}`,
MM `success: 0`, Ozon `{"error":{"code":"ERROR_PARAMETER_VALUE_MISSED","message","details":null}}`), stored
nowhere; wrong token, foreign store/merchant/seller or source outside the allow-list 403; a database
failure 500 (the marketplace retries) — also when another write (an import, a large intake batch) holds the
store longer than PUSH_STORE_WAIT_S: a push is answered within its marketplace's time, never late.

Dedup keys (explicit, from the adapters): `ym:<campaignId>:<orderId>:created|cancelled|status:<S/SS>`,
`mm:<merchantId>:<shipmentId>:new|cancel:<itemIndexes>`,
`oz:<seller_id>:<posting_number>:new|cancelled|state:<new_state>@<changed_state_date>`; unique per
account in `push_events`. An order is keyed by (account, Order.native_id) on both paths — the YM
orderId, the MM shipmentId, the Ozon posting_number — identical to what polling (`new_orders`) returns,
so cloud_sync.orders never creates one twice.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
import json
import logging
import sqlite3
import threading
from collections.abc import Callable, Mapping
from typing import Any

from flask import Blueprint, Response, request

from cloud_sync.db import connect, lock_wait
from cloud_sync.orders import pushes
from cloud_sync.schema import open_db
from cloud_sync.web.redact import remember as remember_secrets
from marketplaces import open_account, profiles
from marketplaces.base import AccountConfig, AuthError, Marketplace, MarketplaceError, PushTerms

log = logging.getLogger("cloud_sync.web.push")

MAX_BODY = 1 << 20
PING_RECORD_WAIT_S = 0.5  # the longest a ping's answer waits to record its moment (see record_ping): Yandex.Market
# gives its PING 1 s (notification-api/openapi/paths/notification.yaml), Ozon its TYPE_PING 5 s
PUSH_STORE_WAIT_S = 3.0  # the longest a push's answer waits for another writer to store it (see store_bounded)


def _answer(terms: PushTerms, status: int, message: str = "", *, ping: bool = False) -> Response:
    """The answer to a push, in the pushing marketplace's shape (`ping`: to a connection check)."""
    return Response(json.dumps(terms.answer(status, message, ping=ping), ensure_ascii=False), status=status,
                    content_type="application/json")


def _pushers() -> dict[str, PushTerms]:
    """The marketplaces that push order events, by name, with how they push."""
    return {name: p.push for name, p in profiles().items() if p.push is not None}


class PushAccount:
    """What the endpoint needs of one account: its adapter, secret and allowed sources — read as they are
    now, on every push: `current()` gives the account's config of the moment (a push token stored in
    Settings, or any credential reopened there, counts from the next push) and `adapters` the running
    adapters (looked up per push, so a reopened one takes over). Only where the running adapters lack the
    account does it open its own, for parsing, anew whenever the config changed."""

    def __init__(self, config: AccountConfig, terms: PushTerms, adapters: Mapping[str, Marketplace] | None = None,
                 current: Callable[[], AccountConfig] | None = None) -> None:
        self.name = config.name
        self.marketplace = config.marketplace
        self.terms = terms  # how its marketplace pushes: paths, default sources, answers
        self._first = config
        self._current = current
        self._adapters: Mapping[str, Marketplace] = adapters if adapters is not None else {}
        self._own: tuple[AccountConfig, Marketplace] | None = None
        self._lock = threading.Lock()
        self._networks: tuple[AccountConfig, list[Any], list[Any]] | None = None

    @property
    def config(self) -> AccountConfig:
        return self._current() if self._current is not None else self._first

    @property
    def token(self) -> str:
        return str(self.config.credentials.get("push_token") or "")

    def _allowed(self) -> tuple[list[Any], list[Any]]:
        """(sources, trusted proxies) as networks, parsed again only when the config changed."""
        config = self.config
        known = self._networks
        if known is None or known[0] is not config:
            sources = [ipaddress.ip_network(s, strict=False)
                       for s in config.options.get("push_sources", self.terms.sources)]
            proxies = [ipaddress.ip_network(s, strict=False) for s in config.options.get("push_trusted_proxies", [])]
            known = self._networks = (config, sources, proxies)
        return known[1], known[2]

    @property
    def adapter(self) -> Marketplace:
        shared = self._adapters.get(self.name)
        if shared is not None:
            return shared
        config = self.config
        with self._lock:
            if self._own is None or self._own[0] is not config:
                old, self._own = self._own, (config, open_account(config))
                if old is not None and callable(getattr(old[1], "close", None)):
                    old[1].close()  # type: ignore[attr-defined]
            return self._own[1]

    def token_ok(self, given: str) -> bool:
        return bool(self.token) and hmac.compare_digest(self.token.encode(), given.encode())

    def source_ok(self, remote: str, forwarded: str) -> bool:
        sources, proxies = self._allowed()
        if not sources:
            return True
        try:
            addr = ipaddress.ip_address(remote)
            if forwarded and any(addr in p for p in proxies):
                addr = ipaddress.ip_address(forwarded.split(",")[-1].strip())
        except ValueError:
            return False
        return any(addr in net for net in sources)


def create_webhooks_blueprint(db_path: str, accounts: list[AccountConfig], on_event: pushes.OnEvent | None,
                              adapters: Mapping[str, Marketplace] | None = None, *,
                              retry_base_s: float = 1.0,
                              current: Callable[[str], AccountConfig] | None = None) -> Blueprint:
    """The push endpoints for the accounts among `accounts` whose marketplace pushes (its profile's
    `push`). `on_event(account, event)` gets each new event once (after it was stored and acknowledged);
    the blueprint's `push_worker` (a `PushWorker`) runs it. `adapters` is looked up on every push (the
    running ones); `current(name)`, when given, is the account's config of the moment (push token,
    sources), else the config in `accounts` stays. See the module docstring for URLs and answers."""
    open_db(db_path).close()
    pushers = _pushers()
    by_name = {a.name: PushAccount(a, pushers[a.marketplace], adapters,
                                   None if current is None else functools.partial(current, a.name))
               for a in accounts if a.marketplace in pushers}
    worker = pushes.PushWorker(db_path, by_name, on_event, retry_base_s=retry_base_s)
    bp = Blueprint("marketplace_pushes", __name__)
    bp.push_worker = worker  # type: ignore[attr-defined]
    local = threading.local()

    def db() -> sqlite3.Connection:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = connect(db_path)
            conn.execute("PRAGMA synchronous=FULL")  # an acknowledged push survives a power cut
        return conn

    @bp.record_once
    def _started(_state: Any) -> None:
        worker.start()
        worker.wake()  # replay what a previous run left unhandled

    def refuse(account: PushAccount | None, marketplace: str, status: int, message: str) -> Response:
        log.warning("push refused (%s %s): %s", marketplace, account.name if account else "?", message)
        return _answer(pushers[marketplace], status, message)

    def receive(marketplace: str, name: str, token: str, push: str) -> Response:
        account = by_name.get(name)
        if account is None or account.marketplace != marketplace:
            return refuse(None, marketplace, 404, "no such push endpoint")
        remember_secrets([account.token])  # a push token stored in Settings is blanked in the log too
        if not account.token_ok(token):
            return refuse(account, marketplace, 403, "wrong push token")
        if not account.source_ok(request.remote_addr or "", request.headers.get("X-Forwarded-For", "")):
            return refuse(account, marketplace, 403, f"source {request.remote_addr} is not allowed to push")
        if (request.content_length or 0) > MAX_BODY:
            return refuse(account, marketplace, 413, "push body too large")
        body = request.stream.read(MAX_BODY + 1)
        if len(body) > MAX_BODY:
            return refuse(account, marketplace, 413, "push body too large")
        try:
            events = account.adapter.parse_push({"x-push-path": push, **dict(request.headers)}, body)
        except AuthError as exc:
            return refuse(account, marketplace, 403, str(exc))
        except MarketplaceError as exc:
            return refuse(account, marketplace, 400, str(exc))
        except RecursionError:
            return refuse(account, marketplace, 400, "тело не разобрать: слишком глубокая вложенность")
        except (ValueError, OverflowError, TypeError):  # a number too big, a wrong type the parser tripped on
            return refuse(account, marketplace, 400, "тело не разобрать: неверный формат")
        stored = [e for e in events if e.kind != "ping"]
        if stored:
            try:
                new = store_bounded(db(), account, push, body, stored)
            except sqlite3.Error as exc:
                if _locked(exc):  # another write held the store past the bound: retried by the marketplace
                    log.warning("push from %s (%s) not stored within %.0f s: another write holds the store;"
                                " answered 500, the marketplace delivers it again", account.name,
                                account.marketplace, PUSH_STORE_WAIT_S)
                else:
                    log.error("push from %s not stored: %s", account.name, exc)
                return _answer(account.terms, 500, f"temporarily unable to store the {account.terms.noun}")
            if new:
                worker.wake()
        ping = bool(events) and not stored
        if ping:  # the cabinet's «Check» (or a periodic one): its moment shown in Settings
            record_ping(account)
        return _answer(account.terms, 200, ping=ping)

    def store_bounded(conn: sqlite3.Connection, account: PushAccount, push: str, body: bytes,
                      events: list[Any]) -> int:
        """`pushes.store_events`, waiting for another writer at most PUSH_STORE_WAIT_S: on SQLite the
        connection's busy_timeout lowered around it; on PostgreSQL its keyed transaction (no store-wide writer
        lock of its own) with the session's lock_timeout set around it. Both given back afterwards (the
        connection serves this thread's next push; a pooled one is reset when given back too). Past the bound:
        `sqlite3.OperationalError` "database is locked", nothing stored (the transaction rolled back); the
        push is answered 500 and the marketplace delivers it again — never a late 200.

        The bound comes from the marketplaces' answer times: Ozon pauses ALL notifications of a service whose
        processing takes longer than 5 s (ozon-seller-api-swagger.json, tag push_resending: «notification
        processing time is longer than 5 seconds»); Yandex.Market waits 10 s for an ordinary notification's
        answer (notification-api/openapi/paths/notification.yaml: «Таймаут на получение ответа: 10 секунд для
        обычных уведомлений и 1 секунда для проверочного уведомления PING»); Megamarket asks for a quick answer
        and documents no figure (specs/megamarket/README.md §5.1: «Seller must answer quickly»). 3 s leaves
        Ozon's 5 s two for the rest: parsing, the commit's sync (synchronous=FULL), the network."""
        with lock_wait(conn, PUSH_STORE_WAIT_S):
            return pushes.store_events(conn, account.name, account.marketplace, push, body, events)

    def record_ping(account: PushAccount) -> None:
        """One tiny UPSERT, waiting for SQLite's write lock at most PING_RECORD_WAIT_S (a long write elsewhere
        must not hold the answer: Ozon pauses every notification of a service answering in more than 5 s; on
        PostgreSQL the lone statement takes no writer lock); not recorded, the check is still answered — the
        marketplace reached us."""
        try:
            with lock_wait(db(), PING_RECORD_WAIT_S) as conn:
                pushes.record_ping(conn, account.name, account.marketplace)
        except sqlite3.Error as exc:
            log.warning("ping from %s not recorded: %s", account.name, exc)

    for marketplace, terms in pushers.items():
        for path in terms.paths:
            bp.add_url_rule(f"/push/{marketplace}/<name>/<token>/{path}", endpoint=f"{marketplace}:{path}",
                            view_func=functools.partial(receive, marketplace, push=path), methods=["POST"])
    return bp


def _locked(exc: sqlite3.Error) -> bool:
    """Whether a store's failure is its wait for another writer running out (SQLite's busy timeout, or
    PostgreSQL's lock_timeout, which `cloud_sync.pg` says in SQLite's words)."""
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc).lower()


def create_blueprint(cfg: Any, adapters: Mapping[str, Marketplace], on_event: pushes.OnEvent | None) -> Blueprint:
    """The factory cloud_sync.app calls: accounts and database from the CloudConfig. Each push reads the
    account's config as it is then (`cfg.accounts[name].account`, which a reopen from Settings replaces:
    a push token stored there counts from the next push) and the running adapter from `adapters`."""
    accounts = [s.account for s in cfg.accounts.values()]
    return create_webhooks_blueprint(cfg.db_path, accounts, on_event, adapters,
                                     retry_base_s=float(getattr(cfg.jobs, "retry_base_s", 1.0) or 1.0),
                                     current=lambda name: cfg.accounts[name].account)


def push_url(base_url: str, account: AccountConfig) -> str:
    """Where the marketplace must push for this account (register it in the cabinet / sandbox); the
    marketplace appends its own paths (its profile's `push.paths`: Yandex.Market /notification,
    Megamarket /order/new and /order/cancel); Ozon takes one URL: this one + /notification."""
    return pushes.push_root(base_url, account.marketplace, account.name, account.credentials.get("push_token", ""))
