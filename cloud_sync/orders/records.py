"""The order tables (`orders`, `order_lines`, `order_actions`, `order_events`, `event_dedup`, `supplies`,
`handovers`, `sites`, `cloud_errors`) and the small writes every step of an order shares: the unified
status, an event in the order's history, an error for the manager, a marketplace action queued, a
message to a site, a stage moved.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from typing import Any

from cloud_sync.config import CloudConfig
from cloud_sync.db import transaction
from cloud_sync.orders.history import EVENT_SQL, defer_events  # noqa: F401 - EVENT_SQL: the callers' name for it
from cloud_sync.stock import push as stock_push
from sitelink import store as link_store
from sitelink.messages import EncodedBody
from sitelink.sqlite import keys_held, need

MIGRATIONS = [
    """
    CREATE TABLE orders (
        id INTEGER PRIMARY KEY,
        key TEXT NOT NULL UNIQUE,        -- "account:native_id": the order id the site sees
        account TEXT NOT NULL,
        marketplace TEXT NOT NULL,
        native_id TEXT NOT NULL,
        number TEXT NOT NULL DEFAULT '',
        native_status TEXT NOT NULL DEFAULT '',
        native_substatus TEXT NOT NULL DEFAULT '',
        stage TEXT NOT NULL,             -- ours: new|problem|short|reserved|picking|packed|handed_over|cancelled (+ STAGES)
        status TEXT NOT NULL,            -- unified: new|in_work|reserved|picking|packed|handed_over|delivered|cancelled|returned
        problem TEXT NOT NULL DEFAULT '',
        created_at TEXT NOT NULL,
        ship_by TEXT,                    -- ISO UTC; NULL: no deadline given
        mp_warehouse TEXT NOT NULL DEFAULT '',
        warehouse TEXT NOT NULL DEFAULT '',
        site TEXT,
        supply_id TEXT,
        confirmed INTEGER NOT NULL DEFAULT 0,
        label_sent INTEGER NOT NULL DEFAULT 0,
        labels_printed INTEGER NOT NULL DEFAULT 0,
        packed_ts REAL,
        ingested_ts REAL NOT NULL,
        updated_ts REAL NOT NULL,
        native TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX orders_list ON orders(ship_by, status);
    CREATE INDEX orders_stage ON orders(stage);
    CREATE TABLE order_lines (
        order_id INTEGER NOT NULL REFERENCES orders(id),
        line_no INTEGER NOT NULL,
        card_id TEXT NOT NULL,
        offer_id TEXT NOT NULL,
        item_id TEXT,
        quantity INTEGER NOT NULL,       -- cards ordered
        units INTEGER NOT NULL,          -- item units (quantity × pack size)
        price TEXT NOT NULL,
        barcode TEXT NOT NULL DEFAULT '',
        title TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (order_id, line_no)
    ) WITHOUT ROWID;
    CREATE TABLE order_actions (
        order_id INTEGER NOT NULL REFERENCES orders(id),
        action TEXT NOT NULL,            -- confirm | label | assemble | ship | cancel
        state TEXT NOT NULL,             -- pending | done | failed
        attempts INTEGER NOT NULL DEFAULT 0,
        next_try REAL NOT NULL,
        error TEXT NOT NULL DEFAULT '',
        updated_ts REAL NOT NULL,
        PRIMARY KEY (order_id, action)
    ) WITHOUT ROWID;
    CREATE INDEX order_actions_due ON order_actions(state, next_try);
    CREATE TABLE order_events (
        id INTEGER PRIMARY KEY,
        order_id INTEGER,
        ts REAL NOT NULL,
        kind TEXT NOT NULL,              -- ingested|reserved|short|confirmed|label_sent|printed|picked|packed|...
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX order_events_order ON order_events(order_id);
    CREATE INDEX order_events_kind ON order_events(kind);
    CREATE TABLE event_dedup (
        key TEXT PRIMARY KEY,
        ts REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE supplies (
        account TEXT NOT NULL,
        mp_warehouse TEXT NOT NULL,
        supply_id TEXT NOT NULL,
        state TEXT NOT NULL,             -- open | shipped
        created_ts REAL NOT NULL,
        PRIMARY KEY (account, supply_id)
    );
    CREATE TABLE sites (
        id TEXT PRIMARY KEY,
        last_seen REAL,
        devices TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE cloud_errors (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        area TEXT NOT NULL,
        account TEXT NOT NULL DEFAULT '',
        message TEXT NOT NULL
    );
    """,
    """
    ALTER TABLE orders ADD COLUMN marking_codes TEXT NOT NULL DEFAULT '[]';
    CREATE TABLE handovers (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        site TEXT NOT NULL,
        supply_id TEXT,
        state TEXT NOT NULL,             -- open | shipped
        created_ts REAL NOT NULL
    );
    CREATE TABLE handover_orders (
        handover_id TEXT NOT NULL REFERENCES handovers(id),
        order_id INTEGER NOT NULL REFERENCES orders(id),
        PRIMARY KEY (handover_id, order_id)
    ) WITHOUT ROWID;
    """,
    """
    ALTER TABLE sites ADD COLUMN catalog_sent_at TEXT;   -- items.updated_at of the last item sent down
    """,
    """
    ALTER TABLE order_lines ADD COLUMN marking_required INTEGER NOT NULL DEFAULT 0;  -- the marketplace says so
    """,
    """
    -- set (the moment) before a marketplace call is made, cleared when its outcome is recorded: an action
    -- found with it set after a crash has an unknown outcome, and the order is read back before calling again
    ALTER TABLE order_actions ADD COLUMN inflight_ts REAL;
    -- supplies.state: open (takes confirmed orders) | closing (its ship is queued: takes none) | shipped
    """,
    """
    -- who or what caused an event (marketplace | site | manager | system) and which one (account, site id,
    -- user name); `key` makes a re-delivered event (a site message, a marketplace push) count once
    ALTER TABLE order_events ADD COLUMN source TEXT NOT NULL DEFAULT 'system';
    ALTER TABLE order_events ADD COLUMN actor TEXT NOT NULL DEFAULT '';
    ALTER TABLE order_events ADD COLUMN key TEXT;
    CREATE UNIQUE INDEX order_events_key ON order_events(key) WHERE key IS NOT NULL;
    CREATE INDEX order_events_timeline ON order_events(order_id, ts);
    -- how many times the order was sent to a site anew after a shortage there (its pick task id follows)
    ALTER TABLE orders ADD COLUMN task_round INTEGER NOT NULL DEFAULT 0;
    """,
    # «Требует внимания» (cloud_sync.web.pages.attention) reads the orders waiting for stock or a link and those
    # due soon through these partial indexes: a few rows each, whatever the statistics say of `stage` (with
    # ANALYZE over a day of only new orders SQLite scanned all 100,000). Their WHERE must stay word for word
    # the page's, or SQLite cannot use them.
    """
    CREATE INDEX orders_waiting ON orders(COALESCE(ship_by, '9999'), id) WHERE stage IN ('short', 'problem')
        AND status NOT IN ('handed_over', 'delivered', 'cancelled', 'returned');
    CREATE INDEX orders_due ON orders(ship_by) WHERE ship_by IS NOT NULL
        AND status NOT IN ('handed_over', 'delivered', 'cancelled', 'returned') AND stage NOT IN ('short', 'problem');
    -- the dashboard's figures per marketplace per day read a period's orders from this index alone
    CREATE INDEX orders_day ON orders(created_at, marketplace, status, ship_by, packed_ts);
    """,
    # an order's history is read through order_events_timeline(order_id, ts), whose first column this one
    # repeated: one index less to write for every event (two or more per new order; EXPLAIN QUERY PLAN of
    # every `order_id=?` look-up names the timeline)
    """
    DROP INDEX IF EXISTS order_events_order;
    """,
    # orders_list(ship_by, status) is in no query plan: the deadline look-ups read orders_page (the order
    # list's own), orders_due or orders_stage (EXPLAIN QUERY PLAN of listing.deadlines_near, the
    # «Требует внимания» page and the demo summary) — one index less for every new order to write
    """
    DROP INDEX IF EXISTS orders_list;
    """,
    # orders by stage carry what the reading of who waits for stock needs of each (cloud_sync.orders.waiting.
    # Waiters, once per batch of new orders): it reads the waiting orders from the index alone, where through
    # orders_stage(stage) each one's table row was fetched among all orders (bench/orders_ingest.py: 13,710
    # waiting orders, ~15 ms per batch, ~9 ms this way). The same one index per order as before (every look-up
    # by stage reads its first column), its rows a little wider, written in id order within a stage.
    """
    DROP INDEX IF EXISTS orders_stage;
    CREATE INDEX orders_stage_at ON orders(stage, id, warehouse, ship_by, created_at);
    """,
]

STAGES = ("new", "problem", "short", "reserved", "picking", "packed", "handed_over", "cancelled",
          "delivered", "return_expected", "returned")  # the last three: orders.after_handover

RANK = {"new": 0, "in_work": 1, "reserved": 2, "picking": 3, "packed": 4, "handed_over": 5, "delivered": 6}

TERMINAL = ("cancelled", "returned")

OPEN_STAGES = ("new", "problem", "short", "reserved", "picking", "packed")

# Called after a batch commits with the items whose stock changed (the stock pusher's wake-up).
Waker = Callable[[], None]


class OrderError(ValueError):
    """An order change was refused; nothing was applied."""


def order_key(account: str, native_id: str) -> str:
    return f"{account}:{native_id}"


def unified(cfg: CloudConfig, marketplace: str, native_status: str, native_substatus: str, stage: str) -> str:
    """The one status the manager sees: the marketplace's word, moved forward by our own progress;
    cancelled and returned always win."""
    native = cfg.unified_status(marketplace, native_status, native_substatus) or "new"
    if stage in ("return_expected", "returned"):  # on its way back, or back: cancelled after hand-over or returned
        return native if native in TERMINAL else "returned"
    if native in TERMINAL or stage == "cancelled":
        return native if native in TERMINAL else "cancelled"
    ours = stage if stage in RANK else "new"
    return native if RANK[native] >= RANK[ours] else ours


# who causes an event of this kind when the caller does not say (the marketplace answered our call)
KIND_SOURCE = {"confirmed": "marketplace", "assembled": "marketplace", "shipped": "marketplace",
               "cancel_sent": "marketplace", "label_sent": "marketplace", "received": "marketplace",
               "status": "marketplace"}

SOURCES = ("marketplace", "site", "manager", "system")


def order_lock(order_id: int) -> str:
    """The key (`sitelink.sqlite.transaction`'s `keys`) of one order's own rows: its `orders` row, its lines,
    actions and events. The writes of one order's step say they need it (`need`): an order's marketplace
    outcome is a keyed transaction of its order (and its site's link when it sends), beside the others."""
    return f"order:{order_id}"


def log_event(conn: sqlite3.Connection, order_id: int | None, kind: str, detail: str = "",
              now: float | None = None, *, source: str = "", actor: str = "", key: str | None = None) -> bool:
    """One event in an order's history, at the moment it happened (`now`: for a site's event, the site's
    own time), with who caused it. An event with a `key` already recorded is not recorded again (False)."""
    if order_id is None:
        need(conn)
    else:
        need(conn, order_lock(order_id))
    source = source or KIND_SOURCE.get(kind, "system")
    row = (order_id, time.time() if now is None else now, kind, detail, source, actor, key)
    if keys_held(conn) is not None:
        if key is not None:
            need(conn)  # whether it was recorded before is known once it is written: an ordinary transaction
        defer_events(conn, [row])
        return True
    cur = conn.execute(EVENT_SQL, row)
    return cur.rowcount > 0


def pick_task_id(key: str, task_round: int = 0) -> str:
    """The site's task id of an order: the same every time it is sent, a new one after a shortage."""
    return f"pick-{key}" if not task_round else f"pick-{key}#{task_round + 1}"


def log_error(conn: sqlite3.Connection, area: str, message: str, account: str = "") -> None:
    conn.execute("INSERT INTO cloud_errors(ts, area, account, message) VALUES (?,?,?,?)",
                 (time.time(), area, account, message[:1000]))


def send_to_site(conn: sqlite3.Connection, link: Any, site: str, msg_type: str, body: dict[str, Any]) -> None:
    """Enqueue a site-link message in the caller's transaction (the link's outbox): with a running link
    it wakes it; without one (a CLI run) the message waits in the outbox for the service."""
    if link is not None:
        link.send(conn, msg_type, body, site=site)
    else:
        link_store.enqueue(conn, "cloud", site, msg_type, body)


def send_many_to_site(conn: sqlite3.Connection, link: Any, site: str,
                      messages: list[tuple[str, dict[str, Any]]]) -> None:
    """Enqueue messages (type, body) for one site in the caller's transaction, in order, as one write
    (`sitelink.store.enqueue_many`); like `send_to_site` it wakes a running link."""
    if not messages:
        return
    if link is not None:
        link.send_many(conn, site, messages)
    else:
        link_store.enqueue_many(conn, "cloud", site, messages)


def queue_action(conn: sqlite3.Connection, order_id: int, action: str, now: float, delay: float = 0.0) -> None:
    need(conn, order_lock(order_id))
    conn.execute(ACTION_SQL, (order_id, action, "pending", now + delay, now))


ACTION_SQL = ("INSERT INTO order_actions(order_id, action, state, attempts, next_try, updated_ts) VALUES (?,?,?,0,?,?)"
              " ON CONFLICT(order_id, action) DO UPDATE SET state='pending', next_try=excluded.next_try,"
              " updated_ts=excluded.updated_ts WHERE order_actions.state!='done'")  # rows as queue_action's


_ITEM_FACTS = ("SELECT id, name, bin, marked, (SELECT group_concat(barcode, char(31)) FROM item_barcodes"
               " WHERE item_id=items.id), article FROM items")

ItemFacts = tuple[str, str, int, str | None, str]  # name, bin, marked, barcodes joined by char(31), article


def item_facts(conn: sqlite3.Connection, item_ids: Iterable[str]) -> dict[str, ItemFacts | None]:
    """What pick task lines (and the reasons of short orders) say of these items, read in one statement
    (None: no such item)."""
    ids = sorted(set(item_ids))
    found: dict[str, ItemFacts | None] = dict.fromkeys(ids)
    for r in conn.execute(_ITEM_FACTS + " WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(ids),)):
        found[r[0]] = (r[1], r[2], r[3], r[4], r[5])
    return found


def task_line(conn: sqlite3.Connection, item_id: str, units: int, barcode: str, title: str,
               marking: bool = False, facts: dict[str, ItemFacts | None] | None = None) -> dict[str, Any]:
    """One line of a pick task; `facts`: the items already read (`item_facts`), else it reads its own."""
    if facts is not None and item_id in facts:
        it = facts[item_id]
    else:
        row = conn.execute(_ITEM_FACTS + " WHERE id=?", (item_id,)).fetchone()
        it = (row[1], row[2], row[3], row[4], row[5]) if row else None
    codes = it[3].split("\x1f") if it and it[3] else []
    line: dict[str, Any] = {"item_id": item_id, "quantity": units, "name": (it[0] if it else "") or title,
                            "barcodes": codes, "marking_required": marking or bool(it and it[2])}
    if codes or barcode:
        line["barcode"] = codes[0] if codes else barcode
    if it and it[1]:
        line["bin"] = it[1]
    if title and title != line["name"]:  # the marketplace card's own title: the packer's second line
        line["title"] = title
    return line


_TEXT = json.encoder.encode_basestring_ascii  # the canonical text of a str (what the link's encoder writes)


def _around_quantity(line: dict[str, Any]) -> tuple[str, str] | None:
    """The canonical text of a pick task line (`canonical_json` of it) before and after its quantity's value,
    written key by key in sorted order; None when a value is not plain text, a whole number, a flag, null or
    a list of text (the line is then encoded by the link's encoder)."""
    before: list[str] = []
    after: list[str] = []
    into = None
    for name in sorted(line):
        if name == "quantity":
            into = after
            continue
        value = line[name]
        kind = type(value)
        if kind is str:
            text = _TEXT(value)
        elif kind is bool:
            text = "true" if value else "false"
        elif kind is int:
            text = int.__repr__(value)
        elif value is None:
            text = "null"
        elif kind is list and all(type(v) is str for v in value):
            text = f"[{','.join([_TEXT(v) for v in value])}]"
        else:
            return None
        (before if into is None else after).append(f"{_TEXT(name)}:{text}")
    if into is None:
        return None
    return "{" + "".join(f"{part}," for part in before) + '"quantity":', "".join(f",{part}" for part in after) + "}"


LineMade = tuple[dict[str, Any], str | None, str]  # a line with quantity 0, its text before and after the quantity


@functools.lru_cache(maxsize=4096)
def _line_of(item_id: str, barcode: str, title: str, marking: bool, facts: ItemFacts | None) -> LineMade:
    """A pick task line of an item whose facts are these (as a batch read them) and its text around the
    quantity: the same for the same facts, whichever batch asks (a bounded cache of the items sold lately;
    what it gives is never changed: each body copies it)."""
    line = task_line(None, item_id, 0, barcode, title, marking, {item_id: facts})  # type: ignore[arg-type]
    around = _around_quantity(line)
    return (line, *around) if around is not None else (line, None, "")


class PickTasks:
    """The pick task bodies of a batch of new orders, each with its canonical text (`EncodedBody`, what the
    link's outbox stores) written here instead of encoded whole per order by the link's encoder (sorted keys,
    ASCII: ~6 us a body): a line's text is made once for each item, its facts and line shape (`task_line` of
    it, the item's facts read by the batch: `_line_of`) around its quantity, and an order's body is written
    field by field in the canonical (sorted) order. A body with a field that is not text, or a line with a
    value that is not plain, stays a plain dict, encoded by the link as ever."""

    __slots__ = ("facts", "_lines")

    def __init__(self, facts: dict[str, ItemFacts | None]) -> None:
        self.facts = facts
        # (item, barcode, title, marking) -> the line made of an item the batch's facts do not hold
        self._lines: dict[tuple[str, str, str, bool], LineMade] = {}

    def _line(self, conn: sqlite3.Connection, item_id: str, barcode: str, title: str, marking: bool) -> LineMade:
        facts = self.facts
        if item_id in facts:
            return _line_of(item_id, barcode, title, marking, facts[item_id])
        k = (item_id, barcode, title, marking)  # an item the batch did not read (`task_line` reads it): made here
        made = self._lines.get(k)
        if made is None:
            line = task_line(conn, item_id, 0, barcode, title, marking, facts)
            around = _around_quantity(line)
            made = self._lines[k] = (line, *around) if around is not None else (line, None, "")
        return made

    def body(self, conn: sqlite3.Connection, key: str, marketplace: str, account: str, native_id: str,
             number: str, warehouse: str, deadline: str | None,
             lines: Iterable[tuple[str, int, str, str, bool]]) -> dict[str, Any]:
        """The body `pick_task_body` would give the new order (lines: item, units, barcode, title, marking)."""
        out, texts = [], []
        for item_id, units, barcode, title, marking in lines:
            template, head, tail = self._line(conn, item_id, barcode, title, marking)
            line = template.copy()  # each body its own line and list of barcodes, as `task_line` makes them
            line["barcodes"] = template["barcodes"][:]
            line["quantity"] = units
            out.append(line)
            if head is not None and type(units) is int:
                texts.append(f"{head}{units}{tail}")
        task_id = pick_task_id(key)
        body = _task_body(task_id, key, marketplace, out, account, native_id, number, warehouse, deadline)
        if len(texts) != len(out) or not all(type(v) is str for v in (
                key, marketplace, account, native_id, number, warehouse, deadline or "")):
            return body
        when = f'"deadline":{_TEXT(deadline)},' if deadline else ""
        return EncodedBody(body, f'{{"account":{_TEXT(account)},{when}"lines":[{",".join(texts)}],'
                                 f'"marketplace":{_TEXT(marketplace)},"native_id":{_TEXT(native_id)},'
                                 f'"number":{_TEXT(number)},"order_id":{_TEXT(key)},"task_id":{_TEXT(task_id)},'
                                 f'"warehouse":{_TEXT(warehouse)}}}')


def pick_task_body(conn: sqlite3.Connection, oid: int) -> dict[str, Any]:
    """The pick task of a stored order (to send it again)."""
    o = conn.execute("SELECT * FROM orders WHERE id=?", (oid,)).fetchone()
    lines = [task_line(conn, ln["item_id"], ln["units"], ln["barcode"], ln["title"], bool(ln["marking_required"]))
             for ln in conn.execute("SELECT item_id, units, barcode, title, marking_required FROM order_lines"
                                    " WHERE order_id=? ORDER BY line_no", (oid,))]
    return _task_body(pick_task_id(o["key"], o["task_round"]), o["key"], o["marketplace"], lines, o["account"],
                      o["native_id"], o["number"], o["warehouse"], o["ship_by"])


def _task_body(task_id: str, key: str, marketplace: str, lines: list[dict[str, Any]], account: str,
               native_id: str, number: str, warehouse: str, deadline: str | None) -> dict[str, Any]:
    """A pick task's body (the `pick_task` message; a deadline only when the order has one)."""
    body: dict[str, Any] = {"task_id": task_id, "order_id": key, "marketplace": marketplace, "lines": lines,
                            "account": account, "native_id": native_id, "number": number, "warehouse": warehouse}
    if deadline:
        body["deadline"] = deadline
    return body


def set_stage(conn: sqlite3.Connection, cfg: CloudConfig, oid: int, stage: str, now: float,
               problem: str | None = None, known: tuple[str, str, str] | None = None) -> None:
    need(conn, order_lock(oid))
    o = known or conn.execute("SELECT marketplace, native_status, native_substatus FROM orders WHERE id=?",
                              (oid,)).fetchone()
    status = unified(cfg, o[0], o[1], o[2], stage)
    if problem is None:
        conn.execute("UPDATE orders SET stage=?, status=?, updated_ts=? WHERE id=?", (stage, status, now, oid))
    else:
        conn.execute("UPDATE orders SET stage=?, status=?, problem=?, updated_ts=? WHERE id=?",
                     (stage, status, problem, now, oid))

PAST_THE_SELLER = ("handed_over", "delivered", "cancelled", "returned")  # no assembly deadline to miss any more

DONE_EVENT = {"confirm": "confirmed", "assemble": "assembled", "ship": "shipped", "cancel": "cancel_sent"}


def marketplace_gave_back(conn: sqlite3.Connection, cfg: CloudConfig, oid: int, now: float) -> None:
    """An order cancelled on a marketplace that puts the units back on its cards by itself (profile
    `stock_follows_orders`) before it shipped: those cards are pushed again."""
    o = conn.execute("SELECT account, mp_warehouse FROM orders WHERE id=?", (oid,)).fetchone()
    settings = cfg.accounts.get(o["account"])
    if settings is None or not settings.stock_follows_orders or not o["mp_warehouse"]:
        return
    lines = conn.execute("SELECT card_id, item_id FROM order_lines WHERE order_id=?", (oid,)).fetchall()
    stock_push.marketplace_gave_back(conn, o["account"], o["mp_warehouse"], [ln[0] for ln in lines],
                                     [ln[1] or "" for ln in lines], now)


def retry_failed_action(conn: sqlite3.Connection, order_id: int, action: str, now: float) -> bool:
    """A person asks to try a failed marketplace call of an order again now; False if it had not failed."""
    with transaction(conn):
        return conn.execute("UPDATE order_actions SET state='pending', attempts=0, next_try=?, updated_ts=?"
                            " WHERE order_id=? AND action=? AND state='failed'",
                            (now, now, order_id, action)).rowcount > 0
