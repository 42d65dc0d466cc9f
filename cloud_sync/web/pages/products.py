"""Products: cards by marketplace and account with their link status, the unmatched queue with
suggestions (cloud_sync.catalog.cards.auto_link), manual link/unlink, hide/show, card creation where the marketplace allows it."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from typing import Any

from flask import Blueprint, render_template, request
from flask_babel import gettext as _
from flask_babel import ngettext

from cloud_sync.catalog import card_fill
from cloud_sync.catalog import cards as catalog
from cloud_sync.db import transaction
from cloud_sync.onec import items_out
from cloud_sync.web.context import ctx, get_db
from cloud_sync.web.i18n import domain_text
from cloud_sync.web.pages.common import (
    PAGE_SIZE,
    accounts,
    args_for,
    find_item,
    item_names,
    page_number,
    sort_key,
)
from marketplaces import profiles
from marketplaces.base import CardMaker, MarketplaceError, NotSupported

bp = Blueprint("products", __name__)


def _card_makers() -> str:
    """The marketplaces the seller creates cards on, as the seller says them ("Wildberries")."""
    return " / ".join(p.title for p in profiles().values() if p.can.create_cards)


def _creates_cards(marketplace: str) -> bool:
    known = profiles().get(marketplace)
    return known is not None and known.can.create_cards


def _any_unlinked(account: str | None) -> bool:
    """Whether some card (of the account) is not linked: only then can 1C be offered new items."""
    return catalog.has_unlinked(get_db(), account)


def _page(status: int = 200, **kw: Any):
    a = request.values
    account = a.get("account") or None
    linked = {"yes": True, "no": False}.get(a.get("linked", ""))
    q = a.get("q", "").strip()
    column, desc = sort_key()
    page = page_number()
    found, total, unmatched = catalog.cards_page(get_db(), account=account, linked=linked, q=q, sort=column,
                                                 desc=desc, offset=(page - 1) * PAGE_SIZE, limit=PAGE_SIZE)
    shown = [asdict(r) for r in found]
    names = item_names(get_db(), [r["item_id"] for r in shown if r["item_id"]])
    for r in shown:  # the 1C name first; the marketplace card's title as a second line
        r["item_article"], r["item_name"] = names.get(r["item_id"] or "", ("", ""))
    kw.setdefault("errors", {})
    kw.setdefault("messages", [])
    card_maker_accounts = [(n, label) for n, label in accounts() if _creates_cards(ctx().cfg.accounts[n].marketplace)]
    return render_template("cloud/products.html", active="products", accounts=accounts(), account=account or "",
                           card_maker_accounts=card_maker_accounts, card_makers=_card_makers(),
                           linked=a.get("linked", ""), q=q, rows=shown,
                           total=total, page=page, has_next=total > page * PAGE_SIZE, args=args_for(),
                           unmatched=unmatched,
                           creations=catalog.creations(get_db(), account), form=request.form,
                           new_items=items_out.proposals(get_db(), account) if (
                               unmatched if not q and linked is None else _any_unlinked(account)) else [],
                           onec_odata=ctx().cfg.onec is not None and ctx().cfg.onec.odata is not None, **kw), status


@bp.get("/products")
def index():
    return _page()


@bp.get("/products/suggest")
def suggest():
    """The queue's suggestions for one card: 1C items whose article or name resemble it."""
    conn = get_db()
    card = catalog.card(conn, request.args.get("account", ""), request.args.get("card_id", ""))
    if card is None:
        return _page(status=404, errors={"card_id": _("no such card")})
    ids = catalog._suggest(conn, card, limit=5)  # noqa: SLF001 - the catalog's own matcher, as auto_link uses it
    items = [dict(r) for r in conn.execute(
        f"SELECT id, article, name FROM items WHERE id IN ({','.join('?' * len(ids))})", ids)] if ids else []
    items.sort(key=lambda r: ids.index(r["id"]))
    return _page(suggest={"card": card, "items": items})


@bp.post("/products/autolink")
def autolink():
    conn = get_db()
    with transaction(conn):
        report = catalog.auto_link(conn, request.values.get("account") or None)
    ctx().wake()
    return _page(report=report, messages=[("ok", _("linked %(b)s by barcode, %(a)s by article",
                                                   b=report.linked_by_barcode, a=report.linked_by_article))])


