"""The commission report built in the background, as the manager asks for it: the page answers at once
(no request waits for the marketplace), a job of the service builds it (cloud_sync.service.jobs), the
page follows the progress (`/reports/builds/<id>.json`) and shows the report whose «К перечислению» is
what Wildberries pays (its own «Итого к оплате», bankPaymentSum, read here straight from the sandbox).
The Wildberries sandbox runs over real HTTP and answers slowly (a latency fault), as the marketplace
does."""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from cloud_sync import db as cloud_db
from cloud_sync.access import users
from cloud_sync.config import parse_config
from cloud_sync.money import reports
from cloud_sync.schema import open_db
from cloud_sync.service.accounts import AccountAdapters
from cloud_sync.service.jobs import Jobs
from cloud_sync.web.app import create_app
from marketplaces import open_account
from marketplaces.base import AccountConfig
from marketplaces.sandbox.registry import start_sandbox

PASSWORD = "manager password 1"
TIME_SCALE = 60.0  # WB's one report call a minute takes a second here
LATENCY_MS = 700
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "reports"  # each call of the sandbox answers this late: the build takes a while, as on WB


@pytest.fixture(scope="module")
def users_template(tmp_path_factory) -> Path:
    """A cloud database with the manager, prepared once: each test's starting point (`start_db`)."""
    path = tmp_path_factory.mktemp("builds-users") / "cloud.sqlite"
    if not cloud_db.is_postgres(path):
        conn = open_db(path)
        users.add_user(conn, "masha", PASSWORD, "manager")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
    return path


def start_db(template: Path, path: Path) -> None:
    """The test's database with the manager: the template's SQLite file copied, or on PostgreSQL (a schema
    per path, nothing to copy) made anew."""
    if cloud_db.is_postgres(path):
        conn = open_db(path)
        users.add_user(conn, "masha", PASSWORD, "manager")
        conn.close()
    else:
        shutil.copy(template, path)


@pytest.fixture
def served(tmp_path, users_template) -> Iterator[dict]:
    """The WB sandbox with four orders sold, and a cloud app whose jobs build the reports."""
    sandbox = start_sandbox("wildberries", seed=20, time_scale=TIME_SCALE)
    account = AccountConfig(name="wb1", marketplace="wildberries", base_url=sandbox.url,
                            credentials=dict(sandbox.credentials), time_scale=TIME_SCALE)
    adapter = open_account(account)
    httpx.post(f"{sandbox.url}/_sandbox/orders", json={"count": 4}, timeout=10).raise_for_status()
    orders = adapter.new_orders()
    for o in orders:
        assert adapter.set_order_status(o.native_id, "confirm").ok
    for o in orders:
        assert adapter.set_order_status(o.native_id, "ship").ok
    httpx.post(f"{sandbox.url}/_sandbox/faults", json={"latency_ms": LATENCY_MS}, timeout=10).raise_for_status()
    start_db(users_template, tmp_path / "cloud.sqlite")
    cfg = parse_config({"cloud": {"db_path": str(tmp_path / "cloud.sqlite")},
                        "accounts": {"wb1": {"marketplace": "wildberries", "base_url": sandbox.url,
                                             "credentials": dict(sandbox.credentials), "time_scale": TIME_SCALE}}})
    held = AccountAdapters(cfg, {"wb1": adapter})
    jobs = Jobs(cfg, cfg.db_path, held)
    jobs.add_report_builds()
    app = create_app(cfg, adapters=held, jobs=jobs)
    jobs.start()
    try:
        yield {"app": app, "sandbox": sandbox, "cfg": cfg}
    finally:
        jobs.stop()
        adapter.close()
        sandbox.stop()
        assert not sandbox.app.spec_violations, sandbox.app.spec_violations[:3]


def _wb_pays(sandbox, day_from, day_to) -> Decimal:
    """WB's own «Итого к оплате» of the period, asked of the sandbox directly (not through the adapter)."""
    r = httpx.post(f"{sandbox.url}/api/finance/v1/sales-reports/list", headers=dict(sandbox.credentials),
                   json={"dateFrom": day_from.isoformat(), "dateTo": day_to.isoformat(), "limit": 1000,
                         "offset": 0, "period": "daily"}, timeout=30)
    r.raise_for_status()
    return sum((Decimal(rep["bankPaymentSum"]) for rep in r.json()), Decimal(0))


