"""Three-way stock reconciliation («Сверка»): per item and own warehouse, 1C's last balance, the ledger
(with every move in flight that 1C has not booked yet) and what each account's marketplace shows (FBS
stock read back where its API allows) against what the planner means it to show.

Every difference is either explained by named causes — moves in flight (a pick, a receipt at the site…),
a push still queued, held by the zero guard or failed — or flagged as unexplained. `reconcile` only
reads; `record` keeps the result in `stock_reconciliations` (the «Сверка» page shows the last one, the
scheduled run alerts on unexplained differences). Texts are the seller's words, in Russian.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from cloud_sync.catalog import cards as catalog
from cloud_sync.config import CloudConfig
from cloud_sync.db import transaction
from cloud_sync.stock import ledger, warehouses
from cloud_sync.stock import push as stock_push

MIGRATIONS = [
    """
    CREATE TABLE stock_reconciliations (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        items INTEGER NOT NULL,
        differences INTEGER NOT NULL,
        explained INTEGER NOT NULL,
        unexplained INTEGER NOT NULL,
        details TEXT NOT NULL            -- JSON: the differences and what each account's read-back gave
    );
    """,
]

MOVE_WORDS = {"pick": "сборка", "ship": "отгрузка", "receipt": "приёмка", "return": "возврат", "adjust": "корректировка",
              "count": "инвентаризация", "writeoff": "списание"}

# what a marketplace's read-back gave: {(card_id, marketplace warehouse): quantity}, or the reason there is none
Shown = Mapping[tuple[str, str], int] | str


@dataclass
class Difference:
    item_id: str
    article: str
    warehouse: str  # own warehouse
    where: str  # "1c" or the account's name
    expected: int  # the ledger: 1C + in flight; a marketplace: what the planner means it to show
    found: int  # the ledger's on hand; what the marketplace shows
    explained: bool
    why: str
    card_id: str = ""
    mp_warehouse: str = ""


@dataclass
class Reconciliation:
    ts: float
    items: int = 0
    differences: list[Difference] = field(default_factory=list)
    accounts: dict[str, str] = field(default_factory=dict)  # account -> what its read-back gave, in words

    @property
    def unexplained(self) -> list[Difference]:
        return [d for d in self.differences if not d.explained]

    def summary(self) -> dict[str, int]:
        return {"items": self.items, "differences": len(self.differences),
                "explained": len(self.differences) - len(self.unexplained), "unexplained": len(self.unexplained)}


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%d.%m.%Y %H:%M UTC")


def _moves_text(moves: list[ledger.Move]) -> str:
    parts = [f"{MOVE_WORDS.get(m.kind, m.kind)} {m.on_hand_delta:+d}" + (f" ({m.ref})" if m.ref else "")
             + f" {_when(m.ts)}" for m in moves[:6]]
    more = f" и ещё {len(moves) - 6}" if len(moves) > 6 else ""
    return "; ".join(parts) + more


def reconcile(conn: sqlite3.Connection, cfg: CloudConfig, shown: Mapping[str, Shown] | None = None, *,
              source: str = "1c", now: float | None = None,
              horizon_s: float = ledger.IN_FLIGHT_HORIZON_S) -> Reconciliation:
    """Compare 1C, the ledger and the marketplaces (`shown`: per account, its read-back or why none)."""
    now = time.time() if now is None else now
    out = Reconciliation(ts=now)
    shown = shown or {}
    articles = {r[0]: r[1] for r in conn.execute("SELECT id, article FROM items")}
    as_of = {r[0]: r[1] for r in conn.execute("SELECT warehouse, as_of FROM stock_balance_asof WHERE source=?",
                                              (source,))}
    stated = {(r[0], r[1]): r[2] for r in conn.execute(
        "SELECT item_id, warehouse, quantity FROM stock_stated WHERE source=?", (source,))}
    levels = {(lv.item_id, lv.warehouse): lv for lv in ledger.levels(conn)}
    item_ids = {i for i, _ in levels} | {i for i, _ in stated}
    out.items = len(item_ids)
    for (item_id, wh) in sorted(set(levels) | set(stated)):
        said = stated.get((item_id, wh))
        if said is None:
            continue  # 1C never spoke for it (a receipt at the site of an item 1C keeps elsewhere)
        lv = levels.get((item_id, wh))
        on_hand = lv.on_hand if lv else 0
        flying = ledger.in_flight_moves(conn, item_id, wh, as_of=as_of.get(wh, now), now=now, horizon_s=horizon_s)
        expected = max(0, said + sum(m.on_hand_delta for m in flying))
        if on_hand == expected == said:
            continue
        if on_hand == expected:
            why = f"1С: {said}, в учёте {on_hand}: в пути (1С ещё не провела) — {_moves_text(flying)}"
        else:
            why = (f"1С: {said}, в учёте {on_hand}; движения в пути объясняют {expected - said:+d}, не объяснено"
                   f" {on_hand - expected:+d} (движение старше горизонта или правка мимо учёта?)")
        out.differences.append(Difference(item_id, articles.get(item_id, ""), wh, source, expected, on_hand,
                                          on_hand == expected, why))
    for account, reading in sorted(shown.items()):
        _compare_account(conn, cfg, account, reading, out, articles)
    return out


def _compare_account(conn: sqlite3.Connection, cfg: CloudConfig, account: str, reading: Shown,
                     out: Reconciliation, articles: dict[str, str]) -> None:
    settings = cfg.accounts.get(account)
    if settings is None:
        return
    if isinstance(reading, str):
        out.accounts[account] = reading
        return
    split = stock_push.split(warehouses.account_warehouses(conn, cfg, account))
    read_whs = {wh for _, wh in reading}
    compared = 0
    for item_id in sorted({r[0] for r in conn.execute(
            "SELECT DISTINCT item_id FROM card_links WHERE account=? AND item_id IS NOT NULL", (account,))}):
        for c in catalog.cards_of_item(conn, item_id):
            if c.account != account:
                continue
            totals: dict[str, int] = {}
            for mp_wh, (own, position, parts) in split.items():
                if own not in totals:
                    totals[own] = stock_push.quantity_for(conn, cfg, c, own)
                planned = stock_push.share_of(totals[own], position, parts)
                found = reading.get((c.card_id, mp_wh))
                compared += 1
                if found is None and mp_wh in read_whs:
                    found = 0  # the warehouse was read and the card is not on it: it shows nothing
                if found is None:
                    if planned:
                        out.differences.append(Difference(
                            item_id, articles.get(item_id, ""), own, account, planned, -1, False,
                            f"площадка не вернула остаток склада {mp_wh}: проверить нельзя", c.card_id, mp_wh))
                    continue
                if found == planned:
                    continue
                why, ok = _push_state(conn, account, c.card_id, mp_wh, item_id, planned, found)
                out.differences.append(Difference(item_id, articles.get(item_id, ""), own, account, planned, found,
                                                  ok, why, c.card_id, mp_wh))
    out.accounts[account] = f"сверено карточек × складов: {compared}"


def _push_state(conn: sqlite3.Connection, account: str, card_id: str, mp_wh: str, item_id: str, planned: int,
                found: int) -> tuple[str, bool]:
    head = f"площадка показывает {found}, должно быть {planned}"
    q = conn.execute("SELECT quantity, state, error, hold_id FROM stock_push_queue WHERE account=? AND card_id=?"
                     " AND warehouse_id=?", (account, card_id, mp_wh)).fetchone()
    if q is not None and q["quantity"] == planned:
        if q["state"] == "pending":
            return f"{head}: отправка {planned} в очереди", True
        if q["state"] == "held":
            return f"{head}: отправка задержана защитой от обнуления (№ {q['hold_id']}), ждёт подтверждения", True
        return f"{head}: отправка не удалась — {q['error']}", True
    if conn.execute("SELECT 1 FROM stock_dirty WHERE item_id=?", (item_id,)).fetchone():
        return f"{head}: остаток только что изменился, пересчёт ждёт отправки", True
    pub = conn.execute("SELECT quantity FROM stock_published WHERE account=? AND card_id=? AND warehouse_id=?",
                       (account, card_id, mp_wh)).fetchone()
    if pub is not None and pub[0] == planned:
        return f"{head}, хотя отправлено {planned}: площадка изменила остаток сама (заказ, который ещё не получен?)", \
            False
    return f"{head}; опубликовано {pub[0] if pub else 'ничего'}, отправки в очереди нет", False


def record(conn: sqlite3.Connection, result: Reconciliation) -> int:
    """Keep a reconciliation (the page shows the last one). Returns its id."""
    details = {"differences": [asdict(d) for d in result.differences], "accounts": result.accounts}
    s = result.summary()
    with transaction(conn):
        cur = conn.execute("INSERT INTO stock_reconciliations(ts, items, differences, explained, unexplained, details)"
                           " VALUES (?,?,?,?,?,?)", (result.ts, s["items"], s["differences"], s["explained"],
                                                     s["unexplained"], json.dumps(details, ensure_ascii=False)))
        conn.execute("DELETE FROM stock_reconciliations WHERE id NOT IN (SELECT id FROM stock_reconciliations"
                     " ORDER BY id DESC LIMIT 100)")
    return int(cur.lastrowid or 0)


def last(conn: sqlite3.Connection) -> dict | None:
    """The last reconciliation kept: its summary, differences and per-account notes."""
    row = conn.execute("SELECT * FROM stock_reconciliations ORDER BY id DESC LIMIT 1").fetchone()
    if row is None:
        return None
    out = dict(row)
    out.update(json.loads(out.pop("details")))
    return out
