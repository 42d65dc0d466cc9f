"""The preview of a price document: the diff old -> new per card with the margin against the 1C cost
price and the unit economics at the new price (after the marketplace's commission, logistics and
acquiring: cloud_sync/money/economics.py); refuses what no marketplace would take (negative price, below the floor, unknown target,
too-big discount, a marketplace's update-rate limit) and flags what needs a person's confirmation (a
large drop or rise, a drop into the marketplace's price quarantine, a price below cost).

Prices here are what the buyer pays; the crossed-out price is the "before" price. An absolute price in
an item, category or "all" line is per unit of the 1C item: a card that stands for a pack of N units gets
N times it. A percent markdown without a stated crossed-out price keeps the card's crossed-out price, or
shows the price it came from crossed out; one the marketplace would refuse is dropped (noted).
Conversion to each marketplace's own fields is its adapter's business: the adapter's price model
(`marketplaces.base.PriceModel`), called from `to_price_change`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from cloud_sync.catalog.nomenclature import cost_price
from cloud_sync.config_sections import PricingSettings
from cloud_sync.money import economics
from cloud_sync.money.price_docs import PriceDocument, PriceDocumentError, PriceLine, validate_line
from cloud_sync.money.price_list import Price, PricedCard, account_cards, as_text, current_prices
from marketplaces import price_model
from marketplaces.base import PriceChange, PriceTerms

HUNDRED = Decimal(100)


Level = Literal["error", "confirm", "info"]

# What a marketplace accepts for a price and how it states one are its own business: they live in its
# adapter module (`marketplaces.<name>.PRICE_MODEL`, see marketplaces.base.PriceModel); an account's
# config may override the terms (`[pricing.rules.<marketplace>]`).
MarketplaceRules = PriceTerms


def rules_for(marketplace: str, overrides: dict[str, Any] | None = None) -> MarketplaceRules:
    """The rules of a marketplace, with an account's config overrides (e.g. {"quarantine_ratio": 1.5})."""
    base = price_model(marketplace).terms
    if not overrides:
        return base
    fields = asdict(base)
    for k, v in overrides.items():
        if k not in fields or k == "marketplace":
            raise ValueError(f"unknown price rule {k!r} for {marketplace}; known: {', '.join(fields)}")
        fields[k] = Decimal(str(v)) if isinstance(fields[k], Decimal) or k == "quarantine_ratio" else v
    return MarketplaceRules(**fields)


@dataclass
class Note:
    level: Level
    text: str


@dataclass
class PreviewRow:
    card: PricedCard
    old: Price | None
    new: Price
    change: PriceChange  # what will be sent, in the marketplace's fields
    effective_price: Decimal  # what the buyer will pay after the marketplace's rounding (WB discount)
    cost: Decimal | None = None  # 1C cost of the card (cost price x pack size)
    notes: list[Note] = field(default_factory=list)
    line_no: int = 0
    # price − commission − logistics − acquiring − cost at the new price (cloud_sync/money/economics.py)
    economics: economics.UnitEconomics | None = None

    @property
    def unchanged(self) -> bool:
        return self.old is not None and self.old == self.new

    @property
    def change_percent(self) -> Decimal | None:
        if self.old is None or not self.old.price:
            return None
        return ((self.effective_price - self.old.price) / self.old.price * HUNDRED).quantize(Decimal("0.1"))

    @property
    def margin(self) -> Decimal | None:
        return None if self.cost is None else self.effective_price - self.cost

    @property
    def margin_percent(self) -> Decimal | None:
        if self.cost is None or not self.effective_price:
            return None
        return ((self.effective_price - self.cost) / self.effective_price * HUNDRED).quantize(Decimal("0.1"))

    @property
    def errors(self) -> list[str]:
        return [n.text for n in self.notes if n.level == "error"]


@dataclass
class Preview:
    document: PriceDocument
    marketplace: str
    rows: list[PreviewRow]
    errors: list[str] = field(default_factory=list)  # document-level
    warnings: list[str] = field(default_factory=list)

    @property
    def all_errors(self) -> list[str]:
        out = list(self.errors)
        for r in self.rows:
            out += [f"{r.card.offer_id}: {e}" for e in r.errors]
        return out

    @property
    def to_confirm(self) -> list[str]:
        return [f"{r.card.offer_id}: {n.text}" for r in self.rows for n in r.notes if n.level == "confirm"]

    @property
    def ok(self) -> bool:
        return not self.all_errors

    @property
    def changed(self) -> list[PreviewRow]:
        return [r for r in self.rows if not r.unchanged]

    def as_table(self) -> list[dict[str, Any]]:
        """One plain dict per card, for the web UI, the CLI and exports."""
        return [
            {
                "offer_id": r.card.offer_id, "card_id": r.card.card_id, "item_id": r.card.item_id,
                "title": r.card.title, "pack_size": r.card.pack_size,
                "old_price": as_text(r.old.price) if r.old else None,
                "old_crossed_out": as_text(r.old.old_price) if r.old else None,
                "new_price": str(r.effective_price), "new_crossed_out": as_text(r.new.old_price),
                "change_percent": as_text(r.change_percent), "cost": as_text(r.cost), "margin": as_text(r.margin),
                "margin_percent": as_text(r.margin_percent), "unchanged": r.unchanged,
                "economics": r.economics.as_dict() if r.economics else None,
                "notes": [f"{n.level}: {n.text}" for n in r.notes],
            }
            for r in self.rows
        ]


