"""The linked catalog: every marketplace card of every account and the 1C item it stands for.

Owns the tables `cards` (imported cards with their categories, barcodes, visibility, and the link to
an item is kept apart in `card_links`: `item_id`, `pack_size` = units of the item one card sells,
`source` = barcode|article|manual, so a re-import never touches a link),
`card_creations` (Wildberries cards being created, followed until created or failed) and
`mp_warehouses` (each account's marketplace warehouses and the own warehouse each one ships from).

Linking: automatic by barcode, then by article (offer id = 1C article); a card matching several items
is ambiguous and left for a person; the report lists ambiguous and unmatched cards with suggestions.
A manual unlink locks the card against auto-linking until it is linked again by hand.
"""

from __future__ import annotations

import difflib
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cloud_sync.stock import ledger
from marketplaces.base import (
    Card,
    CardCreation,
    CardMaker,
    ItemResult,
    Marketplace,
    MarketplaceError,
    NewCard,
    StockLevel,
    Uncertain,
)

MIGRATIONS = [
    """
    CREATE TABLE cards (
        account TEXT NOT NULL,
        native_id TEXT NOT NULL,         -- Card.native_id: what the marketplace keys stocks by
        marketplace TEXT NOT NULL,
        offer_id TEXT NOT NULL,
        title TEXT NOT NULL DEFAULT '',
        barcodes TEXT NOT NULL DEFAULT '[]',
        category TEXT NOT NULL DEFAULT '',
        category_id TEXT NOT NULL DEFAULT '',
        brand TEXT NOT NULL DEFAULT '',
        size TEXT NOT NULL DEFAULT '',
        group_id TEXT NOT NULL DEFAULT '',
        visible INTEGER NOT NULL DEFAULT 1,
        native_status TEXT NOT NULL DEFAULT '',
        price TEXT,
        native TEXT NOT NULL DEFAULT '{}',
        seen_ts REAL NOT NULL,
        PRIMARY KEY (account, native_id)
    );
    CREATE TABLE card_links (
        account TEXT NOT NULL,
        card_id TEXT NOT NULL,           -- cards.native_id
        item_id TEXT,                    -- NULL: unlinked (locked=1: unlinked by hand, no auto-link)
        pack_size INTEGER NOT NULL DEFAULT 1 CHECK (pack_size >= 1),
        source TEXT NOT NULL DEFAULT '', -- barcode | article | manual
        locked INTEGER NOT NULL DEFAULT 0,
        linked_ts REAL NOT NULL,
        PRIMARY KEY (account, card_id)
    );
    CREATE INDEX card_links_item ON card_links(item_id);
    CREATE INDEX cards_offer ON cards(account, offer_id);
    CREATE INDEX cards_category ON cards(account, category);
    CREATE TABLE card_creations (
        account TEXT NOT NULL,
        offer_id TEXT NOT NULL,
        item_id TEXT NOT NULL,
        state TEXT NOT NULL,             -- pending | created | failed
        errors TEXT NOT NULL DEFAULT '[]',
        card_id TEXT,
        started_ts REAL NOT NULL,
        updated_ts REAL NOT NULL,
        PRIMARY KEY (account, offer_id)
    );
    CREATE TABLE mp_warehouses (
        account TEXT NOT NULL,
        warehouse_id TEXT NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        kind TEXT NOT NULL DEFAULT 'fbs',
        own_warehouse TEXT,              -- NULL: not served by us (FBO, or not mapped)
        PRIMARY KEY (account, warehouse_id)
    );
    """,
    # a card being created keeps the photos to give it once it exists, and how that went
    """
    ALTER TABLE card_creations ADD COLUMN photos TEXT NOT NULL DEFAULT '[]';
    ALTER TABLE card_creations ADD COLUMN photos_state TEXT NOT NULL DEFAULT '';  -- '' | uploaded | error text
    """,
    # what a card that matches no 1C item brings to the item made from it
    """
    ALTER TABLE cards ADD COLUMN dimensions TEXT NOT NULL DEFAULT '{}';  -- {"length","width","height": cm, "weight": kg}
    ALTER TABLE cards ADD COLUMN photos TEXT NOT NULL DEFAULT '[]';      -- photo URLs
    """,
    # a card found by its article, title or category in any case of any alphabet with one LIKE: the three
    # folded (sitelink.sqlite.fold) into one column the triggers keep (the pages' searches read it)
    """
    ALTER TABLE cards ADD COLUMN search TEXT NOT NULL DEFAULT '';
    UPDATE cards SET search = fold(offer_id || char(31) || title || char(31) || category);
    CREATE TRIGGER cards_search_insert AFTER INSERT ON cards BEGIN
        UPDATE cards SET search = fold(new.offer_id || char(31) || new.title || char(31) || new.category)
        WHERE account = new.account AND native_id = new.native_id;
    END;
    CREATE TRIGGER cards_search_update AFTER UPDATE OF offer_id, title, category ON cards
    WHEN old.offer_id IS NOT new.offer_id OR old.title IS NOT new.title OR old.category IS NOT new.category BEGIN
        UPDATE cards SET search = fold(new.offer_id || char(31) || new.title || char(31) || new.category)
        WHERE account = new.account AND native_id = new.native_id;
    END;
    """,
]

