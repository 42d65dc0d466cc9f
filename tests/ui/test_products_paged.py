"""The Products page reads one page of cards from SQLite (20,000 cards: bench/ui.py) and still finds a card
by its article, barcode or a word of its title in any case and alphabet, with the counts of the search."""

from __future__ import annotations

import re

from cloud_sync.catalog import cards as catalog
from marketplaces.base import Card


def test_search_counts_and_pages_come_from_sqlite(as_user, cloud):
    _, conn, _ = cloud
    conn.execute("INSERT INTO items(id, article, name) VALUES ('i1', 'MUG-1', 'Кружка')")
    catalog.import_cards(conn, "wb1", "wildberries", [
        Card(native_id=str(100 + i), offer_id=f"ЧШ-{i:03d}", title=f"Чашка Синяя {i}", barcodes=[f"46000{i:05d}"])
        for i in range(120)])
    catalog.link(conn, "wb1", "100", "i1", 1)
    conn.commit()
    c = as_user("masha")
    page = c.get("/products?q=чашка синяя 11").text  # a word of the title, another case, Cyrillic
    assert re.findall(r'name="card_ids" value="wb1\|(\d+)"', page) == ["111"] + [str(100 + i) for i in range(110, 120)]
    assert "11 карточек" in page
    assert re.findall(r'value="wb1\|(\d+)"', c.get("/products?q=чш-007").text)[:1] == ["107"]  # the article
    assert re.findall(r'value="wb1\|(\d+)"', c.get("/products?q=4600000042").text)[:1] == ["142"]  # a barcode
    rows, total, unlinked = catalog.cards_page(conn, q="чашка", sort="offer_id", desc=True, offset=0, limit=5)
    assert (total, unlinked) == (120, 119) and [r.offer_id for r in rows] == [f"ЧШ-{i:03d}" for i in range(119, 114, -1)]
    assert catalog.cards_page(conn, q="50%_")[1] == 0  # LIKE's wildcards typed are letters, not wildcards
    assert catalog.has_unlinked(conn, "wb1") and not catalog.has_unlinked(conn, "nope")
