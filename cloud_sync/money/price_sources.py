"""Prices from 1C: an account whose prices follow a 1C price type (`[accounts.<name>.prices_from_1c]`,
cloud_sync.config_sections.PriceFrom1CSection) gets a price document built from 1C's prices — markup,
rounding, crossed-out price, a floor of cost plus a minimum margin, currency conversion — and that
document goes through the same preview and guards as any other (quarantine, large drop, extra zero, below
cost): applied at once when no guard trips, held for a person's confirmation when one does.

Owns `price_source_seen`: the 1C prices (of the types a source reads, and the cost) each account's
document was last built from, so each run takes only the items whose 1C prices changed since — every 1C
price exchange recomputes the affected cards, nothing else.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from cloud_sync.alerts import outbox
from cloud_sync.config import CloudConfig
from cloud_sync.config_sections import PriceFrom1CSection
from cloud_sync.db import transaction
from cloud_sync.money import price_apply, price_docs
from cloud_sync.money.price_list import account_cards
from marketplaces.base import Marketplace

MIGRATIONS = [
    """
    CREATE TABLE price_source_seen (
        account TEXT NOT NULL,
        item_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,       -- the 1C prices (price, crossed-out, cost) the last document used
        PRIMARY KEY (account, item_id)
    ) WITHOUT ROWID;
    """,
]

COST = "cost"


class PriceSourceError(ValueError):
    """The source cannot give prices as configured (an unknown price type, a currency without a rate)."""


@dataclass
class Outcome:
    account: str
    state: str  # "applied" | "held" | "refused" | "failed" | "nothing" | "error"
    document: str = ""
    cards: int = 0
    detail: str = ""
    notes: list[str] = field(default_factory=list)


def _type_of(conn: sqlite3.Connection, key: str) -> sqlite3.Row:
    row = conn.execute("SELECT id, name, currency FROM price_types WHERE id=? OR name=? ORDER BY id=? DESC LIMIT 1",
                       (key, key, key)).fetchone()
    if row is None:
        known = ", ".join(r[0] for r in conn.execute("SELECT name FROM price_types ORDER BY name")) or "нет ни одного"
        raise PriceSourceError(f"в 1С нет типа цен «{key}» (есть: {known})")
    return row


def _rate(src: PriceFrom1CSection, currency: str, type_name: str) -> Decimal:
    if currency.upper() in ("RUB", "РУБ", "643", ""):
        return Decimal(1)
    if src.currency_rate is None:
        raise PriceSourceError(f"тип цен «{type_name}» в валюте {currency}: задайте курс (currency_rate)")
    return src.currency_rate


def round_price(value: Decimal, rounding: str) -> Decimal:
    """A price rounded as the source says: to a step ("0.01", "1", "10", "100"), or up to the next price
    ending in 9 or 99 ("9": 1234 → 1239, "99": 1234 → 1299)."""
    if rounding in ("9", "99"):
        step = Decimal(10) ** len(rounding)
        return ((value + 1) / step).to_integral_value(rounding=ROUND_CEILING) * step - 1 if value > 0 else value
    step = Decimal(rounding)
    return (value / step).quantize(Decimal(1), rounding=ROUND_HALF_UP) * step


def build(conn: sqlite3.Connection, account: str, src: PriceFrom1CSection, *,
          only_changed: bool = True) -> tuple[price_docs.PriceDocument, dict[str, str], list[str]]:
    """The price document for the account's linked items with a 1C price of the source's type (only those
    whose 1C prices changed since the last document, by default), the fingerprints it was built from and
    notes (floors applied, items without a price)."""
    ptype = _type_of(conn, src.price_type)
    rate = _rate(src, ptype["currency"], ptype["name"])
    crossed = _type_of(conn, src.crossed_out_price_type) if src.crossed_out_price_type else None
    crossed_rate = _rate(src, crossed["currency"], crossed["name"]) if crossed else Decimal(1)
    types = [ptype["id"]] + ([crossed["id"]] if crossed else [])
    prices: dict[str, dict[str, Decimal]] = {}
    marks = ",".join("?" * len(types))
    for item_id, type_id, price in conn.execute(
            f"SELECT p.item_id, p.price_type_id, p.price FROM item_prices p WHERE p.price_type_id IN ({marks})"
            " AND p.item_id IN (SELECT item_id FROM card_links WHERE account=? AND item_id IS NOT NULL)",
            (*types, account)):
        prices.setdefault(item_id, {})[type_id] = Decimal(price)
    for item_id, price in conn.execute(
            "SELECT p.item_id, p.price FROM item_prices p JOIN price_types t ON t.id=p.price_type_id WHERE t.is_cost=1"
            " AND p.item_id IN (SELECT item_id FROM card_links WHERE account=? AND item_id IS NOT NULL)", (account,)):
        prices.setdefault(item_id, {}).setdefault(COST, Decimal(price))
    seen = {r[0]: r[1] for r in conn.execute("SELECT item_id, fingerprint FROM price_source_seen WHERE account=?",
                                             (account,))}
    doc = price_docs.PriceDocument(account=account, lines=[], source=f"1c:{ptype['id']}", rounding=Decimal("0.01"),
                                   comment=f"цены из 1С: {ptype['name']}")
    fingerprints: dict[str, str] = {}
    notes: list[str] = []
    settings_fp = json.dumps([str(v) for v in (src.markup_percent, src.markup_amount, src.rounding,
                                               src.crossed_out_percent, src.crossed_out_price_type,
                                               src.min_margin_percent, src.currency_rate)])
    articles = {r[0]: r[1] for r in conn.execute("SELECT id, article FROM items")}
    for item_id in sorted(prices):
        got = prices[item_id]
        if ptype["id"] not in got:
            continue
        fp = json.dumps({k: str(v) for k, v in sorted(got.items())}) + settings_fp
        if only_changed and seen.get(item_id) == fp:
            continue
        price = round_price(got[ptype["id"]] * rate * (1 + src.markup_percent / 100) + src.markup_amount, src.rounding)
        cost = got.get(COST)
        if src.min_margin_percent is not None and cost is not None:
            floor = round_price(cost * (1 + src.min_margin_percent / 100), src.rounding)
            if floor > price:
                notes.append(f"{articles.get(item_id) or item_id}: {price} ниже себестоимости {cost} + "
                             f"{src.min_margin_percent}% — поставлено {floor}")
                price = floor
        old = None
        if crossed and crossed["id"] in got:
            old = round_price(got[crossed["id"]] * crossed_rate, src.rounding)
        elif src.crossed_out_percent:
            old = round_price(price * (1 + src.crossed_out_percent / 100), src.rounding)
        if old is not None and old <= price:
            old = None
        doc.lines.append(price_docs.PriceLine("item", item_id, price=price, old_price=old))
        fingerprints[item_id] = fp
    return doc, fingerprints, notes


def _remember(conn: sqlite3.Connection, account: str, fingerprints: dict[str, str]) -> None:
    with transaction(conn):
        conn.executemany("INSERT INTO price_source_seen(account, item_id, fingerprint) VALUES (?,?,?)"
                         " ON CONFLICT(account, item_id) DO UPDATE SET fingerprint=excluded.fingerprint",
                         [(account, i, fp) for i, fp in fingerprints.items()])


WORDS = {"applied": "applied", "partial": "partly applied", "held": "held for confirmation", "refused": "refused"}


def _event(conn: sqlite3.Connection, o: Outcome) -> None:
    """The cloud's event line (the demo and the activity feed read it)."""
    with transaction(conn):
        conn.execute("INSERT INTO order_events(order_id, ts, kind, detail) VALUES (NULL, ?, 'prices_from_1c', ?)",
                     (time.time(), f"{o.cards} card(s) on {o.account} {WORDS[o.state]} (document {o.document})"
                                   + (f": {o.detail}" if o.detail and o.state != "applied" else "")))