# PostgreSQL's version of script 3's triggers (see cloud_sync/schema.py): the folded search column set before
# the row is written
MIGRATIONS_PG = {
    3: """
    CREATE FUNCTION cards_search() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.search := fold(NEW.offer_id || chr(31) || NEW.title || chr(31) || NEW.category);
        RETURN NEW;
    END $$;
    CREATE TRIGGER cards_search BEFORE INSERT OR UPDATE OF offer_id, title, category ON cards
        FOR EACH ROW EXECUTE FUNCTION cards_search();
    """,
}


class CatalogError(ValueError):
    """A catalog change was refused (unknown card or item, bad pack size); nothing was applied."""


@dataclass
class CardRow:
    account: str
    card_id: str
    marketplace: str
    offer_id: str
    title: str
    barcodes: list[str]
    category: str
    visible: bool
    item_id: str | None
    pack: int
    link_source: str
    locked: bool = False


@dataclass
class Problem:
    account: str
    card_id: str
    offer_id: str
    title: str
    reason: str  # ambiguous | unmatched
    candidates: list[str] = field(default_factory=list)  # items matching (ambiguous) or suggested (unmatched)


@dataclass
class LinkReport:
    linked_by_barcode: int = 0
    linked_by_article: int = 0
    already_linked: int = 0
    ambiguous: list[Problem] = field(default_factory=list)
    unmatched: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "linked_by_barcode": self.linked_by_barcode, "linked_by_article": self.linked_by_article,
            "already_linked": self.already_linked,
            "ambiguous": [p.__dict__ for p in self.ambiguous], "unmatched": [p.__dict__ for p in self.unmatched],
        }


_SELECT = (
    "SELECT c.account, c.native_id AS card_id, c.marketplace, c.offer_id, c.title, c.barcodes, c.category,"
    " c.visible, l.item_id, COALESCE(l.pack_size, 1) AS pack, COALESCE(l.source, '') AS link_source,"
    " COALESCE(l.locked, 0) AS locked"
    " FROM cards c LEFT JOIN card_links l ON l.account=c.account AND l.card_id=c.native_id"
)


def _row(r: sqlite3.Row) -> CardRow:
    return CardRow(r["account"], r["card_id"], r["marketplace"], r["offer_id"], r["title"],
                   json.loads(r["barcodes"]), r["category"], bool(r["visible"]), r["item_id"], r["pack"],
                   r["link_source"], bool(r["locked"]))


def import_cards(conn: sqlite3.Connection, account: str, marketplace: str, cards: Iterable[Card],
                 now: float | None = None) -> tuple[int, int]:
    """Insert or refresh the account's cards (links are kept). Returns (new, updated)."""
    now = time.time() if now is None else now
    new = updated = 0
    for c in cards:
        exists = conn.execute("SELECT 1 FROM cards WHERE account=? AND native_id=?",
                              (account, c.native_id)).fetchone()
        conn.execute(
            "INSERT INTO cards(account, native_id, marketplace, offer_id, title, barcodes, category, category_id,"
            " brand, size, group_id, visible, native_status, price, native, seen_ts, dimensions, photos)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(account, native_id) DO UPDATE SET"
            " offer_id=excluded.offer_id, title=excluded.title, barcodes=excluded.barcodes,"
            " category=excluded.category, category_id=excluded.category_id, brand=excluded.brand,"
            " size=excluded.size, group_id=excluded.group_id, visible=excluded.visible,"
            " native_status=excluded.native_status, price=excluded.price, native=excluded.native,"
            " seen_ts=excluded.seen_ts, dimensions=excluded.dimensions, photos=excluded.photos",
            (account, c.native_id, marketplace, c.offer_id, c.title, json.dumps(list(c.barcodes)), c.category,
             c.category_id, c.brand, c.size, c.group_id, int(c.visible), c.native_status,
             str(c.price) if c.price is not None else None, json.dumps(c.native, default=str, ensure_ascii=False),
             now, json.dumps(c.dimensions), json.dumps(list(c.photos), ensure_ascii=False)),
        )
        if exists:
            updated += 1
        else:
            new += 1
    return new, updated