@bp.post("/products/link")
def link():
    f = request.form
    errors: dict[str, str] = {}
    account, card_id, typed = f.get("account", ""), f.get("card_id", "").strip(), f.get("item_id", "").strip()
    if account not in ctx().cfg.accounts:
        errors["link_account"] = _("choose an account")
    if not card_id:
        errors["card_id"] = _("give the card (its article on the marketplace or its id)")
    elif account in ctx().cfg.accounts:
        card_id = _card_by_article(account, card_id)
    item_id = ""
    if not typed and f.get("unlink") != "yes":
        errors["item_id"] = _("give the 1C item: its article or name")
    elif typed:
        item_id, problem = find_item(get_db(), typed)
        if problem:
            errors["item_id"] = problem
    try:
        pack = int(f.get("pack", "1") or 1)
        if not 1 <= pack <= 1000:
            raise ValueError
    except ValueError:
        errors["pack"] = _("a pack is a whole number of units, 1-1000")
        pack = 1
    if not errors:
        conn = get_db()
        try:
            with transaction(conn):
                if f.get("unlink") == "yes":
                    catalog.unlink(conn, account, card_id)
                else:
                    catalog.link(conn, account, card_id, item_id, pack)
        except catalog.CatalogError as exc:
            errors["item_id" if "item" in str(exc) else "card_id"] = domain_text(exc)
    if errors:
        return _page(status=400, errors=errors)
    ctx().wake()
    done = _("card %(card)s unlinked", card=card_id) if f.get("unlink") == "yes" else \
        _("card %(card)s linked to %(item)s", card=card_id, item=typed)
    return _page(messages=[("ok", done)])


def _card_by_article(account: str, typed: str) -> str:
    """The card id of what was typed: a card id as it is, or the card with this article (offer id)."""
    row = get_db().execute("SELECT native_id FROM cards WHERE account=? AND (native_id=? OR offer_id=?)"
                           " ORDER BY native_id=? DESC LIMIT 1", (account, typed, typed, typed)).fetchone()
    return row["native_id"] if row else typed


@bp.post("/products/visibility")
def visibility():
    f = request.form
    chosen: dict[str, list[str]] = {}
    for value in f.getlist("card_ids"):  # "account|card id", so one list may hold several accounts
        account, _sep, card_id = value.partition("|")
        chosen.setdefault(account, []).append(card_id)
    errors: dict[str, str] = {}
    if not chosen:
        errors["card_ids"] = _("choose at least one card")
    missing = sorted(a for a in chosen if a not in ctx().adapters)
    if missing:
        errors["vis_account"] = _("not connected: %(accounts)s — nothing was changed", accounts=", ".join(missing))
    if errors:
        return _page(status=400, errors=errors)
    conn = get_db()
    results = []
    try:
        for account, card_ids in chosen.items():
            with transaction(conn):
                results += catalog.set_visibility(conn, ctx().adapters[account], account, card_ids,
                                                  f.get("visible") == "yes")
    except NotSupported as exc:  # e.g. no hide/unhide on that marketplace: say so in the seller's words
        return _page(status=400, errors={"card_ids": exc.for_seller()})
    except (catalog.CatalogError, MarketplaceError) as exc:
        return _page(status=400, errors={"card_ids": domain_text(exc)})
    ctx().wake()
    failed = [r for r in results if not getattr(r, "ok", True)]
    n = len(results) - len(failed)
    done = ngettext("%(num)d card shown", "%(num)d cards shown", n) if f.get("visible") == "yes" else \
        ngettext("%(num)d card hidden", "%(num)d cards hidden", n)
    return _page(messages=[("ok", done)]
                 + [("warn", f"{r.key}: {r.error}") for r in failed])


@bp.post("/products/create")
def create():
    f = request.form
    errors: dict[str, str] = {}
    account = f.get("account", "")
    settings = ctx().cfg.accounts.get(account)
    if settings is None or not _creates_cards(settings.marketplace) or account not in ctx().adapters:
        errors["create_account"] = _("choose a connected %(where)s account", where=_card_makers())
    subject_id = f.get("subject_id", "").strip()  # a WB subject id, or an Ozon "description_category_id:type_id"
    if not re.fullmatch(r"[1-9]\d*(:[1-9]\d*)?", subject_id):
        errors["subject_id"] = _("the category is a number as the marketplace gives it (for some, «category:type»)")
    try:
        price = int(f.get("price", "0") or 0)
        if price < 0:
            raise ValueError
    except ValueError:
        errors["price"] = _("a price is a whole number of roubles, 0 or more")
        price = 0
    new_item = ""
    if not f.get("new_item_id", "").strip():
        errors["new_item_id"] = _("give the 1C item: its article or name")
    else:
        new_item, problem = find_item(get_db(), f["new_item_id"].strip())
        if problem:
            errors["new_item_id"] = problem
    if errors:
        return _page(status=400, errors=errors)
    conn = get_db()
    try:
        adapter = ctx().adapters[account]
        if not isinstance(adapter, CardMaker):
            return _page(status=400, errors={"create_account": _("this marketplace does not create cards through its API")})
        attributes = adapter.category_attributes(subject_id)
        photos = [u.strip() for u in f.get("photos", "").split() if u.strip()]
        new = card_fill.new_card(conn, adapter.name, new_item, subject_id, attributes,
                                 brand=f.get("brand", ""), price=price, photos=photos)
        result = catalog.start_creation(adapter, new)  # the marketplace call outside the write lock
        with transaction(conn):
            catalog.record_creation(conn, adapter.name, account, new_item, result, photos=new.photos)
    except card_fill.CardFillError as exc:
        return _page(status=400, errors={"new_item_id": str(exc)})
    except catalog.CatalogError as exc:
        return _page(status=400, errors={"new_item_id": domain_text(exc)})
    except MarketplaceError as exc:
        return _page(status=502, errors={"create_account": str(exc)})
    return _page(messages=[("ok", _("card %(card)s: %(state)s", card=result.offer_id, state=result.state))])


