"""Products: cards by marketplace and account with their link status, the unmatched queue with
suggestions (cloud_sync.catalog.cards.auto_link), manual link/unlink, hide/show, card creation where the marketplace allows it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from flask import Blueprint, render_template, request
from flask_babel import gettext as _
from flask_babel import ngettext

from cloud_sync.catalog import cards as catalog
from cloud_sync.db import transaction
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
from marketplaces.base import MarketplaceError

bp = Blueprint("products", __name__)


def _card_makers() -> str:
    """The marketplaces the seller creates cards on, as the seller says them ("Wildberries")."""
    return " / ".join(p.title for p in profiles().values() if p.can.create_cards)


def _creates_cards(marketplace: str) -> bool:
    known = profiles().get(marketplace)
    return known is not None and known.can.create_cards


def _matches(card: catalog.CardRow, q: str) -> bool:
    """A card the search box finds: by its article (offer id), card id, barcode, title or 1C item id."""
    return any(q in str(v).casefold() for v in (card.offer_id, card.card_id, card.title, card.item_id or "",
                                                 *card.barcodes))


def _page(status: int = 200, **kw: Any):
    a = request.values
    account = a.get("account") or None
    linked = {"yes": True, "no": False}.get(a.get("linked", ""))
    rows = catalog.cards(get_db(), account=account, linked=linked)
    q = a.get("q", "").strip()
    if q:
        rows = [r for r in rows if _matches(r, q.casefold())]
    column, desc = sort_key()
    if column in ("title", "marketplace", "account", "offer_id", "category"):
        rows = sorted(rows, key=lambda r: str(getattr(r, column) or "").casefold(), reverse=desc)
    page = page_number()
    shown = [asdict(r) for r in rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]]
    names = item_names(get_db(), [r["item_id"] for r in shown if r["item_id"]])
    for r in shown:  # the 1C name first; the marketplace card's title as a second line
        r["item_article"], r["item_name"] = names.get(r["item_id"] or "", ("", ""))
    kw.setdefault("errors", {})
    kw.setdefault("messages", [])
    card_maker_accounts = [(n, label) for n, label in accounts() if _creates_cards(ctx().cfg.accounts[n].marketplace)]
    return render_template("cloud/products.html", active="products", accounts=accounts(), account=account or "",
                           card_maker_accounts=card_maker_accounts, card_makers=_card_makers(),
                           linked=a.get("linked", ""), q=q, rows=shown,
                           total=len(rows), page=page, has_next=len(rows) > page * PAGE_SIZE, args=args_for(),
                           unmatched=sum(1 for r in rows if r.item_id is None),
                           creations=catalog.creations(get_db(), account), form=request.form, **kw), status


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
    try:
        subject_id = int(f.get("subject_id", ""))
        if subject_id <= 0:
            raise ValueError
    except ValueError:
        errors["subject_id"] = _("the subject (category) number is a positive whole number")
        subject_id = 0
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
        new = catalog.new_card_from_item(conn, new_item, subject_id, brand=f.get("brand", ""),
                                         price=price)
        adapter = ctx().adapters[account]
        result = adapter.create_card(new)  # the marketplace call outside the write lock
        with transaction(conn):
            catalog.record_creation(conn, adapter.name, account, new_item, result)
    except catalog.CatalogError as exc:
        return _page(status=400, errors={"new_item_id": domain_text(exc)})
    except MarketplaceError as exc:
        return _page(status=502, errors={"create_account": str(exc)})
    return _page(messages=[("ok", _("card %(card)s: %(state)s", card=result.offer_id, state=result.state))])