def cards(conn: sqlite3.Connection, *, account: str | None = None, item_id: str | None = None,
          category: str | None = None, linked: bool | None = None) -> list[CardRow]:
    sql, args = _SELECT + " WHERE 1=1", []
    for col, val in (("c.account", account), ("l.item_id", item_id), ("c.category", category)):
        if val is not None:
            sql += f" AND {col}=?"
            args.append(val)
    if linked is not None:
        sql += " AND l.item_id IS NOT NULL" if linked else " AND l.item_id IS NULL"
    return [_row(r) for r in conn.execute(sql + " ORDER BY c.account, c.category, c.offer_id", args)]


PAGE_SORTS = {"title": "c.title", "marketplace": "c.marketplace", "account": "c.account", "offer_id": "c.offer_id",
              "category": "c.category"}


def cards_page(conn: sqlite3.Connection, *, account: str | None = None, linked: bool | None = None, q: str = "",
               sort: str = "", desc: bool = False, offset: int = 0, limit: int = 50) -> tuple[list[CardRow], int, int]:
    """One page of the cards list as the manager's Products page shows it — (rows, how many match, how many
    of those are not linked) — read by SQLite a page at a time (20,000 cards: bench/ui.py). `q` finds a card
    by its article, card id, barcode or 1C item id (any case) or a word of its title (any case, any
    alphabet); `sort` is one of PAGE_SORTS (else the account, category and article)."""
    where, args = ["1=1"], []
    if account is not None:
        where.append("c.account=?")
        args.append(account)
    if linked is not None:
        where.append("l.item_id IS NOT NULL" if linked else "l.item_id IS NULL")
    if q:
        like = "%" + q.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        # SQLite's LIKE ignores the case of Latin letters itself; text of another alphabet is looked for in
        # the article, title and category the store keeps case-folded (cards.search)
        text = "c.offer_id LIKE ? ESCAPE '\\' OR c.title" if q.isascii() else "c.search LIKE ? ESCAPE '\\' OR c.search"
        where.append(f"({text} LIKE ? ESCAPE '\\' OR c.native_id LIKE ? ESCAPE '\\'"
                     f" OR c.barcodes LIKE ? ESCAPE '\\' OR l.item_id LIKE ? ESCAPE '\\')")
        args += [like] * 5
    cond = " WHERE " + " AND ".join(where)
    column = PAGE_SORTS.get(sort)
    order = (f"{column} COLLATE NOCASE {'DESC' if desc else 'ASC'}, c.account, c.native_id" if column
             else "c.account, c.category, c.offer_id")
    if q:  # a search reads every card once: the page and the counts from the same pass
        found = conn.execute(
            f"SELECT * FROM (SELECT *, COUNT(*) OVER () AS n_all, SUM(item_id IS NULL) OVER () AS n_unlinked"
            f" FROM ({_SELECT}{cond})) AS c ORDER BY {order.replace('c.native_id', 'c.card_id')} LIMIT ? OFFSET ?",
            [*args, limit, offset]).fetchall()
        if found:
            return [_row(r) for r in found], found[0]["n_all"], found[0]["n_unlinked"]
    if linked is None and not q:  # the whole list (of an account): both counts from two indexes, no card read
        total, linked_n = _counts(conn, account)
        unlinked = max(0, total - linked_n)
    else:
        joined = " FROM cards c LEFT JOIN card_links l ON l.account=c.account AND l.card_id=c.native_id"
        total, unlinked = conn.execute(f"SELECT COUNT(*), COALESCE(SUM(l.item_id IS NULL), 0){joined}{cond}",
                                       args).fetchone()
    rows = [_row(r) for r in conn.execute(f"{_SELECT}{cond} ORDER BY {order} LIMIT ? OFFSET ?",
                                          [*args, limit, offset])]
    return rows, total, unlinked


