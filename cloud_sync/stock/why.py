"""Why a published number is what it is (`marketsync stock why ITEM --account A`): the allocation rule,
the own warehouses and their levels and reservations, each card's computation per marketplace warehouse,
what the marketplace shows and what is queued, FBO stock, the last moves.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass, field

from cloud_sync.catalog import cards as catalog
from cloud_sync.config import CloudConfig
from cloud_sync.stock import push as stock_push
from cloud_sync.stock import warehouses
from cloud_sync.stock.ledger import StockError, held_for, level, moves, source_age


@dataclass
class Explanation:
    """How one published number was computed (`marketsync stock why`)."""

    item_id: str
    account: str
    lines: list[str] = field(default_factory=list)
    published: dict[str, int] = field(default_factory=dict)  # "card@mp_warehouse" -> quantity

    def text(self) -> str:
        return "\n".join(self.lines)


def why(conn: sqlite3.Connection, cfg: CloudConfig, item_id: str, account: str, now: float | None = None) -> Explanation:
    """Explain how the numbers published for an item on an account were computed."""
    now = time.time() if now is None else now
    settings = cfg.accounts.get(account)
    if settings is None:
        raise StockError(f"unknown account {account!r}")
    item = conn.execute("SELECT id, name, article FROM items WHERE id=? OR article=?", (item_id, item_id)).fetchone()
    if item is None:
        raise StockError(f"unknown item {item_id!r} (give its 1C id or article)")
    item_id = item["id"]
    ex = Explanation(item_id, account)
    a = settings.allocation
    ex.lines.append(f"Item {item['article'] or item_id} «{item['name']}» on account {account} ({settings.marketplace})")
    ex.lines.append(f"  rule: publish floor(available × {a.share:g}) − buffer {a.buffer}, ÷ pack size"
                    + (f", at most {a.max_listed}" if a.max_listed is not None else ""))
    whmap = warehouses.account_warehouses(conn, cfg, account)
    if not whmap:
        ex.lines.append("  no marketplace warehouse of this account is mapped to an own warehouse: nothing is pushed")
    for own in sorted(set(whmap.values())):
        lv = level(conn, item_id, own)
        age = source_age(conn, own, now)
        src = "never heard from 1C or a site" if age is None else f"last source data {age:.0f} s ago"
        ex.lines.append(f"  own warehouse {own}: on hand {lv.on_hand}, reserved {lv.reserved},"
                        f" available {lv.available} ({src})")
        for r in held_for(conn, item_id, own):
            ex.lines.append(f"    reserved {r[1]} for order {r[0]}")
    linked = [c for c in catalog.cards_of_item(conn, item_id) if c.account == account]
    if not linked:
        ex.lines.append("  no card of this account is linked to the item")
    for c in linked:
        for mp_wh, (own, position, parts) in stock_push.split(whmap).items():
            lv = level(conn, item_id, own)
            total = stock_push.quantity_for(conn, cfg, c, own)
            qty = stock_push.share_of(total, position, parts)
            ex.published[f"{c.card_id}@{mp_wh}"] = qty
            base = int(max(0, lv.available) * a.share)
            calc = (f"floor({max(0, lv.available)} × {a.share:g}) = {base}, − {a.buffer} = {max(0, base - a.buffer)},"
                    f" ÷ pack {c.pack} = {max(0, base - a.buffer) // c.pack}")
            if a.max_listed is not None:
                calc += f", capped at {a.max_listed}"
            if parts > 1:
                calc += f"; {total} split between the {parts} marketplace warehouses shipping from {own}"
            if not c.visible:
                calc = "card hidden from the storefront → 0"
            pub = conn.execute("SELECT quantity, ts FROM stock_published WHERE account=? AND card_id=? AND"
                               " warehouse_id=?", (account, c.card_id, mp_wh)).fetchone()
            q = conn.execute("SELECT quantity, state, error FROM stock_push_queue WHERE account=? AND card_id=? AND"
                             " warehouse_id=?", (account, c.card_id, mp_wh)).fetchone()
            shown = ("never pushed" if pub is None else
                     "the marketplace moved it by itself (an order cancelled there): to be pushed again"
                     if pub[0] == stock_push.UNKNOWN else f"marketplace shows {pub[0]} (since {now - pub[1]:.0f} s)")
            queued = f"; queued {q[0]} ({q[1]}{': ' + q[2] if q[2] else ''})" if q else ""
            ex.lines.append(f"  card {c.card_id} ({c.offer_id}, pack {c.pack}, linked by {c.link_source or '?'})"
                            f" @ marketplace warehouse {mp_wh} → {own}: {calc} → {qty}; {shown}{queued}")
    fbo = conn.execute("SELECT f.warehouse_id, f.quantity, f.read_ts FROM fbo_stock f JOIN card_links l ON"
                       " l.account=f.account AND l.card_id=f.card_id WHERE f.account=? AND l.item_id=?",
                       (account, item_id)).fetchall()
    for wh, qty, read_ts in fbo:
        ex.lines.append(f"  FBO (the marketplace's own stock, not ours; never pushed): {qty} at {wh},"
                        f" read {now - read_ts:.0f} s ago")
    recent = moves(conn, item_id, limit=5)
    if recent:
        ex.lines.append("  last moves:")
        for m in recent:
            ex.lines.append(f"    #{m.id} {m.kind} at {m.warehouse}: on hand {m.on_hand_delta:+d}, reserved"
                            f" {m.reserved_delta:+d} → {m.on_hand_after}/{m.reserved_after} ({m.source}"
                            f"{' ' + m.ref if m.ref else ''})")
    return ex
