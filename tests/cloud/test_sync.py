"""`marketsync sync cards|stocks|orders` against the real WB and Ozon sandboxes over HTTP (served in
threads of the test), through the real adapters: cards imported with categories and linked by barcode,
every number pushed, a broken 1C export held by the zero guard until confirmed, orders polled, reserved
and confirmed."""

from __future__ import annotations

import time

import pytest

from cloud_sync.cli.cloud import stock_main, sync_main
from cloud_sync.config import load_config
from cloud_sync.db import transaction
from cloud_sync.orders import listing
from cloud_sync.schema import open_db
from cloud_sync.service import accounts
from cloud_sync.stock import ledger as stock_ledger
from cloud_sync.stock import push as stock_push
from marketplaces.sandbox.registry import start_sandbox
from marketsync.demo_catalog import seed_demo

N = 8


@pytest.fixture
def sandboxes():
    running = {mp: start_sandbox(mp, seed=N, time_scale=20.0, validate=False) for mp in ("wildberries", "ozon")}
    yield running
    for s in running.values():
        s.stop()


def cloud_toml(path, sandboxes, *, in_settings: bool = False):
    """cloud.toml with account wb (the WB sandbox) and oz (the Ozon sandbox): their credentials written in,
    or (`in_settings`) to be taken from Settings (`credentials_secret`)."""
    def creds(name, s):
        if in_settings:
            return f'credentials_secret = "account/{name}"'
        return "credentials = { " + ", ".join(f'"{k}" = "{v}"' for k, v in s.credentials.items()) + " }"

    path.write_text(f"""
[cloud]
db_path = "cloud.sqlite"
time_scale = 20.0
[link]
enabled = false
[accounts.wb]
marketplace = "wildberries"
base_url = "{sandboxes['wildberries'].url}"
{creds("wb", sandboxes['wildberries'])}
[accounts.oz]
marketplace = "ozon"
base_url = "{sandboxes['ozon'].url}"
{creds("oz", sandboxes['ozon'])}
""")
    return path


@pytest.fixture
def conf(tmp_path, sandboxes):
    path = cloud_toml(tmp_path / "cloud.toml", sandboxes)
    cfg = load_config(path)
    conn = open_db(cfg.db_path)
    seed_demo(conn, cfg, N)
    conn.close()
    return str(path)


