"""The cloud's JSON API, every `/api/...` route in one place (described in cloud_sync/web/openapi.py;
`/api/me` is the auth blueprint's, `/api/openapi.json` the document's own): health and summary, events,
orders (one, a list, cancel, bulk actions), hand-overs, stock (levels, why, balances, the push queue and
the zero guard's holds), cards (list, categories, links, visibility, creation), sites, prices (the price
list, price documents previewed and applied, rules), the commission report and the stored secrets.

Views are thin: they read the request (cloud_sync.web.context), call the domain rooms and answer JSON;
a refusal is {"error": ...} with its status (ApiError, or the app's error handlers)."""

from __future__ import annotations

import json
import re
import sqlite3
from datetime import date

from flask import Blueprint, g, jsonify, request

from cloud_sync import leases
from cloud_sync.access import secrets
from cloud_sync.catalog import card_fill
from cloud_sync.catalog import cards as catalog
from cloud_sync.db import transaction
from cloud_sync.money import price_apply, price_docs, price_preview, price_rules, reports
from cloud_sync.money import price_list as money_price_list
from cloud_sync.money.economics import Estimates
from cloud_sync.onec import items_out
from cloud_sync.orders import desk as order_desk
from cloud_sync.orders import handovers, intake, listing, records, waiting
from cloud_sync.stock import ledger, why
from cloud_sync.stock import push as stock_push
from cloud_sync.web.auth import current_user
from cloud_sync.web.context import (
    ApiError,
    ctx,
    get_db,
    json_body,
    required,
    text_field,
    whole_arg,
    whole_field,
)
from cloud_sync.web.settings_in_use import credentials_stored, use_bot_token
from cloud_sync.web.site_status import site_rows
from marketplaces.base import CardMaker, MarketplaceError, NotSupported

bp = Blueprint("api", __name__)


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


def _price_document(data: dict) -> price_docs.PriceDocument:
    """A price document from a request body, for a configured account (422 / 404 otherwise)."""
    try:
        doc = price_docs.parse_document(data)
    except price_docs.PriceDocumentError as exc:
        raise ApiError("; ".join(exc.problems), 422) from None
    if doc.account not in ctx().cfg.accounts:
        raise ApiError(f"unknown account {doc.account!r}", 404)
    return doc


# ------------------------------------------------------------ health and summary

@bp.get("/api/health")
def health():
    """Open to anyone (a load balancer, a monitor) for liveness; the accounts, the link and the jobs
    with their last errors only to an owner or a manager (signed in or by API token), never a packer."""
    user = g.get("user")
    if user is None or user.role not in ("owner", "manager"):
        return jsonify({"ok": True})
    c = ctx()
    conn = get_db()
    try:  # several cloud processes on one store: this one, the live ones and who runs which job
        cluster = {"process": leases.me(), "processes": leases.alive(conn), "leases": leases.table(conn)}
    except sqlite3.Error:
        cluster = {"process": leases.me()}
    return jsonify({"ok": True, "accounts": sorted(c.cfg.accounts),
                    "link": c.link.status() if c.link is not None else None,
                    "jobs": c.jobs.status() if c.jobs is not None else [], **cluster})


@bp.get("/api/summary")
def summary():
    return jsonify(listing.summary(get_db()))


@bp.get("/api/events")
def events():
    """What happened, in plain words, after event id `after` (the demo prints these)."""
    after = whole_arg("after", 0)
    limit = min(whole_arg("limit", 200), 1000)
    return jsonify({"events": listing.events_after(get_db(), after, limit)})


# ------------------------------------------------------------ orders

@bp.get("/api/orders")
def list_orders():
    a = request.args
    return jsonify(listing.list_orders(get_db(), account=a.get("account"), status=a.get("status"),
                                      limit=min(whole_arg("limit", 200), 5000), offset=whole_arg("offset", 0)))


@bp.get("/api/orders/<path:key>")
def get_order(key: str):
    o = listing.get_order(get_db(), key)
    if o is None:
        raise ApiError(f"unknown order {key!r}", 404)
    o.pop("native", None)
    return jsonify(o)


