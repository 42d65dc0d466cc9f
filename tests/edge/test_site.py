"""The running site without a broker: printer problems, late labels, and the page's API answers.
The printer is the virtual one (it writes PNG files; `unplug()` plays the cable being pulled)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from edge_testkit import BAG, MUG, edge_config, label_png, outbox, pick_task, wait_for

from edge_agent import store
from edge_agent.app import create_app, page_status
from edge_agent.config import ScannerSettings
from edge_agent.site import Site
from edge_agent.tasks import inbox


@pytest.fixture
def site(tmp_path) -> Iterator[Site]:
    s = Site(edge_config(tmp_path), with_link=False)
    s.start()
    with store.transaction(s.conn):
        inbox.apply_catalog(s.conn, {"items": [MUG, BAG]})
    yield s
    s.stop()
    s.close()


def add_task(site: Site, task_id: str, item: dict, label: bool = True) -> None:
    with store.transaction(site.conn):
        inbox.apply_pick_task(site.conn, pick_task(task_id, [(item, 1)]))
        if label:
            inbox.apply_label(site.conn, {"order_id": f"o-{task_id}", "format": "png", "data_b64": label_png(task_id)})


def test_printer_unplugged_mid_job_keeps_the_label_and_prints_it_when_back(site) -> None:
    add_task(site, "t1", MUG)
    site.printer.unplug()
    assert site.scan("pack-1", MUG["barcode"]).kind == "done"
    assert wait_for(lambda: not site.printer_state.ok)
    status = page_status(site)
    assert status["printer_ok"] is False and "unplugged" in status["printer_message"]
    assert status["prints_pending"] == 1
    job = site.row("SELECT state, error FROM print_jobs")
    assert job["state"] == "pending" and "Принтер" in job["error"]
    types = [t for t, _ in outbox(site.conn)]
    assert types.count("device_status") == 1 and "printed" not in types
    site.printer.plug()
    assert wait_for(lambda: site.row("SELECT state FROM print_jobs")["state"] == "done")
    assert len(site.printer.printed) == 1 and site.printer_state.ok
    states = [b["devices"][0]["online"] for t, b in outbox(site.conn) if t == "device_status"]
    assert states == [False, True]
    printed = [b for t, b in outbox(site.conn) if t == "printed"]
    assert printed[0]["order_id"] == "o-t1" and printed[0]["file"] == str(site.printer.printed[0])


def test_a_label_that_comes_after_packing_prints_on_arrival(site) -> None:
    add_task(site, "t1", MUG, label=False)
    assert site.scan("pack-1", MUG["barcode"]).kind == "done"
    assert wait_for(lambda: (site.row("SELECT error FROM print_jobs")["error"] or "").startswith("ждём"))
    with store.transaction(site.conn):
        inbox.apply_label(site.conn, {"order_id": "o-t1", "format": "png", "data_b64": label_png("late")})
    site.retry_printing()
    assert wait_for(lambda: len(site.printer.printed) == 1)


def test_a_label_the_printer_cannot_take_is_reported_and_does_not_block_others(site) -> None:
    add_task(site, "t1", MUG, label=False)
    with store.transaction(site.conn):
        inbox.apply_label(site.conn, {"order_id": "o-t1", "format": "pdf", "data_b64": "bm90IGEgcGRm"})
    add_task(site, "t2", BAG)
    site.scan("pack-1", MUG["barcode"])
    site.scan("pack-1", BAG["barcode"])
    assert wait_for(lambda: len(site.printer.printed) == 1)
    bad = site.row("SELECT state, error FROM print_jobs WHERE order_id = 'o-t1'")
    assert bad["state"] == "pending" and "нельзя напечатать" in bad["error"]
    assert site.printer_state.ok  # the printer itself is fine


def test_page_api_login_and_bad_input(site) -> None:
    app = create_app(site)
    c = app.test_client()
    assert c.post("/api/scan", json={"code": "x"}).status_code == 401
    assert c.get("/").status_code == 302
    for _ in range(5):
        assert c.post("/login", data={"name": "Анна", "pin": "0000", "station": "pack-1"}).status_code == 401
    locked = c.post("/login", data={"name": "Анна", "pin": "4321", "station": "pack-1"})
    assert locked.status_code == 401 and "Слишком много" in locked.get_data(as_text=True)
    c2 = create_app(site).test_client()
    assert c2.post("/login", data={"name": "Анна", "pin": "4321", "station": "pack-1"}).status_code == 302
    assert c2.post("/api/scan", json={"code": "  "}).status_code == 400
    r = c2.post("/api/scan", json={"code": "123"}).get_json()
    assert r["result"]["kind"] == "unknown" and "Неизвестный штрихкод" in r["result"]["message"]
    assert c2.post("/api/short", json={"line_no": 1}).status_code == 409
    assert c2.post("/api/tally/commit").status_code == 409
    assert c2.get("/api/status").get_json()["online"] is False



def test_the_boxs_scanner_bound_to_a_station_packs_there_and_the_page_hears_it(tmp_path) -> None:
    """A virtual scanner stands in for the USB one (none is plugged into this machine)."""
    cfg = edge_config(tmp_path)
    cfg.scanners = [ScannerSettings(kind="virtual", station="tsd-1")]
    site = Site(cfg, with_link=False)
    site.start()
    try:
        add_task(site, "t1", MUG)
        seen = site.changes.version
        site.scanners[0].feed(MUG["barcode"])
        assert site.changes.wait(seen, timeout=5) != seen
        assert site.changes.last["station"] == "tsd-1" and site.changes.last["result"]["kind"] == "done"
        assert site.row("SELECT station FROM stations WHERE task_id = 't1'")["station"] == "tsd-1"
        assert wait_for(lambda: len(site.printer.printed) == 1)
    finally:
        site.stop()
        site.close()


def test_closing_a_handover_prints_the_supply_qr_or_the_act(site) -> None:
    import base64
    import io

    import segno

    from edge_agent.tasks import handover, station

    buf = io.BytesIO()
    segno.make("WB-GI-12345", error="m").save(buf, kind="png", scale=6)
    for t in ("a", "b"):
        add_task(site, t, MUG)
        site.scan("pack-1", MUG["barcode"])
    with store.transaction(site.conn):
        inbox.apply_handover(site.conn, {"handover_id": "h-qr", "marketplace": "wildberries", "supply_id": "WB-GI-12345",
                                         "qr_b64": base64.b64encode(buf.getvalue()).decode(), "order_ids": ["o-a"]})
        inbox.apply_handover(site.conn, {"handover_id": "h-act", "marketplace": "ozon", "order_ids": ["o-b"]})
    assert wait_for(lambda: len(site.printer.printed) == 2)  # the two parcels' labels
    for h, parcel in (("h-qr", "o-a"), ("h-act", "o-b")):
        site.act(station.set_mode, "pack-1", "handover", h)
        assert site.scan("pack-1", parcel).ok
        site.act(handover.close, site.send, h)
    assert wait_for(lambda: len(site.printer.printed) == 5)
    kinds = [b["kind"] for t, b in outbox(site.conn) if t == "printed"]
    assert kinds == ["label", "label", "supply_qr", "act", "act"]
    import zxingcpp
    from PIL import Image

    texts = [{r.text for r in zxingcpp.read_barcodes(Image.open(p).convert("L"))} for p in site.printer.printed[2:]]
    # what the printer printed scans back: the supply's QR, then each hand-over's own list
    assert texts == [{"WB-GI-12345"}, {"WB-GI-12345"}, {"h-act"}]
    assert site.row("SELECT state FROM tasks WHERE task_id = 'a'")["state"] == "handed_over"


@pytest.mark.parametrize(("problem", "words"), [("unplug", "не на связи"), ("paper_out", "заправьте новый рулон")])
def test_a_printer_problem_tells_the_packer_what_to_do(site, problem: str, words: str) -> None:
    add_task(site, "t1", MUG)
    if problem == "unplug":
        site.printer.unplug()
    else:
        site.printer.paper_out = True
    assert site.scan("pack-1", MUG["barcode"]).kind == "done"
    assert wait_for(lambda: not site.printer_state.ok)
    error = site.row("SELECT error FROM print_jobs")["error"]
    assert error.startswith("Принтер ") and words in error and "напечатается, когда принтер вернётся" in error
    assert page_status(site)["printer_message"] == error


def test_the_page_refuses_an_unlabelled_parcel_says_why_and_prints_it_from_the_handover(site) -> None:
    """The API answer of a hand-over scan whose label has not printed: refused, why in Russian, and a
    reprint from the courier's table prints it; a page's answer to «напечаталась?» is checked."""
    from edge_agent.tasks import station

    add_task(site, "t1", MUG)
    site.printer.unplug()
    assert site.scan("pack-1", MUG["barcode"]).kind == "done"
    assert wait_for(lambda: not site.printer_state.ok)
    with store.transaction(site.conn):
        inbox.apply_handover(site.conn, {"handover_id": "h1", "marketplace": "ozon", "order_ids": ["o-t1"]})
    client = create_app(site).test_client()
    assert client.post("/login", data={"name": "Анна", "pin": "4321", "station": "pack-1"}).status_code == 302
    assert client.get("/handover/h1").status_code == 200
    r = client.post("/api/scan", json={"code": "o-t1"}).get_json()
    assert (r["result"]["ok"], r["result"]["kind"], r["result"]["data"]["reprint"]) == (False, "no_label", True)
    assert "НЕ НАПЕЧАТАНА" in r["result"]["message"] and "не на связи" in r["result"]["message"]
    assert r["state"]["handover"]["missing_why"] == {"o-t1": "этикетка не напечатана"}
    site.printer.plug()
    r = client.post("/api/print/again", json={"order_id": "o-t1"})
    assert r.status_code == 200 and "печатаю снова" in r.get_json()["message"]
    assert wait_for(lambda: site.row("SELECT state FROM print_jobs WHERE order_id = 'o-t1'")["state"] == "done",
                    timeout=30)
    assert client.post("/api/scan", json={"code": "o-t1"}).get_json()["result"]["ok"]
    r = client.post("/api/print/again", json={"order_id": "o-t1"})  # torn at the courier's table: once more
    assert r.status_code == 200 and wait_for(lambda: len(site.printer.printed) == 2, timeout=30)
    assert client.post("/api/print/again", json={"order_id": "o-nobody"}).status_code == 409
    for bad in ({}, {"job_id": "1", "printed": True}, {"job_id": 1, "printed": "да"}, {"job_id": True, "printed": True}):
        r = client.post("/api/print/answer", json=bad)
        assert r.status_code == 400 and "ответ" in r.get_json()["error"]
    r = client.post("/api/print/answer", json={"job_id": 1, "printed": True})
    assert r.status_code == 409 and "уже ответили" in r.get_json()["error"]  # it printed: nobody was asked
    assert client.get("/api/print/questions").get_json() == {"questions": []}
    site.act(station.set_mode, "pack-1", "pack")
