"""Prices: the price list of each account, price documents, their preview and their application.

Owns the tables `price_list` (the last price each card of each account was given), `price_documents`
(every document with its lines, status and result) and `price_history` (every price ever sent, with
the marketplace's answer for it).

A price document is a batch of changes for one account. Each line targets one item (1C id or
article), one category (the marketplace card category of the account, or a 1C item group with its
subgroups), one card (offer id or native id) or all the account's cards, and sets an absolute price
or changes the current one by a percentage, optionally with a crossed-out price (`old_price`) or a
discount (`discount_percent`) and a floor (`min_price`). When several lines hit one card, the last
line wins. A percent markdown without a stated crossed-out price keeps the card's crossed-out price,
or shows the price it came from crossed out; one the marketplace would refuse is dropped (noted).

Prices here are what the buyer pays; the crossed-out price is the "before" price. An absolute price
in an item, category or "all" line is per unit of the 1C item: a card that stands for a pack of N
units gets N times it. Conversion to each marketplace's own fields is the marketplace's business: its
adapter's price model (`marketplaces.base.PriceModel`: Wildberries turns it into a base price and an
integer discount %, Megamarket keeps the price only), called from `to_price_change`.

`preview` computes the diff old -> new with the margin against the 1C cost price, refuses what no
marketplace would take (negative price, below the floor, unknown target, too-big discount, Ozon's 10
updates per product per hour) and flags what needs a person's confirmation (a large drop, a drop into
the marketplace's price quarantine, a price below cost). `apply` refuses a document with errors (or
with unconfirmed warnings) before anything is sent, pushes the rest through the adapter in one call and
records each card's result.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

from cloud_sync.db import transaction
from marketplaces.base import Marketplace, MarketplaceError, PriceChange, PriceTerms, kopecks, price_model

MIGRATIONS = [
    """
    CREATE TABLE price_list (
        account TEXT NOT NULL,
        card_id TEXT NOT NULL,            -- Card.native_id
        offer_id TEXT NOT NULL DEFAULT '',
        price TEXT NOT NULL,              -- what the buyer pays, Decimal as text
        old_price TEXT,                   -- crossed-out price, NULL when none
        min_price TEXT,                   -- the seller's floor for this card (Ozon min_price), NULL when none
        source TEXT NOT NULL DEFAULT '',  -- 'marketplace' (read back) or 'document:<id>'
        updated_at TEXT NOT NULL,
        PRIMARY KEY (account, card_id)
    );
    CREATE TABLE price_documents (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        comment TEXT NOT NULL DEFAULT '',
        source TEXT NOT NULL DEFAULT 'manual',   -- manual, rule:<id>, revert:<id>
        lines TEXT NOT NULL,                     -- JSON list of PriceLine
        status TEXT NOT NULL DEFAULT 'draft',    -- draft, refused, applied, partial, failed
        problems TEXT NOT NULL DEFAULT '[]',     -- JSON list of the errors that refused it
        created_at TEXT NOT NULL,
        applied_at TEXT
    );
    CREATE TABLE price_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        document_id TEXT NOT NULL,
        account TEXT NOT NULL,
        card_id TEXT NOT NULL,
        offer_id TEXT NOT NULL DEFAULT '',
        item_id TEXT,
        price_before TEXT,
        old_price_before TEXT,
        price TEXT NOT NULL,
        old_price TEXT,
        min_price TEXT,
        sent TEXT NOT NULL DEFAULT '{}',  -- JSON of the PriceChange as sent (marketplace fields)
        sent_at TEXT NOT NULL,
        ok INTEGER NOT NULL,
        error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX price_history_card ON price_history(account, card_id, sent_at);
    CREATE INDEX price_history_doc ON price_history(document_id);
    """,
]

Scope = Literal["item", "category", "card", "all"]
Level = Literal["error", "confirm", "info"]

HUNDRED = Decimal(100)


# ---------------------------------------------------------------- errors


class PriceDocumentError(ValueError):
    """A price document that cannot be applied as it stands; `problems` lists every reason."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = list(problems) or [message]
        detail = "; ".join(self.problems[:10]) + (" ..." if len(self.problems) > 10 else "")
        super().__init__(f"{message}: {detail}" if problems else message)