def run(conn: sqlite3.Connection, cfg: CloudConfig, adapter_for: Callable[[str], Marketplace], *,
        accounts: Iterable[str] | None = None, now: datetime | None = None) -> list[Outcome]:
    """One pass: for every account with prices from 1C, the cards whose 1C prices changed get their new
    prices — applied when no guard trips, otherwise held for confirmation (and alerted)."""
    out: list[Outcome] = []
    for name in accounts or sorted(cfg.accounts):
        settings = cfg.accounts.get(name)
        src = settings.prices_from_1c if settings else None
        if src is None or not settings.enabled:
            continue
        try:
            doc, fingerprints, notes = build(conn, name, src)
        except PriceSourceError as exc:
            out.append(Outcome(name, "error", detail=str(exc)))
            outbox.enqueue(conn, "price_source", f"price_source:{name}:{exc}", f"💸 Цены из 1С для {name}: {exc}")
            continue
        if not doc.lines:
            out.append(Outcome(name, "nothing", notes=notes))
            continue
        cards = account_cards(conn, name)
        linked = {c.item_id for c in cards if c.item_id}
        doc.lines = [ln for ln in doc.lines if ln.key in linked]
        if not src.auto_apply:  # the seller confirms every 1C price change
            with transaction(conn):
                price_docs.save_document(conn, doc)
            _remember(conn, name, fingerprints)
            out.append(Outcome(name, "held", doc.id, len(doc.lines), "автоприменение выключено: ждёт подтверждения",
                               notes))
            continue
        try:
            market = adapter_for(name)
        except KeyError:
            out.append(Outcome(name, "error", detail="кабинет не открыт"))
            continue
        try:
            res = price_apply.apply(conn, doc, market, settings=cfg.pricing, now=now)
        except price_docs.ConfirmationRequired as exc:
            _remember(conn, name, fingerprints)  # held once; a later 1C change builds a new document
            outbox.enqueue(conn, "price_source", f"price_source:{doc.id}",
                           f"💸 Цены из 1С для {name} ждут подтверждения (документ {doc.id}): "
                           + "; ".join(exc.problems[:3]))
            out.append(Outcome(name, "held", doc.id, len(doc.lines), "; ".join(exc.problems[:5]), notes))
            continue
        except price_docs.PriceDocumentError as exc:
            _remember(conn, name, fingerprints)
            outbox.enqueue(conn, "price_source", f"price_source:{doc.id}",
                           f"💸 Цены из 1С для {name} не отправлены (документ {doc.id}): " + "; ".join(exc.problems[:3]))
            out.append(Outcome(name, "refused", doc.id, len(doc.lines), "; ".join(exc.problems[:5]), notes))
            continue
        item_of = {c.card_id: c.item_id for c in cards}
        failed_items = {item_of.get(r.card_id) for r in res.results if not r.ok}
        _remember(conn, name, {i: fp for i, fp in fingerprints.items() if i not in failed_items})  # failed: again
        out.append(Outcome(name, res.status, doc.id, len(res.results), "; ".join(
            f"{r.offer_id}: {r.error}" for r in res.results if not r.ok)[:500], notes))
    for o in out:
        if o.state in ("applied", "partial", "held", "refused"):
            _event(conn, o)
    return out