@bp.post("/products/to-1c")
def to_onec():
    """Cards into 1C: create the chosen items of the preview in 1C through OData, then link the cards."""
    section = ctx().cfg.onec.odata if ctx().cfg.onec is not None else None
    if section is None:
        return _page(status=409, errors={"to_1c": _("cloud.toml has no [onec.odata]: give the address of the 1C base's OData")})
    chosen = request.form.getlist("article")
    conn = get_db()
    batch = [i for i in items_out.proposals(conn) if i.article in chosen]
    if not batch:
        return _page(status=400, errors={"to_1c": _("tick the items to create in 1C")})
    outcomes = items_out.create_in_1c(batch, items_out.item_settings(section))  # HTTP outside the write lock
    with transaction(conn):
        linked = items_out.record(conn, batch, outcomes)
    ctx().wake()
    made = sum(1 for o in outcomes if o.ref_key and not o.error)
    messages = [("ok", _("In 1C: %(made)s item(s); cards linked: %(linked)s", made=made, linked=linked.linked_by_barcode + linked.linked_by_article))]
    messages += [("error", o.error) for o in outcomes if o.error]
    return _page(status=200 if made == len(outcomes) else 502, messages=messages)


# ------------------------------------------------------------ fill rules (a card's characteristics from 1C)


def _property_names(limit: int = 500) -> list[str]:
    """The 1C item properties the nomenclature holds (for the rules' choices)."""
    names: set[str] = set()
    for (text,) in get_db().execute("SELECT properties FROM items WHERE deleted=0 AND properties!='{}' LIMIT ?",
                                    (limit,)):
        names.update(json.loads(text or "{}"))
    return sorted(names)


def _rules_page(status: int = 200, **kw: Any):
    a = request.values
    makers = [(n, label) for n, label in accounts() if _creates_cards(ctx().cfg.accounts[n].marketplace)]
    account = a.get("account") or (makers[0][0] if makers else "")
    q, category = a.get("q", "").strip(), a.get("category", "").strip()
    found, attributes, saved, error = [], [], {}, ""
    adapter = ctx().adapters.get(account)
    if isinstance(adapter, CardMaker):
        try:
            if q:
                found = adapter.categories(q)[:50]
            if category:
                attributes = adapter.category_attributes(category)
                saved = card_fill.rules(get_db(), adapter.name, category)
        except (MarketplaceError, ValueError) as exc:
            error = _("the marketplace did not answer: %(error)s", error=exc)
    elif account:
        error = _("this account is not connected, or its marketplace does not create cards through its API")
    return render_template("cloud/fill_rules.html", active="products", accounts=makers, account=account, q=q,
                           category=category, found=found, attributes=attributes, saved=saved,
                           properties=_property_names(), error=kw.pop("error", error), **kw), status


@bp.get("/products/fill-rules")
def fill_rules():
    """Which 1C property fills each characteristic of a category: set once per category."""
    return _rules_page()


@bp.post("/products/fill-rules")
def save_fill_rules():
    f = request.form
    adapter = ctx().adapters.get(f.get("account", ""))
    category = f.get("category", "").strip()
    if not isinstance(adapter, CardMaker) or not category:
        return _rules_page(status=400, error=_("choose the account and the category"))
    try:
        attributes = adapter.category_attributes(category)
    except (MarketplaceError, ValueError) as exc:
        return _rules_page(status=502, error=_("the marketplace did not answer: %(error)s", error=exc))
    rules = [card_fill.FillRule(a.id, a.name, f.get(f"property_{a.id}", ""), f.get(f"value_{a.id}", ""))
             for a in attributes]
    conn = get_db()
    with transaction(conn):
        card_fill.save_rules(conn, adapter.name, category, rules)
    missing = [a.name for a, r in zip(attributes, rules, strict=True)
               if a.required and not (r.property.strip() or r.value.strip())]
    note = (_("Saved. Required without a rule:") + " " + ", ".join(missing)) if missing else _("Saved")
    return _rules_page(messages=[("ok" if not missing else "error", note)])