class ConfirmationRequired(PriceDocumentError):
    """The document is valid but has warnings a person must confirm (large drops, quarantine,
    below cost). Apply again with `confirm=True`."""


# ---------------------------------------------------------------- marketplace price rules


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


# ---------------------------------------------------------------- the cards a document can touch


@dataclass
class PricedCard:
    """A card of the account as pricing sees it (from the catalog's cards and links)."""

    account: str
    marketplace: str
    card_id: str  # Card.native_id
    offer_id: str
    group_id: str = ""  # WB nmID
    title: str = ""
    category: str = ""
    category_id: str = ""
    item_id: str | None = None
    pack_size: int = 1
    item_group_id: str | None = None
    imported_price: Decimal | None = None  # Card.price as last imported


def account_cards(conn: sqlite3.Connection, account: str) -> list[PricedCard]:
    """Every card of the account with its item link, read from the catalog's `cards`/`card_links`."""
    from cloud_sync.catalog_view import cards_for_pricing

    return [
        PricedCard(
            account=c.account, marketplace=c.marketplace, card_id=c.card_id, offer_id=c.offer_id,
            group_id=c.group_id, title=c.title, category=c.category, category_id=c.category_id,
            item_id=c.item_id, pack_size=c.pack_size or 1, item_group_id=c.item_group_id,
            imported_price=c.price,
        )
        for c in cards_for_pricing(conn, account)
    ]


def account_marketplace(conn: sqlite3.Connection, account: str) -> str | None:
    cards = account_cards(conn, account)
    return cards[0].marketplace if cards else None


# ---------------------------------------------------------------- documents


@dataclass
class PriceLine:
    """One change of a price document (see the module docstring)."""

    scope: Scope
    key: str = ""
    price: Decimal | None = None
    percent: Decimal | None = None
    discount_percent: Decimal | None = None
    old_price: Decimal | None = None  # 0 removes the crossed-out price
    min_price: Decimal | None = None

    def describe(self) -> str:
        what = f"{self.scope} {self.key!r}" if self.scope != "all" else "all cards"
        change = f"price {self.price}" if self.price is not None else f"{self.percent:+}%"
        return f"{what}: {change}"


@dataclass
class PriceDocument:
    account: str
    lines: list[PriceLine]
    comment: str = ""
    source: str = "manual"
    rounding: Decimal = Decimal("1")  # prices are rounded to this step (1 = whole roubles)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])


def _dec(value: Any, what: str) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise PriceDocumentError(f"{what}: {value!r} is not a number")
    try:
        d = Decimal(str(value).strip().replace(",", ".").rstrip("%").strip())
    except InvalidOperation:
        raise PriceDocumentError(f"{what}: {value!r} is not a number") from None
    if not d.is_finite():
        raise PriceDocumentError(f"{what}: {value!r} is not a number")
    if d.adjusted() > 11:  # beyond any price or percent; 1e400 would overflow the rounding
        raise PriceDocumentError(f"{what}: {value!r} is too large")
    return d


def parse_document(data: dict[str, Any]) -> PriceDocument:
    """A document from plain data (TOML/JSON): {"account", "comment", "rounding",
    "lines": [{"item"|"category"|"card"|"all": key-or-true, "price"|"percent", "discount_percent",
    "old_price", "min_price"}]}. Raises PriceDocumentError listing every malformed line."""
    if not isinstance(data, dict):
        raise PriceDocumentError("a price document must be a table/object")
    account = str(data.get("account") or "").strip()
    problems: list[str] = []
    if not account:
        problems.append("the document names no account")
    raw_lines = data.get("lines")
    if not isinstance(raw_lines, list) or not raw_lines:
        problems.append("the document has no lines")
        raw_lines = []
    lines: list[PriceLine] = []
    for n, raw in enumerate(raw_lines, 1):
        try:
            lines.append(parse_line(raw))
        except PriceDocumentError as exc:
            problems += [f"line {n}: {p}" for p in exc.problems]
    try:
        rounding = _dec(data.get("rounding", "1"), "rounding") or Decimal(1)
        if rounding <= 0:
            problems.append("rounding must be positive")
    except PriceDocumentError as exc:
        problems += exc.problems
        rounding = Decimal(1)
    if problems:
        raise PriceDocumentError("price document refused", problems)
    return PriceDocument(account=account, lines=lines, comment=str(data.get("comment", "")), rounding=rounding)


