"""The packers' page in a real Chromium (Playwright), against `marketsync edge serve` run as a process,
fed by a real cloud-role link over a real Mosquitto. The printer is the virtual one (PNG files): there
is no physical printer here. Screenshots go to test-artifacts/edge/."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from edge_testkit import BAG, MUG, SHIRT, SOCKS, CloudRecorder, label_png, pick_task, wait_for

from edge_agent.config import hash_pin

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "edge"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def edge(broker, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed at /usr/bin/chromium: make install provides it")
    cfg = tmp_path / "edge.toml"
    cfg.write_text(f"""
[site]
id = "site-1"
db_path = "site.sqlite"
stations = ["pack-1", "tsd-1"]
[web]
port = 0
[mqtt]
port = {broker.port}
[printer]
kind = "virtual"
out_dir = "labels"
[tasks]
print_retry_s = 0.5
[[staff]]
name = "Анна"
pin_hash = "{hash_pin('4321')}"
""", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "marketsync.cli", "edge", "serve", "--config", str(cfg)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    cloud = CloudRecorder(tmp_path / "cloud.sqlite", broker)
    cloud.link.start()
    try:
        first = json.loads(proc.stdout.readline())
        assert first["role"] == "edge" and first["site"] == "site-1"
        cloud.send("catalog", {"items": [MUG, SHIRT, BAG]})
        for n, lines in (("1", [(MUG, 1), (SHIRT, 1)]), ("2", [(BAG, 1)])):
            cloud.send("pick_task", pick_task(n, lines, deadline=f"2026-11-27T0{n}:00:00Z"))
            cloud.send("label", {"order_id": f"o-{n}", "format": "png", "data_b64": label_png(f"WB {n}")})
        assert cloud.link.wait_idle(20)
        yield first["url"], tmp_path / "labels", cloud, broker
    finally:
        cloud.link.stop()
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=15) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@contextmanager
def handheld(url: str) -> Iterator[Any]:
    """A handheld's page (480x800) in headless Chromium, logged in with the station PIN; closed at the end."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 480, "height": 800})
            page.goto(url + "/login")
            page.fill("#pin", "4321")
            page.click("button[type=submit]")
            yield page
        finally:
            browser.close()


def _pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png")) if folder.exists() else []


def test_log_in_scan_pack_and_the_label_prints(edge) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, labels, cloud, broker = edge
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            # a packing station
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url)
            page.fill("#pin", "0000")
            page.click("button[type=submit]")
            expect(page.locator(".msg.bad")).to_contain_text("Неверное")
            page.fill("#pin", "4321")
            page.click("button[type=submit]")
            expect(page.locator("li.task")).to_have_count(2, timeout=10000)
            expect(page.locator("li.task").first).to_contain_text("N1")  # earliest deadline first
            page.screenshot(path=str(ARTIFACTS / "tasks-station.png"))
            page.locator("li.task").first.get_by_text("Упаковать").click()
            scan = page.locator("#scan")
            expect(scan).to_be_focused()
            scan.type(BAG["barcode"])  # a keyboard-wedge scanner types, then Enter
            scan.press("Enter")
            expect(page.locator("#msg")).to_have_attribute("data-kind", "wrong_item")
            expect(page.locator("#msg")).to_contain_text("НЕ ТОТ ТОВАР")
            page.screenshot(path=str(ARTIFACTS / "pack-wrong-item.png"))
            scan.type(MUG["barcode"])
            scan.press("Enter")
            expect(page.locator("#msg")).to_have_attribute("data-kind", "packed")
            scan.type(SHIRT["barcode"])
            scan.press("Enter")
            expect(page.locator("#msg")).to_have_attribute("data-kind", "need_marking")
            gtin = SHIRT["barcode"].zfill(14)
            scan.type(f"01{gtin}21Ab12Cd34Ef56G<GS>91EE10<GS>92{'x' * 44}")
            scan.press("Enter")
            expect(page.locator("#msg")).to_have_attribute("data-kind", "done")
            expect(page.locator("#label-status")).to_have_attribute("data-state", "done", timeout=15000)
            page.screenshot(path=str(ARTIFACTS / "pack-done-station.png"))
            assert len(_pngs(labels)) == 1
            expect(page.locator("#link-badge")).to_have_text("на связи")

            # a 480x800 handheld
            tsd = browser.new_page(viewport={"width": 480, "height": 800}, is_mobile=True, has_touch=True)
            tsd.goto(url + "/login")
            tsd.select_option("#station", "tsd-1")
            tsd.fill("#pin", "4321")
            tsd.click("button[type=submit]")
            tsd.locator("li.task", has_text="N2").get_by_text("Собрать").click()
            expect(tsd.locator("li.line.current")).to_contain_text("ячейка C-09")
            tsd.locator("#scan").type("C-09")  # the bin label on the shelf confirms the line
            tsd.locator("#scan").press("Enter")
            expect(tsd.locator("#msg")).to_have_attribute("data-kind", "done")
            expect(tsd.locator("#msg")).to_contain_text("сборка закончена")
            tsd.screenshot(path=str(ARTIFACTS / "pick-done-tsd-480x800.png"))
            tsd.get_by_text("К списку").click()
            tsd.locator("li.task", has_text="N2").get_by_text("Упаковать").click()
            tsd.locator("#scan").type(BAG["barcode"])
            tsd.locator("#scan").press("Enter")
            expect(tsd.locator("#msg")).to_have_attribute("data-kind", "done")
            expect(tsd.locator("#label-status")).to_have_attribute("data-state", "done", timeout=15000)
            width = tsd.evaluate("document.documentElement.scrollWidth")
            assert width <= 480, f"the handheld page scrolls sideways ({width}px)"
            box = tsd.locator("#scan").bounding_box()
            assert box and box["height"] >= 48 and box["width"] >= 400  # one thumb can hit it
            tsd.screenshot(path=str(ARTIFACTS / "pack-done-tsd-480x800.png"))
            assert len(_pngs(labels)) == 2

            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and len([1 for *_, t, b in cloud.received() if t == "printed"]) < 2:
                time.sleep(0.1)
            got = cloud.received()
            packed = sorted(b["order_id"] for _, _, t, b in got if t == "task_progress" and b["state"] == "packed")
            assert packed == ["o-1", "o-2"]
            assert [b["code"] for _, _, t, b in got if t == "scan"] == [BAG["barcode"]]

            # the cloud becomes unreachable: the page says so and shows what waits in the queue
            broker.stop()
            tsd.locator("#scan").type("2000000000001")
            tsd.locator("#scan").press("Enter")
            expect(tsd.locator("#msg")).to_have_attribute("data-kind", "unknown")
            expect(tsd.locator("#link-badge")).to_have_attribute("data-online", "0", timeout=15000)
            expect(tsd.locator("#link-badge")).to_contain_text("нет связи · в очереди 1")
            tsd.screenshot(path=str(ARTIFACTS / "offline-tsd-480x800.png"))
        finally:
            browser.close()


