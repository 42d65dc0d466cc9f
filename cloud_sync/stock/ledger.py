"""The stock ledger: append-only stock moves and the levels they add up to, per item × own warehouse.

Owns the tables `stock_moves` (append-only: a trigger refuses UPDATE and DELETE), `stock_levels`
(on hand, reserved; available = on hand − reserved, kept in step with the moves in the same
transaction), `stock_reservations` (what each order holds), `stock_sources` (when each warehouse last
heard from an authoritative source: 1C balances, a site's delta or count), `fbo_stock` (FBO stock
read back from the marketplaces, kept apart from the FBS ledger) and `stock_dirty` (items whose
published numbers must be recomputed by the push planner, cloud_sync/stock/push.py).

A balance from an authoritative source (1C) is as of the moment it was formed (`as_of`): every on-hand move
marketsync made (site picks, shipments, receipts, returns, counts, manual changes) that 1C had not booked by
that moment stays "in flight" and is kept on top of 1C's figure, so a 1C exchange never brings shipped units
back. A move is booked when 1C says so (`book_order_moves`, from the orders exchange: table `stock_bookings`)
or, failing that, once it is older than the in-flight horizon (`[onec] in_flight_horizon_h`). A balance
package formed before the last one applied to a warehouse is refused (`stock_balance_asof`); what the source
last said per item is kept in `stock_stated` (the reconciliation compares against it).

Every function here runs inside the caller's transaction (use `db.transaction(conn)`), so an order's
reservation, its pick task and its ledger move commit together or not at all.

On PostgreSQL a site's link applies its messages in a keyed transaction (`sitelink.sqlite.transaction`'s
`keys`: the site's and its warehouse source's keys, the store's lock shared with other such transactions):
there a site's delta that only adds units (a receipt, a return, a count found more: nothing to refuse, no
reservation touched) is deferred to the COMMIT (`site_delta`): the levels of the transaction's items are
raised in one atomic statement each, in the order of their keys, and its moves written with the levels the
rows then hold; any other move says it needs its item (`stock_key`) or the whole store (`need`), which
sends the work to an ordinary transaction.

A move that would make on hand negative is refused with `NegativeStock`; a reservation beyond the
available quantity is refused with `InsufficientStock`; nothing of the refused call is applied.

"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sitelink.sqlite import NeedsExclusive, keys_held, need

MIGRATIONS = [
    """
    CREATE TABLE stock_moves (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        item_id TEXT NOT NULL,
        warehouse TEXT NOT NULL,
        kind TEXT NOT NULL,      -- balance|reserve|release|pick|ship|receipt|return|adjust|count|writeoff
        on_hand_delta INTEGER NOT NULL DEFAULT 0,
        reserved_delta INTEGER NOT NULL DEFAULT 0,
        on_hand_after INTEGER NOT NULL,
        reserved_after INTEGER NOT NULL,
        source TEXT NOT NULL,    -- 1c | order | site:<id> | manual
        ref TEXT NOT NULL DEFAULT '',
        note TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX stock_moves_item ON stock_moves(item_id, warehouse, id);
    CREATE TRIGGER stock_moves_no_update BEFORE UPDATE ON stock_moves
        BEGIN SELECT RAISE(ABORT, 'stock_moves is append-only'); END;
    CREATE TRIGGER stock_moves_no_delete BEFORE DELETE ON stock_moves
        BEGIN SELECT RAISE(ABORT, 'stock_moves is append-only'); END;
    CREATE TABLE stock_levels (
        item_id TEXT NOT NULL,
        warehouse TEXT NOT NULL,
        on_hand INTEGER NOT NULL DEFAULT 0 CHECK (on_hand >= 0),
        reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0),
        updated_ts REAL NOT NULL,
        PRIMARY KEY (item_id, warehouse)
    ) WITHOUT ROWID;
    CREATE TABLE stock_reservations (
        ref TEXT NOT NULL,       -- the order key
        item_id TEXT NOT NULL,
        warehouse TEXT NOT NULL,
        quantity INTEGER NOT NULL,   -- still held (decreases as units are picked)
        reserved_ts REAL NOT NULL,
        PRIMARY KEY (ref, item_id, warehouse)
    ) WITHOUT ROWID;
    CREATE TABLE stock_sources (
        warehouse TEXT NOT NULL,
        source TEXT NOT NULL,    -- 1c | site:<id>
        ts REAL NOT NULL,
        PRIMARY KEY (warehouse, source)
    ) WITHOUT ROWID;
    CREATE TABLE fbo_stock (
        account TEXT NOT NULL,
        card_id TEXT NOT NULL,
        warehouse_id TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        read_ts REAL NOT NULL,
        PRIMARY KEY (account, card_id, warehouse_id)
    ) WITHOUT ROWID;
    CREATE TABLE stock_dirty (
        item_id TEXT PRIMARY KEY,
        cause TEXT NOT NULL,     -- order (a sale/reservation: never held by the zero guard) | source
        ts REAL NOT NULL
    ) WITHOUT ROWID;
    """,
    # the push planner's tables (cloud_sync/stock/push.py)
    """
    CREATE TABLE stock_published (
        account TEXT NOT NULL,
        card_id TEXT NOT NULL,
        warehouse_id TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        ts REAL NOT NULL,
        PRIMARY KEY (account, card_id, warehouse_id)
    ) WITHOUT ROWID;
    CREATE TABLE stock_push_queue (
        account TEXT NOT NULL,
        card_id TEXT NOT NULL,
        warehouse_id TEXT NOT NULL,
        offer_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        quantity INTEGER NOT NULL,
        priority INTEGER NOT NULL,       -- 0 going to zero, 1 decrease, 2 increase
        cause TEXT NOT NULL,             -- order | source
        state TEXT NOT NULL,             -- pending | held | failed
        confirmed INTEGER NOT NULL DEFAULT 0,
        hold_id INTEGER,
        version INTEGER NOT NULL DEFAULT 1,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_try REAL NOT NULL,
        error TEXT NOT NULL DEFAULT '',
        queued_ts REAL NOT NULL,
        origin_ts REAL NOT NULL,         -- when the change that caused it happened
        PRIMARY KEY (account, card_id, warehouse_id)
    ) WITHOUT ROWID;
    CREATE INDEX stock_push_due ON stock_push_queue(account, state, priority, next_try);
    CREATE TABLE stock_push_holds (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        reason TEXT NOT NULL,
        cards INTEGER NOT NULL,
        listed INTEGER NOT NULL,
        created_ts REAL NOT NULL,
        confirmed_ts REAL,
        confirmed_by TEXT
    );
    CREATE TABLE stock_push_stats (
        account TEXT PRIMARY KEY,
        sent INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        calls INTEGER NOT NULL DEFAULT 0,
        last_ts REAL
    );
    """,
    # in-flight moves: what 1C has booked, and the moment of the last balance package per warehouse
    """
    CREATE TABLE stock_bookings (
        move_id INTEGER PRIMARY KEY,     -- a stock_moves row 1C has booked (moves themselves never change)
        booked_ts REAL NOT NULL,
        how TEXT NOT NULL                -- e.g. "1c shipped <order key>"
    );
    CREATE TABLE stock_balance_asof (
        warehouse TEXT NOT NULL,
        source TEXT NOT NULL,
        as_of REAL NOT NULL,             -- when the source formed the last balance applied
        applied_ts REAL NOT NULL,
        PRIMARY KEY (warehouse, source)
    ) WITHOUT ROWID;
    CREATE TABLE stock_stated (
        item_id TEXT NOT NULL,
        warehouse TEXT NOT NULL,
        source TEXT NOT NULL,
        quantity INTEGER NOT NULL,       -- what the source last said (whole units), before in-flight moves
        as_of REAL NOT NULL,
        PRIMARY KEY (item_id, warehouse, source)
    ) WITHOUT ROWID;
    CREATE INDEX stock_moves_ts ON stock_moves(ts);
    CREATE INDEX stock_moves_ref ON stock_moves(ref) WHERE ref != '';
    """,
    # the moves in flight (_IN_FLIGHT_SQL: on-hand moves of our own, not balances) are read through this
    # index of them alone: through stock_moves_ts a 1C import read, for each batch of balances, every
    # balance move the import had written before it (100,000 items: 50 batches over up to 200,000 rows).
    # Reservations (on-hand delta 0) and balances are not in it: an order's reservation writes it not.
    # set_balances_many names it (INDEXED BY); its WHERE must stay word for word the one of _IN_FLIGHT_SQL.
    """
    CREATE INDEX stock_moves_in_flight ON stock_moves(ts) WHERE kind!='balance' AND on_hand_delta!=0;
    """,
    # stock_moves_ts is in no query plan since: the moves in flight are read through the index above (all of
    # them) or an item's through stock_moves_item, the rest by item or by ref — one index less for every move
    # (a new order's reservation writes one per line: bench/orders_ingest.py)
    """
    DROP INDEX IF EXISTS stock_moves_ts;
    """,
]

# PostgreSQL's version of script 0's triggers (see cloud_sync/schema.py): stock_moves stays append-only
MIGRATIONS_PG = {
    0: """
    CREATE FUNCTION stock_moves_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'stock_moves is append-only';
    END $$;
    CREATE TRIGGER stock_moves_no_update BEFORE UPDATE ON stock_moves
        FOR EACH ROW EXECUTE FUNCTION stock_moves_append_only();
    CREATE TRIGGER stock_moves_no_delete BEFORE DELETE ON stock_moves
        FOR EACH ROW EXECUTE FUNCTION stock_moves_append_only();
    """,
}

# Moves older than this count as booked by 1C even when nothing said so (receipts, counts and other site
# moves 1C learns of by other means); `[onec] in_flight_horizon_h` overrides it.
IN_FLIGHT_HORIZON_S = 24 * 3600.0

MOVE_KINDS = ("balance", "reserve", "release", "pick", "ship", "receipt", "return", "adjust", "count",
              "writeoff")


class StockError(ValueError):
    """A stock change was refused; nothing of it was applied."""


class NegativeStock(StockError):
    def __init__(self, item_id: str, warehouse: str, on_hand: int, delta: int) -> None:
        super().__init__(f"refused: item {item_id} at {warehouse} has {on_hand} on hand; a change of {delta}"
                         f" would make it {on_hand + delta}")
        self.item_id, self.warehouse, self.on_hand, self.delta = item_id, warehouse, on_hand, delta


class InsufficientStock(StockError):
    def __init__(self, item_id: str, warehouse: str, available: int, wanted: int) -> None:
        super().__init__(f"not enough stock: item {item_id} at {warehouse} has {available} available,"
                         f" {wanted} wanted")
        self.item_id, self.warehouse, self.available, self.wanted = item_id, warehouse, available, wanted


@dataclass
class Level:
    item_id: str
    warehouse: str
    on_hand: int
    reserved: int

    @property
    def available(self) -> int:
        return self.on_hand - self.reserved


@dataclass
class Move:
    id: int
    ts: float
    item_id: str
    warehouse: str
    kind: str
    on_hand_delta: int
    reserved_delta: int
    on_hand_after: int
    reserved_after: int
    source: str
    ref: str
    note: str


def level(conn: sqlite3.Connection, item_id: str, warehouse: str) -> Level:
    row = conn.execute("SELECT on_hand, reserved FROM stock_levels WHERE item_id=? AND warehouse=?",
                       (item_id, warehouse)).fetchone()
    return Level(item_id, warehouse, row[0], row[1]) if row else Level(item_id, warehouse, 0, 0)


def levels_of(conn: sqlite3.Connection, item_ids: Iterable[str]) -> dict[tuple[str, str], Level]:
    """The levels of several items at every warehouse, in one statement: (item, warehouse) -> Level (a pair
    absent: nothing there, as `level` reads it)."""
    return {(r[0], r[1]): Level(*r) for r in conn.execute(
        "SELECT item_id, warehouse, on_hand, reserved FROM stock_levels WHERE item_id IN"
        " (SELECT value FROM json_each(?))", (json.dumps(sorted(set(item_ids))),))}


def levels(conn: sqlite3.Connection, *, item_id: str | None = None, warehouse: str | None = None) -> list[Level]:
    sql, args = "SELECT item_id, warehouse, on_hand, reserved FROM stock_levels WHERE 1=1", []
    if item_id is not None:
        sql += " AND item_id=?"
        args.append(item_id)
    if warehouse is not None:
        sql += " AND warehouse=?"
        args.append(warehouse)
    return [Level(*r) for r in conn.execute(sql + " ORDER BY item_id, warehouse", args)]


def stock_key(item_id: str, warehouse: str) -> str:
    """The key of one item's level at one warehouse (see the module doc)."""
    return f"stock:{warehouse}:{item_id}"