def _login(client) -> None:
    page = client.get("/login").text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    r = client.post("/login", data={"name": "masha", "password": PASSWORD, "csrf_token": token, "next": "/reports"})
    assert r.status_code == 302


def test_the_page_answers_at_once_and_follows_the_build_to_what_wb_pays(served):
    app, sandbox = served["app"], served["sandbox"]
    sold = [s for s in sandbox.app.sales]
    assert len(sold) == 4, "four orders were sold in the sandbox"
    c = app.test_client()
    _login(c)
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/reports").text).group(1)
    today = datetime.now(UTC).date()
    day_from, day_to = today - timedelta(days=1), today + timedelta(days=1)
    t0 = time.monotonic()
    r = c.post("/reports", data={"csrf_token": token, "account": "wb1", "from": day_from.isoformat(),
                                 "to": day_to.isoformat()})
    answered = time.monotonic() - t0
    assert r.status_code == 303 and answered < LATENCY_MS / 1000, answered  # asked nothing of WB in the request
    page = c.get(r.headers["Location"])
    assert page.status_code == 200 and 'id="build-progress"' in page.text
    assert "Отчёт формируется в фоне" in page.text
    build_id = r.headers["Location"].rsplit("=", 1)[1]
    seen, status = [], {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = c.get(f"/reports/builds/{build_id}.json").get_json()
        seen.append(status["progress"])
        if status["state"] in ("done", "failed"):
            break
        time.sleep(0.1)
    assert status["state"] == "done", status
    assert any(0 < p < 100 for p in seen), seen  # the bar moved while WB was read, not only at the end
    assert seen == sorted(seen) and seen[-1] == 100
    assert status["stage"] == "готово"
    done = c.get(status["url"])
    assert done.status_code == 200 and 'id="commission"' in done.text and 'id="build-progress"' not in done.text
    conn = open_db(served["cfg"].db_path)
    report_id = reports.build_status(conn, build_id)["report_id"]
    totals = {k: Decimal(v) for k, v in json.loads(conn.execute(
        "SELECT totals FROM commission_reports WHERE id=?", (report_id,)).fetchone()[0]).items()}
    conn.close()
    time.sleep(60 / TIME_SCALE + 0.2)  # WB's sums answer once a minute (of the sandbox's time)
    pays = _wb_pays(sandbox, day_from, day_to)
    assert totals["to_pay"] == pays > 0  # «К перечислению» is what WB pays, logistics etc. taken
    assert totals["logistics"] > 0 and totals["storage"] > 0 and totals["penalty"] > 0 and totals["acquiring"] > 0
    assert totals["to_pay"] < totals["revenue"] - totals["fee"]  # the deductions came off
    rub = f"{pays:,.2f}".replace(",", "\u00a0").replace(".", ",")
    assert rub in done.text.replace("\u202f", "\u00a0"), rub  # «К перечислению» on the page, as money
    assert 'id="reconciled"' in done.text and ">да<" in done.text


def test_pressing_build_twice_builds_once_and_a_failure_is_told(served):
    app = served["app"]
    c = app.test_client()
    _login(c)
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/reports").text).group(1)
    form = {"csrf_token": token, "account": "wb1", "from": "2026-11-01", "to": "2026-11-07"}
    first, second = c.post("/reports", data=form), c.post("/reports", data=form)
    assert first.headers["Location"] == second.headers["Location"]  # one build for one report
    assert c.get("/reports/builds/nope.json").status_code == 404
    conn = open_db(served["cfg"].db_path)
    bad = reports.queue_build(conn, "gone", datetime(2026, 11, 1).date(), datetime(2026, 11, 2).date())
    deadline = time.monotonic() + 30
    while reports.build_status(conn, bad)["state"] not in ("done", "failed") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert reports.build_status(conn, bad)["state"] == "failed"
    conn.close()


def test_a_build_a_stopped_service_left_running_starts_again(tmp_path):
    conn = open_db(tmp_path / "c.sqlite")
    build = reports.queue_build(conn, "wb1", datetime(2026, 11, 1).date(), datetime(2026, 11, 7).date())
    conn.execute("UPDATE report_builds SET state='running', progress=0.4 WHERE id=?", (build,))
    conn.commit()
    assert reports.requeue_interrupted(conn) == 1
    assert reports.build_status(conn, build)["state"] == "queued"
    with pytest.raises(reports.ReportError):
        reports.queue_build(conn, "wb1", datetime(2026, 11, 7).date(), datetime(2026, 11, 1).date())
    conn.close()


def test_the_manager_builds_the_report_in_a_browser_and_watches_it_come(served):
    """In Chromium, in Russian: «Сформировать», a progress bar while WB is read, then the report whose
    «К перечислению» is what WB pays, reconciled."""
    chromium = "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.fail("Debian's chromium is not installed at /usr/bin/chromium: make install provides it")
    import threading

    from playwright.sync_api import expect, sync_playwright
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, served["app"], threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    today = datetime.now(UTC).date()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium, args=["--headless", "--no-sandbox"])
            page = browser.new_page()
            page.goto(f"{url}/login")
            page.fill("input[name=name]", "masha")
            page.fill("input[name=password]", PASSWORD)
            page.click("form button[type=submit]")
            page.goto(f"{url}/reports")
            page.select_option("#f-account", "wb1")
            page.fill("#f-from", (today - timedelta(days=1)).isoformat())
            page.fill("#f-to", (today + timedelta(days=1)).isoformat())
            page.click("#report-form button")
            expect(page.locator("#build-progress")).to_be_visible()
            expect(page.locator("#build")).to_contain_text("Отчёт формируется в фоне")
            expect(page.locator("#build-stage")).to_contain_text(re.compile("ждёт очереди|читаем отчёт площадки"))
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report-building.png"), full_page=True)
            expect(page.locator("#commission")).to_be_visible(timeout=30_000)
            expect(page.locator("#build-progress")).to_have_count(0)
            expect(page.locator("#reconciled")).to_have_text("да")
            expect(page.locator("#commission")).to_contain_text("К перечислению")
            expect(page.locator("#reconciliation")).to_contain_text("Итого к оплате")
            shown = page.locator("#to-pay").inner_text()
            page.screenshot(path=str(ARTIFACTS / "report-built.png"), full_page=True)
            browser.close()
    finally:
        server.shutdown()
    time.sleep(60 / TIME_SCALE + 0.2)
    pays = _wb_pays(served["sandbox"], today - timedelta(days=1), today + timedelta(days=1))
    rub = f"{pays:,.2f}".replace(",", "\u00a0").replace(".", ",")
    assert shown.replace("\u202f", "\u00a0").startswith(rub), (shown, rub)