def test_an_order_cancelled_while_it_is_packed_is_told_to_the_packer(edge) -> None:
    """The cloud cancels the order on the screen: the packer is told at once to unpack it, and the next
    scan there goes to an open order, never into the cancelled parcel."""
    from playwright.sync_api import expect

    url, labels, cloud, _broker = edge
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with handheld(url) as page:
        page.locator("li.task", has_text="N1").get_by_text("Упаковать").click()
        page.locator("#scan").type(MUG["barcode"])
        page.locator("#scan").press("Enter")
        expect(page.locator("#msg")).to_have_attribute("data-kind", "packed")
        cloud.send("cancel_task", {"task_id": "1", "order_id": "o-1", "reason": "buyer cancelled"})
        expect(page.locator("#msg")).to_have_attribute("data-kind", "cancelled", timeout=15000)
        expect(page.locator("#msg")).to_contain_text("ЗАКАЗ N1 ОТМЕНЁН")
        expect(page.locator("#msg")).to_contain_text("разберите посылку")
        page.wait_for_timeout(500)  # the live update's own fetch of the state has come too
        assert page.locator("main").inner_text().count("ОТМЕНЁН") == 1  # told once, not in two banners
        page.screenshot(path=str(ARTIFACTS / "pack-cancelled-tsd-480x800.png"))
        page.locator("#scan").type(BAG["barcode"])  # the next order's item: the screen moves on
        page.locator("#scan").press("Enter")
        expect(page.locator("#msg")).to_have_attribute("data-kind", "done")
        expect(page.locator("#order")).to_contain_text("N2")
        expect(page.locator("#label-status")).not_to_contain_text("ОТМЕНЁН")


