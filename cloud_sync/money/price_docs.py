"""Price documents: a batch of changes for one account. Each line targets one item (1C id or article), one
category (the marketplace card category of the account, or a 1C item group with its subgroups), one card
(offer id or native id) or all the account's cards, and sets an absolute price or changes the current one
by a percentage, optionally with a crossed-out price (`old_price`) or a discount (`discount_percent`) and
a floor (`min_price`). When several lines hit one card, the last line wins. Parsing, checking, saving and
loading documents (`price_documents`), and snapshots of current prices as a document (to revert). A draft
(a document held for a person's confirmation) is discarded by hand (`discard_draft`) or expires
(`expire_drafts`) after `[pricing] draft_ttl_days`: nothing stays waiting forever.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from cloud_sync.db import transaction
from cloud_sync.money.price_list import account_cards, current_prices

HUNDRED = Decimal(100)


Scope = Literal["item", "category", "card", "all"]


class PriceDocumentError(ValueError):
    """A price document that cannot be applied as it stands; `problems` lists every reason."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        self.problems = list(problems) or [message]
        detail = "; ".join(self.problems[:10]) + (" ..." if len(self.problems) > 10 else "")
        super().__init__(f"{message}: {detail}" if problems else message)


class ConfirmationRequired(PriceDocumentError):
    """The document is valid but has warnings a person must confirm (large drops, quarantine,
    below cost). Apply again with `confirm=True`."""


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


def discard_draft(conn: sqlite3.Connection, doc_id: str) -> bool:
    """A draft (a preview, or a document held for a confirmation) that will not be sent: marked discarded,
    kept for the record. False when there is no such draft."""
    with transaction(conn):
        return conn.execute("UPDATE price_documents SET status='discarded' WHERE id=? AND status='draft'",
                            (doc_id,)).rowcount > 0


def expire_drafts(conn: sqlite3.Connection, ttl: timedelta, *, now: datetime | None = None) -> int:
    """Drafts older than `ttl` are marked expired (kept for the record, never sent); how many."""
    now = now or datetime.now(UTC)
    with transaction(conn):
        return conn.execute("UPDATE price_documents SET status='expired' WHERE status='draft' AND created_at<?",
                            ((now - ttl).isoformat(),)).rowcount