@bp.post("/api/orders/<path:key>/cancel")
def cancel_order(key: str):
    conn, c = get_db(), ctx()
    data = request.get_json(silent=True)
    reason = (data if isinstance(data, dict) else {}).get("reason") or "cancelled by the seller"
    with transaction(conn):
        row = conn.execute("SELECT id FROM orders WHERE key=?", (key,)).fetchone()
        if row is None:
            raise ApiError(f"unknown order {key!r}", 404)
        released = intake.cancel(conn, c.cfg, row[0], reason=str(reason), link=c.link)
    c.wake()
    return jsonify({"cancelled": key, "released": released})


@bp.post("/api/orders/<path:key>/retry")
def retry_order(key: str):
    """A waiting order checked again now (orders with an earlier deadline first)."""
    conn, c, user = get_db(), ctx(), current_user()
    try:
        with transaction(conn):
            outcome = waiting.retry(conn, c.cfg, key, by=user.name if user else "api", link=c.link)
    except records.OrderError as exc:
        raise ApiError(str(exc), 404 if isinstance(exc, waiting.UnknownOrder) else 422) from None
    c.wake()
    return jsonify({"order": key, "served": outcome == "served", "reason": "" if outcome == "served" else outcome})


@bp.get("/api/orders/<path:key>/choices")
def order_choices(key: str):
    """What a seller can do with a waiting order: wait, cancel, serve from another warehouse."""
    try:
        return jsonify(waiting.choices(get_db(), ctx().cfg, key))
    except records.OrderError as exc:
        raise ApiError(str(exc), 404) from None


@bp.post("/api/orders/<path:key>/serve-from")
def serve_order_from(key: str):
    """Serve a waiting order from another own warehouse (body: {"warehouse": ...})."""
    warehouse = text_field(json_body(), "warehouse")
    conn, c, user = get_db(), ctx(), current_user()
    try:
        with transaction(conn):
            waiting.serve_from(conn, c.cfg, key, str(warehouse), by=user.name if user else "api", link=c.link)
    except records.OrderError as exc:
        raise ApiError(str(exc), 404 if isinstance(exc, waiting.UnknownOrder) else 422) from None
    c.wake()
    return jsonify({"order": key, "served": True, "warehouse": warehouse})