def parse_line(raw: Any) -> PriceLine:
    if not isinstance(raw, dict):
        raise PriceDocumentError(f"a line must be a table/object, got {raw!r}")
    scopes = [s for s in ("item", "category", "card", "all") if s in raw]
    if len(scopes) != 1:
        raise PriceDocumentError("a line names exactly one of item, category, card, all")
    scope = scopes[0]
    key = "" if scope == "all" else str(raw[scope]).strip()
    if scope != "all" and not key:
        raise PriceDocumentError(f"empty {scope}")
    unknown = set(raw) - {"item", "category", "card", "all", "price", "percent", "discount_percent",
                          "old_price", "min_price"}
    if unknown:
        raise PriceDocumentError(f"unknown field(s) {', '.join(sorted(unknown))}")
    line = PriceLine(
        scope=scope,  # type: ignore[arg-type]
        key=key,
        price=_dec(raw.get("price"), "price"),
        percent=_dec(raw.get("percent"), "percent"),
        discount_percent=_dec(raw.get("discount_percent"), "discount_percent"),
        old_price=_dec(raw.get("old_price"), "old_price"),
        min_price=_dec(raw.get("min_price"), "min_price"),
    )
    validate_line(line)
    return line


def validate_line(line: PriceLine) -> None:
    """Checks that need no database: one of price/percent, signs, discount range."""
    problems = []
    if (line.price is None) == (line.percent is None):
        problems.append("give either an absolute price or a percent change")
    if line.price is not None and line.price <= 0:
        problems.append(f"price {line.price} is not positive")
    if line.percent is not None and line.percent <= -100:
        problems.append(f"a change of {line.percent}% leaves no price")
    if line.discount_percent is not None and not 0 <= line.discount_percent < 100:
        problems.append(f"discount {line.discount_percent}% is outside 0..99")
    if line.discount_percent is not None and line.old_price is not None:
        problems.append("give either discount_percent or old_price, not both")
    if line.old_price is not None and line.old_price < 0:
        problems.append(f"old price {line.old_price} is negative")
    if line.min_price is not None and line.min_price < 0:
        problems.append(f"minimum price {line.min_price} is negative")
    if problems:
        raise PriceDocumentError("price line refused", problems)


def line_to_dict(line: PriceLine) -> dict[str, Any]:
    d: dict[str, Any] = {line.scope: line.key if line.scope != "all" else True}
    for name in ("price", "percent", "discount_percent", "old_price", "min_price"):
        v = getattr(line, name)
        if v is not None:
            d[name] = str(v)
    return d