def _counts(conn: sqlite3.Connection, account: str | None) -> tuple[int, int]:
    """(cards, linked cards) of the account or of all, from two indexes (a link row always has its card:
    cards are never deleted, only hidden)."""
    where, args = (" WHERE account=?", [account]) if account else ("", [])
    cards_n = conn.execute(f"SELECT COUNT(*) FROM cards{where}", args).fetchone()[0]
    linked = conn.execute(f"SELECT COUNT(*) FROM card_links{where or ' WHERE 1=1'} AND item_id IS NOT NULL",
                          args).fetchone()[0]
    return cards_n, linked


def has_unlinked(conn: sqlite3.Connection, account: str | None = None) -> bool:
    """Whether some card (of the account) is not linked to a 1C item: fewer links than cards."""
    cards_n, linked = _counts(conn, account)
    return cards_n > linked


def categories(conn: sqlite3.Connection, account: str | None = None) -> dict[str, int]:
    """Cards per category (the catalog split by category)."""
    sql = "SELECT category, COUNT(*) FROM cards" + (" WHERE account=?" if account else "") + " GROUP BY category"
    return {r[0]: r[1] for r in conn.execute(sql, (account,) if account else ())}


def card(conn: sqlite3.Connection, account: str, card_id: str) -> CardRow | None:
    r = conn.execute(_SELECT + " WHERE c.account=? AND c.native_id=?", (account, card_id)).fetchone()
    return _row(r) if r else None


def card_by_offer(conn: sqlite3.Connection, account: str, offer_id: str) -> CardRow | None:
    r = conn.execute(_SELECT + " WHERE c.account=? AND c.offer_id=? ORDER BY c.native_id LIMIT 1",
                     (account, offer_id)).fetchone()
    return _row(r) if r else None


def _item_exists(conn: sqlite3.Connection, item_id: str) -> bool:
    return conn.execute("SELECT 1 FROM items WHERE id=? AND deleted=0", (item_id,)).fetchone() is not None


def link(conn: sqlite3.Connection, account: str, card_id: str, item_id: str, pack: int = 1) -> None:
    """Link a card to an item by hand (a card may sell a pack of N units)."""
    if isinstance(pack, bool) or not isinstance(pack, int) or pack < 1:
        raise CatalogError(f"pack must be a whole number >= 1, got {pack!r}")
    if not _item_exists(conn, item_id):
        raise CatalogError(f"unknown item {item_id!r}")
    old = card(conn, account, card_id)
    if old is None:
        raise CatalogError(f"unknown card {card_id!r} of account {account!r}")
    _set_link(conn, account, card_id, item_id, pack, "manual", locked=False)
    _dirty(conn, [item_id, old.item_id])


def unlink(conn: sqlite3.Connection, account: str, card_id: str) -> None:
    """Remove a card's link; auto-linking leaves it alone until someone links it again."""
    old = card(conn, account, card_id)
    if old is None:
        raise CatalogError(f"unknown card {card_id!r} of account {account!r}")
    _set_link(conn, account, card_id, None, 1, "", locked=True)
    _dirty(conn, [old.item_id])


def _set_link(conn: sqlite3.Connection, account: str, card_id: str, item_id: str | None, pack: int, source: str,
              *, locked: bool, now: float | None = None) -> None:
    conn.execute(
        "INSERT INTO card_links(account, card_id, item_id, pack_size, source, locked, linked_ts)"
        " VALUES (?,?,?,?,?,?,?) ON CONFLICT(account, card_id) DO UPDATE SET item_id=excluded.item_id,"
        " pack_size=excluded.pack_size, source=excluded.source, locked=excluded.locked,"
        " linked_ts=excluded.linked_ts",
        (account, card_id, item_id, pack, source, int(locked), time.time() if now is None else now),
    )


def _dirty(conn: sqlite3.Connection, item_ids: Iterable[str | None]) -> None:
    ledger.mark_dirty(conn, [i for i in item_ids if i])


SUGGEST_AT_MOST = 200  # unmatched cards per run that get suggestions (each compares against every item)


def _suggest(conn: sqlite3.Connection, c: CardRow, limit: int = 3, cache: dict | None = None) -> list[str]:
    """Items whose article or name resemble the card's offer id or title."""
    cache = {} if cache is None else cache
    if "items" not in cache:
        rows = conn.execute("SELECT id, article, name FROM items WHERE deleted=0").fetchall()
        cache["items"] = ({r["article"]: r["id"] for r in rows if r["article"]}, {r["name"]: r["id"] for r in rows})
    by_article, by_name = cache["items"]
    found = [by_article[a] for a in difflib.get_close_matches(c.offer_id, list(by_article), n=limit, cutoff=0.6)]
    if c.title:
        found += [by_name[n] for n in difflib.get_close_matches(c.title, list(by_name), n=limit, cutoff=0.6)]
    return list(dict.fromkeys(found))[:limit]