# documents whose prices a rule computed (not typed by a person): an inexact marketplace price is noted only
COMPUTED_SOURCES = ("1c:",)


def _round(v: Decimal, step: Decimal) -> Decimal:
    return (v / step).quantize(Decimal(1), rounding=ROUND_HALF_UP) * step


def _item_groups(conn: sqlite3.Connection, key: str) -> set[str]:
    """The 1C group named or numbered `key` with all its subgroups (empty if none)."""
    rows = conn.execute("SELECT id, name, parent_id FROM item_groups").fetchall()
    roots = {r["id"] for r in rows if r["id"] == key or r["name"].casefold() == key.casefold()}
    found = set(roots)
    changed = True
    while changed:
        changed = False
        for r in rows:
            if r["parent_id"] in found and r["id"] not in found:
                found.add(r["id"])
                changed = True
    return found


def _match(conn: sqlite3.Connection, line: PriceLine, cards: list[PricedCard]) -> list[PricedCard] | None:
    """The cards a line targets; None when the target is unknown."""
    if line.scope == "all":
        return list(cards)
    key = line.key
    if line.scope == "card":
        hit = [c for c in cards if key in (c.offer_id, c.card_id)]
        return hit or None
    if line.scope == "item":
        ids = {key} | {r[0] for r in conn.execute("SELECT id FROM items WHERE article=? AND deleted=0", (key,))}
        if not conn.execute(f"SELECT 1 FROM items WHERE id IN ({','.join('?' * len(ids))})", tuple(ids)).fetchone():
            return None
        return [c for c in cards if c.item_id in ids]
    groups = _item_groups(conn, key)
    hit = [c for c in cards
           if key.casefold() in (c.category.casefold(), c.category_id.casefold()) or c.item_group_id in groups]
    return hit if hit or groups else None


def preview(conn: sqlite3.Connection, doc: PriceDocument, *, settings: PricingSettings | None = None,
            marketplace: str | None = None, now: datetime | None = None,
            base: dict[str, Price] | None = None) -> Preview:
    """The diff the document would make, with every error and warning; sends nothing, writes nothing.
    `base` (card id -> price): a percent line is taken from these prices instead of the current ones (a
    scheduled rule's prices before any rule cut them: a -10% never compounds on a price already cut)."""
    settings = settings or PricingSettings()
    now = now or datetime.now(UTC)
    cards = account_cards(conn, doc.account)
    marketplace = marketplace or (cards[0].marketplace if cards else "")
    result = Preview(document=doc, marketplace=marketplace, rows=[])
    if not cards:
        result.errors.append(f"account {doc.account!r} has no cards (unknown account, or cards not imported)")
        return result
    rules = rules_for(marketplace, settings.rules.get(marketplace))
    current = current_prices(conn, doc.account)

    chosen: dict[str, tuple[int, PriceLine]] = {}
    for n, line in enumerate(doc.lines, 1):
        try:
            validate_line(line)
        except PriceDocumentError as exc:
            result.errors += [f"line {n} ({line.describe()}): {p}" for p in exc.problems]
            continue
        hit = _match(conn, line, cards)
        if hit is None:
            result.errors.append(f"line {n}: unknown {line.scope} {line.key!r} on account {doc.account!r}")
            continue
        if not hit:
            result.warnings.append(f"line {n}: {line.scope} {line.key!r} has no cards on account {doc.account!r}")
        for c in hit:
            chosen[c.card_id] = (n, line)

    by_id = {c.card_id: c for c in cards}
    costs: dict[str, Decimal | None] = {}
    for card_id, (n, line) in chosen.items():
        card = by_id[card_id]
        old = current.get(card_id)
        if old is None and card.imported_price is not None:
            old = Price(card.imported_price)
        if card.item_id and card.item_id not in costs:
            costs[card.item_id] = cost_price(conn, card.item_id)
        cost = costs.get(card.item_id) if card.item_id else None
        row = _price_row(card, old, line, n, doc.rounding, rules,
                         None if cost is None else cost * card.pack_size, settings,
                         typed=not doc.source.startswith(COMPUTED_SOURCES),
                         start=(base or {}).get(card_id, old))
        result.rows.append(row)

    if rules.prices_by_group:
        _add_group_siblings(conn, result, cards, current, costs)
    _check_groups(result, rules)
    if rules.max_updates_per_hour:
        _check_update_rate(conn, result, rules, now)
    result.rows.sort(key=lambda r: (r.line_no, r.card.offer_id))
    known, estimates = economics.stored(conn, doc.account), economics.Estimates.from_settings(settings)
    for r in result.rows:
        r.economics = economics.economics_of(r.card.card_id, r.effective_price, r.cost, known, estimates)
    return result