def save_document(conn: sqlite3.Connection, doc: PriceDocument, *, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    conn.execute(
        "INSERT INTO price_documents(id, account, comment, source, lines, created_at) VALUES (?,?,?,?,?,?)"
        " ON CONFLICT(id) DO NOTHING",
        (doc.id, doc.account, doc.comment, doc.source,
         json.dumps({"rounding": str(doc.rounding), "lines": [line_to_dict(x) for x in doc.lines]}),
         now.isoformat()),
    )
    return doc.id


def load_document(conn: sqlite3.Connection, doc_id: str) -> PriceDocument:
    row = conn.execute("SELECT * FROM price_documents WHERE id=?", (doc_id,)).fetchone()
    if row is None:
        raise KeyError(f"no price document {doc_id!r}")
    body = json.loads(row["lines"])
    return PriceDocument(account=row["account"], lines=[parse_line(x) for x in body["lines"]],
                         comment=row["comment"], source=row["source"], rounding=Decimal(body["rounding"]),
                         id=row["id"])


# ---------------------------------------------------------------- the price list


@dataclass(frozen=True)
class Price:
    price: Decimal  # what the buyer pays
    old_price: Decimal | None = None  # crossed-out
    min_price: Decimal | None = None


def current_prices(conn: sqlite3.Connection, account: str) -> dict[str, Price]:
    """card_id -> the card's current price (what was last sent or read back)."""
    return {
        r["card_id"]: Price(Decimal(r["price"]), _opt(r["old_price"]), _opt(r["min_price"]))
        for r in conn.execute("SELECT card_id, price, old_price, min_price FROM price_list WHERE account=?",
                              (account,))
    }


def _opt(v: str | None) -> Decimal | None:
    return None if v is None else Decimal(v)


def _s(v: Decimal | None) -> str | None:
    return None if v is None else str(v)


def price_list(conn: sqlite3.Connection, account: str) -> list[dict[str, Any]]:
    """The account's price list: every card with its current price, crossed-out price, floor, the 1C
    item, its cost for the card (cost x pack size) and the margin - for the web UI and exports."""
    from cloud_sync.nomenclature import cost_price

    current = current_prices(conn, account)
    out = []
    for c in account_cards(conn, account):
        p = current.get(c.card_id) or (Price(c.imported_price) if c.imported_price is not None else None)
        cost = cost_price(conn, c.item_id) if c.item_id else None
        card_cost = None if cost is None else cost * c.pack_size
        out.append({
            "card_id": c.card_id, "offer_id": c.offer_id, "title": c.title, "category": c.category,
            "item_id": c.item_id, "pack_size": c.pack_size, "price": _s(p.price) if p else None,
            "old_price": _s(p.old_price) if p else None, "min_price": _s(p.min_price) if p else None,
            "cost": _s(card_cost),
            "margin": _s(p.price - card_cost) if p and card_cost is not None else None,
            "known": c.card_id in current,
        })
    return out


def record_read_prices(conn: sqlite3.Connection, account: str, prices: dict[str, tuple[str, Price]],
                       *, now: datetime | None = None) -> int:
    """Store prices read back from the marketplace: {card_id: (offer_id, Price)}."""
    now = now or datetime.now(UTC)
    with transaction(conn):
        for card_id, (offer_id, p) in prices.items():
            p = Price(_money(p.price), None if p.old_price is None else _money(p.old_price),
                      None if p.min_price is None else _money(p.min_price))
            _upsert_price(conn, account, card_id, offer_id, p, "marketplace", now)
    return len(prices)


def _upsert_price(conn: sqlite3.Connection, account: str, card_id: str, offer_id: str, p: Price, source: str,
                  now: datetime) -> None:
    conn.execute(
        "INSERT INTO price_list(account, card_id, offer_id, price, old_price, min_price, source, updated_at)"
        " VALUES (?,?,?,?,?,?,?,?) ON CONFLICT(account, card_id) DO UPDATE SET offer_id=excluded.offer_id,"
        " price=excluded.price, old_price=excluded.old_price, min_price=excluded.min_price,"
        " source=excluded.source, updated_at=excluded.updated_at",
        (account, card_id, offer_id, str(p.price), _s(p.old_price), _s(p.min_price), source, now.isoformat()),
    )


# ---------------------------------------------------------------- preview


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
                "old_price": _s(r.old.price) if r.old else None,
                "old_crossed_out": _s(r.old.old_price) if r.old else None,
                "new_price": str(r.effective_price), "new_crossed_out": _s(r.new.old_price),
                "change_percent": _s(r.change_percent), "cost": _s(r.cost), "margin": _s(r.margin),
                "margin_percent": _s(r.margin_percent), "unchanged": r.unchanged,
                "notes": [f"{n.level}: {n.text}" for n in r.notes],
            }
            for r in self.rows
        ]


