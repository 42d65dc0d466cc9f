"""The cloud's web app: the JSON API for orders, stock, cards and sites (the manager UI pages register
their own blueprints on the same app), and the marketplaces' push endpoints (cloud_sync/webhooks.py)
when that part is present.

`create_app(config, ...)` keeps what the routes need in `app.extensions["marketsync"]` (a `Context`):
the config, the database path, the account adapters, the site link and the stock pusher. Each request
opens its own SQLite connection (WAL: readers never wait for the writers).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from cloud_sync.catalog import cards as catalog
from cloud_sync.config import CloudConfig
from cloud_sync.db import connect, transaction
from cloud_sync.orders import handovers, intake, listing, records
from cloud_sync.schema import open_db
from cloud_sync.stock import ledger, why
from cloud_sync.stock import push as stock_push
from marketplaces.base import Marketplace, MarketplaceError

log = logging.getLogger("cloud_sync.web.app")


@dataclass
class Context:
    cfg: CloudConfig
    db_path: str
    adapters: Mapping[str, Marketplace] = field(default_factory=dict)  # a sync.AccountAdapters
    link: Any = None
    pusher: Any = None
    jobs: Any = None

    def wake(self) -> None:
        if self.pusher is not None:
            self.pusher.wake()


class ApiError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def ctx() -> Context:
    return current_app.extensions["marketsync"]


def db() -> sqlite3.Connection:
    if "ms_db" not in g:
        g.ms_db = connect(ctx().db_path)
    return g.ms_db


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise ApiError("the request body must be a JSON object")
    return data


def _int_arg(name: str, default: int) -> int:
    """A whole-number query parameter, or a 400 naming it."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(f"query parameter {name!r} must be a whole number, got {raw!r}") from None
    if value < 0:
        raise ApiError(f"query parameter {name!r} must not be negative")
    return value


def _need(data: dict[str, Any], *names: str) -> list[Any]:
    missing = [n for n in names if n not in data]
    if missing:
        raise ApiError(f"missing field(s): {', '.join(missing)}")
    return [data[n] for n in names]


def _text(data: dict[str, Any], name: str) -> str:
    """A required field that must be a string (a list or an object there is a 400, not a crash)."""
    value = _need(data, name)[0]
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise ApiError(f"{name} must be a string")
    return str(value)


def _whole(data: dict[str, Any], name: str, default: int | None = None) -> int:
    """A whole-number field (a number or its digits as text), or a 400 naming it."""
    value = data.get(name, default) if default is not None else _need(data, name)[0]
    try:
        if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
            raise ValueError
        return int(value)
    except (TypeError, ValueError):
        raise ApiError(f"{name} must be a whole number, got {value!r}") from None


def _known_stock_place(conn: sqlite3.Connection, warehouse: str, items: list[str]) -> None:
    """Balances go to an own warehouse (configured, or one the ledger already keeps) and to 1C items
    that exist: a typo must not open a warehouse or an item of its own (422, nothing applied)."""
    if warehouse not in ctx().cfg.own_warehouses() and conn.execute(
            "SELECT 1 FROM stock_levels WHERE warehouse=? LIMIT 1", (warehouse,)).fetchone() is None:
        raise ApiError(f"unknown warehouse {warehouse!r} (own warehouses: {', '.join(ctx().cfg.own_warehouses())});"
                       " nothing applied", 422)
    unknown = [i for i in items if conn.execute("SELECT 1 FROM items WHERE id=?", (str(i),)).fetchone() is None]
    if unknown:
        raise ApiError(f"{len(unknown)} unknown 1C item id(s), e.g. {unknown[0]!r}; nothing applied", 422)


