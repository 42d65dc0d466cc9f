"""Through the real exchange (HTTP, 1C's own protocol): balances apply as of the package's
ДатаФормирования, the site's moves 1C has not booked stay on top, a package older than the last one is
not applied, and 1C's «отгружен» on an order books its moves."""

from __future__ import annotations

from cloud_sync.db import connect, transaction
from cloud_sync.stock import ledger
from marketplaces.sandbox.seed import demo_items
from marketsync.onec_demo_files import write_files

from .test_exchange import FEEDBACK, session

HEAD_DATE = 'ДатаФормирования="2026-11-26T09:00:00"'


def offers(folder, when: str, stock: dict[str, int] | None = None) -> bytes:
    """The demo's offers.xml formed at `when` (1C's local time), with some stocks changed."""
    items = demo_items(3)
    text = write_files(items, folder)[1].read_text("utf-8").replace(HEAD_DATE, f'ДатаФормирования="{when}"')
    for it in items:
        if stock and it.item_id in stock:
            text = text.replace(f"<Количество>{it.stock}</Количество>", f"<Количество>{stock[it.item_id]}</Количество>")
            text = text.replace(f'КоличествоНаСкладе="{it.stock}"', f'КоличествоНаСкладе="{stock[it.item_id]}"')
    return text.encode("utf-8")


def upload(c, name: str, body: bytes) -> str:
    c.init()  # each package is an exchange of its own
    c.upload(name, body)
    return c.import_until_done(name)[0]


def test_a_mid_shift_1c_exchange_keeps_packed_units_off(exchange_server, onec_client, tmp_path):
    url, cfg, _ = exchange_server(zip=False)
    items = demo_items(3)
    item = items[0]
    files = write_files(items, tmp_path / "day")
    c = session(url, onec_client)
    assert upload(c, "import.xml", files[0].read_bytes()) == "success\n"
    assert upload(c, "offers.xml", offers(tmp_path / "a", "2026-11-26T09:00:00")) == "success\n"
    conn = connect(cfg.db_path)
    (wh,) = [r[0] for r in conn.execute("SELECT DISTINCT warehouse FROM stock_levels")]
    start = ledger.level(conn, item.item_id, wh).on_hand
    assert start == item.stock and start >= 2
    with transaction(conn):  # an order packed at the site (its pick reached the cloud)
        ledger.reserve(conn, "wb-1001", item.item_id, wh, 2)
        ledger.site_delta(conn, "site-1", wh, item.item_id, -2, "pick", ref="wb-1001")
    # 1C's 10:00 package still says the old figure: it has not booked the shipment
    assert upload(c, "offers.xml", offers(tmp_path / "b", "2026-11-26T10:00:00")) == "success\n"
    assert ledger.level(conn, item.item_id, wh).on_hand == start - 2
    # a package formed before the last one applied (08:00) is not applied
    assert upload(c, "offers.xml", offers(tmp_path / "c", "2026-11-26T08:00:00",
                                          {i.item_id: 99 for i in items})).startswith("success")
    assert ledger.level(conn, item.item_id, wh).on_hand == start - 2
    assert ledger.level(conn, items[1].item_id, wh).on_hand == items[1].stock
    # 1C books the shipment (its status feedback), then its balance says start - 2: still start - 2
    s = session(url, onec_client, "sale")
    assert s.call("file", method="POST", body=FEEDBACK.encode("cp1251"), filename="documents___1.xml").text == "success\n"
    assert conn.execute("SELECT COUNT(*) FROM stock_bookings").fetchone()[0] == 1
    c2 = session(url, onec_client)
    assert upload(c2, "offers.xml", offers(tmp_path / "d", "2026-12-31T10:00:00", {item.item_id: start - 2})) \
        == "success\n"
    assert ledger.level(conn, item.item_id, wh).on_hand == start - 2
    conn.close()
