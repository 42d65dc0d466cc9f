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
from cloud_sync.i18n import translations
from cloud_sync.stock import push as stock_push
from cloud_sync.stock import warehouses
from cloud_sync.stock.ledger import StockError, held_for, level, moves, source_age
from marketplaces import profiles


@dataclass
class Explanation:
    """How one published number was computed (`marketsync stock why`)."""

    item_id: str
    account: str
    lines: list[str] = field(default_factory=list)
    published: dict[str, int] = field(default_factory=dict)  # "card@mp_warehouse" -> quantity

    def text(self) -> str:
        return "\n".join(self.lines)


def why(conn: sqlite3.Connection, cfg: CloudConfig, item_id: str, account: str, now: float | None = None,
        lang: str | None = None) -> Explanation:
    """Explain how the numbers published for an item on an account were computed, in `lang` (else the
    default language, Russian)."""
    now = time.time() if now is None else now
    _ = translations(lang).gettext  # else the service's language ([ui] language)
    kinds = {"balance": _("balance from 1C"), "reserve": _("reserve"), "release": _("release"), "pick": _("pick"),
             "ship": _("shipment"), "receipt": _("receipt"), "return": _("return"), "adjust": _("adjustment"),
             "count": _("count"), "writeoff": _("write-off")}
    known = profiles()
    sources = {"barcode": _("by barcode"), "article": _("by article"), "manual": _("by hand"), "order": _("order"),
               "1c": _("1C"), "site": _("site"), "count": _("count")}
    settings = cfg.accounts.get(account)
    if settings is None:
        raise StockError(f"unknown account {account!r}")
    item = conn.execute("SELECT id, name, article FROM items WHERE id=? OR article=?", (item_id, item_id)).fetchone()
    if item is None:
        raise StockError(f"unknown item {item_id!r} (give its 1C id or article)")
    item_id = item["id"]
    ex = Explanation(item_id, account)
    a = settings.allocation
    ex.lines.append(_("Item %(item)s «%(name)s» on account %(account)s (%(mp)s)") % {
        "item": item["article"] or item_id, "name": item["name"], "account": account,
        "mp": known[settings.marketplace].title if settings.marketplace in known else settings.marketplace})
    ex.lines.append(_("  rule: publish floor(available × %(share)s) − buffer %(buffer)s, ÷ pack size") % {
        "share": f"{a.share:g}", "buffer": a.buffer}
                    + (_(", at most %(n)s") % {"n": a.max_listed} if a.max_listed is not None else ""))
    whmap = warehouses.account_warehouses(conn, cfg, account)
    if not whmap:
        ex.lines.append(_("  no marketplace warehouse of this account is mapped to an own warehouse: nothing is pushed"))
    for own in sorted(set(whmap.values())):
        lv = level(conn, item_id, own)
        age = source_age(conn, own, now)
        src = _("never heard from 1C or a site") if age is None else _("last source data %(s)s s ago") % {
            "s": f"{age:.0f}"}
        ex.lines.append(_("  own warehouse %(own)s: on hand %(on_hand)s, reserved %(reserved)s, available"
                          " %(available)s (%(src)s)") % {"own": own, "on_hand": lv.on_hand, "reserved": lv.reserved,
                                                         "available": lv.available, "src": src})
        for r in held_for(conn, item_id, own):
            ex.lines.append(_("    reserved %(n)s for order %(order)s") % {"n": r[1], "order": r[0]})
    linked = [c for c in catalog.cards_of_item(conn, item_id) if c.account == account]
    if not linked:
        ex.lines.append(_("  no card of this account is linked to the item"))
    for c in linked:
        for mp_wh, (own, position, parts) in stock_push.split(whmap).items():
            lv = level(conn, item_id, own)
            total = stock_push.quantity_for(conn, cfg, c, own)
            qty = stock_push.share_of(total, position, parts)
            ex.published[f"{c.card_id}@{mp_wh}"] = qty
            base = int(max(0, lv.available) * a.share)
            calc = _("floor(%(available)s × %(share)s) = %(base)s, − %(buffer)s = %(left)s, ÷ pack %(pack)s ="
                     " %(result)s") % {"available": max(0, lv.available), "share": f"{a.share:g}", "base": base,
                                       "buffer": a.buffer, "left": max(0, base - a.buffer), "pack": c.pack,
                                       "result": max(0, base - a.buffer) // c.pack}
            if a.max_listed is not None:
                calc += _(", capped at %(n)s") % {"n": a.max_listed}
            if parts > 1:
                calc += _("; %(total)s split between the %(parts)s marketplace warehouses shipping from %(own)s") % {
                    "total": total, "parts": parts, "own": own}
            if not c.visible:
                calc = _("card hidden from the storefront → 0")
            pub = conn.execute("SELECT quantity, ts FROM stock_published WHERE account=? AND card_id=? AND"
                               " warehouse_id=?", (account, c.card_id, mp_wh)).fetchone()
            q = conn.execute("SELECT quantity, state, error FROM stock_push_queue WHERE account=? AND card_id=? AND"
                             " warehouse_id=?", (account, c.card_id, mp_wh)).fetchone()
            shown = (_("never pushed") if pub is None else
                     _("the marketplace moved it by itself (an order cancelled there): to be pushed again")
                     if pub[0] == stock_push.UNKNOWN else
                     _("marketplace shows %(n)s (since %(s)s s)") % {"n": pub[0], "s": f"{now - pub[1]:.0f}"})
            queued = _("; queued %(n)s (%(state)s)") % {"n": q[0], "state": q[1] + (": " + q[2] if q[2] else "")} \
                if q else ""
            ex.lines.append(_("  card %(offer)s (pack %(pack)s, linked by %(source)s) @ marketplace warehouse"
                              " %(mp_wh)s → %(own)s: %(calc)s → %(qty)s; %(shown)s%(queued)s") % {
                "offer": c.offer_id, "pack": c.pack, "source": sources.get(c.link_source, c.link_source or "?"), "mp_wh": mp_wh,
                "own": own, "calc": calc, "qty": qty, "shown": shown, "queued": queued})
    fbo = conn.execute("SELECT f.warehouse_id, f.quantity, f.read_ts FROM fbo_stock f JOIN card_links l ON"
                       " l.account=f.account AND l.card_id=f.card_id WHERE f.account=? AND l.item_id=?",
                       (account, item_id)).fetchall()
    for wh, qty, read_ts in fbo:
        ex.lines.append(_("  FBO (the marketplace's own stock, not ours; never pushed): %(n)s at %(wh)s,"
                          " read %(s)s s ago") % {"n": qty, "wh": wh, "s": f"{now - read_ts:.0f}"})
    recent = moves(conn, item_id, limit=5)
    if recent:
        ex.lines.append(_("  last moves:"))
        for m in recent:
            ex.lines.append(_("    #%(id)s %(kind)s at %(wh)s: on hand %(on_hand)s, reserved %(reserved)s →"
                              " %(after)s (%(source)s)") % {
                "id": m.id, "kind": kinds.get(m.kind, m.kind), "wh": m.warehouse, "on_hand": f"{m.on_hand_delta:+d}",
                "reserved": f"{m.reserved_delta:+d}", "after": f"{m.on_hand_after}/{m.reserved_after}",
                "source": sources.get(m.source, m.source) + (" " + m.ref if m.ref else "")})
    return ex