def auto_link(conn: sqlite3.Connection, account: str | None = None, *, suggestions: bool = True) -> LinkReport:
    """Link every unlinked, unlocked card: by barcode first, then by article. Reports the rest."""
    report = LinkReport()
    newly: list[str] = []
    cache: dict = {}
    for c in cards(conn, account=account):
        if c.item_id:
            report.already_linked += 1
            continue
        if c.locked:
            report.unmatched.append(Problem(c.account, c.card_id, c.offer_id, c.title, "unlinked by hand"))
            continue
        by_barcode: list[str] = []
        for b in c.barcodes:
            by_barcode += [r[0] for r in conn.execute(
                "SELECT b.item_id FROM item_barcodes b JOIN items i ON i.id=b.item_id WHERE b.barcode=?"
                " AND i.deleted=0", (b,))]
        by_barcode = list(dict.fromkeys(by_barcode))
        source, match = "", by_barcode
        if len(by_barcode) == 1:
            source = "barcode"
        elif not by_barcode:
            match = [r[0] for r in conn.execute("SELECT id FROM items WHERE article=? AND article!='' AND deleted=0",
                                                (c.offer_id,))]
            if len(match) == 1:
                source = "article"
        if source:
            _set_link(conn, c.account, c.card_id, match[0], 1, source, locked=False)
            newly.append(match[0])
            if source == "barcode":
                report.linked_by_barcode += 1
            else:
                report.linked_by_article += 1
        elif match:
            report.ambiguous.append(Problem(c.account, c.card_id, c.offer_id, c.title, "ambiguous", match))
        else:
            wanted = suggestions and len(report.unmatched) < SUGGEST_AT_MOST
            report.unmatched.append(Problem(c.account, c.card_id, c.offer_id, c.title, "unmatched",
                                            _suggest(conn, c, cache=cache) if wanted else []))
    _dirty(conn, newly)
    return report


def cards_of_item(conn: sqlite3.Connection, item_id: str) -> list[CardRow]:
    return [_row(r) for r in conn.execute(_SELECT + " WHERE l.item_id=?", (item_id,))]


def cards_of_items(conn: sqlite3.Connection, item_ids: Iterable[str]) -> dict[str, list[CardRow]]:
    """`cards_of_item` of several items in one statement: item -> its cards (none: absent)."""
    out: dict[str, list[CardRow]] = {}
    for r in conn.execute(_SELECT + " WHERE l.item_id IN (SELECT value FROM json_each(?))",
                          (json.dumps(sorted(set(item_ids))),)):
        card = _row(r)
        out.setdefault(card.item_id or "", []).append(card)
    return out


# ---------------------------------------------------------------- marketplace warehouses


def record_warehouses(conn: sqlite3.Connection, account: str, rows: Iterable[tuple[str, str, str, str | None]]) -> None:
    """(warehouse_id, name, kind, own_warehouse) of one account."""
    conn.executemany(
        "INSERT INTO mp_warehouses(account, warehouse_id, name, kind, own_warehouse) VALUES (?,?,?,?,?)"
        " ON CONFLICT(account, warehouse_id) DO UPDATE SET name=excluded.name, kind=excluded.kind,"
        " own_warehouse=excluded.own_warehouse",
        [(account, *r) for r in rows],
    )


def warehouse_map(conn: sqlite3.Connection, account: str) -> dict[str, str]:
    """The account's FBS marketplace warehouses -> own warehouse they ship from."""
    return {r[0]: r[1] for r in conn.execute(
        "SELECT warehouse_id, own_warehouse FROM mp_warehouses WHERE account=? AND own_warehouse IS NOT NULL"
        " ORDER BY warehouse_id", (account,))}


# ---------------------------------------------------------------- storefront and card creation


