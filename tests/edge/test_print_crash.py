"""A box killed while a label is being printed (SIGKILL of the real `edge serve` process, held at the
instant by crash_points.py) prints that label exactly once: the print journal records the job as being
sent before a byte goes and as done after. The virtual printer's file appears whole under the job's name,
so the restart knows whether it printed; of a real printer nobody knows, so the packer is asked
«этикетка напечаталась?» and nothing is sent again on its own. The physical printer is stood in for by
python-escpos's File device writing into a FIFO the test reads (a mock of the printer, said so here).
Real SQLite files throughout; no broker (every up message stays in the outbox, where it is counted)."""

from __future__ import annotations

import base64
import http.cookiejar
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from edge_testkit import MUG, WAREHOUSE, deliver_label, make_conn, pick_task, send, wait_for

from edge_agent import store
from edge_agent.config import hash_pin
from edge_agent.devices.base import PrinterProfile
from edge_agent.labels import prepare_label
from edge_agent.tasks import inbox, station

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
N = 5
HELD_JOB = 3  # the third label is the one being printed when the power goes


def _packed_site(db: Path, n: int, handover: bool = False) -> None:
    """A site database with n packed orders whose labels wait to be printed (the real packing path)."""
    conn = make_conn(db)
    try:
        for i in range(1, n + 1):
            with store.transaction(conn):
                inbox.apply_pick_task(conn, pick_task(f"t{i}", [(MUG, 1)]))
            deliver_label(conn, f"o-t{i}")
            with store.transaction(conn):
                assert station.handle_scan(conn, send, "pack-1", MUG["barcode"], WAREHOUSE).kind == "done"
        if handover:
            with store.transaction(conn):
                inbox.apply_handover(conn, {"handover_id": "h1", "marketplace": "ozon",
                                            "order_ids": [f"o-t{i}" for i in range(1, n + 1)]})
    finally:
        conn.close()


def _toml(folder: Path, printer: str) -> Path:
    path = folder / "edge.toml"
    path.write_text(f"""
[site]
db_path = "site.sqlite"
stations = ["pack-1"]
[web]
port = 0
[mqtt]
port = 1
[printer]
{printer}
[tasks]
print_retry_s = 0.5
[[staff]]
name = "Анна"
pin_hash = "{hash_pin('4321')}"
""", encoding="utf-8")
    return path