def _price_row(card: PricedCard, old: Price | None, line: PriceLine, n: int, step: Decimal,
               rules: MarketplaceRules, cost: Decimal | None, settings: PricingSettings,
               typed: bool = True, start: Price | None = None) -> PreviewRow:
    notes: list[Note] = []
    start = start or old  # what a percent is taken from: the current price unless a base is given
    if rules.whole_roubles:
        step = max(step, Decimal(1)) if step < 1 else step
    if line.price is not None:
        per_card = line.price if line.scope == "card" else line.price * card.pack_size
        new_price = _round(per_card, step)
    elif start is None:
        notes.append(Note("error", "no current price is known for a percent change; read prices first "
                                   "(marketsync sync prices) or give an absolute price"))
        new_price = Decimal(0)
    else:
        new_price = _round(start.price * (HUNDRED + line.percent) / HUNDRED, step)  # type: ignore[operator]

    # crossed-out price
    crossed: Decimal | None
    explicit = line.old_price is not None or line.discount_percent is not None
    if line.old_price is not None:
        base = line.old_price if line.scope == "card" else line.old_price * card.pack_size
        crossed = _round(base, step) if base > 0 else None
    elif line.discount_percent is not None:
        crossed = (_round(new_price * HUNDRED / (HUNDRED - line.discount_percent), step)
                   if line.discount_percent > 0 else None)
    else:
        crossed = start.old_price if start else None
        if crossed is None and start is not None and line.percent is not None and line.percent < 0:
            crossed = start.price  # a percent markdown shows the price it came from crossed out
    if crossed is not None and not rules.crossed_out_supported:
        if explicit:
            notes.append(Note("info", f"{rules.marketplace} takes the crossed-out price from the feed; not sent"))
        crossed = None
    if crossed is not None and new_price > 0:
        problem = _crossed_problem(new_price, crossed, rules)
        if problem and explicit:
            notes.append(Note("error", problem))
        elif problem:
            notes.append(Note("info", f"{problem}: the crossed-out price {crossed} is dropped"))
            crossed = None

    min_price = line.min_price if line.min_price is not None else (old.min_price if old else None)
    if min_price is not None and line.min_price is not None and line.scope != "card":
        min_price = min_price * card.pack_size
    new = Price(new_price, crossed, min_price)
    change = to_price_change(rules.marketplace, card, new)
    effective = effective_price(rules.marketplace, change, new)
    why = price_model(rules.marketplace).not_exact(new_price, crossed, effective) if new_price > 0 else ""
    if why:  # a typed price that cannot be sent exactly: said in words, and a person chooses; a computed
        notes.append(Note("confirm" if typed else "info", why))  # one (prices from 1C) is only noted

    if new_price <= 0:
        if line.price is not None or old is not None:
            notes.append(Note("error", f"price {new_price} is not positive"))
    elif effective < rules.min_price:
        notes.append(Note("error", f"price {effective} is below {rules.marketplace}'s minimum {rules.min_price}"))
    if min_price is not None and 0 < effective < min_price:
        notes.append(Note("error", f"price {effective} is below the card's minimum price {min_price}"))
    if old is not None and old.price > 0 and effective > 0:
        drop = (old.price - effective) / old.price * HUNDRED
        if rules.quarantine_ratio and effective * rules.quarantine_ratio <= old.price:
            notes.append(Note("confirm", f"{rules.marketplace} puts a price {rules.quarantine_ratio}x lower than "
                                         f"the old one ({old.price} -> {effective}) into quarantine: it keeps "
                                         "selling at the old price until released"))
        elif drop >= settings.large_drop_percent:
            notes.append(Note("confirm", f"large drop: {old.price} -> {effective} (-{drop.quantize(Decimal('0.1'))}%)"))
        elif settings.large_rise_percent and -drop >= settings.large_rise_percent:
            notes.append(Note("confirm", f"large rise: {old.price} -> {effective} (+{(-drop).quantize(Decimal('0.1'))}%):"
                                         " buyers see it at once — an extra zero?"))
    if cost is not None and settings.warn_below_cost and 0 < effective < cost:
        notes.append(Note("confirm", f"price {effective} is below the 1C cost {cost}"))
    return PreviewRow(card=card, old=old, new=new, change=change, effective_price=effective, cost=cost,
                      notes=notes, line_no=n)


