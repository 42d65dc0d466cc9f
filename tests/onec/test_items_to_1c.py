"""Cards into 1C: Wildberries cards that match no 1C item (imported over real HTTP from the WB sandbox) are
previewed as a batch, created in the 1C stand-in through its standard OData interface (requests held to
1C's documented shape by marketsync/onec_demo_odata.py), recorded in the cloud and linked by barcode."""

from __future__ import annotations

import json

import pytest

from cloud_sync.catalog import cards as catalog
from cloud_sync.catalog import nomenclature
from cloud_sync.cli.onec import main as onec_main
from cloud_sync.db import transaction
from cloud_sync.onec import items_out
from cloud_sync.schema import open_db
from marketplaces import open_account
from marketplaces.base import AccountConfig
from marketplaces.sandbox.registry import start_sandbox
from marketplaces.sandbox.seed import demo_items
from marketsync.onec_demo_odata import FOLDER, KIND, UNITS, serve_in_thread

PHOTO = "https://cdn.example.org/ms-00005/1.jpg"


@pytest.fixture
def world(tmp_path):
    wb = start_sandbox("wildberries", seed=6, time_scale=60)
    onec = serve_in_thread("trade")
    adapter = open_account(AccountConfig(name="wb", marketplace="wildberries", base_url=wb.url,
                                         credentials=dict(wb.credentials), time_scale=60))
    conn = open_db(tmp_path / "cloud.sqlite")
    items = demo_items(6)
    with transaction(conn):  # 1C knows the first three goods; the other three are only on Wildberries
        nomenclature.upsert_items(conn, [nomenclature.Item(id=i.item_id, name=i.name, article=i.article,
                                                           barcodes=[i.barcode]) for i in items[:3]])
    cards = list(adapter.list_cards())
    adapter.add_photos(next(c for c in cards if c.offer_id == "MS-00005"), [PHOTO])
    with transaction(conn):
        catalog.import_cards(conn, "wb", "wildberries", adapter.list_cards())
        catalog.auto_link(conn)
    yield {"wb": wb, "onec": onec, "conn": conn, "items": items, "tmp": tmp_path}
    conn.close()
    onec.stop()
    wb.stop()
    assert not wb.app.spec_violations


def settings(onec, **kw) -> items_out.ItemSettings:
    given = {"parent_key": FOLDER, "kind_key": KIND, "unit_key": UNITS["pcs"], "kg_key": UNITS["kg"],
             "cm_key": UNITS["cm"], **kw}
    return items_out.ItemSettings(base_url=onec.url, login="Администратор", password="1c-demo", **given)


def test_unmatched_cards_become_1c_items_and_are_linked(world) -> None:
    conn, onec, items = world["conn"], world["onec"], world["items"]
    batch = items_out.proposals(conn)
    assert [i.article for i in batch] == ["MS-00004", "MS-00005", "MS-00006"]
    five = batch[1]
    assert five.barcodes == [items[4].barcode] and five.photos == [PHOTO]
    assert five.dimensions == {"length": 20.0, "width": 15.0, "height": 5.0, "weight": 0.3}
    outcomes = items_out.create_in_1c(batch, settings(onec))
    assert [(o.created, o.barcodes_written, o.error) for o in outcomes] == [(True, 1, "")] * 3
    made = onec.app.state.objects["Catalog_Номенклатура"][outcomes[1].ref_key]
    assert (made["Description"], made["Артикул"], made["Parent_Key"]) == (items[4].name, "MS-00005", FOLDER)
    assert (made["ВесИспользовать"], made["ВесЧислитель"], made["ВесЕдиницаИзмерения_Key"]) == (True, 0.3, UNITS["kg"])
    assert (made["ДлинаЧислитель"], made["ШиринаЧислитель"], made["ВысотаЧислитель"]) == (20.0, 15.0, 5.0)
    assert made["Описание"] == f"Фото: {PHOTO}"
    assert onec.app.state.barcodes[items[4].barcode]["Номенклатура_Key"] == outcomes[1].ref_key
    assert all(r["query"].get("$format") == "json" for r in onec.app.state.requests)
    with transaction(conn):
        report = items_out.record(conn, batch, outcomes)
    assert report.linked_by_barcode == 3 and not report.unmatched
    linked = {c.offer_id: c.item_id for c in catalog.cards(conn, account="wb")}
    assert linked["MS-00005"] == outcomes[1].ref_key
    props = json.loads(conn.execute("SELECT properties FROM items WHERE id=?", (outcomes[1].ref_key,)).fetchone()[0])
    assert props == {"Вес": "0.3", "Длина": "20", "Ширина": "15", "Высота": "5", "Фото": PHOTO}
    assert items_out.proposals(conn) == []  # nothing left to create