def test_fast_scans_reach_the_site_in_order_and_each_answer_shows_once(edge) -> None:
    """A scanner fires the next code before a slow handheld's Wi-Fi answered the first: the site still gets
    them in the order they were read, and each answer is shown (and beeped) once, not again by the live update."""
    import sqlite3

    from playwright.sync_api import expect

    url, labels, _cloud, _broker = edge
    with handheld(url) as page:
        page.locator("li.task", has_text="N1").get_by_text("Упаковать").click()
        expect(page.locator("#scan")).to_be_focused()  # the packing screen is there
        held = []

        def slow_first(route) -> None:  # the first scan's request is stuck in the air for a while
            if not held:
                held.append(route)
                page.wait_for_timeout(700)
            route.continue_()

        page.route("**/api/scan", slow_first)
        page.evaluate("""() => { window.shown = []; const m = document.querySelector('#msg');
            new MutationObserver(() => window.shown.push(m.textContent))
              .observe(m, {childList: true, characterData: true, subtree: true}); }""")
        page.locator("#scan").type(f"2000000000001\n{MUG['barcode']}\n")
        expect(page.locator("#msg")).to_have_attribute("data-kind", "packed", timeout=10000)
        page.wait_for_timeout(1000)  # the live update of the last scan has come too
        db = sqlite3.connect(labels.parent / "site.sqlite")
        try:
            codes = [r[0] for r in db.execute("SELECT code FROM scans WHERE station = 'pack-1' ORDER BY id")]
        finally:
            db.close()
        assert codes == ["2000000000001", MUG["barcode"]]
        shown = page.evaluate("window.shown")
        assert len(shown) == 2 and "Неизвестный штрихкод" in shown[0] and "Кружка" in shown[1], shown


def test_a_scan_fired_while_the_screen_is_still_loading_is_not_lost(edge) -> None:
    """A scanner fires as the count screen opens, before its script is there (a slow handheld): the field
    takes the scan only once the page can send it — not a bare form submit that reloads the page and
    drops the unit without a word. (The script is held back 1 s on the way.)"""
    from playwright.sync_api import expect

    url, _labels, _cloud, _broker = edge
    with handheld(url) as page:
        page.route("**/static/app.js", lambda route: (time.sleep(1.0), route.continue_()))
        page.get_by_text("Пересчёт").click()
        page.locator("#scan").type(MUG["barcode"])
        page.locator("#scan").press("Enter")
        expect(page.locator(f"li[data-item='{MUG['item_id']}'] .count")).to_have_text("1")
        assert "code=" not in page.url


def test_a_late_answer_never_shows_an_older_count_over_a_newer_one(edge) -> None:
    """The live update's fetch of the screen's state is overtaken on the way (a handheld's Wi-Fi) by the
    answers to the next scans: when it arrives it must not put the older count back on the screen. (The
    page's first state fetch is held 1.5 s in the browser after its answer came.)"""
    from playwright.sync_api import expect

    url, _labels, _cloud, _broker = edge
    with handheld(url) as page:
        page.add_init_script("""(() => {
            const real = window.fetch; let held = false;
            window.fetch = async (u, o) => {
                const r = await real(u, o);
                if (!held && String(u).includes('/api/state')) {
                    held = true; window.heldAt = Date.now(); await new Promise((ok) => setTimeout(ok, 1500));
                    window.releasedAt = Date.now();
                }
                return r;
            };
        })();""")
        page.get_by_text("Пересчёт").click()
        expect(page.locator("#commit")).to_be_visible()
        for n in (1, 2, 3):
            page.locator("#scan").type(MUG["barcode"])
            page.locator("#scan").press("Enter")
            expect(page.locator("#msg")).to_contain_text(f"«{MUG['name']}»: {n} шт.")
        count = page.locator(f"li[data-item='{MUG['item_id']}'] .count")
        expect(count).to_have_text("3")
        page.wait_for_function("window.releasedAt !== undefined", timeout=10000)  # the old answer has come
        page.wait_for_timeout(200)
        expect(count).to_have_text("3")


def test_a_unit_scanned_twice_in_a_count_is_taken_back_before_it_is_committed(edge) -> None:
    """Counting a shelf, the packer scans one unit twice: "−1" on the line puts it right, and the count
    the cloud gets is what is on the shelf."""
    from playwright.sync_api import expect

    url, _labels, cloud, _broker = edge
    with handheld(url) as page:
        page.get_by_text("Пересчёт").click()
        expect(page.locator("#commit")).to_be_visible()
        for item, n in ((MUG, 1), (MUG, 2), (MUG, 3), (BAG, 1)):  # each beep heard before the next unit
            page.locator("#scan").type(item["barcode"])
            page.locator("#scan").press("Enter")
            expect(page.locator("#msg")).to_contain_text(f"«{item['name']}»: {n} шт.")
        line = page.locator(f"li[data-item='{MUG['item_id']}']")
        expect(line.locator(".count")).to_have_text("3")
        line.get_by_text("−1").click()
        expect(line.locator(".count")).to_have_text("2")
        expect(page.locator("#scan")).to_be_focused()
        page.locator(f"li[data-item='{BAG['item_id']}']").get_by_text("−1").click()
        expect(page.locator(f"li[data-item='{BAG['item_id']}']")).to_have_count(0)
        page.get_by_text("Провести").click()
        expect(page.locator("#msg")).to_contain_text("Проведено: 1")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not [1 for *_, t, b in cloud.received() if t == "stock_count"]:
            time.sleep(0.1)
        counts = [(b["item_id"], b["counted"]) for *_, t, b in cloud.received() if t == "stock_count"]
        assert counts == [(MUG["item_id"], 2)]