def _crossed_problem(price: Decimal, crossed: Decimal, rules: MarketplaceRules) -> str:
    if crossed <= price:
        return f"crossed-out price {crossed} is not above the price {price}"
    discount = (crossed - price) / crossed * HUNDRED
    if discount > rules.max_discount_percent:
        return f"discount {discount.quantize(Decimal('0.1'))}% is above {rules.marketplace}'s maximum {rules.max_discount_percent}%"
    if discount < rules.min_discount_percent:
        return f"discount {discount.quantize(Decimal('0.1'))}% is below {rules.marketplace}'s minimum {rules.min_discount_percent}%"
    return price_model(rules.marketplace).crossed_out_problem(price, crossed) or ""


def to_price_change(marketplace: str, card: PricedCard, p: Price) -> PriceChange:
    """The common PriceChange in the marketplace's own terms (its adapter's price model)."""
    return price_model(marketplace).price_change(card_id=card.card_id, group_id=card.group_id,
                                                 offer_id=card.offer_id, price=p.price, crossed_out=p.old_price,
                                                 min_price=p.min_price)


def effective_price(marketplace: str, change: PriceChange, p: Price) -> Decimal:
    """What the buyer pays once `change` is applied."""
    return price_model(marketplace).buyer_price(change, p.price)


def _add_group_siblings(conn: sqlite3.Connection, result: Preview, cards: list[PricedCard],
                        current: dict[str, Price], costs: dict[str, Decimal | None]) -> None:
    """WB sets one price per nmID: the sizes a document did not name change with it, so they are shown
    (and recorded) too."""
    named = {r.card.card_id for r in result.rows}
    first: dict[str, PreviewRow] = {}
    for r in result.rows:
        first.setdefault(r.change.card_id, r)
    for c in cards:
        r = first.get(c.group_id or c.card_id)
        if r is None or c.card_id in named:
            continue
        old = current.get(c.card_id) or (Price(c.imported_price) if c.imported_price is not None else None)
        if c.item_id and c.item_id not in costs:
            costs[c.item_id] = cost_price(conn, c.item_id)
        cost = costs.get(c.item_id) if c.item_id else None
        change = PriceChange(card_id=r.change.card_id, offer_id=c.offer_id, price=r.change.price,
                             old_price=r.change.old_price, discount_percent=r.change.discount_percent,
                             min_price=r.change.min_price)
        result.rows.append(PreviewRow(
            card=c, old=old, new=r.new, change=change, effective_price=r.effective_price,
            cost=None if cost is None else cost * c.pack_size, line_no=r.line_no,
            notes=[Note("info", f"{result.marketplace} prices all sizes of {r.change.card_id} together: "
                                f"changes with {r.card.offer_id}")]))


def _check_groups(result: Preview, rules: MarketplaceRules) -> None:
    """WB prices a whole nmID: all sizes of one nmID must get the same price."""
    if not rules.prices_by_group:
        return
    seen: dict[str, PreviewRow] = {}
    for r in result.rows:
        first = seen.setdefault(r.change.card_id, r)
        if first is not r and (first.change.price, first.change.discount_percent) != (
                r.change.price, r.change.discount_percent):
            r.notes.append(Note("error", f"{rules.marketplace} prices all sizes of {r.change.card_id} together, "
                                         f"but {first.card.offer_id} gets {first.effective_price} and this "
                                         f"{r.effective_price}"))


def _check_update_rate(conn: sqlite3.Connection, result: Preview, rules: MarketplaceRules, now: datetime) -> None:
    since = (now - timedelta(hours=1)).isoformat()
    counts = {
        r[0]: (r[1], r[2])
        for r in conn.execute(
            "SELECT card_id, COUNT(*), MIN(sent_at) FROM price_history WHERE account=? AND sent_at>? GROUP BY card_id",
            (result.document.account, since))
    }
    for r in result.changed:
        n, first = counts.get(r.card.card_id, (0, None))
        if n >= (rules.max_updates_per_hour or 0):
            free_at = datetime.fromisoformat(first) + timedelta(hours=1)
            r.notes.append(Note("error", f"{rules.marketplace} allows {rules.max_updates_per_hour} price updates "
                                         f"per product per hour; this one had {n}; next allowed after "
                                         f"{free_at:%H:%M} UTC"))