@dataclass(frozen=True)
class PricingSettings:
    """Account-level knobs ([pricing] in cloud.toml): `large_drop_percent` asks for confirmation of
    any drop at least this large; `large_rise_percent` of any rise at least this large (an extra zero
    typed: +900%; 0 switches it off); `warn_below_cost` asks for confirmation of a price under cost;
    `rules` overrides MarketplaceRules fields per marketplace."""

    large_drop_percent: Decimal = Decimal(30)
    warn_below_cost: bool = True
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    large_rise_percent: Decimal = Decimal(100)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> PricingSettings:
        d = d or {}
        return cls(large_drop_percent=Decimal(str(d.get("large_drop_percent", 30))),
                   warn_below_cost=bool(d.get("warn_below_cost", True)), rules=dict(d.get("rules", {})),
                   large_rise_percent=Decimal(str(d.get("large_rise_percent", 100))))


def _round(v: Decimal, step: Decimal) -> Decimal:
    return (v / step).quantize(Decimal(1), rounding=ROUND_HALF_UP) * step


_money = kopecks  # kopeck precision, shown without trailing zeros


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
            marketplace: str | None = None, now: datetime | None = None) -> Preview:
    """The diff the document would make, with every error and warning; sends nothing, writes nothing."""
    from cloud_sync.nomenclature import cost_price

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
                         None if cost is None else cost * card.pack_size, settings)
        result.rows.append(row)

    if rules.prices_by_group:
        _add_group_siblings(conn, result, cards, current, costs)
    _check_groups(result, rules)
    if rules.max_updates_per_hour:
        _check_update_rate(conn, result, rules, now)
    result.rows.sort(key=lambda r: (r.line_no, r.card.offer_id))
    return result


def _price_row(card: PricedCard, old: Price | None, line: PriceLine, n: int, step: Decimal,
               rules: MarketplaceRules, cost: Decimal | None, settings: PricingSettings) -> PreviewRow:
    notes: list[Note] = []
    if rules.whole_roubles:
        step = max(step, Decimal(1)) if step < 1 else step
    if line.price is not None:
        per_card = line.price if line.scope == "card" else line.price * card.pack_size
        new_price = _round(per_card, step)
    elif old is None:
        notes.append(Note("error", "no current price is known for a percent change; read prices first "
                                   "(marketsync sync prices) or give an absolute price"))
        new_price = Decimal(0)
    else:
        new_price = _round(old.price * (HUNDRED + line.percent) / HUNDRED, step)  # type: ignore[operator]

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
        crossed = old.old_price if old else None
        if crossed is None and old is not None and line.percent is not None and line.percent < 0:
            crossed = old.price  # a percent markdown shows the price it came from crossed out
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
    from cloud_sync.nomenclature import cost_price

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


# ---------------------------------------------------------------- apply


@dataclass
class CardResult:
    card_id: str
    offer_id: str
    ok: bool
    error: str = ""
    price: Decimal | None = None


@dataclass
class ApplyResult:
    document_id: str
    status: str  # applied, partial, failed
    results: list[CardResult]
    unchanged: int = 0

    @property
    def failed(self) -> list[CardResult]:
        return [r for r in self.results if not r.ok]