def test_a_scanner_that_ends_scans_with_tab_works_like_one_that_sends_enter(edge) -> None:
    from playwright.sync_api import expect

    url, _labels, _cloud, _broker = edge
    with handheld(url) as page:
        page.locator("li.task", has_text="N1").get_by_text("Упаковать").click()
        scan = page.locator("#scan")
        scan.type(MUG["barcode"])
        scan.press("Tab")
        expect(page.locator("#msg")).to_have_attribute("data-kind", "packed")
        expect(scan).to_be_focused()
        expect(scan).to_have_value("")
        scan.type(BAG["barcode"])  # the next scan is a scan of its own, not glued to the last one
        scan.press("Tab")
        expect(page.locator("#msg")).to_have_attribute("data-kind", "wrong_item")
        expect(page.locator("#msg")).to_contain_text("Рюкзак")



def test_a_torn_label_is_printed_again_from_the_packing_screen(edge) -> None:
    from playwright.sync_api import expect

    url, labels, _cloud, _broker = edge
    with handheld(url) as page:
        page.locator("li.task", has_text="N2").get_by_text("Упаковать").click()
        expect(page.locator("#reprint")).to_be_hidden()  # nothing to print again before packing
        page.locator("#scan").type(BAG["barcode"])
        page.locator("#scan").press("Enter")
        expect(page.locator("#label-status")).to_have_attribute("data-state", "done", timeout=15000)
        assert len(_pngs(labels)) == 1
        page.locator("#reprint").click()
        expect(page.locator("#msg")).to_contain_text("ещё раз")
        expect(page.locator("#scan")).to_be_focused()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(_pngs(labels)) < 2:
            time.sleep(0.1)
        assert len(_pngs(labels)) == 2
        expect(page.locator("#label-status")).to_have_attribute("data-state", "done", timeout=15000)


def test_a_scan_whose_answer_is_lost_on_the_way_is_applied_once(edge) -> None:
    """The handheld's Wi-Fi drops the answer to a scan the site has already taken: the page sends it again
    by itself, the site answers it without applying it twice, and the packer sees the real answer."""
    import sqlite3

    from playwright.sync_api import expect

    url, labels, _cloud, _broker = edge
    with handheld(url) as page:
        page.locator("li.task", has_text="N1").get_by_text("Упаковать").click()
        expect(page.locator("#scan")).to_be_focused()
        lost = []

        def lose_first_answer(route) -> None:
            if not lost:
                lost.append(route.fetch())  # the site takes the scan; its answer never arrives
                route.abort("connectionreset")
            else:
                route.continue_()

        page.route("**/api/scan", lose_first_answer)
        page.locator("#scan").type(MUG["barcode"])
        page.locator("#scan").press("Enter")
        expect(page.locator("#msg")).to_have_attribute("data-kind", "packed", timeout=10000)
        expect(page.locator("#msg")).to_contain_text("Осталось 1")
        assert lost and lost[0].status == 200
        db = sqlite3.connect(labels.parent / "site.sqlite")
        try:
            packed = db.execute("SELECT packed FROM task_lines WHERE task_id = '1' AND item_id = ?",
                                (MUG["item_id"],)).fetchone()[0]
            scans = db.execute("SELECT COUNT(*) FROM scans").fetchone()[0]
        finally:
            db.close()
        assert (packed, scans) == (1, 1)


def test_the_task_list_is_not_reloaded_by_scans_that_change_nothing_on_it(edge) -> None:
    """A handheld showing the task list while others scan: an unknown barcode or a wrong item elsewhere does
    not reload it under the packer's thumb; a unit packed elsewhere does."""
    from playwright.sync_api import expect, sync_playwright

    url, _labels, _cloud, _broker = edge
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            pages = []
            for st in ("tsd-1", "pack-1"):
                page = browser.new_context(viewport={"width": 480, "height": 800}).new_page()
                page.goto(url + "/login")
                page.select_option("#station", st)
                page.fill("#pin", "4321")
                page.click("button[type=submit]")
                expect(page.locator("li.task")).to_have_count(2)
                pages.append(page)
            listing, station = pages
            listing.evaluate("window.notReloaded = true")
            station.locator("li.task", has_text="N1").get_by_text("Упаковать").click()
            for code in ("2000000000001", BAG["barcode"]):  # unknown, then another order's item
                station.locator("#scan").type(code)
                station.locator("#scan").press("Enter")
            expect(station.locator("#msg")).to_have_attribute("data-kind", "wrong_item")
            listing.wait_for_timeout(1500)
            assert listing.evaluate("window.notReloaded === true")
            station.locator("#scan").type(MUG["barcode"])
            station.locator("#scan").press("Enter")
            expect(listing.locator("li.task", has_text="N1")).to_contain_text("1/2 шт.", timeout=10000)
        finally:
            browser.close()