def test_megamarket_says_its_report_is_in_the_cabinet_only(tmp_path, users_template):
    """Megamarket's API gives no realization report (specs/megamarket/README.md): the build ends at once
    with the seller's words, next to the account field, and no report pretends to be one."""
    start_db(users_template, tmp_path / "cloud.sqlite")
    cfg = parse_config({"cloud": {"db_path": str(tmp_path / "cloud.sqlite")},
                        "accounts": {"mm1": {"marketplace": "megamarket", "base_url": "http://127.0.0.1:9",
                                             "credentials": {"token": "sandbox-secret-mm1"},
                                             "options": {"merchant_id": 1001}}}})
    adapter = open_account(cfg.accounts["mm1"].account)
    app = create_app(cfg, adapters={"mm1": adapter})  # no service jobs: the page builds in its request
    c = app.test_client()
    _login(c)
    token = re.search(r'name="csrf_token" value="([^"]+)"', c.get("/reports").text).group(1)
    r = c.post("/reports", data={"csrf_token": token, "account": "mm1", "from": "2026-11-01", "to": "2026-11-07"},
               follow_redirects=True)
    assert r.status_code == 200 and 'id="err-account"' in r.text and 'id="commission"' not in r.text
    assert "Мегамаркет не отдаёт отчёт о реализации" in r.text
    conn = open_db(cfg.db_path)
    assert conn.execute("SELECT state FROM report_builds").fetchone()[0] == "failed"
    assert conn.execute("SELECT COUNT(*) FROM commission_reports").fetchone()[0] == 0
    conn.close()