@bp.post("/api/orders/bulk")
def bulk_orders():
    data = json_body()
    keys = data.get("keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ApiError("keys must be a list of order keys")
    user = current_user()
    try:
        res = order_desk.run(get_db(), ctx().cfg, str(data.get("action", "")), keys,
                             by=user.name if user else "api", reason=str(data.get("reason", "")), link=ctx().link)
    except order_desk.DeskError as exc:
        raise ApiError(str(exc), 422) from None
    ctx().wake()
    return jsonify({"done": res.done, "skipped": res.skipped})


@bp.post("/api/handovers")
def start_handover():
    account = text_field(json_body(), "account")
    c = ctx()
    if account not in c.cfg.accounts:
        raise ApiError(f"unknown account {account!r}", 404)
    return jsonify(handovers.start_handover(get_db(), c.cfg, str(account), link=c.link))


# ------------------------------------------------------------ stock

@bp.get("/api/stock")
def stock_levels():
    a = request.args
    return jsonify([{**lv.__dict__, "available": lv.available}
                    for lv in ledger.levels(get_db(), item_id=a.get("item"), warehouse=a.get("warehouse"))])


@bp.get("/api/stock/why")
def stock_why():
    item, account = request.args.get("item"), request.args.get("account")
    if not item or not account:
        raise ApiError("give item and account")
    ex = why.why(get_db(), ctx().cfg, item, account)
    return jsonify({"item_id": ex.item_id, "account": ex.account, "published": ex.published, "lines": ex.lines})


@bp.post("/api/stock/balances")
def stock_balances():
    warehouse, balances = required(json_body(), "warehouse", "balances")
    if not isinstance(balances, dict):
        raise ApiError("balances must be an object {item_id: quantity}")
    conn = get_db()
    _known_stock_place(conn, str(warehouse), list(balances))
    with transaction(conn):
        n = ledger.set_balances(conn, str(warehouse), balances, full=bool(request.get_json().get("full")),
                               source="manual")
    ctx().wake()
    return jsonify({"moves": n})


@bp.get("/api/stock/push")
def stock_push_state():
    conn = get_db()
    return jsonify({"queue": stock_push.pending(conn), "holds": stock_push.holds(conn)})


@bp.post("/api/stock/holds/<int:hold_id>/confirm")
def confirm_hold(hold_id: int):
    body = request.get_json(silent=True)
    who = body.get("by", "api") if isinstance(body, dict) else "api"  # a list or a number there: not a crash
    try:
        n = stock_push.confirm_hold(get_db(), hold_id, by=str(who))
    except ValueError as exc:
        raise ApiError(str(exc), 404) from exc
    ctx().wake()
    return jsonify({"released": n})


# ------------------------------------------------------------ cards

@bp.get("/api/cards")
def list_cards():
    a = request.args
    linked = {"1": True, "true": True, "0": False, "false": False}.get(a.get("linked", ""))
    return jsonify([c.__dict__ for c in catalog.cards(get_db(), account=a.get("account"), item_id=a.get("item"),
                                                      category=a.get("category"), linked=linked)])


@bp.get("/api/cards/categories")
def card_categories():
    return jsonify(catalog.categories(get_db(), request.args.get("account")))


@bp.get("/api/cards/report")
def link_report():
    conn = get_db()
    with transaction(conn):  # auto_link links what it can, then reports the rest
        report = catalog.auto_link(conn, request.args.get("account"))
    ctx().wake()
    return jsonify(report.as_dict())


@bp.post("/api/cards/link")
def link_card():
    data = json_body()
    account, card_id, item_id = required(data, "account", "card_id", "item_id")
    conn = get_db()
    with transaction(conn):
        catalog.link(conn, str(account), str(card_id), str(item_id), data.get("pack", 1))
    ctx().wake()
    return jsonify({"linked": card_id, "item_id": item_id})


@bp.post("/api/cards/unlink")
def unlink_card():
    account, card_id = required(json_body(), "account", "card_id")
    conn = get_db()
    with transaction(conn):
        catalog.unlink(conn, str(account), str(card_id))
    ctx().wake()
    return jsonify({"unlinked": card_id})


@bp.post("/api/cards/visibility")
def card_visibility():
    data = json_body()
    account, (card_ids, visible) = text_field(data, "account"), required(data, "card_ids", "visible")
    if not isinstance(card_ids, list) or not card_ids:
        raise ApiError("card_ids must be a non-empty list of card ids")
    adapter = ctx().adapters.get(account)
    if adapter is None:
        raise ApiError(f"unknown account {account!r}", 404)
    conn = get_db()
    try:
        with transaction(conn):
            results = catalog.set_visibility(conn, adapter, account, [str(c) for c in card_ids], bool(visible))
    except NotSupported as exc:
        raise ApiError(exc.for_seller(), 409) from None
    ctx().wake()
    return jsonify([r.__dict__ for r in results])


def _card_maker(account: str) -> CardMaker:
    adapter = ctx().adapters.get(account)
    if adapter is None:
        raise ApiError(f"unknown account {account!r}", 404)
    if not isinstance(adapter, CardMaker):
        raise ApiError(f"account {account!r}: its marketplace does not create cards through its API", 400)
    return adapter


@bp.get("/api/cards/marketplace-categories/<account>")
def marketplace_categories(account: str):
    """The marketplace's categories (WB subjects) whose name holds `?name=`."""
    adapter = _card_maker(account)
    try:
        found = adapter.categories(request.args.get("name", ""))
    except MarketplaceError as exc:
        raise ApiError(str(exc), 502) from None
    return jsonify([c.__dict__ for c in found])


@bp.get("/api/cards/fill-rules/<account>/<category_id>")
def card_fill_rules(account: str, category_id: str):
    """The category's characteristics (required or not) with the seller's fill rule of each."""
    adapter = _card_maker(account)
    try:
        attributes = adapter.category_attributes(category_id)
    except MarketplaceError as exc:
        raise ApiError(str(exc), 502) from None
    saved = card_fill.rules(get_db(), adapter.name, category_id)
    return jsonify([dict(a.__dict__, property=saved[a.id].property if a.id in saved else "",
                         value=saved[a.id].value if a.id in saved else "") for a in attributes])


@bp.put("/api/cards/fill-rules/<account>/<category_id>")
def save_card_fill_rules(account: str, category_id: str):
    """Replace the category's fill rules: {"rules": [{"attribute_id", "property"?, "value"?}]}."""
    adapter = _card_maker(account)
    rows = json_body().get("rules")
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "attribute_id" in r for r in rows):
        raise ApiError("rules must be a list of {attribute_id, property, value}")
    try:
        known = {a.id: a.name for a in adapter.category_attributes(category_id)}
    except MarketplaceError as exc:
        raise ApiError(str(exc), 502) from None
    unknown = [r["attribute_id"] for r in rows if r["attribute_id"] not in known]
    if unknown:
        raise ApiError(f"характеристик {unknown} нет в категории {category_id}")
    conn = get_db()
    with transaction(conn):
        card_fill.save_rules(conn, adapter.name, category_id, [
            card_fill.FillRule(int(r["attribute_id"]), known[r["attribute_id"]], str(r.get("property") or ""),
                               str(r.get("value") or "")) for r in rows])
    return jsonify({"saved": len(rows)})