def set_visibility(conn: sqlite3.Connection, adapter: Marketplace, account: str, card_ids: Sequence[str],
                   visible: bool) -> list[ItemResult]:
    """Hide a card from (or return it to) the storefront. Hiding sends zero stock first: a WB card in the
    trash keeps selling while it has stock, Ozon wants stock zeroed before archiving."""
    rows = [card(conn, account, cid) for cid in card_ids]
    missing = [cid for cid, r in zip(card_ids, rows, strict=True) if r is None]
    if missing:
        raise CatalogError(f"unknown cards of account {account!r}: {', '.join(missing)}")
    if not visible:
        zeros = [StockLevel(r.card_id, r.offer_id, wh, 0) for r in rows if r
                 for wh in warehouse_map(conn, account)]
        if zeros:
            adapter.push_stocks(zeros)
    results = adapter.set_visibility(list(card_ids), visible)
    ok = {r.key for r in results if r.ok}
    conn.executemany("UPDATE cards SET visible=? WHERE account=? AND native_id=?",
                     [(int(visible), account, cid) for cid in card_ids if cid in ok])
    _dirty(conn, [r.item_id for r in rows if r])
    return results


def start_creation(adapter: Marketplace, new: NewCard) -> CardCreation:
    """Send a new card. An upload whose answer was lost (`Uncertain`) counts as pending: following it
    reads back whether the marketplace made it, and nothing is sent twice meanwhile."""
    try:
        return adapter.create_card(new)
    except Uncertain:
        return CardCreation(new.offer_id, "pending")


def create_card(conn: sqlite3.Connection, adapter: Marketplace, account: str, item_id: str,
                new: NewCard, now: float | None = None) -> CardCreation:
    """Start creating a card from an item (card_fill.new_card builds `new`); follow it with `follow_creations`."""
    now = time.time() if now is None else now
    result = start_creation(adapter, new)
    _record_creation(conn, adapter.name, account, item_id, result, now, started=True, photos=new.photos)
    return result


def record_creation(conn: sqlite3.Connection, marketplace: str, account: str, item_id: str, result: CardCreation,
                    now: float | None = None, photos: Sequence[str] = ()) -> None:
    """Record a creation the caller started with `adapter.create_card` (so no HTTP runs inside a transaction)."""
    _record_creation(conn, marketplace, account, item_id, result, time.time() if now is None else now, started=True,
                     photos=photos)


def _record_creation(conn: sqlite3.Connection, marketplace: str, account: str, item_id: str, result: CardCreation,
                     now: float, started: bool = False, photos: Sequence[str] = ()) -> None:
    conn.execute(
        "INSERT INTO card_creations(account, offer_id, item_id, state, errors, card_id, started_ts, updated_ts,"
        " photos, photos_state) VALUES (?,?,?,?,?,?,?,?,?,'') ON CONFLICT(account, offer_id) DO UPDATE SET"
        " state=excluded.state, errors=excluded.errors, card_id=excluded.card_id, updated_ts=excluded.updated_ts"
        + (", started_ts=excluded.started_ts, photos=excluded.photos, photos_state=''" if started else ""),
        (account, result.offer_id, item_id, result.state, json.dumps(result.errors, ensure_ascii=False),
         result.card.native_id if result.card else None, now, now, json.dumps(list(photos), ensure_ascii=False)),
    )
    if result.state == "created" and result.card is not None:
        import_cards(conn, account, marketplace, [result.card], now)
        _set_link(conn, account, result.card.native_id, item_id, 1, "manual", locked=False, now=now)
        _dirty(conn, [item_id])


def follow_creations(conn: sqlite3.Connection, adapter: Marketplace, account: str,
                     now: float | None = None) -> list[CardCreation]:
    """Ask the marketplace how each pending creation stands; record created (and link) or failed. A card
    just created is given its photos (`CardMaker.add_photos`); a refusal of them is kept in words."""
    now = time.time() if now is None else now
    out = []
    pending = conn.execute("SELECT offer_id, item_id, photos FROM card_creations WHERE account=? AND state='pending'",
                           (account,)).fetchall()
    for offer_id, item_id, photos in pending:
        result = adapter.card_creation_status(offer_id)
        _record_creation(conn, adapter.name, account, item_id, result, now)
        urls = json.loads(photos or "[]")
        if result.state == "created" and result.card is not None and urls and isinstance(adapter, CardMaker):
            try:
                adapter.add_photos(result.card, urls)
                state = "uploaded"
            except MarketplaceError as exc:
                state = f"фото не приняты: {exc}"
            conn.execute("UPDATE card_creations SET photos_state=? WHERE account=? AND offer_id=?",
                         (state, account, offer_id))
        out.append(result)
    return out


def creations(conn: sqlite3.Connection, account: str | None = None) -> list[dict]:
    sql = "SELECT * FROM card_creations" + (" WHERE account=?" if account else "") + " ORDER BY started_ts"
    return [dict(r) for r in conn.execute(sql, (account,) if account else ())]