def create_app(config: CloudConfig, *, db_path: str | None = None, adapters: Mapping[str, Marketplace] | None = None,
               link: Any = None, pusher: Any = None, jobs: Any = None) -> Flask:
    app = Flask("marketsync.cloud")
    path = db_path or config.db_path
    open_db(path).close()
    from cloud_sync.service.accounts import AccountAdapters

    # the service's own holder is shared (Settings swaps an account's adapter in it for everyone)
    shared = adapters if isinstance(adapters, AccountAdapters) else AccountAdapters(config, adapters)
    context = Context(config, path, shared, link, pusher, jobs)
    app.extensions["marketsync"] = context
    from cloud_sync.web import auth

    auth.install(app)  # logins, sessions, CSRF, roles, API tokens (cloud_sync/auth.py): deny by default

    @app.teardown_appcontext
    def _close(_exc: BaseException | None) -> None:
        conn = g.pop("ms_db", None)
        if conn is not None:
            conn.close()

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException):
        """Not found, method not allowed...: JSON for the API, a page of the UI for the pages (Flask's bare
        English page otherwise); the push and 1C endpoints keep their own answers."""
        from cloud_sync.web.auth import OWN_AUTH_PATHS

        if exc.code is None or exc.code < 400 or request.path.startswith(OWN_AUTH_PATHS):
            return exc
        if request.path.startswith("/api/"):
            return jsonify({"error": f"{exc.name}: {exc.description}"}), exc.code
        return render_template("cloud/refused.html", heading=exc.name, message=exc.description), exc.code

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return jsonify({"error": str(exc)}), exc.status

    @app.errorhandler(ledger.StockError)
    @app.errorhandler(catalog.CatalogError)
    @app.errorhandler(records.OrderError)
    def _refused(exc: ValueError):
        return jsonify({"error": str(exc)}), 422

    @app.errorhandler(MarketplaceError)
    def _mp_error(exc: MarketplaceError):
        return jsonify({"error": str(exc)}), 502

    # ------------------------------------------------------------ health and summary

    @app.get("/api/health")
    def health():
        """Open to anyone (a load balancer, a monitor) for liveness; the accounts, the link and the jobs
        with their last errors only to a signed-in user or an API token."""
        if g.get("user") is None:
            return jsonify({"ok": True})
        c = ctx()
        return jsonify({"ok": True, "accounts": sorted(c.cfg.accounts),
                        "link": c.link.status() if c.link is not None else None,
                        "jobs": c.jobs.status() if c.jobs is not None else []})

    @app.get("/api/summary")
    def summary():
        return jsonify(listing.summary(db()))

    @app.get("/api/events")
    def events():
        """What happened, in plain words, after event id `after` (the demo prints these)."""
        after = _int_arg("after", 0)
        limit = min(_int_arg("limit", 200), 1000)
        return jsonify({"events": listing.events_after(db(), after, limit)})

    # ------------------------------------------------------------ orders

    @app.get("/api/orders")
    def list_orders():
        a = request.args
        return jsonify(listing.list_orders(db(), account=a.get("account"), status=a.get("status"),
                                          limit=min(_int_arg("limit", 200), 5000), offset=_int_arg("offset", 0)))

    @app.get("/api/orders/<path:key>")
    def get_order(key: str):
        o = listing.get_order(db(), key)
        if o is None:
            raise ApiError(f"unknown order {key!r}", 404)
        o.pop("native", None)
        return jsonify(o)

    @app.post("/api/orders/<path:key>/cancel")
    def cancel_order(key: str):
        conn, c = db(), ctx()
        data = request.get_json(silent=True)
        reason = (data if isinstance(data, dict) else {}).get("reason") or "cancelled by the seller"
        with transaction(conn):
            row = conn.execute("SELECT id FROM orders WHERE key=?", (key,)).fetchone()
            if row is None:
                raise ApiError(f"unknown order {key!r}", 404)
            released = intake.cancel(conn, c.cfg, row[0], reason=str(reason), link=c.link)
        c.wake()
        return jsonify({"cancelled": key, "released": released})

    @app.post("/api/handovers")
    def start_handover():
        account = _text(_body(), "account")
        c = ctx()
        if account not in c.cfg.accounts:
            raise ApiError(f"unknown account {account!r}", 404)
        return jsonify(handovers.start_handover(db(), c.cfg, str(account), link=c.link))

    # ------------------------------------------------------------ stock

    @app.get("/api/stock")
    def stock_levels():
        a = request.args
        return jsonify([{**lv.__dict__, "available": lv.available}
                        for lv in ledger.levels(db(), item_id=a.get("item"), warehouse=a.get("warehouse"))])

    @app.get("/api/stock/why")
    def stock_why():
        item, account = request.args.get("item"), request.args.get("account")
        if not item or not account:
            raise ApiError("give item and account")
        ex = why.why(db(), ctx().cfg, item, account)
        return jsonify({"item_id": ex.item_id, "account": ex.account, "published": ex.published, "lines": ex.lines})

    @app.post("/api/stock/balances")
    def stock_balances():
        warehouse, balances = _need(_body(), "warehouse", "balances")
        if not isinstance(balances, dict):
            raise ApiError("balances must be an object {item_id: quantity}")
        conn = db()
        _known_stock_place(conn, str(warehouse), list(balances))
        with transaction(conn):
            n = ledger.set_balances(conn, str(warehouse), balances, full=bool(request.get_json().get("full")),
                                   source="manual")
        ctx().wake()
        return jsonify({"moves": n})

    @app.get("/api/stock/push")
    def stock_push_state():
        conn = db()
        return jsonify({"queue": stock_push.pending(conn), "holds": stock_push.holds(conn)})

    @app.post("/api/stock/holds/<int:hold_id>/confirm")
    def confirm_hold(hold_id: int):
        who = (request.get_json(silent=True) or {}).get("by", "api")
        try:
            n = stock_push.confirm_hold(db(), hold_id, by=str(who))
        except ValueError as exc:
            raise ApiError(str(exc), 404) from exc
        ctx().wake()
        return jsonify({"released": n})

    # ------------------------------------------------------------ cards

    @app.get("/api/cards")
    def list_cards():
        a = request.args
        linked = {"1": True, "true": True, "0": False, "false": False}.get(a.get("linked", ""))
        return jsonify([c.__dict__ for c in catalog.cards(db(), account=a.get("account"), item_id=a.get("item"),
                                                          category=a.get("category"), linked=linked)])

    @app.get("/api/cards/categories")
    def card_categories():
        return jsonify(catalog.categories(db(), request.args.get("account")))

    @app.get("/api/cards/report")
    def link_report():
        conn = db()
        with transaction(conn):  # auto_link links what it can, then reports the rest
            report = catalog.auto_link(conn, request.args.get("account"))
        ctx().wake()
        return jsonify(report.as_dict())

    @app.post("/api/cards/link")
    def link_card():
        data = _body()
        account, card_id, item_id = _need(data, "account", "card_id", "item_id")
        conn = db()
        with transaction(conn):
            catalog.link(conn, str(account), str(card_id), str(item_id), data.get("pack", 1))
        ctx().wake()
        return jsonify({"linked": card_id, "item_id": item_id})

    @app.post("/api/cards/unlink")
    def unlink_card():
        account, card_id = _need(_body(), "account", "card_id")
        conn = db()
        with transaction(conn):
            catalog.unlink(conn, str(account), str(card_id))
        ctx().wake()
        return jsonify({"unlinked": card_id})

    @app.post("/api/cards/visibility")
    def card_visibility():
        data = _body()
        account, (card_ids, visible) = _text(data, "account"), _need(data, "card_ids", "visible")
        if not isinstance(card_ids, list) or not card_ids:
            raise ApiError("card_ids must be a non-empty list of card ids")
        adapter = ctx().adapters.get(account)
        if adapter is None:
            raise ApiError(f"unknown account {account!r}", 404)
        conn = db()
        with transaction(conn):
            results = catalog.set_visibility(conn, adapter, account, [str(c) for c in card_ids], bool(visible))
        ctx().wake()
        return jsonify([r.__dict__ for r in results])

    @app.post("/api/cards/create")
    def create_card():
        """Create a (Wildberries) card from an item; the jobs follow its asynchronous result to the end."""
        data = _body()
        account, item_id = _text(data, "account"), _text(data, "item_id")
        subject_id, price = _whole(data, "subject_id"), _whole(data, "price", 0)
        characteristics = data.get("characteristics", [])
        if subject_id <= 0 or price < 0 or not isinstance(characteristics, list):
            raise ApiError("subject_id must be positive, price 0 or more, characteristics a list")
        adapter = ctx().adapters.get(account)
        if adapter is None:
            raise ApiError(f"unknown account {account!r}", 404)
        conn = db()
        new = catalog.new_card_from_item(conn, item_id, subject_id, brand=str(data.get("brand", "")), price=price,
                                         characteristics=characteristics)
        result = adapter.create_card(new)  # the marketplace call outside the write lock
        with transaction(conn):
            catalog.record_creation(conn, adapter.name, account, item_id, result)
        return jsonify({"offer_id": result.offer_id, "state": result.state, "errors": result.errors})

    @app.get("/api/cards/creations")
    def card_creations():
        return jsonify(catalog.creations(db(), request.args.get("account")))

    # ------------------------------------------------------------ sites

    @app.get("/api/sites")
    def sites():
        """What the Sites page shows: online or not, last seen, queue depth, the devices' reports (a list)."""
        from cloud_sync.web.pages.sites import site_rows

        return jsonify(site_rows())

    _register_webhooks(app, context)
    from cloud_sync.web import onec as onec_web

    onec_web.register(app, config, path)  # the 1C exchange (when cloud.toml has [onec]) and the print forms
    from cloud_sync.web import openapi
    from cloud_sync.web import pages as ui
    from cloud_sync.web.pages import api as ui_api

    ui.register(app)  # the manager's pages
    app.register_blueprint(ui_api.blueprint())
    openapi.register(app)
    return app


def _register_webhooks(app: Flask, context: Context) -> None:
    """The marketplaces' push endpoints, wired to order ingestion (deduplicated with polling)."""
    try:
        from cloud_sync.web import push as webhooks
    except ImportError:
        return
    factory = getattr(webhooks, "create_blueprint", None) or getattr(webhooks, "blueprint", None)
    if factory is None:
        log.warning("cloud_sync.webhooks has no blueprint factory; pushes are not received")
        return

    def on_event(account: str, event: Any) -> str:
        conn = connect(context.db_path)
        try:
            outcome = intake.ingest_event(conn, context.cfg, account, event, adapter=context.adapters.get(account),
                                          link=context.link)
        finally:
            conn.close()
        context.wake()
        return outcome

    app.register_blueprint(factory(context.cfg, context.adapters, on_event))
