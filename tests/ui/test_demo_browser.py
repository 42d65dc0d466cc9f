"""The manager's UI in a real browser against the real demo (its own secure broker, the four marketplace
sandboxes, the cloud and a site, as processes, `marketsync demo --duration 60 --time-scale 10`): a manager logs in, sees orders from all four
marketplaces, changes a price through a document with its preview, and the Wildberries sandbox's own
state shows the new price; a packer cannot open the price pages. Afterwards every log the demo wrote,
its screen output and every page the browser saw are searched for the sandbox tokens: none may appear.

Playwright drives Debian's chromium (/usr/bin/chromium); screenshots go to test-artifacts/ui/.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
TITLES = {"Wildberries": "wildberries", "Ozon": "ozon", "Yandex.Market": "yandex_market", "Megamarket": "megamarket"}

# The demo's day: longer than the browser needs to go through every page while everything runs (the cloud
# is up about 15 s after the start on a quiet box, 40 s on a loaded one); the test ends it with Ctrl-C once
# the pages are seen, as a person does.
DURATION = 300
ENTERED = "token-typed-into-settings-5e1f"

pytestmark = pytest.mark.browser


def _cli(*args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "marketsync.cli", *args], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def _post_json(url: str, body: dict) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def test_manager_in_the_browser_over_the_demo_and_no_token_leaks(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    work = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "marketsync.cli", "demo", "--duration", str(DURATION), "--time-scale", "10",
                             "--workdir", str(work)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    lines: list[str] = []
    pages: dict[str, str] = {}
    t0 = time.monotonic()
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            m = re.search(r"\] (Wildberries|Ozon|Yandex\.Market|Megamarket) sandbox: (http://127\.0\.0\.1:\d+)", line)
            if m:  # an order on every marketplace at once: the cloud finds them when it starts
                _post_json(f"{m.group(2)}/_sandbox/orders", {"count": 1})
            if "orders start arriving" in line:
                break
        text = "".join(lines)
        assert "orders start arriving" in text, text
        print(f"demo ready at {time.monotonic() - t0:.1f}s")
        sandboxes = {TITLES[m[0]]: m[1] for m in re.findall(r"\] (Wildberries|Ozon|Yandex\.Market|Megamarket) sandbox: "
                                                             r"(http://127\.0\.0\.1:\d+)", text)}
        assert len(sandboxes) == 4, text
        cloud = re.search(r"manager UI: log in at (http://127\.0\.0\.1:\d+)/login as 'owner' with the password in (\S+)",
                          text)
        assert cloud, text
        url, owner_file = cloud.group(1), Path(cloud.group(2))
        assert oct(owner_file.stat().st_mode & 0o777) == "0o600"
        config = work / "cloud" / "cloud.toml"
        secrets_dir = work / "cloud" / "secrets"
        for name, role in (("masha", "manager"), ("petya", "packer")):
            _cli("cloud", "user", "add", name, "--role", role, "--generate", str(secrets_dir / f"{name}-password"),
                 "--config", str(config))

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            try:
                def login(name: str, password_file: Path):
                    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
                    page = ctx.new_page()
                    page.goto(f"{url}/orders")
                    expect(page).to_have_url(re.compile(r"/login"))
                    page.fill("#name", name)
                    page.fill("#password", password_file.read_text().strip())
                    page.click("#login")
                    expect(page).to_have_url(re.compile(r"/orders"))
                    return page

                manager = login("masha", secrets_dir / "masha-password")
                seen: set[str] = set()
                until = time.monotonic() + 20
                while time.monotonic() < until:
                    manager.goto(f"{url}/orders")
                    seen = set(manager.eval_on_selector_all("#orders tbody tr[data-marketplace]",
                                                            "rows => rows.map(r => r.dataset.marketplace)"))
                    if seen >= set(TITLES.values()):
                        break
                    time.sleep(1)
                print(f"orders seen at {time.monotonic() - t0:.1f}s")
                manager.screenshot(path=str(ARTIFACTS / "orders.png"), full_page=True)
                pages["orders"] = manager.content()
                assert seen >= set(TITLES.values()), f"orders seen from {seen}"

                # a price document for one Wildberries card: editor -> preview diff -> apply
                manager.goto(f"{url}/prices?account=wb-main")
                offer = manager.get_attribute("#price-list tr[data-offer]", "data-offer")
                assert offer
                manager.select_option("#scope_0", "card")
                manager.fill("#key_0", offer)
                manager.fill("#price_0", "1777")
                manager.fill("#f-comment", "browser test")
                manager.click("#preview")
                expect(manager.locator("#diff tr.changed")).to_have_count(1)
                expect(manager.locator("#diff tr.changed td.new-price")).to_have_text(re.compile(r"^1\s777\s₽$"))  # money as Russians write it
                manager.screenshot(path=str(ARTIFACTS / "price-preview.png"), full_page=True)
                pages["preview"] = manager.content()
                if manager.locator("#f-confirm").count():
                    manager.check("#f-confirm")
                manager.click("#apply")
                expect(manager.locator("#result-summary")).to_contain_text("принято: 1")
                manager.screenshot(path=str(ARTIFACTS / "price-applied.png"), full_page=True)
                pages["applied"] = manager.content()
                state = _get_json(f"{sandboxes['wildberries']}/_sandbox/state")
                paid = {nm: p["price"] * (100 - p.get("discount", 0)) / 100 for nm, p in state["prices"].items()}
                assert any(abs(v - 1777) < 1 for v in paid.values()), "the sandbox shows the new price"

                # every page as the owner, kept for the token search
                owner = login("owner", owner_file)
                for path in ("/orders", "/products", "/prices", "/stocks", "/reports", "/sites", "/settings",
                             "/stocks?account=ozon-main", "/products?linked=no"):
                    resp = owner.goto(url + path)
                    assert resp is not None and resp.status == 200, path
                    pages[path] = owner.content()
                    name = path.strip("/").replace("?", "-").replace("=", "-") or "home"
                    owner.screenshot(path=str(ARTIFACTS / f"owner-{name}.png"), full_page=True)
                owner.goto(f"{url}/settings")  # a token typed into Settings is stored, and then shown nowhere
                owner.select_option("#f-account", "wb-main")
                owner.fill("#f-value", ENTERED)
                owner.click("#token-form button")
                expect(owner.locator(".msg.ok")).to_contain_text("сохранён в зашифрованном виде")
                pages["settings after entry"] = owner.content()
                owner.goto(f"{url}/sites")
                expect(owner.locator("#sites tr.online")).to_have_count(1)  # the demo's site is on line
                owner.goto(f"{url}/stocks")
                owner.click("#levels a >> nth=0")  # "why this number" of the first item on an account
                expect(owner.locator("#why")).to_contain_text("свой склад")
                pages["why"] = owner.content()
                owner.goto(f"{url}/orders")
                owner.click("#orders tbody a >> nth=0")  # one order's history
                expect(owner.locator("#history tr")).not_to_have_count(1)
                pages["order"] = owner.content()
                owner.goto(f"{url}/reports")
                owner.select_option("#f-account", "wb-main")
                owner.click("#report-form button")  # built in the background: a progress bar, then the report
                expect(owner.locator("#commission")).to_be_visible(timeout=90_000)
                print(f"report at {time.monotonic() - t0:.1f}s")
                with owner.expect_download() as dl:
                    owner.click("#dl-csv")
                assert dl.value.suggested_filename.endswith(".csv")
                with owner.expect_download() as dl_x:
                    owner.click("#dl-xlsx")
                from openpyxl import load_workbook

                xlsx = ARTIFACTS / dl_x.value.suggested_filename
                dl_x.value.save_as(xlsx)
                sheets = load_workbook(xlsx, read_only=True).sheetnames
                assert sheets == ["Отчет комиссионера", "Сверка"], sheets  # 1C's «Отчет комиссионера» layout
                pages["report"] = owner.content()

                packer = login("petya", secrets_dir / "petya-password")
                assert packer.locator("header nav a", has_text="Цены").count() == 0
                resp = packer.goto(f"{url}/prices")
                assert resp is not None and resp.status == 403
                packer.screenshot(path=str(ARTIFACTS / "packer-refused.png"))
                pages["packer"] = packer.content()
            finally:
                browser.close()
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the demo stops everything and prints its summary
        out, _ = proc.communicate(timeout=90)
        lines.append(out)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(30)
    screen = "".join(lines)
    summary = json.loads(screen.strip().splitlines()[-1])
    assert summary["orders_seen"] >= 4
    assert owner_file.read_text().strip() not in screen  # the password is in its file, not on screen

    tokens = set()
    for f in secrets_dir.glob("*-main.json"):
        tokens |= {str(v) for v in json.loads(f.read_text()).values() if len(str(v)) >= 8}
    assert tokens, "the demo's sandbox tokens were found to search for"
    tokens.add(ENTERED)
    haystacks = {"screen": screen, **{f"page {k}": v for k, v in pages.items()}}
    for log in (work / "logs").rglob("*"):
        if log.is_file():
            haystacks[str(log)] = log.read_text(errors="replace")
    for db_file in (work / "cloud").glob("cloud.db*"):  # encrypted at rest: not in the database files either
        assert ENTERED.encode() not in db_file.read_bytes(), db_file
    for where, text in haystacks.items():
        for token in tokens:
            assert token not in text, f"a sandbox token appears in {where}"