def _serve(cfg: Path, cwd: Path, held: tuple[str, int, Path] | None = None) -> tuple[subprocess.Popen[str], str]:
    """`marketsync edge serve`, or the same held at an instant of printing (crash_points.py)."""
    cmd = [sys.executable, "-m", "marketsync.cli"]
    if held is not None:
        cmd = [sys.executable, str(HERE / "crash_points.py"), held[0], str(held[1]), str(held[2])]
    proc = subprocess.Popen([*cmd, "edge", "serve", "--config", str(cfg)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    line = json.loads(proc.stdout.readline())
    assert line["role"] == "edge"
    return proc, line["url"]


def _kill_when_held(proc: subprocess.Popen[str], marker: Path) -> None:
    try:
        assert wait_for(marker.exists, timeout=60), "the print worker never reached the instant"
        os.kill(proc.pid, signal.SIGKILL)  # the power goes
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _q(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    c = sqlite3.connect(db, timeout=30)
    try:
        return c.execute(sql, args).fetchall()
    finally:
        c.close()


def _jobs(db: Path) -> dict[str, str]:
    return dict(_q(db, "SELECT order_id, state FROM print_jobs WHERE kind = 'label'"))


def _printed_up(db: Path) -> list[str]:
    """The `printed` messages of labels the site queued for the cloud: one per label that came out."""
    bodies = [json.loads(r[0])["body"] for r in _q(db, "SELECT payload FROM link_outbox WHERE type = 'printed'")]
    return sorted(b["order_id"] for b in bodies if b["kind"] == "label")


@pytest.mark.parametrize("instant", ["before_write", "during_write", "after_write"])
def test_a_box_killed_mid_print_prints_each_label_exactly_once(tmp_path: Path, instant: str) -> None:
    db, labels, marker = tmp_path / "site.sqlite", tmp_path / "labels", tmp_path / "held"
    _packed_site(db, N)
    cfg = _toml(tmp_path, 'kind = "virtual"\nout_dir = "labels"')
    proc, _ = _serve(cfg, tmp_path, held=(instant, HELD_JOB, marker))
    _kill_when_held(proc, marker)

    held = f"o-t{HELD_JOB}"
    pngs, parts = sorted(labels.glob("*.png")), sorted(labels.glob("*.part"))
    assert _jobs(db)[held] == "sending"  # the journal said so before the first byte went
    if instant == "before_write":
        assert (len(pngs), parts) == (HELD_JOB - 1, [])
    elif instant == "during_write":  # half a file, under a name no one takes for a label
        assert len(pngs) == HELD_JOB - 1 and len(parts) == 1 and parts[0].stat().st_size > 0
    else:  # the file is whole; the journal was not told
        assert (len(pngs), parts) == (HELD_JOB, [])

    proc, _ = _serve(cfg, tmp_path)
    try:
        assert wait_for(lambda: set(_jobs(db).values()) == {"done"}, timeout=60)
    finally:
        _stop(proc)
    pngs = sorted(labels.glob("*.png"))
    assert len(pngs) == N and not list(labels.glob("*.part"))
    for i in range(1, N + 1):  # exactly one label file per order, the one its job names
        assert [p.name for p in pngs if p.name.endswith(f"-o-t{i}.png")] == [Path(f).name for (f,) in _q(
            db, "SELECT file FROM print_jobs WHERE order_id = ?", f"o-t{i}")]
    assert _printed_up(db) == sorted(f"o-t{i}" for i in range(1, N + 1))  # the cloud hears of each once


class FifoPrinter:
    """The stand-in for a physical ESC/POS printer: a FIFO that python-escpos's File device writes into
    (as into /dev/usb/lp0), read by this thread; `received` is every byte that reached the 'printer'."""

    def __init__(self, path: Path) -> None:
        self.path = path
        os.mkfifo(path)
        self.received = b""
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            with open(self.path, "rb", buffering=0) as f:  # waits for the edge to open its printer
                while chunk := f.read(4096):
                    with self._lock:
                        self.received += chunk

    def count(self, payload: bytes) -> int:
        with self._lock:
            return self.received.count(payload)

    def close(self) -> None:
        self._stop = True
        fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK) if self._thread.is_alive() else None
        if fd is not None:
            os.close(fd)
        self._thread.join(timeout=5)


class Page:
    """The packers' page, as a browser's requests reach it (cookies kept)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        form = urllib.parse.urlencode({"name": "Анна", "pin": "4321", "station": "pack-1"}).encode()
        self.opener.open(url + "/login", data=form, timeout=10).close()

    def get(self, path: str) -> Any:
        with self.opener.open(self.url + path, timeout=10) as r:
            body = r.read()
        return json.loads(body) if path.startswith("/api/") else body

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        req = urllib.request.Request(self.url + path, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with self.opener.open(req, timeout=10) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())


@pytest.mark.parametrize(("instant", "answer"), [("during_write", False), ("after_write", True)])
def test_a_label_cut_short_on_a_real_printer_is_asked_about_and_never_sent_again_on_its_own(
        tmp_path: Path, instant: str, answer: bool) -> None:
    n, held_job = 3, 2
    db, marker = tmp_path / "site.sqlite", tmp_path / "held"
    _packed_site(db, n, handover=True)
    printer = FifoPrinter(tmp_path / "lp0")
    cfg = _toml(tmp_path, f'kind = "escpos_file"\ndevice = "{printer.path}"\nwidth_mm = 48\nheight_mm = 40')
    profile = PrinterProfile.from_config({"language": "escpos", "width_mm": 48, "height_mm": 40})
    payload = {f"o-t{i}": prepare_label(base64.b64decode(r[0]), "png", profile).payload
               for i in range(1, n + 1) for r in _q(db, "SELECT data_b64 FROM labels WHERE order_id = ?", f"o-t{i}")}
    held = f"o-t{held_job}"
    try:
        proc, _ = _serve(cfg, tmp_path, held=(instant, held_job, marker))
        _kill_when_held(proc, marker)
        before = printer.count(payload[held])
        assert before == (1 if instant == "after_write" else 0)  # half a label, or all of it, went out

        proc, url = _serve(cfg, tmp_path)
        try:
            assert wait_for(lambda: _jobs(db) == {"o-t1": "done", held: "unknown", "o-t3": "done"}, timeout=60)
            time.sleep(2.0)  # four retry rounds of the print queue: the unknown one is not among them
            assert printer.count(payload[held]) == before
            assert [printer.count(payload[o]) for o in ("o-t1", "o-t3")] == [1, 1]
            page = Page(url)
            (q,) = page.get("/api/print/questions")["questions"]
            assert (q["order_id"], q["kind"], q["number"]) == (held, "label", f"Nt{held_job}")
            assert "напечаталась" in q["message"]
            assert page.get("/api/status")["prints_asked"] == 1
            page.get("/handover/h1")  # the courier came: the parcel is not handed over while nobody knows
            code, r = page.post("/api/scan", {"code": held})
            assert code == 200 and r["result"]["kind"] == "no_label" and r["result"]["data"]["label"] == "asked"
            assert "напечаталась" in r["result"]["message"]
            code, r = page.post("/api/print/answer", {"job_id": q["job_id"], "printed": answer})
            assert code == 200 and r["questions"] == []
            code, r = page.post("/api/print/answer", {"job_id": q["job_id"], "printed": answer})
            assert code == 409 and "уже ответили" in r["error"]  # a second tap changes nothing
            assert wait_for(lambda: _jobs(db)[held] == "done", timeout=30)
            assert wait_for(lambda: printer.count(payload[held]) == before + (0 if answer else 1), timeout=30)
            time.sleep(1.0)
            assert printer.count(payload[held]) == before + (0 if answer else 1)  # «Нет»: printed once more
            for i in range(1, n + 1):
                code, r = page.post("/api/scan", {"code": f"o-t{i}"})
                assert r["result"]["ok"], r["result"]["message"]
            code, r = page.post("/api/handover/close", {"force": False})
            assert code == 200 and r["summary"]["missing"] == []
        finally:
            _stop(proc)
        assert _printed_up(db) == ["o-t1", "o-t2", "o-t3"]  # told once each, the answered one too
    finally:
        printer.close()


@pytest.mark.browser
def test_the_packer_answers_the_printed_question_on_the_page(tmp_path: Path) -> None:
    """In a real Chromium: after the crash the page asks «напечаталась?», refuses the parcel at the
    courier's table and says why; «Нет — напечатать снова» prints it once, and the parcel then goes."""
    from playwright.sync_api import expect, sync_playwright

    chromium = "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail("Debian chromium is not installed at /usr/bin/chromium: make install provides it")
    artifacts = ROOT / "test-artifacts" / "edge"
    artifacts.mkdir(parents=True, exist_ok=True)
    db, marker = tmp_path / "site.sqlite", tmp_path / "held"
    _packed_site(db, 2, handover=True)
    printer = FifoPrinter(tmp_path / "lp0")
    cfg = _toml(tmp_path, f'kind = "escpos_file"\ndevice = "{printer.path}"\nwidth_mm = 48\nheight_mm = 40')
    profile = PrinterProfile.from_config({"language": "escpos", "width_mm": 48, "height_mm": 40})
    (data,), = _q(db, "SELECT data_b64 FROM labels WHERE order_id = 'o-t2'")
    payload = prepare_label(base64.b64decode(data), "png", profile).payload
    try:
        proc, _ = _serve(cfg, tmp_path, held=("during_write", 2, marker))
        _kill_when_held(proc, marker)
        proc, url = _serve(cfg, tmp_path)
        try:
            assert wait_for(lambda: _jobs(db) == {"o-t1": "done", "o-t2": "unknown"}, timeout=60)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox"])
                try:
                    page = browser.new_page(viewport={"width": 480, "height": 800})
                    page.goto(url + "/login")
                    page.fill("#pin", "4321")
                    page.click("button[type=submit]")
                    question = page.locator("#print-questions .question")
                    expect(question).to_contain_text("Этикетка заказа Nt2: напечаталась?", timeout=10000)
                    expect(page.locator("#printer-badge")).to_contain_text("вопрос: 1")
                    page.goto(url + "/handover/h1")
                    page.locator("#scan").type("o-t2")
                    page.locator("#scan").press("Enter")
                    expect(page.locator("#msg")).to_have_attribute("data-kind", "no_label")
                    expect(page.locator("#msg")).to_contain_text("НЕ НАПЕЧАТАНА")
                    expect(page.locator("li.line[data-order='o-t2']")).to_contain_text("ответьте, напечаталась ли")
                    page.screenshot(path=str(artifacts / "handover-label-asked-480x800.png"))
                    assert printer.count(payload) == 0
                    page.get_by_role("button", name="Нет — напечатать снова").click()
                    expect(page.locator("#print-questions")).to_be_hidden(timeout=10000)
                    assert wait_for(lambda: _jobs(db)["o-t2"] == "done", timeout=30)
                    assert wait_for(lambda: printer.count(payload) == 1, timeout=30)
                    for order in ("o-t1", "o-t2"):
                        page.locator("#scan").type(order)
                        page.locator("#scan").press("Enter")
                        expect(page.locator("#msg")).to_have_attribute("data-kind", "packed")
                    expect(page.locator("#order")).to_contain_text("2 из 2")
                finally:
                    browser.close()
        finally:
            _stop(proc)
        assert printer.count(payload) == 1
    finally:
        printer.close()