@bp.post("/api/cards/create")
def create_card():
    """Create a card from a 1C item in a category, filled by the category's rules (required characteristics
    and dimensions checked before sending); the jobs follow its asynchronous result to the end."""
    data = json_body()
    account, item_id = text_field(data, "account"), text_field(data, "item_id")
    price = whole_field(data, "price", 0)
    # the category: a WB subject id, or any marketplace's Category.id as `category_id` (Ozon "desc:type")
    category = text_field(data, "category_id") if "category_id" in data else str(whole_field(data, "subject_id"))
    photos = data.get("photos", [])
    if not re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", category) or price < 0 or not isinstance(photos, list) \
            or not all(isinstance(u, str) for u in photos):
        raise ApiError("subject_id (or category_id) must be a positive id, price 0 or more, photos a list of URLs")
    adapter = _card_maker(account)
    conn = get_db()
    try:
        attributes = adapter.category_attributes(category)
        new = card_fill.new_card(conn, adapter.name, item_id, category, attributes,
                                 brand=str(data.get("brand", "")), price=price, size=str(data.get("size") or "0"),
                                 description=str(data.get("description", "")), photos=photos)
        result = catalog.start_creation(adapter, new)  # the marketplace call outside the write lock
    except card_fill.CardFillError as exc:
        raise ApiError(str(exc), 422) from None
    except MarketplaceError as exc:
        raise ApiError(str(exc), 502) from None
    with transaction(conn):
        catalog.record_creation(conn, adapter.name, account, item_id, result, photos=new.photos)
    return jsonify({"offer_id": result.offer_id, "state": result.state, "errors": result.errors})


@bp.get("/api/onec/new-items")
def onec_new_items():
    """Cards into 1C, the preview: the 1C items the cards that match no 1C item would make."""
    return jsonify({"items": [i.as_dict() for i in items_out.proposals(get_db(), request.args.get("account"))],
                    "onec_odata": ctx().cfg.onec is not None and ctx().cfg.onec.odata is not None})


