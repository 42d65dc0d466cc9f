"""The walking skeleton end to end (issue 2, point 4), every part real and in its own process:
the Wildberries and Ozon sandboxes (`marketsync sandbox serve`), a real Mosquitto (the `broker`
fixture), `marketsync cloud serve` and `marketsync edge serve` with its demo auto-packer and virtual
printer (writes PNG files; the only stand-in, for a physical thermal printer).

A buyer orders on WB → the cloud polls it, reserves it and sends a pick task over MQTT → the cloud puts
the order in a supply, fetches its sticker and sends it down as a `label` → the site scans, packs,
prints the label (a PNG file) and sends packed + a stock delta → the cloud's new number for the item
reaches the Ozon card (`POST /v2/products/stocks`) within seconds.
"""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from marketsync.procs import Service, marketsync_argv

pytestmark = pytest.mark.slow

SCALE = 10.0


def http_json(method: str, url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read() or b"{}")


def wait_for(what: str, check, timeout: float = 45.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}; last: {last!r}")


@pytest.fixture
def services(tmp_path: Path):
    started: list[Service] = []

    def start(name: str, *args: str, timeout: float = 60.0) -> dict:
        svc = Service(name, marketsync_argv(*args), tmp_path / f"{name}.log")
        started.append(svc)
        return svc.start(timeout=timeout)

    yield start
    for svc in reversed(started):
        svc.stop()


def write_cloud_config(tmp_path: Path, broker, wb: dict, oz: dict, *, n_items: int, poll_s: float = 0.3) -> Path:
    def creds(info: dict) -> str:
        return "{ " + ", ".join(f'"{k}" = "{v}"' for k, v in info["credentials"].items()) + " }"

    path = tmp_path / "cloud.toml"
    path.write_text(f"""
[cloud]
db_path = "cloud.sqlite"
port = 0
time_scale = {SCALE}
demo_seed = {n_items}

[jobs]
orders_poll_s = {poll_s}
status_refresh_s = 5.0
actions_s = 0.2
retry_base_s = 0.5

[link]
host = "127.0.0.1"
port = {broker.port}

[sites.site-1]
warehouses = ["main"]

[accounts.wb]
marketplace = "wildberries"
base_url = "{wb['url']}"
credentials = {creds(wb)}

[accounts.oz]
marketplace = "ozon"
base_url = "{oz['url']}"
credentials = {creds(oz)}
""")
    return path


def write_edge_config(tmp_path: Path, broker) -> Path:
    path = tmp_path / "edge.toml"
    path.write_text(f"""
[site]
id = "site-1"
warehouse = "main"
db_path = "site.sqlite"

[web]
port = 0

[mqtt]
host = "127.0.0.1"
port = {broker.port}

[printer]
kind = "virtual"
out_dir = "labels"

[tasks]
auto_pack = true
""")
    return path


def test_wb_order_travels_to_the_site_and_every_other_marketplace(tmp_path, broker, services):
    n = 10
    wb = services("wb", "sandbox", "serve", "wildberries", "--port", "0", "--seed", str(n), "--time-scale", str(SCALE))
    oz = services("oz", "sandbox", "serve", "ozon", "--port", "0", "--seed", str(n), "--time-scale", str(SCALE))
    cloud = services("cloud", "cloud", "serve", "--config", str(write_cloud_config(tmp_path, broker, wb, oz, n_items=n)),
                     timeout=90)
    assert cloud["role"] == "cloud"
    services("edge", "edge", "serve", "--config", str(write_edge_config(tmp_path, broker)))
    api = cloud["url"]

    # the cloud linked the sandboxes' cards to the 1C items and published its numbers
    wait_for("cards linked", lambda: len(http_json("GET", f"{api}/api/cards?linked=1")) >= 2 * n)

    # wait until the first push settled everywhere, then note what Ozon shows for every card
    wait_for("first stock push", lambda: http_json("GET", f"{api}/api/stock/push")["queue"] == {})
    before = http_json("GET", f"{oz['url']}/_sandbox/state")["stocks"]

    # a buyer orders on Wildberries
    native = http_json("POST", f"{wb['url']}/_sandbox/orders", {"count": 1})["orders"][0]
    key = f"wb:{native}"
    order = wait_for("the order packed at the site", lambda: (o := _get(api, key)) and o["stage"] == "packed" and o)
    item = order["lines"][0]["item_id"]
    # the WB sticker went down as a `label` message and the site printed it (a PNG file)
    wait_for("the WB sticker printed at the site",
             lambda: (o := _get(api, key)) and o["label_sent"] and o["labels_printed"])
    summary = http_json("GET", f"{api}/api/summary")
    assert summary["orders_seen"] >= 1 and summary["orders_packed"] >= 1 and summary["errors"] == 0
    assert list((tmp_path / "labels").glob("*.png")), "the virtual printer wrote no PNG"
    kinds = [e["kind"] for e in _get(api, key)["events"]]
    assert kinds.index("reserved") < kinds.index("confirmed") < kinds.index("label_sent") < kinds.index("printed")

    # WB: the order is in a supply (status confirm) — its sticker exists only there
    wb_state = http_json("GET", f"{wb['url']}/_sandbox/state")
    assert wb_state["orders"][str(native)] in ("confirm", "complete")

    # the ledger: picked at the site, reservation consumed
    level = http_json("GET", f"{api}/api/stock?item={item}")[0]
    assert level["reserved"] == 0

    # every other marketplace shows the new number: the Ozon card(s) of the same item, one less than before
    oz_card = http_json("GET", f"{api}/api/cards?account=oz&item={item}")[0]
    # (the number is split between the Ozon warehouses that ship from the same own warehouse)
    keys = [k for k in before if k.startswith(f"{oz_card['card_id']}@")]
    assert keys and sum(before[k] for k in keys) == level["available"] + 1

    def ozon_shows():
        stocks = http_json("GET", f"{oz['url']}/_sandbox/state")["stocks"]
        return sum(stocks[k] for k in keys) == level["available"]
    wait_for("Ozon shows the new stock", ozon_shows, timeout=60)
    why = http_json("GET", f"{api}/api/stock/why?item={item}&account=oz")
    assert sum(why["published"].values()) == level["available"]
    assert any("marketplace shows" in line for line in why["lines"])


def _get(api: str, key: str) -> dict | None:
    try:
        return http_json("GET", f"{api}/api/orders/{key}")
    except urllib.error.HTTPError:
        return None