def _scan(page: Any, code: str) -> None:
    page.locator("#scan").type(code)
    page.locator("#scan").press("Enter")


def _wait_received(cloud: CloudRecorder, msg_type: str, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = [b for _, _, t, b in cloud.received() if t == msg_type]
        if got:
            return got
        time.sleep(0.1)
    return []


def test_a_return_is_taken_in_on_the_return_screen_offline_and_reported_up_later(edge) -> None:
    """«Возврат»: the parcel (by the order's number), each unit scanned, one marked defective, a unit that was
    never in the order refused; taken in while the cloud is out of reach — the good units go back on hand
    and the return goes up when the link is back."""
    from playwright.sync_api import expect

    url, _labels, cloud, broker = edge
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    cloud.send("return_expected", {"return_id": "r-9", "order_id": "o-9", "number": "WB-9", "kind": "return",
                                   "marketplace": "wildberries", "parcel_codes": ["9", "WB-9", "o-9"], "lines": [
                                       {"item_id": MUG["item_id"], "quantity": 2, "barcode": MUG["barcode"],
                                        "name": MUG["name"]},
                                       {"item_id": BAG["item_id"], "quantity": 1, "barcode": BAG["barcode"],
                                        "name": BAG["name"]}]})
    assert cloud.link.wait_idle(20)
    with handheld(url) as page:
        expect(page.locator("#returns-link")).to_have_text("Возврат (1)")
        page.click("#returns-link")
        expect(page.locator("#title")).to_contain_text("Возврат")
        expect(page.locator("li.expected")).to_contain_text("WB-9")
        broker.stop()  # the cloud is out of reach from here on
        _scan(page, "WB-9")
        expect(page.locator("#msg")).to_contain_text("Возврат заказа WB-9")
        for code in (MUG["barcode"], MUG["barcode"], BAG["barcode"]):
            _scan(page, code)
            expect(page.locator("#msg")).to_have_attribute("data-kind", "packed")
        expect(page.locator("li.unit")).to_have_count(3)
        _scan(page, SHIRT["barcode"])  # never in that order
        expect(page.locator("#msg")).to_have_attribute("data-kind", "wrong_item")
        expect(page.locator("#msg")).to_contain_text("НЕ ИЗ ЭТОГО ЗАКАЗА")
        _scan(page, MUG["barcode"])  # a third mug: two were sold
        expect(page.locator("#msg")).to_have_attribute("data-kind", "extra")
        page.locator("li.unit").nth(1).get_by_text("Брак").click()
        expect(page.locator("li.unit").nth(1)).to_have_class("line unit defective")
        page.screenshot(path=str(ARTIFACTS / "return-tsd-480x800.png"))
        page.click("#commit-return")
        expect(page.locator("#msg")).to_contain_text("Возврат заказа WB-9 принят: годных 2, брак 1")
        expect(page.locator("#link-badge")).to_have_attribute("data-online", "0", timeout=15000)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 480, f"the handheld page scrolls sideways ({width}px)"
        assert not _wait_received(cloud, "return_received", timeout=1)
    broker.start()
    (ret,) = _wait_received(cloud, "return_received", timeout=30)
    assert ret["return_id"] == "r-9" and ret["order_id"] == "o-9" and "Анна" in ret["note"]
    assert sorted((u["item_id"], u["good"], u["defective"]) for u in ret["lines"]) == [
        (BAG["item_id"], 1, 0), (MUG["item_id"], 1, 1)]  # the cloud: 2 back on hand, the broken mug to defect
    assert not [b for _, _, t, b in cloud.received() if t == "stock_delta" and b["reason"] == "return"]


def test_the_senior_packer_asks_for_a_hand_over_and_its_documents_print(edge) -> None:
    """The packers' page: «Передать курьеру» for an account with packed parcels asks the cloud; the hand-over
    it sends lists its parcels as a number; closed, our own list prints; the marketplace's documents come
    down — the supply QR prints on the label printer, the A4 act opens from the page."""
    import base64
    import io

    import segno
    from playwright.sync_api import expect

    url, labels, cloud, _broker = edge
    cloud.send("catalog", {"items": [SOCKS]})
    cloud.send("pick_task", pick_task("7", [(SOCKS, 1)], deadline="2026-11-27T00:30:00Z", account="wb-main"))
    cloud.send("label", {"order_id": "o-7", "format": "png", "data_b64": label_png("WB 7")})
    assert cloud.link.wait_idle(20)
    with handheld(url) as page:
        page.locator("li.task", has_text="N7").get_by_text("Упаковать").click()
        _scan(page, SOCKS["barcode"])
        expect(page.locator("#msg")).to_have_attribute("data-kind", "done")
        expect(page.locator("#label-status")).to_have_attribute("data-state", "done", timeout=15000)
        page.get_by_text("К списку").click()
        offer = page.locator("#to-hand-over li", has_text="wb-main")
        expect(offer).to_contain_text("1 шт.")
        offer.get_by_text("Передать курьеру").click()
        expect(page.locator("#handover-note")).to_contain_text("Передача wb-main запрошена")
        (asked,) = _wait_received(cloud, "handover_request")
        assert asked == {"account": "wb-main", "requested_by": "Анна"}
        cloud.send("handover", {"handover_id": "ho-wb-main-1", "marketplace": "wildberries", "account": "wb-main",
                                "order_ids": ["o-7"]})
        expect(page.locator("li", has_text="ho-wb-main-1").locator("small.parcels")).to_have_text("1 шт.",
                                                                                                  timeout=15000)
        page.locator("a", has_text="ho-wb-main-1").click()
        expect(page.locator("#msg")).to_have_text("Сканируйте посылку")  # the parcel, not an item
        _scan(page, "o-7")
        expect(page.locator("#msg")).to_contain_text("1 из 1")
        printed_before = len(_pngs(labels))
        page.click("#close-handover")
        expect(page.locator("#msg")).to_have_attribute("data-kind", "done")
        expect(page.locator("#close-handover")).to_be_disabled()  # closed: nothing more to press
        expect(page.locator("#close-handover")).to_have_text("Передача закрыта")
        page.reload()
        expect(page.locator("#close-handover")).to_be_disabled()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(_pngs(labels)) == printed_before:
            time.sleep(0.1)
        assert len(_pngs(labels)) == printed_before + 1  # our own hand-over list's label
        page.goto(url + "/handover/ho-wb-main-1/list")  # and the list itself, a page to print
        expect(page.locator("#sheet-count")).to_have_text("1")
        expect(page.locator("#sheet-parcels tbody tr")).to_have_count(1)
        expect(page.locator("#sheet-parcels")).to_contain_text("N7")
        expect(page.locator("#sheet-head")).to_contain_text("wildberries")
        page.screenshot(path=str(ARTIFACTS / "handover-list.png"))
        buf = io.BytesIO()
        segno.make("WB-GI-777", error="m").save(buf, kind="png", scale=6)
        cloud.send("handover_document", {"handover_id": "ho-wb-main-1", "kind": "supply_qr", "format": "png",
                                         "data_b64": base64.b64encode(buf.getvalue()).decode(),
                                         "title": "QR-код поставки WB-GI-777", "width_mm": 58, "height_mm": 40})
        act = b"%PDF-1.4\n% a marketplace's act\n"
        cloud.send("handover_document", {"handover_id": "ho-wb-main-1", "kind": "act", "format": "pdf",
                                         "data_b64": base64.b64encode(act).decode(), "title": "Акт приёма-передачи",
                                         "width_mm": 210, "height_mm": 297})
        assert cloud.link.wait_idle(20)
        page.goto(url + "/")
        expect(page.locator("#documents li[data-document]")).to_have_count(2, timeout=15000)
        expect(page.locator("#documents li[data-sheet]")).to_contain_text("1 шт.")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and len(_pngs(labels)) < printed_before + 2:
            time.sleep(0.1)
        assert len(_pngs(labels)) == printed_before + 2  # the QR on the label printer, the A4 act not
        import zxingcpp
        from PIL import Image

        newest = max(_pngs(labels), key=lambda p: p.stat().st_mtime)
        assert "WB-GI-777" in {r.text for r in zxingcpp.read_barcodes(Image.open(newest).convert("L"))}
        sheet = page.locator("#documents li", has_text="Акт")
        expect(sheet).to_contain_text("откройте и распечатайте")
        r = page.request.get(url + sheet.locator("a").get_attribute("href"))
        assert r.status == 200 and r.headers["content-type"] == "application/pdf" and r.body() == act
        page.screenshot(path=str(ARTIFACTS / "handover-documents-tsd-480x800.png"))


def test_a_count_is_told_in_russian_plurals_and_the_box_is_a_warehouse(edge) -> None:
    """«Провести» on a count of one item says «1 товар» (not «1 товаров»); the page names the box «склад»,
    never «площадка» (the seller's word for a marketplace)."""
    from playwright.sync_api import expect

    url, _labels, _cloud, _broker = edge
    with handheld(url) as page:
        assert page.title().startswith("Задания")
        page.get_by_text("Пересчёт").click()
        expect(page.locator("#commit")).to_be_visible()
        for n in (1, 2):
            _scan(page, MUG["barcode"])
            expect(page.locator("#msg")).to_contain_text(f"«{MUG['name']}»: {n} шт.")
        page.get_by_text("Провести").click()
        expect(page.locator("#msg")).to_have_text("Проведено: 1 товар, 2 шт.")
        for code, n in ((MUG["barcode"], 1), (BAG["barcode"], 1), (SHIRT["barcode"], 1)):
            _scan(page, code)
            expect(page.locator("#msg")).to_contain_text(f": {n} шт.")
        page.get_by_text("Провести").click()
        expect(page.locator("#msg")).to_have_text("Проведено: 3 товара, 3 шт.")
        _scan(page, "2000000000001")
        expect(page.locator("#msg")).to_contain_text("нет в каталоге склада")
        page.goto(url + "/")
        text = page.locator("body").inner_text() + page.title()
        assert "лощадк" not in text
        assert "лощадк" not in page.request.get(url + "/static/app.js").text()


def test_a_bin_label_scanned_at_a_receipt_puts_the_goods_there_and_the_pick_list_shows_it(edge) -> None:
    """«Приёмка» on a handheld: the packer scans the shelf's bin label, then the goods laid in it; once
    committed, the site keeps that bin and the next pick list walks to it."""
    from playwright.sync_api import expect

    url, _labels, cloud, _broker = edge
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with handheld(url) as page:
        page.get_by_text("Приёмка").click()
        expect(page.locator("#lines")).to_contain_text("сначала её этикетку")
        _scan(page, "K-07")
        expect(page.locator("#msg")).to_have_attribute("data-kind", "bin")
        expect(page.locator("#msg")).to_contain_text("Ячейка K-07")
        expect(page.locator("#order")).to_have_text("ячейка K-07")
        _scan(page, MUG["barcode"])
        line = page.locator(f"li[data-item='{MUG['item_id']}']")
        expect(line).to_contain_text("ячейка K-07 (новая)")
        page.screenshot(path=str(ARTIFACTS / "receipt-bin-tsd-480x800.png"))
        page.get_by_text("Провести").click()
        expect(page.locator("#msg")).to_have_text("Проведено: 1 товар, 1 шт.; ячейки запомнены для 1 товар")
        # the bin goes up to the cloud over the site link (MQTT), so the manager sees where the goods lie
        assert wait_for(lambda: any(t == "item_bin" for _i, _s, t, _b in cloud.received()), 20)
        [(_i, _s, _t, told)] = [r for r in cloud.received() if r[2] == "item_bin"]
        assert told == {"item_id": MUG["item_id"], "bin": "K-07", "warehouse": "main", "ref": told["ref"],
                        "set_by": "Анна"} and told["ref"]
        page.get_by_text("К списку").click()
        page.locator("li.task", has_text="N1").get_by_text("Собрать").click()
        expect(page.locator(f"li.line:has-text('{MUG['name']}')")).to_contain_text("ячейка K-07")
        expect(page.locator("li.line").first).to_contain_text("ячейка A-02")  # the walk: A-02 before K-07
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 480, f"the handheld page scrolls sideways ({width}px)"


def test_many_orders_in_one_walk_by_bin_printed_and_sorted_into_totes_at_the_table(edge) -> None:
    """«Общая сборка»: the new orders in one pick list sorted by bin (a sheet to print too); the packer walks
    it scanning the bin labels, then at the packing table each unit scanned is told its tote (order) and
    packed there, and each order's label prints when its tote is full."""
    from playwright.sync_api import expect

    url, labels, cloud, _broker = edge
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    title = "Кружка керамическая, красный 350 мл"  # the marketplace card's own title
    cloud.send("catalog", {"items": [SOCKS]})
    cloud.send("pick_task", pick_task("3", [(SOCKS, 1), (MUG, 1)], deadline="2026-11-27T03:00:00Z"))
    task4 = pick_task("4", [(MUG, 1)], deadline="2026-11-27T04:00:00Z")
    task4["lines"][0]["title"] = title
    cloud.send("pick_task", task4)
    for n in ("3", "4"):
        cloud.send("label", {"order_id": f"o-{n}", "format": "png", "data_b64": label_png(f"WB {n}")})
    assert cloud.link.wait_idle(20)
    with handheld(url) as page:
        page.get_by_text("Общая сборка: новые заказы (4)").click()
        expect(page.locator("#title")).to_contain_text("Общая сборка")
        bins = page.locator("li.line .bin")
        expect(bins).to_have_text(["A-01", "A-02", "B-01", "C-09"])  # the walk along the shelves
        mug = page.locator("li.line[data-bin='B-01']")
        expect(mug).to_contain_text("Кружка")
        expect(mug.locator(".count")).to_have_text("0/3")
        expect(mug).to_contain_text("ящик 1: N1 ×1")
        expect(page.locator("li.line.current .bin")).to_have_text("A-01")
        page.screenshot(path=str(ARTIFACTS / "wave-pick-tsd-480x800.png"))
        with page.context.expect_page() as sheet_opened:
            page.click("#print-wave")
        sheet = sheet_opened.value
        expect(sheet.locator("#wave-lines tbody tr td.bin")).to_have_text(["A-01", "A-02", "B-01", "C-09"])
        expect(sheet.locator("#wave-head")).to_contain_text("4 заказа · 4 ячейки · всего 6 шт.")
        expect(sheet.locator("#wave-lines tr[data-bin='B-01']")).to_contain_text(title)  # the card's title below
        expect(sheet.locator("#wave-totes tbody tr")).to_have_count(4)
        sheet.screenshot(path=str(ARTIFACTS / "wave-pick-list.png"), full_page=True)
        sheet.close()
        for code in ("A-01", "A-02", "B-01", "C-09"):
            _scan(page, code)
            expect(page.locator(f"li.line[data-bin='{code}']")).to_have_class("line done")
        expect(page.locator("#msg")).to_have_attribute("data-kind", "done")
        expect(page.locator("#msg")).to_contain_text("разложите товар по ящикам")
        page.click("#to-sort")
        expect(page.locator("#title")).to_contain_text("Раскладка по ящикам")
        expect(page.locator("#msg")).to_contain_text("в какой ящик")
        expect(page.locator("li.line .tote")).to_have_text(["1", "2", "3", "4"])
        _scan(page, MUG["barcode"])
        expect(page.locator("#msg")).to_contain_text("ЯЩИК 1 · заказ N1")
        expect(page.locator("li.line.current")).to_have_attribute("data-tote", "1")
        _scan(page, BAG["barcode"])
        expect(page.locator("#msg")).to_contain_text("ЯЩИК 2 · заказ N2")
        expect(page.locator("#msg")).to_have_attribute("data-kind", "done")  # N2 is one bag: its label prints
        _scan(page, SOCKS["barcode"])
        expect(page.locator("#msg")).to_contain_text("ЯЩИК 3 · заказ N3")
        _scan(page, MUG["barcode"])
        expect(page.locator("#msg")).to_contain_text("ЯЩИК 3 · заказ N3")
        _scan(page, MUG["barcode"])
        expect(page.locator("#msg")).to_contain_text("ЯЩИК 4 · заказ N4")
        expect(page.locator("li.line[data-tote='4']")).to_have_class("line done current")
        page.screenshot(path=str(ARTIFACTS / "wave-sort-tsd-480x800.png"))
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 480, f"the handheld page scrolls sideways ({width}px)"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(_pngs(labels)) < 3:
        time.sleep(0.1)
    assert len(_pngs(labels)) == 3  # N2, N3, N4; N1 still waits for its marked shirt
    packed = sorted(b["order_id"] for _, _, t, b in cloud.received() if t == "task_progress" and b["state"] == "packed")
    assert packed == ["o-2", "o-3", "o-4"]


def test_the_packer_sees_the_1c_name_with_the_card_title_below(edge) -> None:
    from playwright.sync_api import expect

    url, _labels, cloud, _broker = edge
    task = pick_task("5", [(MUG, 1)])
    task["lines"][0]["title"] = "Кружка керамическая, красный 350 мл"
    cloud.send("pick_task", task)
    assert cloud.link.wait_idle(20)
    with handheld(url) as page:
        page.locator("li.task", has_text="N5").get_by_text("Собрать").click()
        line = page.locator("li.line").first
        expect(line.locator("b")).to_have_text(MUG["name"])
        expect(line.locator(".title2")).to_have_text("Кружка керамическая, красный 350 мл")


def test_a_line_of_the_combined_pick_not_on_the_shelf_is_reported_short(edge) -> None:
    from playwright.sync_api import expect

    url, _labels, cloud, _broker = edge
    with handheld(url) as page:
        page.get_by_text("Общая сборка: новые заказы (2)").click()
        line = page.locator("li.line[data-bin='C-09']")
        expect(line.locator(".count")).to_have_text("0/1")
        page.once("dialog", lambda d: d.accept())
        line.get_by_text("Нет").click()
        expect(page.locator("#msg")).to_contain_text("Недостача: «Рюкзак» — не найдено 1 шт.")
        expect(line).to_have_class("line done")
        expect(line.get_by_text("Нет")).to_have_count(0)
    offs = [b for b in _wait_received(cloud, "stock_delta") if b["reason"] == "writeoff"]
    assert [(b["ref"], b["item_id"], b["delta"]) for b in offs] == [("o-2", BAG["item_id"], -1)]