@bp.post("/api/onec/new-items")
def onec_create_items():
    """Cards into 1C: create the previewed items (or `articles`) in 1C through OData, then link the cards."""
    section = ctx().cfg.onec.odata if ctx().cfg.onec is not None else None
    if section is None:
        raise ApiError("в cloud.toml нет [onec.odata]: укажите адрес OData базы 1С", 409)
    wanted = json_body().get("articles")
    if wanted is not None and (not isinstance(wanted, list) or not all(isinstance(a, str) for a in wanted)):
        raise ApiError("articles must be a list of articles")
    conn = get_db()
    batch = [i for i in items_out.proposals(conn) if wanted is None or i.article in wanted]
    if not batch:
        raise ApiError("нечего создавать: все карточки связаны с товарами 1С", 409)
    outcomes = items_out.create_in_1c(batch, items_out.item_settings(section))  # HTTP outside the write lock
    with transaction(conn):
        linked = items_out.record(conn, batch, outcomes)
    ctx().wake()
    return jsonify({"outcomes": [o.__dict__ for o in outcomes],
                    "linked": linked.linked_by_barcode + linked.linked_by_article})


@bp.get("/api/cards/creations")
def card_creations():
    return jsonify(catalog.creations(get_db(), request.args.get("account")))


# ------------------------------------------------------------ sites

@bp.get("/api/sites")
def sites():
    """What the Sites page shows: online or not, last seen, queue depth, the devices' reports (a list)."""
    return jsonify(site_rows())


# ------------------------------------------------------------ prices

@bp.get("/api/prices/<account>")
def price_list(account: str):
    if account not in ctx().cfg.accounts:
        raise ApiError(f"unknown account {account!r}", 404)
    return jsonify(money_price_list.price_list(get_db(), account, Estimates.from_settings(ctx().cfg.pricing)))


@bp.post("/api/prices/preview")
def price_preview_doc():
    doc = _price_document(json_body())
    pv = price_preview.preview(get_db(), doc, settings=ctx().cfg.pricing,
                         marketplace=ctx().cfg.accounts[doc.account].marketplace)
    return jsonify({"ok": pv.ok, "errors": pv.all_errors, "warnings": pv.warnings, "to_confirm": pv.to_confirm,
                    "rows": pv.as_table()})


@bp.post("/api/prices/apply")
def price_apply_doc():
    data = json_body()
    confirm = bool(data.pop("confirm", False))
    doc = _price_document(data)
    adapter = ctx().adapters.get(doc.account)
    if adapter is None:
        raise ApiError(f"account {doc.account!r} is not connected", 409)
    try:
        res = price_apply.apply(get_db(), doc, adapter, confirm=confirm,
                            settings=ctx().cfg.pricing)
    except price_docs.ConfirmationRequired as exc:
        return jsonify({"error": str(exc), "to_confirm": exc.problems}), 409
    except price_docs.PriceDocumentError as exc:
        return jsonify({"error": str(exc), "problems": exc.problems}), 422
    return jsonify({"document_id": res.document_id, "status": res.status, "unchanged": res.unchanged,
                    "results": [{"card_id": r.card_id, "offer_id": r.offer_id, "ok": r.ok, "error": r.error,
                                 "price": None if r.price is None else str(r.price)} for r in res.results]})


@bp.post("/api/prices/rules")
def add_price_rule():
    data = json_body()
    account, text = str(data.get("account", "")), str(data.get("rule", ""))
    if account not in ctx().cfg.accounts:
        raise ApiError(f"unknown account {account!r}", 404)
    try:
        rule = price_rules.add_rule(get_db(), account=account, text=text, tz=str(data.get("tz") or "Europe/Moscow"))
    except (price_rules.RuleError, ValueError) as exc:
        raise ApiError(str(exc), 422) from None
    return jsonify({"id": rule.id, "name": rule.name, "start": rule.start_at, "end": rule.end_at})


# ------------------------------------------------------------ reports

