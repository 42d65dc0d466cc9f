"""Bins kept at the site reach the manager: the site's `item_bin` message (sent when a receipt or a count
keeps a bin; tests/edge/test_browser.py sends it from the packers' page over MQTT) is applied in the
cloud's inbox transaction and the Stocks page shows, per item and warehouse, the bin the site keeps it
in, else 1C's «Ячейка»."""

from __future__ import annotations

import re
import time

from cloud_sync.db import transaction
from cloud_sync.orders import site_messages
from sitelink.envelope import Envelope
from sitelink.messages import check_body


class _Registry:
    def __init__(self) -> None:
        self.handlers: dict = {}

    def on(self, msg_type, handler) -> None:
        self.handlers[msg_type] = handler


def _bin_cell(html: str, item_id: str) -> str:
    row = re.search(rf'<tr data-item="{item_id}">(.*?)</tr>', html, re.S)
    assert row, f"no stock row of {item_id}"
    cell = re.search(r'<td class="bin">(.*?)</td>', row.group(1), re.S)
    return re.sub(r"<[^>]+>", "", cell.group(1)).strip() if cell else ""


def test_a_bin_set_at_the_site_shows_on_the_stocks_page_and_a_late_older_word_changes_nothing(as_user, cloud):
    _app, conn, cfg = cloud
    with transaction(conn):
        for item, onec_bin in (("it-mug", "B-01"), ("it-bag", "")):
            conn.execute("INSERT INTO items(id, article, name, bin) VALUES (?,?,?,?)",
                         (item, item.upper(), "Кружка" if item == "it-mug" else "Рюкзак", onec_bin))
            conn.execute("INSERT INTO stock_levels(item_id, warehouse, on_hand, reserved, updated_ts) VALUES (?,?,?,?,?)",
                         (item, "main", 5, 0, time.time()))
    reg = _Registry()
    site_messages.register_site_handlers(reg, cfg)
    seq = 0

    def site(body: dict, ts: str) -> None:
        nonlocal seq
        seq += 1
        check_body("item_bin", body)
        with transaction(conn):
            reg.handlers["item_bin"](conn, Envelope(id=f"01B{seq:08d}", site="site-1", seq=seq, type="item_bin",
                                                    ts=ts, body=body))

    c = as_user("olga")
    page = c.get("/stocks").text
    assert "Ячейка" in page
    assert _bin_cell(page, "it-mug") == "B-01 из 1С" and _bin_cell(page, "it-bag") == ""
    site({"item_id": "it-mug", "bin": "K-07", "warehouse": "main", "ref": "r1", "set_by": "Анна"},
         "2026-12-01T10:00:00Z")
    site({"item_id": "it-bag", "bin": "K-08", "warehouse": "main"}, "2026-12-01T10:00:01Z")
    page = c.get("/stocks").text
    assert _bin_cell(page, "it-mug") == "K-07 на складе (1С: B-01)"
    assert _bin_cell(page, "it-bag") == "K-08 на складе"
    site({"item_id": "it-bag", "bin": "Z-99", "warehouse": "main"}, "2026-12-01T09:00:00Z")  # older, came late
    assert _bin_cell(c.get("/stocks").text, "it-bag") == "K-08 на складе"
    site({"item_id": "it-mug", "bin": "", "warehouse": "main"}, "2026-12-01T11:00:00Z")  # gave way to 1C's
    assert _bin_cell(c.get("/stocks").text, "it-mug") == "B-01 из 1С"