def source_key(warehouse: str, source: str) -> str:
    """The key of one source's `stock_sources` row (a site's: its own link's messages write it)."""
    return f"source:{warehouse}:{source}"


def mark_dirty(conn: sqlite3.Connection, item_ids: Iterable[str], cause: str = "source",
               now: float | None = None) -> None:
    """Ask the push planner to recompute these items' published numbers ('order' wins over 'source').
    In a keyed transaction: written at its COMMIT, in the items' order (rows other keyed transactions share)."""
    now = time.time() if now is None else now
    if keys_held(conn) is not None:
        for i in item_ids:
            conn.defer("stock_dirty", (i, cause, now), _flush_dirty, rank=1)  # type: ignore[attr-defined]
        return
    _mark_dirty_now(conn, item_ids, cause, now)


def _flush_dirty(conn: sqlite3.Connection, marks: list[tuple[str, str, float]]) -> None:
    latest: dict[str, tuple[str, str, float]] = {}
    for item, cause, ts in marks:
        was = latest.get(item)
        latest[item] = (item, "order" if cause == "order" or (was and was[1] == "order") else cause,
                        max(ts, was[2]) if was else ts)
    for item in sorted(latest):
        _mark_dirty_now(conn, [item], latest[item][1], latest[item][2])


def _mark_dirty_now(conn: sqlite3.Connection, item_ids: Iterable[str], cause: str, now: float) -> None:
    conn.executemany(
        "INSERT INTO stock_dirty(item_id, cause, ts) VALUES (?,?,?) ON CONFLICT(item_id) DO UPDATE SET"
        " cause=CASE WHEN stock_dirty.cause='order' THEN 'order' ELSE excluded.cause END, ts=excluded.ts",
        [(i, cause, now) for i in item_ids],
    )