def test_sync_cards_stocks_orders(conf, sandboxes, capsys):
    cfg = load_config(conf)
    assert sync_main(["cards", "--config", conf, "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"linked by barcode {2 * N}" in out and "unmatched 0" in out
    conn = open_db(cfg.db_path)
    assert sum(conn.execute("SELECT COUNT(*) FROM cards WHERE category != '' OR category_id != ''").fetchone()) == 2 * N

    assert sync_main(["stocks", "--config", conf, "--no-progress"]) == 0
    ledger = {lv.item_id: lv.available for lv in stock_ledger.levels(conn)}
    oz_state = sandboxes["ozon"].app.state()["stocks"]
    for c in conn.execute("SELECT l.card_id, l.item_id FROM card_links l WHERE account='oz'"):
        assert sum(v for k, v in oz_state.items() if k.startswith(f"{c[0]}@")) == ledger[c[1]]

    # a broken 1C export zeroes every item: held, not sent
    wb_before = sandboxes["wildberries"].app.state()["stocks"]
    with transaction(conn):
        stock_ledger.set_balances(conn, "main", {i: 0 for i in ledger})
    assert sync_main(["stocks", "--config", conf, "--no-progress"]) == 0
    assert "HELD by the zero guard" in capsys.readouterr().out
    assert sandboxes["wildberries"].app.state()["stocks"] == wb_before and any(v > 0 for v in wb_before.values())
    assert stock_main(["holds", "--config", conf]) == 0
    holds = stock_push.holds(conn)
    assert {h["account"] for h in holds} == {"wb", "oz"}
    with transaction(conn):  # 1C sends the right numbers again: nothing of the hold is needed any more
        stock_ledger.set_balances(conn, "main", ledger)

    # orders: polled, reserved, confirmed on WB
    native = sandboxes["wildberries"].app.make_orders(1)[0]
    assert sync_main(["orders", "--config", conf, "--no-progress"]) == 0
    o = listing.get_order(conn, f"wb:{native}")
    assert o["stage"] == "reserved" and o["confirmed"] == 1
    assert sandboxes["wildberries"].app.state()["orders"][str(native)] == "confirm"
    conn.close()


def test_sync_refuses_unknown_account_and_bad_config(conf, tmp_path, capsys):
    assert sync_main(["cards", "--config", conf, "--account", "nope", "--no-progress"]) == 2
    assert "unknown account" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text('[accounts.x]\nmarketplace = "ebay"\nbase_url = "http://127.0.0.1:9"\n')
    assert sync_main(["cards", "--config", str(bad)]) == 2
    assert "ebay" in capsys.readouterr().err
    secret = tmp_path / "secret.toml"
    secret.write_text('[accounts.x]\nmarketplace = "ozon"\nbase_url = "http://127.0.0.1:9"\n'
                      'credentials_env = { "Api-Key" = "MS_TEST_NOT_SET_OZON_KEY" }\n')
    assert sync_main(["cards", "--config", str(secret)]) == 2
    assert "MS_TEST_NOT_SET_OZON_KEY" in capsys.readouterr().err


def test_one_shot_commands_use_what_was_entered_in_settings(tmp_path, sandboxes, capsys):
    """Tokens and endpoint overrides entered in Settings (stored encrypted) count for `marketsync sync ...`
    as they do for the running service; an account whose token is still to be entered is named, the rest
    synced."""
    from cloud_sync.access import secrets
    from cloud_sync.cli.money import sync_prices

    wb, oz = sandboxes["wildberries"], sandboxes["ozon"]
    path = cloud_toml(tmp_path / "cloud.toml", sandboxes, in_settings=True)
    conf = str(path)
    cfg = load_config(conf)
    conn = open_db(cfg.db_path)
    seed_demo(conn, cfg, N)
    store = secrets.SecretStore(secrets.key_file_for(cfg))
    store.put(conn, "account/wb", dict(wb.credentials))  # Ozon's keys are not entered yet

    assert sync_main(["cards", "--config", conf, "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert "account oz waits for its credentials" in err and "'account/oz'" in err
    assert conn.execute("SELECT COUNT(*) FROM cards WHERE account='wb'").fetchone()[0] == N
    assert sync_main(["cards", "--config", conf, "--account", "wb", "--no-progress"]) == 0  # only wb: all done

    store.put(conn, "account/oz", dict(oz.credentials))
    secrets.put_setting(conn, "endpoint", "wb", "warehouses", "/api/v3/warehouses-moved")
    assert sync_main(["cards", "--config", conf, "--account", "wb", "--no-progress"]) == 1  # the override counts
    assert "404" in capsys.readouterr().err
    secrets.put_setting(conn, "endpoint", "wb", "warehouses", "/api/v3/warehouses")
    assert sync_main(["cards", "--config", conf, "--no-progress"]) == 0
    assert f"oz: 3 warehouses, {N} new cards" in capsys.readouterr().out
    assert conn.execute("SELECT COUNT(*) FROM card_links WHERE item_id IS NOT NULL").fetchone()[0] == 2 * N
    assert sync_prices(["--config", conf, "--account", "oz"]) == 0
    assert f"account oz: {N} prices read" in capsys.readouterr().out
    for secret in (*wb.credentials.values(), *oz.credentials.values()):
        assert secret not in out + err
    conn.close()


def test_wb_card_created_from_an_item_and_followed_to_the_end(conf, sandboxes):
    """A card is filled from the 1C item by the subject's rules the seller set once: refused before sending
    (in Russian, naming what is missing) until the rules cover every required characteristic; then sent,
    followed to created or failed, linked, and given its photos through the media API."""
    from cloud_sync.catalog import cards as catalog
    from cloud_sync.catalog import nomenclature
    from cloud_sync.web.app import create_app

    cfg = load_config(conf)
    conn = open_db(cfg.db_path)
    props = {"Цвет": "белый; чёрный", "Материал": "керамика", "Объём, мл": "350", "Длина": "12", "Ширина": "9",
             "Высота": "10,5", "Вес": "0,42", "Фото": "https://cdn.example.org/mug/1.jpg"}
    with transaction(conn):
        nomenclature.upsert_items(conn, [
            nomenclature.Item(id="NEW-1", name="Кружка новая", article="MS-NEW-1", barcodes=["4607000099991"],
                              properties=props),
            nomenclature.Item(id="DUP-1", name="Кружка двойник", article="MS-00001", barcodes=["4607000099992"],
                              properties=props),
        ])
    adapters = accounts.open_adapters(cfg)
    c = create_app(cfg, adapters=adapters).test_client()
    attrs = {a["name"]: a for a in c.get("/api/cards/fill-rules/wb/1367").get_json()}
    assert attrs["Объем"]["required"] and attrs["Объем"]["property"] == ""
    refused = c.post("/api/cards/create", json={"account": "wb", "item_id": "NEW-1", "subject_id": 1367})
    assert refused.status_code == 422
    assert "не заполнены обязательные характеристики: Цвет, Материал изделия, Объем" in refused.get_json()["error"]
    rules = [{"attribute_id": attrs["Цвет"]["id"], "property": "Цвет"},
             {"attribute_id": attrs["Материал изделия"]["id"], "property": "Материал"},
             {"attribute_id": attrs["Объем"]["id"], "property": "Объём, мл"},
             {"attribute_id": attrs["Страна производства"]["id"], "value": "Россия"}]
    assert c.put("/api/cards/fill-rules/wb/1367", json={"rules": rules}).status_code == 200
    for item in ("NEW-1", "DUP-1"):
        r = c.post("/api/cards/create", json={"account": "wb", "item_id": item, "subject_id": 1367, "price": 590})
        assert r.status_code == 200, r.get_json()
    for _ in range(50):
        with transaction(conn):
            catalog.follow_creations(conn, adapters["wb"], "wb")
        states = {x["item_id"]: x for x in c.get("/api/cards/creations?account=wb").get_json()}
        if all(x["state"] != "pending" for x in states.values()):
            break
        time.sleep(0.05)
    assert states["NEW-1"]["state"] == "created" and states["DUP-1"]["state"] == "failed"
    assert "уже существует" in states["DUP-1"]["errors"]
    assert states["NEW-1"]["photos_state"] == "uploaded"
    made = catalog.card(conn, "wb", states["NEW-1"]["card_id"])
    assert made.item_id == "NEW-1" and made.barcodes == ["4607000099991"]
    sent = next(c for c in adapters["wb"].list_cards() if c.offer_id == "MS-NEW-1").native
    assert sent["dimensions"] == {"length": 12, "width": 9, "height": 11, "weightBrutto": 0.42, "isValid": True}
    assert {ch["name"]: ch["value"] for ch in sent["characteristics"]} == {
        "Цвет": ["белый", "чёрный"], "Материал изделия": ["керамика"], "Объем": 350, "Страна производства": ["Россия"]}
    assert [p["big"] for p in sent["photos"]] == ["https://cdn.example.org/mug/1.jpg"]
    conn.close()


def test_ozon_product_created_from_an_item_by_the_category_rules(conf, sandboxes):
    """The same path for Ozon: the type's attributes from Ozon, the rules kept per category, dictionary values
    looked up by the adapter, the import task followed to the end, the product linked and given its photos."""
    from cloud_sync.catalog import cards as catalog
    from cloud_sync.catalog import nomenclature
    from cloud_sync.web.app import create_app

    cfg = load_config(conf)
    conn = open_db(cfg.db_path)
    props = {"Цвет": "чёрный", "Материал": "керамика", "Объём, мл": "350", "Длина": "12", "Ширина": "9",
             "Высота": "10", "Вес": "0,42", "Фото": "https://cdn.example.org/oz/1.jpg"}
    with transaction(conn):
        nomenclature.upsert_items(conn, [nomenclature.Item(id="OZ-1", name="Кружка для Ozon", article="MS-OZ-1",
                                                           barcodes=["4607000099915"], properties=props)])
    adapters = accounts.open_adapters(cfg)
    c = create_app(cfg, adapters=adapters).test_client()
    mug = c.get("/api/cards/marketplace-categories/oz?name=Кружки").get_json()
    assert [m["id"] for m in mug] == ["17030267:91367"]
    url = "/api/cards/fill-rules/oz/17030267:91367"
    attrs = {a["name"]: a for a in c.get(url).get_json()}
    rules = [{"attribute_id": attrs["Бренд"]["id"], "value": "MarketSync Demo"},
             {"attribute_id": attrs["Название модели (для объединения в одну карточку)"]["id"], "value": "Кружка"},
             {"attribute_id": attrs["Цвет товара"]["id"], "property": "Цвет"},
             {"attribute_id": attrs["Материал"]["id"], "property": "Материал"},
             {"attribute_id": attrs["Объем, мл"]["id"], "property": "Объём, мл"}]
    assert c.put(url, json={"rules": rules}).status_code == 200
    r = c.post("/api/cards/create", json={"account": "oz", "item_id": "OZ-1", "category_id": "17030267:91367",
                                          "price": 690})
    assert r.status_code == 200 and r.get_json()["state"] == "pending", r.get_json()
    for _ in range(100):
        with transaction(conn):
            catalog.follow_creations(conn, adapters["oz"], "oz")
        state = c.get("/api/cards/creations?account=oz").get_json()[0]
        if state["state"] != "pending":
            break
        time.sleep(0.05)
    assert state["state"] == "created" and state["photos_state"] == "uploaded", state
    assert catalog.card(conn, "oz", state["card_id"]).item_id == "OZ-1"
    product = sandboxes["ozon"].app.products[int(state["card_id"])]
    assert product["images"] == ["https://cdn.example.org/oz/1.jpg"]
    assert product["dimensions"]["weight"] == 420
    conn.close()
