"""The 1C nomenclature as the cloud keeps it: items, their groups, barcodes, price types and prices.

1C is the source of truth for these; the 1C exchange (cloud_sync/onec) writes them through the
functions here, the demo seeds them the same way, and the catalog links marketplace cards to items.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

MIGRATIONS = [
    """
    CREATE TABLE item_groups (
        id TEXT PRIMARY KEY,            -- 1C group id
        name TEXT NOT NULL,
        parent_id TEXT
    );
    CREATE TABLE items (
        id TEXT PRIMARY KEY,            -- 1C item id (with '#characteristic' for a characteristic)
        article TEXT NOT NULL DEFAULT '',
        name TEXT NOT NULL,
        group_id TEXT,
        unit TEXT NOT NULL DEFAULT 'шт',
        marked INTEGER NOT NULL DEFAULT 0,   -- goods under Честный знак marking
        gtin TEXT NOT NULL DEFAULT '',
        bin TEXT NOT NULL DEFAULT '',        -- storage location at the sites, for pick order
        deleted INTEGER NOT NULL DEFAULT 0,
        properties TEXT NOT NULL DEFAULT '{}',  -- JSON {property name: value}
        updated_at TEXT NOT NULL DEFAULT (datetime('now'))
    );
    CREATE INDEX items_article ON items(article);
    CREATE TABLE item_barcodes (
        barcode TEXT NOT NULL,
        item_id TEXT NOT NULL REFERENCES items(id) ON DELETE CASCADE,
        PRIMARY KEY (barcode, item_id)
    );
    CREATE INDEX item_barcodes_item ON item_barcodes(item_id);
    CREATE TABLE price_types (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        currency TEXT NOT NULL DEFAULT 'RUB',
        is_cost INTEGER NOT NULL DEFAULT 0   -- this price type is the cost price (for margins)
    );
    CREATE TABLE item_prices (
        item_id TEXT NOT NULL REFERENCES items(id) ON DELETE CASCADE,
        price_type_id TEXT NOT NULL REFERENCES price_types(id),
        price TEXT NOT NULL,                 -- Decimal as text
        PRIMARY KEY (item_id, price_type_id)
    );
    """,
    # prices and barcodes are looked up by their key only: kept in the key's own b-tree (WITHOUT ROWID),
    # one b-tree less to write per row — a 1C package writes hundreds of thousands of them
    """
    CREATE TABLE item_barcodes_new (
        barcode TEXT NOT NULL,
        item_id TEXT NOT NULL REFERENCES items(id) ON DELETE CASCADE,
        PRIMARY KEY (barcode, item_id)
    ) WITHOUT ROWID;
    INSERT INTO item_barcodes_new(barcode, item_id) SELECT barcode, item_id FROM item_barcodes;
    DROP TABLE item_barcodes;
    ALTER TABLE item_barcodes_new RENAME TO item_barcodes;
    CREATE INDEX item_barcodes_item ON item_barcodes(item_id);
    CREATE TABLE item_prices_new (
        item_id TEXT NOT NULL REFERENCES items(id) ON DELETE CASCADE,
        price_type_id TEXT NOT NULL REFERENCES price_types(id),
        price TEXT NOT NULL,                 -- Decimal as text
        PRIMARY KEY (item_id, price_type_id)
    ) WITHOUT ROWID;
    INSERT INTO item_prices_new(item_id, price_type_id, price) SELECT item_id, price_type_id, price FROM item_prices;
    DROP TABLE item_prices;
    ALTER TABLE item_prices_new RENAME TO item_prices;
    """,
    """
    -- the bin each site keeps an item in, set there at a receipt or a count (the site's `item_bin`
    -- message); where a site set none, items.bin (1C's «Ячейка») stands
    CREATE TABLE site_bins (
        site TEXT NOT NULL,
        item_id TEXT NOT NULL,
        warehouse TEXT NOT NULL DEFAULT '',
        bin TEXT NOT NULL,
        set_at REAL NOT NULL,            -- the site's moment (a later word wins, whatever order they come in)
        set_by TEXT NOT NULL DEFAULT '',
        ref TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (site, item_id)
    ) WITHOUT ROWID;
    CREATE INDEX site_bins_item ON site_bins(item_id, warehouse);
    """,
    # an item found by its id, article or name in any case of any alphabet with one LIKE (see cards.search)
    """
    ALTER TABLE items ADD COLUMN search TEXT NOT NULL DEFAULT '';
    UPDATE items SET search = fold(id || char(31) || article || char(31) || name);
    CREATE TRIGGER items_search_insert AFTER INSERT ON items BEGIN
        UPDATE items SET search = fold(new.id || char(31) || new.article || char(31) || new.name) WHERE id = new.id;
    END;
    CREATE TRIGGER items_search_update AFTER UPDATE OF article, name ON items
    WHEN old.article IS NOT new.article OR old.name IS NOT new.name BEGIN
        UPDATE items SET search = fold(new.id || char(31) || new.article || char(31) || new.name) WHERE id = new.id;
    END;
    """,
]

# PostgreSQL's version of script 3's triggers (see cloud_sync/schema.py)
MIGRATIONS_PG = {
    3: """
    CREATE FUNCTION items_search() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.search := fold(NEW.id || chr(31) || NEW.article || chr(31) || NEW.name);
        RETURN NEW;
    END $$;
    CREATE TRIGGER items_search BEFORE INSERT OR UPDATE OF article, name ON items
        FOR EACH ROW EXECUTE FUNCTION items_search();
    """,
}


@dataclass
class Item:
    id: str
    name: str
    article: str = ""
    group_id: str | None = None
    unit: str = "шт"
    marked: bool = False
    gtin: str = ""
    bin: str = ""
    barcodes: list[str] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)


def upsert_items(conn: sqlite3.Connection, items: Iterable[Item], *, batch: int = 2000) -> int:
    """Insert or update items with their barcodes (the barcode list replaces the old one).

    Written in batches with executemany, so a 100,000-item 1C catalog goes in quickly."""
    count = 0
    chunk: list[Item] = []
    for it in items:
        chunk.append(it)
        if len(chunk) >= batch:
            count += _upsert_item_batch(conn, chunk)
            chunk = []
    if chunk:
        count += _upsert_item_batch(conn, chunk)
    return count


_json_encode = json.JSONEncoder(ensure_ascii=False).encode  # json.dumps(..., ensure_ascii=False), built once
_json_string = json.encoder.encode_basestring  # one JSON string, quoted and escaped (C-accelerated)


def properties_json(properties: dict[str, str]) -> str:
    """The `items.properties` column: JSON text exactly as json.dumps(..., ensure_ascii=False) writes it,
    built directly for the usual {name: text} (three times quicker: 100,000s of items per 1C package)."""
    try:
        return "{" + ", ".join([_json_string(k) + ": " + _json_string(v) for k, v in properties.items()]) + "}"
    except TypeError:  # a value that is not text
        return _json_encode(properties)


def _upsert_item_batch(conn: sqlite3.Connection, items: list[Item]) -> int:
    return upsert_item_rows(
        conn,
        [(it.id, it.article, it.name, it.group_id, it.unit, int(it.marked), it.gtin, it.bin,
          properties_json(it.properties)) for it in items],
        [(b, it.id) for it in items for b in dict.fromkeys(it.barcodes) if b],
    )


def upsert_item_rows(conn: sqlite3.Connection, rows: list[tuple], barcodes: list[tuple[str, str]]) -> int:
    """`upsert_items` for rows already made: (id, article, name, group_id, unit, marked, gtin, bin,
    properties_json) and their (barcode, item_id) pairs (the barcode list replaces the old one: only
    the pairs that changed are written, so re-sending an unchanged catalog rewrites no barcode)."""
    conn.executemany(
        "INSERT INTO items(id, article, name, group_id, unit, marked, gtin, bin, properties, deleted)"
        " VALUES (?,?,?,?,?,?,?,?,?,0)"
        " ON CONFLICT(id) DO UPDATE SET article=excluded.article, name=excluded.name,"
        " group_id=excluded.group_id, unit=excluded.unit, marked=excluded.marked, gtin=excluded.gtin,"
        " bin=CASE WHEN excluded.bin != '' THEN excluded.bin ELSE items.bin END,"
        " properties=excluded.properties, deleted=0, updated_at=datetime('now')",
        rows,
    )
    ids = [row[0] for row in rows]
    cur = conn.cursor()
    cur.row_factory = None  # plain tuples, comparable with `barcodes`
    old: set[tuple[str, str]] = set()
    for i in range(0, len(ids), 500):
        part = ids[i:i + 500]
        old.update(cur.execute(f"SELECT barcode, item_id FROM item_barcodes WHERE item_id IN ({','.join('?' * len(part))})",
                               part))
    if old:
        new = set(barcodes)
        gone = [pair for pair in old if pair not in new]
        if gone:
            conn.executemany("DELETE FROM item_barcodes WHERE barcode=? AND item_id=?", gone)
        barcodes = [pair for pair in barcodes if pair not in old]
    if barcodes:
        conn.executemany("INSERT OR IGNORE INTO item_barcodes(barcode, item_id) VALUES (?, ?)", barcodes)
    return len(rows)


def upsert_group(conn: sqlite3.Connection, group_id: str, name: str, parent_id: str | None = None) -> None:
    conn.execute(
        "INSERT INTO item_groups(id, name, parent_id) VALUES (?,?,?)"
        " ON CONFLICT(id) DO UPDATE SET name=excluded.name, parent_id=excluded.parent_id",
        (group_id, name, parent_id),
    )


def upsert_price_type(conn: sqlite3.Connection, type_id: str, name: str, currency: str = "RUB",
                      is_cost: bool = False) -> None:
    conn.execute(
        "INSERT INTO price_types(id, name, currency, is_cost) VALUES (?,?,?,?)"
        " ON CONFLICT(id) DO UPDATE SET name=excluded.name, currency=excluded.currency,"
        " is_cost=MAX(price_types.is_cost, excluded.is_cost)",
        (type_id, name, currency, int(is_cost)),
    )


def set_item_price(conn: sqlite3.Connection, item_id: str, price_type_id: str, price: Decimal) -> None:
    set_item_price_rows(conn, [(item_id, price_type_id, str(price))])


def set_item_prices(conn: sqlite3.Connection, rows: Iterable[tuple[str, str, Decimal]]) -> int:
    """`set_item_price` for many (item_id, price_type_id, price) rows at once (executemany)."""
    data = [(item_id, type_id, str(price)) for item_id, type_id, price in rows]
    set_item_price_rows(conn, data)
    return len(data)


def set_item_price_rows(conn: sqlite3.Connection, rows: Sequence[tuple[str, str, str]]) -> None:
    """Prices already as text rows (item_id, price_type_id, "123.45"), as a bulk import prepares them."""
    conn.executemany(
        "INSERT INTO item_prices(item_id, price_type_id, price) VALUES (?,?,?)"
        " ON CONFLICT(item_id, price_type_id) DO UPDATE SET price=excluded.price"
        " WHERE item_prices.price IS NOT excluded.price",  # an unchanged price is not rewritten
        rows,
    )


def mark_items_deleted(conn: sqlite3.Connection, item_ids: Iterable[str]) -> int:
    """1C marked these items for deletion: they stay (orders refer to them) but are flagged deleted."""
    data = [(i,) for i in item_ids]
    conn.executemany("UPDATE items SET deleted=1, updated_at=datetime('now') WHERE id=?", data)
    return len(data)


def item_by_barcode(conn: sqlite3.Connection, barcode: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT item_id FROM item_barcodes WHERE barcode=?", (barcode,))]


def cost_price(conn: sqlite3.Connection, item_id: str) -> Decimal | None:
    row = conn.execute(
        "SELECT p.price FROM item_prices p JOIN price_types t ON t.id=p.price_type_id"
        " WHERE p.item_id=? AND t.is_cost=1 LIMIT 1",
        (item_id,),
    ).fetchone()
    return Decimal(row[0]) if row else None


def site_bin_came(conn: sqlite3.Connection, site: str, item_id: str, bin_code: str, *, at: float,
                  warehouse: str = "", by: str = "", ref: str = "") -> bool:
    """A site says where it keeps an item (`bin_code`; "" = its own bin gave way to 1C's). A word older
    than the one kept (messages may come out of order) changes nothing; whether it was taken."""
    before = conn.execute("SELECT set_at FROM site_bins WHERE site=? AND item_id=?", (site, item_id)).fetchone()
    if before is not None and before[0] > at:
        return False
    if not bin_code:
        conn.execute("DELETE FROM site_bins WHERE site=? AND item_id=?", (site, item_id))
        return True
    conn.execute("INSERT INTO site_bins(site, item_id, warehouse, bin, set_at, set_by, ref) VALUES (?,?,?,?,?,?,?)"
                 " ON CONFLICT(site, item_id) DO UPDATE SET warehouse=excluded.warehouse, bin=excluded.bin,"
                 " set_at=excluded.set_at, set_by=excluded.set_by, ref=excluded.ref",
                 (site, item_id, warehouse, bin_code, at, by, ref))
    return True