def record_move(conn: sqlite3.Connection, item_id: str, warehouse: str, kind: str, *, on_hand_delta: int = 0,
                reserved_delta: int = 0, source: str = "manual", ref: str = "", note: str = "",
                now: float | None = None, _current: Level | None = None) -> Move:
    """Append one move and update the level. Refuses (NegativeStock / StockError) before writing."""
    if kind not in MOVE_KINDS:
        raise StockError(f"unknown stock move kind {kind!r}; known: {', '.join(MOVE_KINDS)}")
    for name, value in (("on_hand_delta", on_hand_delta), ("reserved_delta", reserved_delta)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise StockError(f"{name} must be a whole number, got {value!r}")
    need(conn, stock_key(item_id, warehouse))
    now = time.time() if now is None else now
    cur = _current or level(conn, item_id, warehouse)
    on_hand = cur.on_hand + on_hand_delta
    reserved = cur.reserved + reserved_delta
    if on_hand < 0:
        raise NegativeStock(item_id, warehouse, cur.on_hand, on_hand_delta)
    if reserved < 0:
        raise StockError(f"refused: item {item_id} at {warehouse} has {cur.reserved} reserved; a release of"
                         f" {-reserved_delta} would make it negative")
    conn.execute(
        "INSERT INTO stock_levels(item_id, warehouse, on_hand, reserved, updated_ts) VALUES (?,?,?,?,?)"
        " ON CONFLICT(item_id, warehouse) DO UPDATE SET on_hand=excluded.on_hand, reserved=excluded.reserved,"
        " updated_ts=excluded.updated_ts",
        (item_id, warehouse, on_hand, reserved, now),
    )
    cursor = conn.execute(
        "INSERT INTO stock_moves(ts, item_id, warehouse, kind, on_hand_delta, reserved_delta, on_hand_after,"
        " reserved_after, source, ref, note) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        (now, item_id, warehouse, kind, on_hand_delta, reserved_delta, on_hand, reserved, source, ref, note),
    )
    mark_dirty(conn, [item_id], "order" if kind in ("reserve", "pick") else "source", now)
    return Move(cursor.lastrowid or 0, now, item_id, warehouse, kind, on_hand_delta, reserved_delta, on_hand,
                reserved, source, ref, note)


def _flush_moves(conn: sqlite3.Connection, moves: list[tuple]) -> None:
    """A keyed transaction's deferred moves that add units (`site_delta`), at its COMMIT: per (item, warehouse)
    in key order, the level raised by their sum in one atomic statement (the row stays locked to COMMIT), the
    moves written with the levels that follow from what the row then holds, the items marked dirty."""
    by_key: dict[tuple[str, str], list[tuple]] = {}
    for m in moves:
        by_key.setdefault((m[0], m[1]), []).append(m)
    rows = []
    for item_id, warehouse in sorted(by_key):
        group = by_key[(item_id, warehouse)]
        total = sum(m[3] for m in group)
        on_hand, reserved = conn.execute(
            "INSERT INTO stock_levels(item_id, warehouse, on_hand, reserved, updated_ts) VALUES (?,?,?,0,?)"
            " ON CONFLICT(item_id, warehouse) DO UPDATE SET on_hand=stock_levels.on_hand+excluded.on_hand,"
            " updated_ts=excluded.updated_ts RETURNING on_hand, reserved",
            (item_id, warehouse, total, max(m[7] for m in group))).fetchone()
        after = on_hand - total
        for _, _, kind, delta, source, ref, note, ts in group:
            after += delta
            rows.append((ts, item_id, warehouse, kind, delta, 0, after, reserved, source, ref, note))
    conn.executemany(
        "INSERT INTO stock_moves(ts, item_id, warehouse, kind, on_hand_delta, reserved_delta, on_hand_after,"
        " reserved_after, source, ref, note) VALUES (?,?,?,?,?,?,?,?,?,?,?)", rows)
    for item_id, wh in sorted(by_key):  # with the transaction's other dirty marks, in one item order
        conn.defer("stock_dirty", (item_id, "source", max(m[7] for m in by_key[(item_id, wh)])),  # type: ignore[attr-defined]
                   _flush_dirty, rank=1)


def touch_source(conn: sqlite3.Connection, warehouse: str, source: str, now: float | None = None) -> None:
    need(conn, source_key(warehouse, source))
    conn.execute(
        "INSERT INTO stock_sources(warehouse, source, ts) VALUES (?,?,?)"
        " ON CONFLICT(warehouse, source) DO UPDATE SET ts=excluded.ts",
        (warehouse, source, time.time() if now is None else now),
    )


class StaleBalance(StockError):
    """A balance package formed before the last one applied to the same warehouse: nothing of it applied."""


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def check_as_of(conn: sqlite3.Connection, warehouses: Iterable[str], source: str, as_of: float) -> None:
    """Refuse (StaleBalance) a balance package of `source` formed before the last one applied to any of
    these warehouses."""
    for warehouse in dict.fromkeys(warehouses):
        row = conn.execute("SELECT as_of FROM stock_balance_asof WHERE warehouse=? AND source=?",
                           (warehouse, source)).fetchone()
        if row is not None and as_of < row[0]:
            raise StaleBalance(f"balances of warehouse {warehouse} formed at {_iso(as_of)} are older than the ones"
                               f" already applied (formed at {_iso(row[0])}): nothing applied")


def _note_as_of(conn: sqlite3.Connection, warehouses: Iterable[str], source: str, as_of: float, now: float) -> None:
    conn.executemany("INSERT INTO stock_balance_asof(warehouse, source, as_of, applied_ts) VALUES (?,?,?,?)"
                     " ON CONFLICT(warehouse, source) DO UPDATE SET as_of=excluded.as_of, applied_ts=excluded.applied_ts",
                     [(w, source, as_of, now) for w in dict.fromkeys(warehouses)])


_IN_FLIGHT_SQL = (
    "FROM stock_moves m WHERE m.kind!='balance' AND m.on_hand_delta!=0 AND m.ts>? AND NOT EXISTS"
    " (SELECT 1 FROM stock_bookings b WHERE b.move_id=m.id AND b.booked_ts<=?)")


def in_flight_moves(conn: sqlite3.Connection, item_id: str, warehouse: str, *, as_of: float | None = None,
                    now: float | None = None, horizon_s: float = IN_FLIGHT_HORIZON_S) -> list[Move]:
    """The on-hand moves marketsync made at this item and warehouse that 1C had not booked by `as_of`
    (default: now) and that are younger than the horizon: what a 1C balance of that moment does not know."""
    now = time.time() if now is None else now
    as_of = now if as_of is None else as_of
    rows = conn.execute(f"SELECT m.* {_IN_FLIGHT_SQL} AND m.item_id=? AND m.warehouse=? ORDER BY m.id",
                        (now - horizon_s, as_of, item_id, warehouse)).fetchall()
    return [Move(**dict(r)) for r in rows]


def record_balance(conn: sqlite3.Connection, item_id: str, warehouse: str, quantity: int, *,
                   source: str = "1c", ref: str = "", now: float | None = None, as_of: float | None = None,
                   horizon_s: float = IN_FLIGHT_HORIZON_S) -> Move | None:
    """The on-hand quantity an authoritative source (1C) reports as of `as_of` (default: now); the moves in
    flight at that moment are kept on top of it. Records the difference as a move."""
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 0:
        raise StockError(f"balance of item {item_id} at {warehouse} must be a whole number >= 0, got {quantity!r}")
    now = time.time() if now is None else now
    as_of = now if as_of is None else as_of
    check_as_of(conn, [warehouse], source, as_of)
    flying = sum(m.on_hand_delta for m in in_flight_moves(conn, item_id, warehouse, as_of=as_of, now=now,
                                                          horizon_s=horizon_s))
    target = max(0, quantity + flying)
    cur = level(conn, item_id, warehouse)
    touch_source(conn, warehouse, source, now)
    _note_as_of(conn, [warehouse], source, as_of, now)
    conn.execute("INSERT INTO stock_stated(item_id, warehouse, source, quantity, as_of) VALUES (?,?,?,?,?)"
                 " ON CONFLICT(item_id, warehouse, source) DO UPDATE SET quantity=excluded.quantity, as_of=excluded.as_of",
                 (item_id, warehouse, source, quantity, as_of))
    if cur.on_hand == target and conn.execute(
            "SELECT 1 FROM stock_levels WHERE item_id=? AND warehouse=?", (item_id, warehouse)).fetchone():
        return None
    note = f"{source} says {quantity} as of {_iso(as_of)}; {flying:+d} in flight kept on top" if flying else ""
    return record_move(conn, item_id, warehouse, "balance", on_hand_delta=target - cur.on_hand, source=source,
                       ref=ref, note=note, now=now)


def set_balances(conn: sqlite3.Connection, warehouse: str, balances: Mapping[str, int], *, full: bool = False,
                 source: str = "1c", ref: str = "", now: float | None = None, as_of: float | None = None,
                 horizon_s: float = IN_FLIGHT_HORIZON_S) -> int:
    """Apply a whole balance document of one warehouse (all or nothing: every quantity is checked before
    anything is written). `full=True`: items of that warehouse not listed are set to zero.
    Returns the number of moves recorded."""
    bad = {k: v for k, v in balances.items() if isinstance(v, bool) or not isinstance(v, int) or v < 0}
    if bad:
        first = next(iter(bad.items()))
        raise StockError(f"balances for {warehouse}: {len(bad)} quantities are not whole numbers >= 0"
                         f" (e.g. item {first[0]}: {first[1]!r}); nothing applied")
    now = time.time() if now is None else now
    as_of = now if as_of is None else as_of
    check_as_of(conn, [warehouse], source, as_of)
    wanted = dict(balances)
    if full:
        for row in conn.execute("SELECT item_id FROM stock_levels WHERE warehouse=? AND on_hand>0", (warehouse,)):
            wanted.setdefault(row[0], 0)
    moves = 0
    for item_id, qty in wanted.items():
        if record_balance(conn, item_id, warehouse, qty, source=source, ref=ref, now=now, as_of=as_of,
                          horizon_s=horizon_s) is not None:
            moves += 1
    touch_source(conn, warehouse, source, now)
    return moves


def set_balances_many(conn: sqlite3.Connection, rows: Iterable[tuple[str, str, int]], *, source: str = "1c",
                      ref: str = "", now: float | None = None, as_of: float | None = None,
                      horizon_s: float = IN_FLIGHT_HORIZON_S) -> int:
    """`record_balance` for many (item_id, warehouse, quantity) rows of any warehouses, set-based: the
    same outcome (a 'balance' move appended for each new or changed level, the moves in flight at `as_of`
    kept on top, the level set with its reservations kept, the changed items marked dirty, every warehouse
    named marked as heard from) in a few statements instead of several per row — for 1C packages of
    100,000 items.

    All or nothing: every quantity is checked before anything is written, and a package formed before
    the last one applied to one of its warehouses is refused (StaleBalance). A later row for the same item
    and warehouse wins. Returns the number of moves recorded."""
    need(conn)  # balances of whole warehouses: an ordinary transaction
    wanted: dict[tuple[str, str], int] = {}
    for item_id, warehouse, qty in rows:
        wanted[(item_id, warehouse)] = qty
    bad = [(k, v) for k, v in wanted.items() if isinstance(v, bool) or not isinstance(v, int) or v < 0]
    if bad:
        (item_id, warehouse), qty = bad[0]
        raise StockError(f"balances: {len(bad)} quantities are not whole numbers >= 0"
                         f" (e.g. item {item_id} at {warehouse}: {qty!r}); nothing applied")
    if not wanted:
        return 0
    now = time.time() if now is None else now
    as_of = now if as_of is None else as_of
    whs = list(dict.fromkeys(w for _, w in wanted))
    check_as_of(conn, whs, source, as_of)
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS stock_balance_rows (seq INTEGER PRIMARY KEY, item_id TEXT NOT NULL,"
                 " warehouse TEXT NOT NULL, stated INTEGER NOT NULL, in_flight INTEGER NOT NULL DEFAULT 0,"
                 " on_hand INTEGER NOT NULL DEFAULT 0, changed INTEGER NOT NULL DEFAULT 1)")
    conn.execute("DELETE FROM temp.stock_balance_rows")
    conn.executemany("INSERT INTO temp.stock_balance_rows(item_id, warehouse, stated) VALUES (?,?,?)",
                     [(i, w, q) for (i, w), q in wanted.items()])
    # the moves in flight at as_of (few: younger than the horizon), summed once and joined
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS stock_in_flight (item_id TEXT NOT NULL, warehouse TEXT NOT NULL,"
                 " delta INTEGER NOT NULL, PRIMARY KEY (item_id, warehouse))")
    conn.execute("DELETE FROM temp.stock_in_flight")
    # every move in flight, through their own index (else SQLite walks all moves in item order for the GROUP BY)
    in_flight = _IN_FLIGHT_SQL.replace("FROM stock_moves m", "FROM stock_moves m INDEXED BY stock_moves_in_flight", 1)
    conn.execute(f"INSERT INTO temp.stock_in_flight SELECT m.item_id, m.warehouse, SUM(m.on_hand_delta) {in_flight}"
                 " GROUP BY m.item_id, m.warehouse", (now - horizon_s, as_of))
    conn.execute("UPDATE temp.stock_balance_rows SET in_flight=COALESCE((SELECT f.delta FROM temp.stock_in_flight f"
                 " WHERE f.item_id=stock_balance_rows.item_id AND f.warehouse=stock_balance_rows.warehouse), 0)"
                 " WHERE EXISTS (SELECT 1 FROM temp.stock_in_flight f WHERE f.item_id=stock_balance_rows.item_id"
                 " AND f.warehouse=stock_balance_rows.warehouse)")
    conn.execute("UPDATE temp.stock_balance_rows SET on_hand=MAX(0, stated + in_flight)")
    # unchanged: the level exists with that on-hand already (record_balance records nothing for it)
    conn.execute("UPDATE temp.stock_balance_rows SET changed=0 WHERE EXISTS (SELECT 1 FROM stock_levels l WHERE"
                 " l.item_id=stock_balance_rows.item_id AND l.warehouse=stock_balance_rows.warehouse"
                 " AND l.on_hand=stock_balance_rows.on_hand)")
    moved = conn.execute(
        "INSERT INTO stock_moves(ts, item_id, warehouse, kind, on_hand_delta, reserved_delta, on_hand_after,"
        " reserved_after, source, ref, note)"
        " SELECT ?, b.item_id, b.warehouse, 'balance', b.on_hand - COALESCE(l.on_hand, 0), 0, b.on_hand,"
        " COALESCE(l.reserved, 0), ?, ?, CASE WHEN b.in_flight != 0 THEN ? || ' says ' || b.stated || ' as of ' || ?"
        " || '; ' || printf('%+d', b.in_flight) || ' in flight kept on top' ELSE '' END"
        " FROM temp.stock_balance_rows b LEFT JOIN stock_levels l ON l.item_id=b.item_id AND l.warehouse=b.warehouse"
        " WHERE b.changed ORDER BY b.seq", (now, source, ref, source, _iso(as_of))).rowcount
    conn.execute(
        "INSERT INTO stock_levels(item_id, warehouse, on_hand, reserved, updated_ts)"
        " SELECT item_id, warehouse, on_hand, 0, ? FROM temp.stock_balance_rows WHERE changed ORDER BY seq"
        " ON CONFLICT(item_id, warehouse) DO UPDATE SET on_hand=excluded.on_hand, updated_ts=excluded.updated_ts",
        (now,))
    conn.execute(
        "INSERT INTO stock_dirty(item_id, cause, ts) SELECT DISTINCT item_id, 'source', ? FROM temp.stock_balance_rows"
        " WHERE changed ON CONFLICT(item_id) DO UPDATE SET"
        " cause=CASE WHEN stock_dirty.cause='order' THEN 'order' ELSE excluded.cause END, ts=excluded.ts", (now,))
    for warehouse in whs:
        touch_source(conn, warehouse, source, now)
    _note_as_of(conn, whs, source, as_of, now)
    conn.execute("INSERT INTO stock_stated(item_id, warehouse, source, quantity, as_of) SELECT item_id, warehouse, ?,"
                 " stated, ? FROM temp.stock_balance_rows WHERE true ON CONFLICT(item_id, warehouse, source) DO UPDATE SET"
                 " quantity=excluded.quantity, as_of=excluded.as_of", (source, as_of))
    conn.execute("DELETE FROM temp.stock_balance_rows")
    return moved


def book_order_moves(conn: sqlite3.Connection, ref: str, how: str, now: float | None = None) -> int:
    """1C has booked what marketsync did for an order (its shipment: 1C's answer in the orders exchange):
    the order's on-hand moves are in flight no more. Returns the moves booked."""
    now = time.time() if now is None else now
    return conn.execute("INSERT OR IGNORE INTO stock_bookings(move_id, booked_ts, how) SELECT id, ?, ? FROM"
                        " stock_moves WHERE ref=? AND kind!='balance' AND on_hand_delta!=0",
                        (now, how, ref)).rowcount


_RESERVE_MOVE = ("INSERT INTO stock_moves(ts, item_id, warehouse, kind, on_hand_delta, reserved_delta, on_hand_after,"
                 " reserved_after, source, ref, note) VALUES (?,?,?,'reserve',0,?,?,?,'order',?,'')")
_RESERVE_HOLD = ("INSERT INTO stock_reservations(ref, item_id, warehouse, quantity, reserved_ts) VALUES (?,?,?,?,?)"
                 " ON CONFLICT(ref, item_id, warehouse) DO UPDATE SET quantity=quantity+excluded.quantity")


_RESERVE_LEVEL = ("UPDATE stock_levels SET reserved=reserved+?, updated_ts=? WHERE item_id=? AND warehouse=?"
                  " AND on_hand-reserved>=?")


class Holds:
    """The reservations of a batch of orders, made in one transaction that holds the write lock, written
    per batch instead of per line: `Holds.reserve` checks a line against the levels the batch read
    (`load`, one statement) and holds it there; `write` writes the levels that moved (one conditional
    UPDATE per level and batch, each the same guard as `reserve`'s: a level that would go below zero
    available fails the whole batch, see `LevelMoved`), then the moves and reservation rows, one
    statement per table, in the order they were made. A batch writes them before anything reads the
    levels, moves or reservations again, and calls `stale` after anything else changed levels."""

    __slots__ = ("moves", "holds", "levels", "deltas", "now", "_undo", "_items", "_unread", "_deferred")

    def __init__(self) -> None:
        self.moves: list[tuple[Any, ...]] = []
        self.holds: list[tuple[Any, ...]] = []
        # (item, warehouse) -> [on hand, reserved] as the batch's reservations leave them (None: no level)
        self.levels: dict[tuple[str, str], list[int] | None] = {}
        self.deltas: dict[tuple[str, str], int] = {}  # reserved since the last write, per level
        self.now = 0.0  # the moment of the last reservation: the levels' updated_ts
        self._undo: list[tuple[tuple[str, str], int]] = []  # (level, units) of `reserve`, in order
        self._items: list[str] = []  # the items `load` named: read together when one of them is first needed
        self._unread = False
        self._deferred = False  # a keyed transaction's reservations wait for its COMMIT (`write`)

    def load(self, item_ids: Iterable[str]) -> None:
        """The levels of these items (every warehouse) are read together, in one statement, when one of
        them is first needed (a batch of orders all known already reads none); a level of another item is
        read by itself."""
        self._items = sorted({i for i in item_ids if i})
        self._unread = bool(self._items)

    def _read(self, conn: sqlite3.Connection) -> None:
        self._unread = False
        levels = self.levels
        for item_id, warehouse, on_hand, reserved in conn.execute(
                "SELECT item_id, warehouse, on_hand, reserved FROM stock_levels WHERE item_id IN"
                " (SELECT value FROM json_each(?))", (json.dumps(self._items),)):
            levels.setdefault((item_id, warehouse), [on_hand, reserved])

    def _level(self, conn: sqlite3.Connection, pair: tuple[str, str]) -> list[int] | None:
        if self._unread:
            self._read(conn)
        if pair not in self.levels:
            row = conn.execute("SELECT on_hand, reserved FROM stock_levels WHERE item_id=? AND warehouse=?",
                               pair).fetchone()
            self.levels[pair] = [row[0], row[1]] if row else None
        return self.levels[pair]

    def available(self, conn: sqlite3.Connection, item_id: str, warehouse: str) -> int:
        """What `level(...).available` reads once this batch's reservations are written."""
        lv = self._level(conn, (item_id, warehouse))
        return lv[0] - lv[1] if lv else 0

    def reserve(self, conn: sqlite3.Connection, ref: str, item_id: str, warehouse: str, quantity: int,
                now: float) -> int:
        """Hold `quantity` (a whole number > 0) units of the level for `ref`, as `reserve` does (its move and
        reservation rows kept here); InsufficientStock beyond what is available, nothing held then.
        Returns the units still available after it."""
        if type(quantity) is not int or quantity <= 0:
            raise StockError(f"reservation quantity must be a whole number > 0, got {quantity!r}")
        pair = (item_id, warehouse)
        lv = self.levels[pair] if pair in self.levels else self._level(conn, pair)
        if lv is None or lv[0] - lv[1] < quantity:
            raise InsufficientStock(item_id, warehouse, lv[0] - lv[1] if lv else 0, quantity)
        lv[1] += quantity
        self.deltas[pair] = self.deltas.get(pair, 0) + quantity
        self._undo.append((pair, quantity))
        self.now = now
        self.moves.append((now, item_id, warehouse, quantity, lv[0], lv[1], ref))
        self.holds.append((ref, item_id, warehouse, quantity, now))
        return lv[0] - lv[1]

    def mark(self) -> int:
        return len(self.moves)

    def undo(self, mark: int) -> None:
        """Forget the reservations after `mark` (an order that could not have all its lines): their rows,
        and the units they held go back to their levels."""
        for pair, units in reversed(self._undo[mark:]):
            lv = self.levels[pair]
            assert lv is not None
            lv[1] -= units
            self.deltas[pair] -= units
        del self.moves[mark:], self.holds[mark:], self._undo[mark:]

    def stale(self) -> None:
        """Something else changed levels (the batch wrote its own first): read them again when needed."""
        if self.deltas:
            raise StockError("reservations not written before the levels were read again")
        if self._deferred:  # the store's levels do not hold them before the COMMIT: an ordinary transaction
            raise NeedsExclusive("levels read again while a keyed batch's reservations wait for its COMMIT")
        self.levels.clear()
        self._unread = bool(self._items)

    def write(self, conn: sqlite3.Connection) -> None:
        moved = [stock_key(i, w) for (i, w), units in self.deltas.items() if units]
        if moved:  # (none: nothing to write, nothing needed)
            need(conn, *moved)
        if keys_held(conn) is not None:
            # a keyed transaction (its levels' keys held: nobody else takes their units meanwhile, a site's
            # delta may only add some): the reservation rows now (its orders' own), the levels and their moves
            # at COMMIT, with the other keyed writers' levels, in key order (`_flush_reserves`)
            if self.moves:
                for m in self.moves:
                    conn.defer("stock_reserve", m, _flush_reserves)  # type: ignore[attr-defined]
                conn.executemany(_RESERVE_HOLD, self.holds)
                self._deferred = True
            self.deltas.clear()
            self.moves.clear()
            self.holds.clear()
            self._undo.clear()
            return
        if self.deltas:
            rows = [(units, self.now, item_id, warehouse, units)
                    for (item_id, warehouse), units in self.deltas.items() if units]
            changed = conn.executemany(_RESERVE_LEVEL, rows).rowcount
            if changed != len(rows) and changed >= 0:
                raise LevelMoved(f"{len(rows) - changed} of {len(rows)} levels changed while a batch of"
                                 " reservations was made; nothing of the batch applied")
            self.deltas.clear()
        if self.moves:
            conn.executemany(_RESERVE_MOVE, self.moves)
            conn.executemany(_RESERVE_HOLD, self.holds)
            self.moves.clear()
            self.holds.clear()
        self._undo.clear()


def _flush_reserves(conn: sqlite3.Connection, moves: list[tuple]) -> None:
    """A keyed batch's reservations (`Holds.write`), at its COMMIT: per level in key order, its units held in
    one conditional statement (the same guard as `reserve`'s: never below zero available, else the batch
    fails whole, `LevelMoved`), the moves written with the figures the row then holds."""
    by_key: dict[tuple[str, str], list[tuple]] = {}
    for m in moves:
        by_key.setdefault((m[1], m[2]), []).append(m)
    rows = []
    for item_id, warehouse in sorted(by_key):
        group = by_key[(item_id, warehouse)]
        total = sum(m[3] for m in group)
        got = conn.execute("UPDATE stock_levels SET reserved=reserved+?, updated_ts=? WHERE item_id=? AND warehouse=?"
                           " AND on_hand-reserved>=? RETURNING on_hand, reserved",
                           (total, max(m[0] for m in group), item_id, warehouse, total)).fetchone()
        if got is None:
            raise LevelMoved(f"the level of item {item_id} at {warehouse} changed while a batch of reservations was"
                             " made; nothing of the batch applied")
        on_hand, reserved = got
        after = reserved - total
        for now, _, _, quantity, _, _, ref in group:
            after += quantity
            rows.append((now, item_id, warehouse, quantity, on_hand, after, ref))
    conn.executemany(_RESERVE_MOVE, rows)


class LevelMoved(StockError):
    """A level a batch of reservations read changed under it before they were written (only a writer
    that skipped the write lock could do it): the batch's transaction must roll back."""


def reserve(conn: sqlite3.Connection, ref: str, item_id: str, warehouse: str, quantity: int, *,
            now: float | None = None, dirty: set[str] | None = None) -> Move:
    """Hold `quantity` units for an order; refused with InsufficientStock beyond what is available.

    The check and the hold are one conditional UPDATE (available never goes below zero, whoever else
    writes). `dirty`: collect the item there instead of marking it for the planner at once (a batch of
    orders marks its items in one statement, see `mark_dirty`). A batch of orders reserves through `Holds`."""
    if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity <= 0:
        raise StockError(f"reservation quantity must be a whole number > 0, got {quantity!r}")
    need(conn, stock_key(item_id, warehouse))
    now = time.time() if now is None else now
    row = conn.execute(
        "UPDATE stock_levels SET reserved=reserved+?, updated_ts=? WHERE item_id=? AND warehouse=?"
        " AND on_hand-reserved>=? RETURNING on_hand, reserved",
        (quantity, now, item_id, warehouse, quantity)).fetchone()
    if row is None:
        cur = level(conn, item_id, warehouse)
        raise InsufficientStock(item_id, warehouse, cur.available, quantity)
    move_row = (now, item_id, warehouse, quantity, row[0], row[1], ref)
    hold_row = (ref, item_id, warehouse, quantity, now)
    move_id = conn.execute(_RESERVE_MOVE, move_row).lastrowid or 0
    conn.execute(_RESERVE_HOLD, hold_row)
    if dirty is None:
        mark_dirty(conn, [item_id], "order", now)
    else:
        dirty.add(item_id)
    return Move(move_id, now, item_id, warehouse, "reserve", 0, quantity, row[0], row[1], "order", ref, "")


def held(conn: sqlite3.Connection, ref: str) -> list[tuple[str, str, int]]:
    """(item, warehouse, quantity) still reserved for an order."""
    return [tuple(r) for r in conn.execute(
        "SELECT item_id, warehouse, quantity FROM stock_reservations WHERE ref=? AND quantity>0", (ref,))]


def release(conn: sqlite3.Connection, ref: str, *, note: str = "", now: float | None = None) -> int:
    """Give back every unit still reserved for an order (cancelled, refused). Returns units released."""
    total = 0
    for item_id, warehouse, qty in held(conn, ref):
        record_move(conn, item_id, warehouse, "release", reserved_delta=-qty, source="order", ref=ref, note=note,
                    now=now)
        total += qty
    conn.execute("UPDATE stock_reservations SET quantity=0 WHERE ref=?", (ref,))
    return total


def site_delta(conn: sqlite3.Connection, site: str, warehouse: str, item_id: str, delta: int, reason: str, *,
               ref: str = "", note: str = "", now: float | None = None) -> Move:
    """A change of on-hand reported by a site. A pick/ship against an order's reservation consumes it
    (on hand and reserved both go down), so available does not drop twice; so does a writeoff of an
    order's unit the site did not find or found damaged (those units were held for that order)."""
    kind = reason if reason in MOVE_KINDS else "adjust"
    reserved_delta = 0
    if keys_held(conn) is not None and isinstance(delta, int) and not isinstance(delta, bool) and delta > 0:
        # only adds units: nothing to refuse, no reservation touched; the level is raised at COMMIT
        now = time.time() if now is None else now
        touch_source(conn, warehouse, f"site:{site}", now)
        conn.defer("stock_moves", (item_id, warehouse, kind, delta, f"site:{site}", ref, note, now),  # type: ignore[attr-defined]
                   _flush_moves)
        return Move(0, now, item_id, warehouse, kind, delta, 0, -1, -1, f"site:{site}", ref, note)
    if ref and delta < 0 and kind in ("pick", "ship", "writeoff"):
        row = conn.execute("SELECT quantity FROM stock_reservations WHERE ref=? AND item_id=? AND warehouse=?",
                           (ref, item_id, warehouse)).fetchone()
        if row and row[0] > 0:
            reserved_delta = -min(row[0], -delta)
    move = record_move(conn, item_id, warehouse, kind, on_hand_delta=delta, reserved_delta=reserved_delta,
                       source=f"site:{site}", ref=ref, note=note, now=now)
    if reserved_delta:
        conn.execute("UPDATE stock_reservations SET quantity=quantity+? WHERE ref=? AND item_id=? AND warehouse=?",
                     (reserved_delta, ref, item_id, warehouse))
    touch_source(conn, warehouse, f"site:{site}", now)
    return move


def site_count(conn: sqlite3.Connection, site: str, warehouse: str, item_id: str, counted: int, *,
               ref: str = "", now: float | None = None) -> Move | None:
    """An inventory count: the absolute on-hand quantity found at the site."""
    if counted < 0:
        raise StockError(f"count of item {item_id} at {warehouse} must be >= 0, got {counted}")
    cur = level(conn, item_id, warehouse)
    touch_source(conn, warehouse, f"site:{site}", now)
    if cur.on_hand == counted:
        return None
    return record_move(conn, item_id, warehouse, "count", on_hand_delta=counted - cur.on_hand,
                       source=f"site:{site}", ref=ref, now=now)


def fbo_key(account: str) -> str:
    """The key (`sitelink.sqlite.transaction`'s `keys`) of an account's FBO rows (`fbo_stock`, and
    `cloud_sync.stock.fbo`'s `fbo_warehouses`): nothing but the account's FBO reading writes them."""
    return f"fbo:{account}"


def record_fbo(conn: sqlite3.Connection, account: str, rows: Iterable[tuple[str, str, int]],
               now: float | None = None) -> int:
    """FBO stock read back from a marketplace: (card_id, marketplace warehouse, quantity); replaces the
    account's previous reading. Kept apart from the FBS ledger: it is the marketplace's stock, not ours."""
    need(conn, fbo_key(account))
    now = time.time() if now is None else now
    conn.execute("DELETE FROM fbo_stock WHERE account=?", (account,))
    data = [(account, c, w, q, now) for c, w, q in rows]
    conn.executemany("INSERT OR REPLACE INTO fbo_stock(account, card_id, warehouse_id, quantity, read_ts)"
                     " VALUES (?,?,?,?,?)", data)
    return len(data)


def moves(conn: sqlite3.Connection, item_id: str, warehouse: str | None = None, limit: int = 20) -> list[Move]:
    sql = "SELECT * FROM stock_moves WHERE item_id=?"
    args: list = [item_id]
    if warehouse is not None:
        sql += " AND warehouse=?"
        args.append(warehouse)
    rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", [*args, limit]).fetchall()
    return [Move(**dict(r)) for r in rows]


def source_age(conn: sqlite3.Connection, warehouse: str, now: float | None = None) -> float | None:
    """Seconds since any authoritative source last spoke for this warehouse; None if none ever did."""
    row = conn.execute("SELECT MAX(ts) FROM stock_sources WHERE warehouse=?", (warehouse,)).fetchone()
    if row is None or row[0] is None:
        return None
    return (time.time() if now is None else now) - row[0]


def held_for(conn: sqlite3.Connection, item_id: str, warehouse: str) -> list[tuple[str, int]]:
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT ref, quantity FROM stock_reservations WHERE item_id=? AND warehouse=? AND quantity>0 ORDER BY reserved_ts",
        (item_id, warehouse))]
