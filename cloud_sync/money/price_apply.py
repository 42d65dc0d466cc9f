"""Applying a price document: refused with errors (or with unconfirmed warnings) before anything is sent;
the rest pushed through the account's adapter in one call, each card's result recorded in the price
list and its history, the document's status set.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal

from cloud_sync.db import transaction
from cloud_sync.money import price_reads
from cloud_sync.money.price_docs import ConfirmationRequired, PriceDocument, PriceDocumentError, save_document
from cloud_sync.money.price_list import Price, as_text, upsert_price
from cloud_sync.money.price_preview import PreviewRow, PricingSettings, preview
from marketplaces.base import Marketplace, MarketplaceError, PriceChange

HUNDRED = Decimal(100)


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
          settings: PricingSettings | None = None, now: datetime | None = None,
          base: dict[str, Price] | None = None) -> ApplyResult:
    """Preview, refuse on any error (or unconfirmed warning) before sending, push the changed prices
    through the adapter in one call, record each card's result and update the price list. `base`: the
    prices percent lines are taken from (see `preview`)."""
    now = now or datetime.now(UTC)
    pv = preview(conn, doc, settings=settings, marketplace=market.name, now=now, base=base)
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
                upsert_price(conn, doc.account, r.card.card_id, r.card.offer_id,
                              Price(r.effective_price, r.new.old_price, r.new.min_price), f"document:{doc.id}", now)
            results.append(CardResult(r.card.card_id, r.card.offer_id, ok, error, r.effective_price))
        if changes:
            price_reads.note_pushed(conn, doc.account)  # read back once the marketplace has applied them
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
         as_text(r.old.price) if r.old else None, as_text(r.old.old_price) if r.old else None,
         str(r.effective_price), as_text(r.new.old_price), as_text(r.new.min_price), json.dumps(sent), now.isoformat(),
         int(ok), error),
    )
