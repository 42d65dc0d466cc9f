"""What the packers' page API does with input a real page, a scanner or a stray script can send: JSON that
is not an object, oversized scans, and scans typed into the page while the handheld's Russian layout is on."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from edge_testkit import MUG, SHIRT, edge_config, marking, outbox, pick_task

from edge_agent import store
from edge_agent.app import create_app
from edge_agent.devices.scanners import _RU_TO_US
from edge_agent.site import Site
from edge_agent.tasks import inbox

US_TO_RU = {us: ru for ru, us in _RU_TO_US.items()}


@pytest.fixture
def site(tmp_path) -> Iterator[Site]:
    s = Site(edge_config(tmp_path), with_link=False)
    s.start()
    with store.transaction(s.conn):
        inbox.apply_catalog(s.conn, {"items": [MUG, SHIRT]})
        inbox.apply_pick_task(s.conn, pick_task("t1", [(MUG, 1), (SHIRT, 1)]))
    yield s
    s.stop()
    s.close()


@pytest.fixture
def client(site: Site):  # type: ignore[no-untyped-def]
    c = create_app(site).test_client()
    assert c.post("/login", data={"name": "Анна", "pin": "4321", "station": "pack-1"}).status_code == 302
    assert c.get("/task/t1?mode=pack").status_code == 200
    return c


def ru_typed(text: str) -> str:
    """What a browser receives from a keyboard-wedge scanner while the Russian layout is active."""
    return "".join(US_TO_RU.get(ch, ch) for ch in text)


@pytest.mark.parametrize("path", ["/api/scan", "/api/short", "/api/handover/close", "/api/tally/set"])
@pytest.mark.parametrize("payload", ["[1, 2]", "42", '"code"', "null", "{bad json"])
def test_json_that_is_not_an_object_gets_a_clear_answer_not_a_crash(client, path: str, payload: str) -> None:
    r = client.post(path, data=payload, content_type="application/json")
    assert r.status_code in (400, 409)
    assert isinstance(r.get_json()["error"], str)


@pytest.mark.parametrize("line_no", [None, "1", 1.5, True, [1]])
def test_a_short_report_without_a_line_number_is_refused_and_changes_nothing(client, site: Site, line_no) -> None:
    r = client.post("/api/short", json={"line_no": line_no})
    assert r.status_code == 400 and "строка" in r.get_json()["error"]
    assert site.row("SELECT SUM(short) AS n FROM task_lines")["n"] == 0


def test_closing_a_handover_needs_an_explicit_true_to_force(client, site: Site) -> None:
    with store.transaction(site.conn):
        inbox.apply_handover(site.conn, {"handover_id": "h1", "marketplace": "wildberries", "order_ids": ["o-t1"]})
    assert client.get("/handover/h1").status_code == 200
    r = client.post("/api/handover/close", json={"force": "no"})
    assert r.status_code == 409 and "не хватает" in r.get_json()["error"]
    assert site.row("SELECT state FROM handovers")["state"] == "open"


def test_an_oversized_scan_is_refused_and_neither_kept_nor_sent_up(client, site: Site) -> None:
    r = client.post("/api/scan", json={"code": "9" * 5000})
    res = r.get_json()["result"]
    assert r.status_code == 200 and not res["ok"] and "слишком длинный" in res["message"]
    assert len(res["message"]) < 200
    assert site.row("SELECT COUNT(*) AS n FROM scans")["n"] == 0
    assert [t for t, _ in outbox(site.conn) if t == "scan"] == []
    huge = client.post("/api/scan", data=json.dumps({"code": "9" * 200_000}), content_type="application/json")
    assert huge.status_code == 413 and "не скан" in huge.get_json()["error"]
    assert site.row("SELECT COUNT(*) AS n FROM scans")["n"] == 0


def test_the_box_scanner_path_refuses_an_oversized_scan_too(site: Site) -> None:
    res = site.scan("pack-1", "A" * 1000)
    assert not res.ok and "слишком длинный" in res.message
    assert outbox(site.conn) == []


def test_a_marking_code_typed_with_the_russian_layout_packs_the_unit(client, site: Site) -> None:
    assert client.post("/api/scan", json={"code": MUG["barcode"]}).get_json()["result"]["kind"] == "packed"
    code = marking(SHIRT, "ABC123XYZ0001", sep="")
    typed = ru_typed(code)
    assert typed != code and any("А" <= ch <= "я" for ch in typed)
    res = client.post("/api/scan", json={"code": typed}).get_json()["result"]
    assert res["kind"] == "done", res["message"]
    row = site.row("SELECT serial, gtin FROM marking_codes")
    assert row["serial"] == "ABC123XYZ0001" and row["gtin"] == SHIRT["barcode"].zfill(14)


def test_a_bin_typed_with_the_russian_layout_is_the_bin(client, site: Site) -> None:
    assert client.get("/task/t1?mode=pick").status_code == 200
    res = client.post("/api/scan", json={"code": ru_typed("A-02")}).get_json()["result"]  # SHIRT's bin, first in order
    assert res["kind"] == "picked" and "A-02" in res["message"], res["message"]


def test_a_scan_sent_again_with_its_id_gets_the_first_answer_and_is_not_applied_twice(client, site: Site) -> None:
    first = client.post("/api/scan", json={"code": MUG["barcode"], "scan_id": "a1b2c3d4e5f6"}).get_json()
    again = client.post("/api/scan", json={"code": MUG["barcode"], "scan_id": "a1b2c3d4e5f6"}).get_json()
    assert first["result"] == again["result"] and first["result"]["kind"] == "packed"
    assert site.row("SELECT SUM(packed) AS n FROM task_lines")["n"] == 1
    assert site.row("SELECT COUNT(*) AS n FROM scans")["n"] == 1
    other = client.post("/api/scan", json={"code": MUG["barcode"], "scan_id": "ffffffffffff"}).get_json()
    assert other["result"]["kind"] == "extra"  # a new scan of the same code is a new scan


def test_a_bin_really_named_in_cyrillic_is_taken_as_typed(client, site: Site) -> None:
    cyr_bin = "А-01"  # Cyrillic А, typed by hand on the handheld
    with store.transaction(site.conn):
        inbox.apply_pick_task(site.conn, {**pick_task("t2", [(MUG, 1)]), "lines": [
            {"item_id": MUG["item_id"], "barcode": MUG["barcode"], "name": MUG["name"], "quantity": 1,
             "bin": cyr_bin}]})
    assert client.get("/task/t2?mode=pick").status_code == 200
    res = client.post("/api/scan", json={"code": cyr_bin}).get_json()["result"]
    assert res["kind"] == "done" and cyr_bin in res["message"], res["message"]


def test_each_lock_after_wrong_pins_lasts_twice_as_long(site: Site, monkeypatch) -> None:
    """Someone on the LAN guessing PINs: five tries, then 30 s; five more, then 60 s; and so on."""
    import edge_agent.app as edge_app

    now = [1_000_000.0]

    class Clock:
        @staticmethod
        def time() -> float:
            return now[0]

    monkeypatch.setattr(edge_app, "time", Clock)
    c = create_app(site).test_client()

    def login(pin: str) -> int:
        return c.post("/login", data={"name": "Анна", "pin": pin, "station": "pack-1"}).status_code

    for _ in range(5):
        assert login("0000") == 401
    assert login("4321") == 401  # locked
    now[0] += 31
    for _ in range(5):
        assert login("0000") == 401
    now[0] += 40  # the second lock is 60 s
    r = c.post("/login", data={"name": "Анна", "pin": "4321", "station": "pack-1"})
    assert r.status_code == 401 and "подождите" in r.get_data(as_text=True)
    now[0] += 21
    assert login("4321") == 302