def apply(conn: sqlite3.Connection, doc: PriceDocument, market: Marketplace, *, confirm: bool = False,
          settings: PricingSettings | None = None, now: datetime | None = None) -> ApplyResult:
    """Preview, refuse on any error (or unconfirmed warning) before sending, push the changed prices
    through the adapter in one call, record each card's result and update the price list."""
    now = now or datetime.now(UTC)
    pv = preview(conn, doc, settings=settings, marketplace=market.name, now=now)
    with transaction(conn):
        save_document(conn, doc, now=now)
    if not pv.ok:
        _set_status(conn, doc.id, "refused", pv.all_errors)
        raise PriceDocumentError(f"price document {doc.id} refused, nothing was sent", pv.all_errors)
    if pv.to_confirm and not confirm:
        _set_status(conn, doc.id, "draft", pv.to_confirm)
        raise ConfirmationRequired(f"price document {doc.id} needs confirmation, nothing was sent", pv.to_confirm)

    rows = pv.changed
    changes: dict[str, PriceChange] = {}
    for r in rows:
        changes.setdefault(r.change.card_id, r.change)  # one change per WB nmID
    answers: dict[str, tuple[bool, str]] = {}
    if changes:
        try:
            for res in market.push_prices(list(changes.values())):
                answers[res.key] = (res.ok, res.error)
        except MarketplaceError as exc:
            answers = {k: (False, str(exc)) for k in changes}
    results: list[CardResult] = []
    with transaction(conn):
        for r in rows:
            ok, error = answers.get(r.change.card_id, (False, "the marketplace gave no answer for this card"))
            _history(conn, doc, r, ok, error, now)
            if ok:
                _upsert_price(conn, doc.account, r.card.card_id, r.card.offer_id,
                              Price(r.effective_price, r.new.old_price, r.new.min_price), f"document:{doc.id}", now)
            results.append(CardResult(r.card.card_id, r.card.offer_id, ok, error, r.effective_price))
        n_ok = sum(1 for x in results if x.ok)
        status = "applied" if n_ok == len(results) else ("failed" if n_ok == 0 else "partial")
        conn.execute("UPDATE price_documents SET status=?, applied_at=?, problems=? WHERE id=?",
                     (status, now.isoformat(), json.dumps([f"{x.offer_id}: {x.error}" for x in results if not x.ok],
                                                          ensure_ascii=False), doc.id))
    return ApplyResult(doc.id, status, results, unchanged=len(pv.rows) - len(rows))


def _set_status(conn: sqlite3.Connection, doc_id: str, status: str, problems: Iterable[str]) -> None:
    with transaction(conn):
        conn.execute("UPDATE price_documents SET status=?, problems=? WHERE id=?",
                     (status, json.dumps(list(problems), ensure_ascii=False), doc_id))


def _history(conn: sqlite3.Connection, doc: PriceDocument, r: PreviewRow, ok: bool, error: str,
             now: datetime) -> None:
    sent = {k: (str(v) if isinstance(v, Decimal) else v) for k, v in asdict(r.change).items()}
    conn.execute(
        "INSERT INTO price_history(document_id, account, card_id, offer_id, item_id, price_before,"
        " old_price_before, price, old_price, min_price, sent, sent_at, ok, error)"
        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (doc.id, doc.account, r.card.card_id, r.card.offer_id, r.card.item_id,
         _s(r.old.price) if r.old else None, _s(r.old.old_price) if r.old else None,
         str(r.effective_price), _s(r.new.old_price), _s(r.new.min_price), json.dumps(sent), now.isoformat(),
         int(ok), error),
    )


def history(conn: sqlite3.Connection, account: str, card: str | None = None, limit: int = 100) -> list[dict]:
    """The prices sent for an account (or one card, by offer id or card id), newest first."""
    sql = "SELECT * FROM price_history WHERE account=?"
    args: list[Any] = [account]
    if card:
        sql += " AND (card_id=? OR offer_id=?)"
        args += [card, card]
    sql += " ORDER BY id DESC LIMIT ?"
    return [dict(r) for r in conn.execute(sql, (*args, limit))]


def snapshot_document(conn: sqlite3.Connection, account: str, card_ids: Iterable[str], *, source: str,
                      comment: str = "") -> PriceDocument:
    """A document that puts the given cards back at their current prices (used to revert a rule)."""
    current = current_prices(conn, account)
    by_id = {c.card_id: c for c in account_cards(conn, account)}
    lines = []
    for cid in card_ids:
        p = current.get(cid)
        c = by_id.get(cid)
        if p is None or c is None:
            continue
        lines.append(PriceLine("card", c.card_id, price=p.price, old_price=p.old_price or Decimal(0),
                               min_price=p.min_price))
    return PriceDocument(account=account, lines=lines, comment=comment, source=source, rounding=Decimal("0.01"))


def sync_main(argv: list[str]) -> int:
    """`marketsync sync prices ARGS` - the cloud CLI's sync_main delegates here (cloud_sync/money_cli.py)."""
    from cloud_sync.money_cli import sync_prices

    return sync_prices(argv)