def test_a_batch_sent_again_makes_no_double_and_a_refused_item_does_not_stop_the_rest(world) -> None:
    conn, onec = world["conn"], world["onec"]
    batch = items_out.proposals(conn)
    first = items_out.create_in_1c(batch[:1], settings(onec))
    again = items_out.create_in_1c(batch, settings(onec, kg_key="11111111-2222-4333-8444-555555555555"))
    assert again[0].ref_key == first[0].ref_key and not again[0].created and again[0].barcodes_written == 0
    assert len(onec.app.state.objects["Catalog_Номенклатура"]) == 1  # the other two were refused by 1C
    assert all("ВесЕдиницаИзмерения_Key" in o.error and "не найден" in o.error for o in again[1:])
    assert again[1].error.startswith(f"«{batch[1].name}» (MS-00005): 1С (OData) отказала (400)")
    with transaction(conn):
        items_out.record(conn, batch, again)
    assert [i.article for i in items_out.proposals(conn)] == ["MS-00005", "MS-00006"]


def test_a_wrong_password_is_said_and_nothing_is_recorded(world) -> None:
    conn, onec = world["conn"], world["onec"]
    batch = items_out.proposals(conn)
    out = items_out.create_in_1c(batch, items_out.ItemSettings(base_url=onec.url, login="Администратор",
                                                               password="wrong"))
    assert all("не приняла логин 'Администратор' (401)" in o.error and "wrong" not in o.error for o in out)
    with transaction(conn):
        items_out.record(conn, batch, out)
    assert len(items_out.proposals(conn)) == 3


def test_the_cli_previews_then_creates(world, capsys) -> None:
    onec, tmp = world["onec"], world["tmp"]
    conf = tmp / "cloud.toml"
    conf.write_text(f"""
[cloud]
db_path = "cloud.sqlite"
[link]
enabled = false
[onec.odata]
base_url = "{onec.url}"
login = "Администратор"
password = "1c-demo"
kg_key = "{UNITS['kg']}"
cm_key = "{UNITS['cm']}"
""", encoding="utf-8")
    assert onec_main(["new-items", "--config", str(conf)]) == 0
    preview = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [i["article"] for i in preview["items"]] == ["MS-00004", "MS-00005", "MS-00006"]
    assert not onec.app.state.requests  # a preview sends nothing to 1C
    assert onec_main(["new-items", "--config", str(conf), "--create", "--article", "MS-00006"]) == 0
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [o["article"] for o in done["outcomes"]] == ["MS-00006"] and done["linked"] == 1
    assert onec_main(["new-items", "--config", str(conf), "--create", "--article", "NOPE"]) == 1
    assert "no unmatched cards with article(s) NOPE" in capsys.readouterr().err


def test_the_products_page_previews_the_batch_and_creates_it_in_a_browser(world) -> None:
    """The seller sees the batch on the products page (headless Chromium), unticks one, creates the rest."""
    import shutil
    import threading
    from pathlib import Path

    from werkzeug.serving import make_server

    from cloud_sync.access import users
    from cloud_sync.config import parse_config
    from cloud_sync.web.app import create_app

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail("no chromium on this machine: make install provides it")
    from playwright.sync_api import sync_playwright

    conn, onec, tmp = world["conn"], world["onec"], world["tmp"]
    users.add_user(conn, "olga", "owner password 1", "owner")
    cfg = parse_config({"cloud": {"db_path": str(tmp / "cloud.sqlite")}, "link": {"enabled": False},
                        "onec": {"odata": {"base_url": onec.url, "login": "Администратор", "password": "1c-demo",
                                           "kg_key": UNITS["kg"], "cm_key": UNITS["cm"]}}})
    server = make_server("127.0.0.1", 0, create_app(cfg), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium)
            page = browser.new_page()
            page.goto(f"{url}/login")
            page.fill("input[name=name]", "olga")
            page.fill("input[name=password]", "owner password 1")
            page.click("button[type=submit]")
            page.goto(f"{url}/products")
            rows = page.locator("#new-items tr").all_text_contents()[1:]
            assert [r.split("MS-")[1][:5] for r in rows] == ["00004", "00005", "00006"]
            assert "20.0×15.0×5.0 / 0.3" in rows[1]
            page.uncheck("#new-items input[value=MS-00004]")
            page.click("#to-1c-create")
            page.wait_for_load_state()
            said = page.locator("p.msg").all_text_contents()
            left = page.locator("#new-items tr").all_text_contents()[1:]
            browser.close()
    finally:
        server.shutdown()
    assert said == ["В 1С: 2 товар(ов); связано карточек: 2"]
    assert len(left) == 1 and "MS-00004" in left[0]
    assert sorted(o["Артикул"] for o in onec.app.state.objects["Catalog_Номенклатура"].values()) == [
        "MS-00005", "MS-00006"]