@bp.get("/api/reports/commission")
def commission_report():
    a = request.args
    adapter = ctx().adapters.get(a.get("account", ""))
    if adapter is None:
        raise ApiError("give a connected account", 404)
    try:
        d_from, d_to = date.fromisoformat(a.get("from", "")), date.fromisoformat(a.get("to", ""))
        report = reports.fetch_commission_report(get_db(), adapter, d_from, d_to)
    except NotSupported as exc:  # the marketplace offers no report: an answer, in the seller's words
        raise ApiError(exc.for_seller(), 409) from None
    except ValueError as exc:
        raise ApiError(f"from/to: {exc}", 422) from None
    except MarketplaceError as exc:
        raise ApiError(str(exc), 502) from None
    headers, rows = reports.commission_table(report)
    return jsonify({"id": report.id, "reconciled": report.reconciled, "headers": headers,
                    "rows": [[str(v) if v is not None else None for v in r] for r in rows]})


@bp.post("/api/reports/builds")
def queue_report_build():
    """Ask for a commission report built in the background: {"account", "from", "to"} -> 202 {"id",
    "state"}; follow it at GET /api/reports/builds/<id> (the service's jobs build it)."""
    data = json_body()
    account = data.get("account")
    if not isinstance(account, str) or account not in ctx().adapters:
        raise ApiError("give a connected account", 404)
    try:
        d_from, d_to = date.fromisoformat(str(data.get("from", ""))), date.fromisoformat(str(data.get("to", "")))
        build_id = reports.queue_build(get_db(), account, d_from, d_to)
    except ValueError as exc:
        raise ApiError(f"from/to: {exc}", 422) from None
    return jsonify({"id": build_id, "state": reports.build_status(get_db(), build_id)["state"]}), 202


@bp.get("/api/reports/builds/<build_id>")
def report_build(build_id: str):
    """A build's state and progress (0..1); once done, the report's totals, the marketplace's own and
    the reconciliation (reconciled: true, false, or null when it gave nothing to compare)."""
    conn = get_db()
    build = reports.build_status(conn, build_id)
    if build is None:
        raise ApiError("no such report build", 404)
    out = {k: build[k] for k in ("id", "account", "period_from", "period_to", "state", "progress", "stage",
                                 "error", "report_id")}
    out["seconds"] = round(build["finished_ts"] - build["started_ts"], 3) if build["finished_ts"] and \
        build["started_ts"] else None
    if build["report_id"]:
        r = conn.execute("SELECT totals, native_totals, reconciled, differences FROM commission_reports WHERE id=?",
                         (build["report_id"],)).fetchone()
        out.update(totals=json.loads(r["totals"]), native_totals=json.loads(r["native_totals"]),
                   reconciled=None if r["reconciled"] is None else bool(r["reconciled"]),
                   differences=json.loads(r["differences"]))
    return jsonify(out)


# ------------------------------------------------------------ settings

@bp.get("/api/settings/secrets")
def list_secrets():
    """What is stored (names, field names, when): never a value."""
    return jsonify(secrets.describe(get_db()))


@bp.post("/api/settings/secrets")
def put_secret():
    """Store credentials (write-only, encrypted): {"name": "account/wb-main" | "telegram/bot_token",
    "fields": {"Authorization": "..."}}; owners only."""
    data = json_body()
    name, fields = data.get("name"), data.get("fields")
    if not isinstance(name, str) or not (name.startswith("account/") and name[8:] in ctx().cfg.accounts
                                         or name == secrets.BOT_TOKEN):
        raise ApiError("name must be account/<a configured account> or telegram/bot_token", 422)
    if not isinstance(fields, dict) or not fields or not all(
            isinstance(k, str) and k and isinstance(v, str) and v and len(v) <= 4096 for k, v in fields.items()):
        raise ApiError("fields must be an object of non-empty strings", 422)
    if name == secrets.BOT_TOKEN:
        value = fields.get("value", "")
        if not value:
            raise ApiError('give the bot token as {"value": "..."}', 422)
        secrets.SecretStore(secrets.key_file_for(ctx().cfg)).put(get_db(), name, value, merge=False)
        message = use_bot_token(value)
    else:  # in use at once, as from the Settings page
        secrets.SecretStore(secrets.key_file_for(ctx().cfg)).put(get_db(), name, fields)
        message = credentials_stored(name[len("account/"):], f"{name} stored encrypted", *fields.values())[1]
    return jsonify({"stored": name, "fields": sorted(fields), "message": message})
