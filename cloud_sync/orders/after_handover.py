"""Orders after the hand-over, to their final state, and the parcels that come back.

Following: every order handed over (its ship done on the marketplace) is read back with the adapter's
`order_statuses` — first `FIRST_CHECK_S` after the hand-over, then with a back-off doubling on each read
that finds nothing new, up to `MAX_CHECK_S` (both in marketplace time: divided by the account's
time_scale) — until it is final: delivered (stage `delivered`), or on its way back. A cancellation after
the hand-over (the buyer refused, the marketplace gave up, not accepted at the sorting centre) releases
no stock — the units left with the parcel — it becomes an expected return (stage `return_expected`), as
does a status the profile maps to `returned`. The returns lists of marketplaces that have one
(`adapter.returns(since)`) are polled too: a buyer's return after delivery is found there, with its lines.

Returns: each expected return (table `order_returns`) is sent down to the site that shipped the order
(`return_expected`); the site answers `return_received` with the units found good and defective. Good
units go back on hand at the order's warehouse (published again), defective ones to its defect
warehouse (`stock.warehouses.defect_warehouse`, never published); the order becomes `returned`, which
1C reads in the orders exchange (`onec.orders_out`: the order's status and a «Возврат товара» document)
and the commission report counts per item (`returned_units`).

Owns the tables `order_follow`, `order_returns` and `return_polls`.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cloud_sync.config import CloudConfig
from cloud_sync.db import transaction
from cloud_sync.orders.records import (
    Waker,
    log_error,
    log_event,
    order_key,
    send_to_site,
    set_stage,
    task_line,
)
from cloud_sync.stock import ledger as stock
from cloud_sync.stock import warehouses
from marketplaces.base import Marketplace, MarketplaceError, NotSupported, OrderReturn
from sitelink import Reject

log = logging.getLogger("cloud_sync.orders.after_handover")

MIGRATIONS = [
    """
    CREATE TABLE order_follow (
        order_id INTEGER PRIMARY KEY REFERENCES orders(id),
        next_check REAL NOT NULL,
        quiet INTEGER NOT NULL DEFAULT 0,   -- reads in a row that found nothing new: the back-off
        checked_ts REAL
    );
    CREATE TABLE order_returns (
        id TEXT PRIMARY KEY,                -- the return id the site sees: "<order key>#<marketplace return id or 1>"
        order_id INTEGER NOT NULL REFERENCES orders(id),
        native_return_id TEXT NOT NULL DEFAULT '',
        kind TEXT NOT NULL,                 -- return (the buyer's, after delivery) | unredeemed | cancelled
        reason TEXT NOT NULL DEFAULT '',
        site TEXT,
        warehouse TEXT NOT NULL,
        state TEXT NOT NULL,                -- expected | received
        lines TEXT NOT NULL,                -- JSON {item id: units expected}
        good TEXT NOT NULL DEFAULT '{}',    -- JSON {item id: units received good}
        defective TEXT NOT NULL DEFAULT '{}',
        expected_ts REAL NOT NULL,
        received_ts REAL
    );
    CREATE INDEX order_returns_order ON order_returns(order_id);
    CREATE TABLE return_polls (
        account TEXT PRIMARY KEY,
        since_ts REAL NOT NULL              -- the returns list was read up to here
    );
    """,
]

FIRST_CHECK_S = 3600.0  # marketplace time after the hand-over before the first read ([jobs] follow_first_s)
MAX_CHECK_S = 12 * 3600.0  # the back-off's ceiling ([jobs] follow_max_s)
RETURNS_LOOKBACK_S = 14 * 86400.0  # the first returns poll of an account looks this far back
FOLLOWED = ("handed_over",)
AFTER_HANDOVER = ("handed_over", "delivered", "return_expected", "returned")
KIND_WORDS = {"return": "возврат покупателя", "unredeemed": "невыкуп", "cancelled": "отмена после передачи"}


@dataclass
class FollowResult:
    read: int = 0
    changed: int = 0
    delivered: int = 0
    returns: int = 0
    errors: list[str] = field(default_factory=list)


def _scale(cfg: CloudConfig, account: str) -> float:
    settings = cfg.accounts.get(account)
    scale = getattr(getattr(settings, "account", None), "time_scale", 1.0) if settings else 1.0
    return float(scale or 1.0)


def backoff_s(quiet: int, scale: float = 1.0, first: float = FIRST_CHECK_S, most: float = MAX_CHECK_S) -> float:
    """Seconds until the next read after `quiet` reads in a row found nothing new (`first`, `most`: the
    first wait and the ceiling, marketplace seconds — `[jobs] follow_first_s`, `follow_max_s`)."""
    return min(first * (2 ** max(0, quiet)), most) / scale


_FOLLOW_NEW = (" FROM orders o WHERE o.account=? AND o.stage='handed_over' AND NOT EXISTS (SELECT 1 FROM order_actions a"
               " WHERE a.order_id=o.id AND a.action='ship' AND a.state!='done') AND (o.supply_id IS NULL OR EXISTS"
               " (SELECT 1 FROM supplies s WHERE s.account=o.account AND s.supply_id=o.supply_id AND"
               " s.state='shipped'))")


def _follow_rows_change(conn: sqlite3.Connection, account: str) -> bool:
    """Whether `_update_follow_rows` would add or remove a row (read without the write lock: a follow round
    that has nothing to add or remove takes none; what changes meanwhile is seen by the next round)."""
    return conn.execute(
        "SELECT EXISTS (SELECT 1" + _FOLLOW_NEW + " AND NOT EXISTS (SELECT 1 FROM order_follow f WHERE"
        " f.order_id=o.id)) OR EXISTS (SELECT 1 FROM order_follow f JOIN orders o ON o.id=f.order_id WHERE"
        f" o.account=? AND o.stage NOT IN ({','.join('?' * len(FOLLOWED))}))",
        (account, account, *FOLLOWED)).fetchone()[0] == 1


def _update_follow_rows(conn: sqlite3.Connection, account: str, first_s: float) -> None:
    with transaction(conn):
        # a handed-over order is followed once the marketplace has taken it (its ship is done; in a batch,
        # the batch shipped), the first read FIRST_CHECK_S after that
        conn.execute(
            "INSERT OR IGNORE INTO order_follow(order_id, next_check) SELECT o.id, COALESCE((SELECT a.updated_ts FROM"
            " order_actions a WHERE a.order_id=o.id AND a.action='ship'), o.updated_ts) + ? FROM orders o WHERE"
            " o.account=? AND o.stage='handed_over' AND NOT EXISTS (SELECT 1 FROM order_actions a WHERE"
            " a.order_id=o.id AND a.action='ship' AND a.state!='done') AND (o.supply_id IS NULL OR EXISTS (SELECT 1"
            " FROM supplies s WHERE s.account=o.account AND s.supply_id=o.supply_id AND s.state='shipped'))",
            (first_s, account))
        conn.execute("DELETE FROM order_follow WHERE order_id IN (SELECT id FROM orders WHERE account=? AND stage NOT"
                     f" IN ({','.join('?' * len(FOLLOWED))}))", (account, *FOLLOWED))


def follow(conn: sqlite3.Connection, cfg: CloudConfig, adapter: Marketplace, *, link: Any = None,
           now: float | None = None, limit: int = 200, wake: Waker | None = None) -> FollowResult:
    """Read back the account's handed-over orders that are due (and its returns list) and move them on."""
    now = time.time() if now is None else now
    account = adapter.account
    scale = _scale(cfg, account)
    first, most = cfg.jobs.follow_first_s, cfg.jobs.follow_max_s
    res = FollowResult()
    if _follow_rows_change(conn, account):
        _update_follow_rows(conn, account, first / scale)
    due = conn.execute(
        "SELECT o.id, o.native_id, o.native_status, o.native_substatus, f.quiet FROM order_follow f JOIN orders o"
        " ON o.id=f.order_id WHERE o.account=? AND f.next_check<=? ORDER BY f.next_check LIMIT ?",
        (account, now, limit)).fetchall()
    if due:
        try:
            found = adapter.order_statuses([r["native_id"] for r in due])
        except MarketplaceError as exc:
            res.errors.append(str(exc))
            with transaction(conn):
                log_error(conn, "orders", f"статусы заказов после передачи не прочитаны: {exc}", account)
            found = None
        if found is not None:
            with transaction(conn):
                for r in due:
                    res.read += 1
                    status = found.get(r["native_id"])
                    moved = status is not None and status != (r["native_status"], r["native_substatus"])
                    if moved:
                        assert status is not None
                        outcome = apply_status(conn, cfg, r["id"], status[0], status[1], link=link, now=now)
                        res.changed += 1
                        res.delivered += outcome == "delivered"
                    quiet = 0 if moved else r["quiet"] + 1
                    conn.execute("UPDATE order_follow SET quiet=?, next_check=?, checked_ts=? WHERE order_id=?",
                                 (quiet, now + backoff_s(quiet, scale, first, most), now, r["id"]))
    res.returns = poll_returns(conn, cfg, adapter, link=link, now=now)
    if (res.changed or res.returns) and wake is not None:
        wake()
    return res


def apply_status(conn: sqlite3.Connection, cfg: CloudConfig, oid: int, native_status: str, native_substatus: str = "",
                 *, link: Any = None, now: float | None = None) -> str:
    """The marketplace says an order past its hand-over moved (a poll or a push), in the caller's
    transaction. Returns what it did: delivered | return_expected | status | unknown status."""
    now = time.time() if now is None else now
    o = conn.execute("SELECT * FROM orders WHERE id=?", (oid,)).fetchone()
    unified = cfg.unified_status(o["marketplace"], native_status, native_substatus)
    said = f"{native_status}/{native_substatus}".strip("/")
    if unified is None:  # nothing changes: the manager is told which status the map lacks
        log_error(conn, "orders", f"заказ {o['number'] or o['native_id']}: маркетплейс сообщил неизвестный статус"
                                  f" {said!r}; заказ не изменён (добавьте статус в [status_map])", o["account"])
        return "unknown status"
    conn.execute("UPDATE orders SET native_status=?, native_substatus=? WHERE id=?", (native_status, native_substatus, oid))
    stage = o["stage"]
    if stage == "handed_over" and unified == "delivered":
        set_stage(conn, cfg, oid, "delivered", now)
        log_event(conn, oid, "delivered", f"маркетплейс: {said}", now)
        return "delivered"
    if stage in ("handed_over", "delivered") and unified in ("cancelled", "returned"):
        kind = "cancelled" if unified == "cancelled" else "return" if stage == "delivered" else "unredeemed"
        expect_return(conn, cfg, oid, kind=kind, reason=f"маркетплейс: {said}", link=link, now=now)
        return "return_expected"
    set_stage(conn, cfg, oid, stage, now)  # the unified status follows the marketplace's word
    return "status"


def expect_return(conn: sqlite3.Connection, cfg: CloudConfig, oid: int, *, kind: str, reason: str = "",
                  native_return_id: str = "", lines: dict[str, int] | None = None, link: Any = None,
                  now: float | None = None) -> str | None:
    """The order's parcel (or `lines`: item -> units) is on its way back: record the expected return,
    move the order to `return_expected` and tell the site that shipped it. Idempotent: a return already
    known (by the marketplace's return id, or the order's return found by its status) is not added again.
    Returns the return id, or None when the order shipped nothing to return."""
    now = time.time() if now is None else now
    o = conn.execute("SELECT * FROM orders WHERE id=?", (oid,)).fetchone()
    known = conn.execute("SELECT id, native_return_id FROM order_returns WHERE order_id=? ORDER BY expected_ts",
                         (oid,)).fetchall()
    if native_return_id and any(r["native_return_id"] == native_return_id for r in known):
        return next(r["id"] for r in known if r["native_return_id"] == native_return_id)
    unnamed = [r for r in known if not r["native_return_id"]]
    if native_return_id and unnamed:  # the return its status announced: now we know the marketplace's id
        conn.execute("UPDATE order_returns SET native_return_id=? WHERE id=?", (native_return_id, unnamed[0]["id"]))
        return str(unnamed[0]["id"])
    if not native_return_id and known:
        return str(known[0]["id"])
    ordered = {r["item_id"]: r["units"] for r in conn.execute(
        "SELECT item_id, SUM(units) AS units FROM order_lines WHERE order_id=? AND item_id IS NOT NULL GROUP BY item_id",
        (oid,))}
    wanted = {k: min(v, ordered[k]) for k, v in (lines or ordered).items() if k in ordered and v > 0}
    if not wanted:
        log_error(conn, "orders", f"заказ {o['number'] or o['native_id']}: возврат без товаров этого заказа"
                                  f" ({reason or kind}); не принят", o["account"])
        return None
    rid = f"{o['key']}#{native_return_id or len(known) + 1}"
    conn.execute("INSERT INTO order_returns(id, order_id, native_return_id, kind, reason, site, warehouse, state,"
                 " lines, expected_ts) VALUES (?,?,?,?,?,?,?,?,?,?)",
                 (rid, oid, native_return_id, kind, reason, o["site"], o["warehouse"], "expected",
                  json.dumps(wanted), now))
    set_stage(conn, cfg, oid, "return_expected", now)
    units = sum(wanted.values())
    log_event(conn, oid, "return_expected", f"{KIND_WORDS.get(kind, kind)}: {units} шт. едут на склад"
                                            f" {o['warehouse']}" + (f" ({reason})" if reason else ""), now)
    if o["site"]:
        body: dict[str, Any] = {
            "return_id": rid, "order_id": o["key"], "kind": kind, "marketplace": o["marketplace"],
            "account": o["account"], "native_id": o["native_id"], "number": o["number"] or o["native_id"],
            "warehouse": o["warehouse"], "reason": reason,
            "lines": [task_line(conn, item, n, "", "") for item, n in sorted(wanted.items())],
            "parcel_codes": sorted({o["native_id"], o["number"] or o["native_id"], o["key"]}),
        }
        send_to_site(conn, link, o["site"], "return_expected", body)
    else:
        log_error(conn, "orders", f"заказ {o['number'] or o['native_id']}: возврат ждём, но склад {o['warehouse']!r}"
                                  " не обслуживает ни один пункт", o["account"])
    return rid


def poll_returns(conn: sqlite3.Connection, cfg: CloudConfig, adapter: Marketplace, *, link: Any = None,
                 now: float | None = None) -> int:
    """Read the account's returns list since the last read (marketplaces that have one) and expect each
    return of an order handed over here. Returns the new expected returns."""
    now = time.time() if now is None else now
    wall = time.time()  # the marketplace's list is by its own clock, whatever `now` says
    account = adapter.account
    row = conn.execute("SELECT since_ts FROM return_polls WHERE account=?", (account,)).fetchone()
    since = row[0] if row else wall - RETURNS_LOOKBACK_S
    try:
        found = adapter.returns(datetime.fromtimestamp(since - 3600, UTC))  # an hour's overlap: nothing slips
    except NotSupported:
        return 0
    except MarketplaceError as exc:
        with transaction(conn):
            log_error(conn, "orders", f"список возвратов не прочитан: {exc}", account)
        return 0
    added = 0
    # nothing listed: only the account's own poll mark is written (its key; on SQLite as ever)
    with transaction(conn, keys=None if found else (f"returns:{account}",)):
        for ret in found:
            added += take_return(conn, cfg, account, ret, link=link, now=now)
        conn.execute("INSERT INTO return_polls(account, since_ts) VALUES (?,?) ON CONFLICT(account) DO UPDATE SET"
                     " since_ts=excluded.since_ts", (account, wall))
    return added


def take_return(conn: sqlite3.Connection, cfg: CloudConfig, account: str, ret: OrderReturn, *, link: Any = None,
                now: float | None = None) -> int:
    """One return the marketplace listed: expected at the site when its order was handed over here (1 if
    it is new). A return of an order this cloud does not know is reported once, nothing changes."""
    o = conn.execute("SELECT id, stage, number FROM orders WHERE key=?",
                     (order_key(account, ret.order_native_id),)).fetchone()
    if o is None:
        mark = f"{account}:return:{ret.return_id}"
        if not conn.execute("SELECT 1 FROM event_dedup WHERE key=?", (mark,)).fetchone():
            conn.execute("INSERT INTO event_dedup(key, ts) VALUES (?,?)", (mark, now or time.time()))
            log_error(conn, "orders", f"возврат {ret.return_id} по заказу {ret.order_native_id}, которого нет в"
                                      " системе: не принят", account)
        return 0
    if o["stage"] not in AFTER_HANDOVER:  # e.g. cancelled before it left: nothing comes back
        return 0
    if conn.execute("SELECT 1 FROM order_returns WHERE order_id=? AND native_return_id=?",
                    (o["id"], ret.return_id)).fetchone():
        return 0
    before = conn.execute("SELECT COUNT(*) FROM order_returns WHERE order_id=?", (o["id"],)).fetchone()[0]
    lines = _return_units(conn, o["id"], ret)
    expect_return(conn, cfg, o["id"], kind=ret.kind, reason=f"маркетплейс: {ret.native_status}".rstrip(": "),
                  native_return_id=ret.return_id, lines=lines, link=link, now=now)
    after = conn.execute("SELECT COUNT(*) FROM order_returns WHERE order_id=?", (o["id"],)).fetchone()[0]
    return int(after > before)


def _return_units(conn: sqlite3.Connection, oid: int, ret: OrderReturn) -> dict[str, int]:
    """The marketplace's return lines as item units, by the order's own lines (card id, else offer id)."""
    out: dict[str, int] = {}
    rows = conn.execute("SELECT card_id, offer_id, item_id, quantity, units FROM order_lines WHERE order_id=?",
                        (oid,)).fetchall()
    for ln in ret.lines:
        match = next((r for r in rows if r["item_id"] and ln.card_id and r["card_id"] == ln.card_id), None) or \
            next((r for r in rows if r["item_id"] and ln.offer_id and r["offer_id"] == ln.offer_id), None)
        if match is None:
            continue
        pack = max(1, match["units"] // max(1, match["quantity"]))
        out[match["item_id"]] = out.get(match["item_id"], 0) + ln.quantity * pack
    return out


class ReturnRefused(ValueError):
    """A return report from a site cannot be applied; the message says why, in the seller's words."""


def receive_return(conn: sqlite3.Connection, cfg: CloudConfig, site: str, body: dict[str, Any], *,
                   now: float | None = None) -> str:
    """The site's `return_received`: good units back on hand at the order's warehouse, defective ones to
    its defect warehouse, the order `returned` — in the caller's transaction. A second report of a return
    already received changes nothing ("duplicate"). Raises ReturnRefused (nothing applied) for an unknown
    return, another site's, an item not in it, or more units than expected."""
    now = time.time() if now is None else now
    r = conn.execute("SELECT * FROM order_returns WHERE id=?", (body["return_id"],)).fetchone()
    if r is None:
        raise ReturnRefused(f"возврат {body['return_id']!r} не ожидается: такого возврата нет")
    if r["state"] == "received":
        return "duplicate"
    o = conn.execute("SELECT id, key, number, native_id FROM orders WHERE id=?", (r["order_id"],)).fetchone()
    if body.get("order_id") and body["order_id"] != o["key"]:
        raise ReturnRefused(f"возврат {r['id']} относится к заказу {o['key']}, а не к {body['order_id']}")
    if r["site"] and site != r["site"]:
        raise ReturnRefused(f"возврат {r['id']} ожидается в пункте {r['site']}, а не в {site}")
    expected: dict[str, int] = json.loads(r["lines"])
    good: dict[str, int] = {}
    bad: dict[str, int] = {}
    for ln in body["lines"]:
        if not isinstance(ln, dict) or not isinstance(ln.get("item_id"), str):
            raise ReturnRefused(f"возврат {r['id']}: строка без item_id")
        item = ln["item_id"]
        g, d = ln.get("good", 0), ln.get("defective", 0)
        if any(isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in (g, d)):
            raise ReturnRefused(f"возврат {r['id']}: количество товара {item} должно быть целым ≥ 0")
        if item not in expected:
            raise ReturnRefused(f"возврат {r['id']}: товара {item} не было в заказе {o['number'] or o['native_id']}")
        good[item], bad[item] = good.get(item, 0) + g, bad.get(item, 0) + d
    for item, n in expected.items():
        if good.get(item, 0) + bad.get(item, 0) > n:
            raise ReturnRefused(f"возврат {r['id']}: товара {item} принято {good.get(item, 0) + bad.get(item, 0)},"
                                f" а в возврате {n}")
    warehouse = body.get("warehouse") or r["warehouse"]
    defect = warehouses.defect_warehouse(warehouse)
    note = f"возврат {r['id']}"
    for item in sorted(set(good) | set(bad)):
        if good.get(item):
            stock.record_move(conn, item, warehouse, "return", on_hand_delta=good[item], source=f"site:{site}",
                              ref=o["key"], note=note, now=now)
        if bad.get(item):
            stock.record_move(conn, item, defect, "return", on_hand_delta=bad[item], source=f"site:{site}",
                              ref=o["key"], note=f"{note}: брак", now=now)
    conn.execute("UPDATE order_returns SET state='received', good=?, defective=?, received_ts=?, warehouse=? WHERE id=?",
                 (json.dumps({k: v for k, v in good.items() if v}), json.dumps({k: v for k, v in bad.items() if v}),
                  now, warehouse, r["id"]))
    if not conn.execute("SELECT 1 FROM order_returns WHERE order_id=? AND state='expected'", (o["id"],)).fetchone():
        set_stage(conn, cfg, o["id"], "returned", now)
    missing = sum(expected.values()) - sum(good.values()) - sum(bad.values())
    log_event(conn, o["id"], "returned", f"принято на складе {warehouse}: годных {sum(good.values())},"
                                         f" брак {sum(bad.values())}" + (f", не пришло {missing}" if missing else "")
              + (f" ({body['note']})" if body.get("note") else ""), now)
    return "received"


def register_return_handlers(link: Any, cfg: CloudConfig, wake: Waker | None = None) -> None:
    """Wire the site's `return_received` to `receive_return` (in the link's inbox transaction); a refused
    report is dead-lettered with its reason, nothing of it applied."""
    def on_return_received(conn: sqlite3.Connection, env: Any) -> None:
        try:
            receive_return(conn, cfg, env.site, env.body)
        except (ReturnRefused, stock.StockError) as exc:  # dead-lettered with the reason; nothing applied
            log.warning("return from site %s refused: %s", env.site, exc)
            raise Reject(str(exc)) from exc
        if wake is not None:
            wake()

    link.on("return_received", on_return_received)


def returned_units(conn: sqlite3.Connection, account: str, date_from: str, date_to: str) -> dict[str, dict[str, int]]:
    """Units received back at the sites per item for an account's returns received in [date_from, date_to]
    (ISO dates, UTC): {item id: {"good": n, "defective": n}}."""
    start = datetime.fromisoformat(date_from).replace(tzinfo=UTC).timestamp()
    end = (datetime.fromisoformat(date_to).replace(tzinfo=UTC) + timedelta(days=1)).timestamp()
    out: dict[str, dict[str, int]] = {}
    for r in conn.execute("SELECT r.good, r.defective FROM order_returns r JOIN orders o ON o.id=r.order_id WHERE"
                          " o.account=? AND r.state='received' AND r.received_ts>=? AND r.received_ts<?",
                          (account, start, end)):
        for key, text in (("good", r[0]), ("defective", r[1])):
            for item, n in json.loads(text).items():
                out.setdefault(item, {"good": 0, "defective": 0})[key] += n
    return out


def summary(conn: sqlite3.Connection) -> dict[str, int]:
    """For the demo's summary line: orders delivered, returns received back at the sites, units put back on
    hand from them (restocked)."""
    delivered = conn.execute("SELECT COUNT(DISTINCT order_id) FROM order_events WHERE kind='delivered'").fetchone()[0]
    returned = conn.execute("SELECT COUNT(*) FROM order_returns WHERE state='received'").fetchone()[0]
    restocked = sum(sum(json.loads(r[0]).values()) for r in conn.execute(
        "SELECT good FROM order_returns WHERE state='received'"))
    return {"delivered": int(delivered or 0), "returned": int(returned or 0), "restocked": int(restocked)}
