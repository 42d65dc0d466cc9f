"""The walking skeleton end to end, with nothing mocked.

A real Mosquitto (TLS, per-site passwords and ACL), the Wildberries and Ozon sandboxes as their own
processes over real HTTP, the 1C catalog imported from CommerceML into a real SQLite file, the cloud
and one site (`marketsync cloud serve`, `marketsync edge serve` with a simulated packer using the
virtual scanner and a virtual printer that writes PNG files). One WB order travels: WB sandbox → cloud
(reserve) → site (pick task over MQTT, scan, label printed) → cloud (packed, stock delta) → WB (supply
+ order added: `confirm`) and the new stock on Ozon.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image

from marketplaces.sandbox.seed import demo_items
from marketsync.demo import Demo, http_json
from marketsync.demo_config import ACCOUNT_NAMES

ITEMS = 12


def wait_for(what: str, check, timeout: float = 60.0, every: float = 0.3):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last seen: {last!r})")


@pytest.fixture
def day(tmp_path: Path):
    args = argparse.Namespace(duration=0, workdir=str(tmp_path / "demo"), items=ITEMS, order_every=3600,
                              time_scale=10.0, marketplaces="wildberries,ozon")
    demo = Demo(args)
    try:
        demo.start()
        yield demo
    finally:
        demo.stop()
        for svc in demo.services:
            assert not svc.alive, f"{svc.name} still running after stop"


def test_one_wb_order_travels_to_the_site_label_and_every_other_marketplace(day: Demo):
    wb, ozon = day.sandboxes[ACCOUNT_NAMES["wildberries"]]["url"], day.sandboxes[ACCOUNT_NAMES["ozon"]]["url"]
    cloud = day.cloud_url

    # the cloud linked the cards of both marketplaces to the 1C items by barcode
    def linked():
        cards = http_json("GET", f"{cloud}/api/cards?linked=1", token=day.api_token)
        return len(cards) >= 2 * ITEMS and cards
    cards = wait_for("cards linked on both accounts", linked)

    # what 1C said is on hand (the sandbox chooses a card with stock for the order)
    stock_of = {it.item_id: it.stock for it in demo_items(ITEMS)}
    native_id = http_json("POST", f"{wb}/_sandbox/orders", {"count": 1})["orders"][0]
    key = f"wb-main:{native_id}"
    order = wait_for("the order in the cloud", lambda: _get(f"{cloud}/api/orders/{key}", day.api_token))
    item_id = order["lines"][0]["item_id"]
    assert item_id, "the order line was linked to its 1C item"
    before = stock_of[item_id]

    # the site packed it and the label was printed on the virtual printer
    packed = wait_for("packed", lambda: (o := _get(f"{cloud}/api/orders/{key}", day.api_token)) and o.get("packed_ts") and o)
    assert packed["status"] in ("packed", "in_work", "handed_over")
    labels = wait_for("a label PNG", lambda: sorted(Path(day.labels_dir).glob("*.png")))
    decoded = {r.text for p in labels for r in zxingcpp.read_barcodes(Image.open(p))}
    assert any(str(native_id) in text for text in decoded), f"label barcodes {decoded} name order {native_id}"

    # the PNG is on disk before the site's "printed" reaches the cloud over the link: wait for it there
    def printed_events():
        kinds = [e["kind"] for e in _get(f"{cloud}/api/orders/{key}", day.api_token)["events"]]
        return "printed" in kinds and kinds
    events = wait_for("the site's printed event in the cloud", printed_events)
    assert events.index("reserved") < events.index("confirmed") < events.index("label_sent") < events.index("printed")

    # the ledger: picked at the site, so the reservation is consumed and on hand is one less
    level = http_json("GET", f"{cloud}/api/stock?item={item_id}", token=day.api_token)[0]
    assert level["reserved"] == 0 and level["available"] == before - 1

    # WB: the order was put into a supply (supplierStatus confirm) exactly once
    wb_state = http_json("GET", f"{wb}/_sandbox/state")
    assert wb_state["orders"][str(native_id)] in ("confirm", "complete")
    assert wb_state["spec_violations"] == []

    # Ozon: the item's card now lists one unit less (the cloud pushed the new stock)
    ozon_card = next(c for c in cards if c["account"] == "ozon-main" and c.get("item_id") == item_id)

    def ozon_stock():
        stocks = http_json("GET", f"{ozon}/_sandbox/state")["stocks"]
        values = [q for k, q in stocks.items() if k.split("@")[0] == str(ozon_card["card_id"])]
        return values and sum(values) == max(before - 1, 0) and values  # split over the Ozon warehouses
    wait_for(f"Ozon stock of {item_id} = {before - 1}", ozon_stock)
    assert http_json("GET", f"{ozon}/_sandbox/state")["spec_violations"] == []
    why = http_json("GET", f"{cloud}/api/stock/why?item={item_id}&account=ozon-main", token=day.api_token)
    assert sum(why["published"].values()) == before - 1

    summary = http_json("GET", f"{cloud}/api/summary", token=day.api_token)
    assert summary["orders_seen"] == 1 and summary["orders_packed"] == 1
    assert summary["errors"] == 0


def _get(url: str, token: str):
    try:
        return http_json("GET", url, token=token)
    except OSError:
        return None
