"""`marketsync demo`: a whole seller's day on this machine, in plain words.

It starts its own Mosquitto on a free port (config in the demo folder, never the system broker), the
four marketplace sandboxes, 1C's catalog through the CommerceML import, the cloud and one warehouse
site with virtual devices (a printer that writes PNG files, a scanner the simulated packer uses), then
lets orders arrive on every marketplace and tells what happens and where to look. `--duration SECONDS`
ends it cleanly; the very last line is a one-line JSON summary. Ctrl-C stops every child process.
"""

from __future__ import annotations

import argparse
import http.cookiejar
import json
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cloud_sync import db
from marketplaces.sandbox.seed import demo_items
from marketsync.broker import Broker
from marketsync.demo_config import (
    ACCOUNT_NAMES,
    DEMO_ACCOUNTS,
    PUSHING,
    SITE_ID,
    write_cloud_config,
    write_demo_owner,
    write_edge_config,
)
from marketsync.onec_demo_client import OneCExchange
from marketsync.onec_demo_files import write_files
from marketsync.procs import Service, ServiceFailed, marketsync_argv, subprocess_run

MARKETPLACES = ["wildberries", "ozon", "yandex_market", "megamarket"]
# the lifecycle counts of the summary line (cloud_sync.orders.listing.summary)
LIFECYCLE = ("recovered", "delivered", "returned", "restocked", "stuck", "reduced")
FATE_TRANSIT_S, FATE_RETURN_S = 20.0, 20.0  # a parcel's days on the road, in the demo's marketplace seconds
TITLES = {"wildberries": "Wildberries", "ozon": "Ozon", "yandex_market": "Yandex.Market", "megamarket": "Megamarket"}


class Stop(Exception):
    """SIGTERM / SIGINT: end the demo cleanly."""


SECOND_SELLER = "vtoroy"  # the demo's second seller on the same installation
SECOND_NAME = "ООО «Второй продавец»"
# a day with no end given (`make demo`, until Ctrl-C): mid-day comes this many seconds after the first orders
OPEN_DAY_MIDDAY_S = 20.0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="marketsync demo", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=0, help="seconds of the day, counted from when orders start arriving, then stop (0: until Ctrl-C)")
    parser.add_argument("--workdir", default="var/demo", help="where the demo keeps its files (emptied first)")
    parser.add_argument("--items", type=int, default=40, help="items in the demo catalog")
    parser.add_argument("--order-every", type=float, default=3.0, help="seconds between new orders")
    parser.add_argument("--courier-every", type=float, default=20.0,
                        help="seconds between the couriers' visits (hand-over of packed parcels)")
    parser.add_argument("--time-scale", type=float, default=1.0, help="run the marketplaces' limits K times faster")
    parser.add_argument("--marketplaces", default=",".join(MARKETPLACES), help="comma-separated list")
    parser.add_argument("--no-second-seller", dest="second_seller", action="store_false",
                        help="skip adding a second seller to the installation (`marketsync tenant add`)")
    parser.add_argument("--packer", choices=("auto", "manual"), default="auto",
                        help="auto: a simulated packer packs every order; manual: nothing is packed unless someone"
                             " scans on the packers' page")
    args = parser.parse_args(argv)
    demo = Demo(args)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, demo.on_signal)
    try:
        demo.start()
        demo.run()
    except Stop:
        demo.say("stopping…")
    except ServiceFailed as exc:
        demo.errors.append(str(exc).splitlines()[0])
        demo.say(f"could not start: {exc}")
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        summary = demo.stop()
    print(json.dumps(summary), flush=True)
    return 0 if not demo.fatal else 1


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.workdir).resolve()
        self.services: list[Service] = []
        self.sandboxes: dict[str, dict[str, Any]] = {}
        self.broker: Broker | None = None
        self.cloud_url = ""
        self.api_token = ""
        self.push_tokens: dict[str, str] = {}
        self.onec_password_file: Path | None = None
        self.edge_url = ""
        self.register: dict[str, Any] | None = None  # the Честный знак sandbox, as `sandbox serve` announced it
        self.errors: list[str] = []
        self.fatal = False
        self.started = time.monotonic()
        self.orders_created = 0
        self._seen_events = 0
        self._stopping = False
        self.rng = random.Random(42)
        self.cloud_config: Path | None = None
        self.broker_observers: list[str] = []  # `marketsync soak`: its fault injector's own broker identity
        self.reconciled: dict[str, int] | None = None  # the evening's «Сверка» summary
        self.fbo: dict[str, int] = {}  # FBO lines, FBO alerts, cards with the marketplace's fees
        self.report_summary: dict[str, Any] = {}  # the evening's commission reports (commission_reports)
        self.cloud_port = 0  # 0: any free port (`marketsync soak` fixes it: the cloud is restarted)
        self._next_order = 0.0  # when the next buyer orders (time.monotonic)
        self._next_courier: float | None = None  # when the couriers come next (set by the first tick)
        # a second seller on the same installation (`marketsync tenant add`); off unless `marketsync demo` asks
        self.second_seller = bool(getattr(args, "second_seller", False))
        self._adding: subprocess.Popen[str] | None = None
        self.tenants = 1  # sellers served and kept apart (the summary's "tenants")

    # ------------------------------------------------------------------ plumbing

    def on_signal(self, signum: int, frame: Any) -> None:
        if not self._stopping:
            self._stopping = True
            raise Stop()

    def say(self, text: str) -> None:
        elapsed = time.monotonic() - self.started
        print(f"[{elapsed:6.1f}s] {text}", flush=True)

    def service(self, name: str, *args: str, timeout: float = 60.0, env: dict[str, str] | None = None) -> dict:
        svc = Service(name, marketsync_argv(*args), self.work / "logs" / f"{name}.log", env=env)
        self.services.append(svc)
        return svc.start(timeout=timeout)

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        if self.work.exists():
            shutil.rmtree(self.work)
        (self.work / "logs").mkdir(parents=True)
        self.say(f"demo folder: {self.work}  (logs in {self.work / 'logs'})")
        self.start_broker()
        self.start_sandboxes()
        self.start_marking_register()
        self.load_1c_catalog()
        self.start_cloud()
        if self.second_seller:  # runs while the site starts
            self._adding = subprocess.Popen(marketsync_argv("tenant", "add", SECOND_SELLER, "--name", SECOND_NAME,
                                                            "--admin", "owner", "--config", str(self.cloud_config)),
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.start_site()
        if self._adding is not None:
            self.add_second_seller()

    def start_broker(self) -> None:
        self.broker = Broker(workdir=self.work / "broker", secure=True, sites=[SITE_ID],
                             observers=self.broker_observers)
        self.broker.start()
        self.say(f"MQTT broker (Mosquitto, TLS, client id = user, ACL of directions, signed envelopes) on {self.broker.host}:{self.broker.port}")

    def title(self, account: str) -> str:
        """How the demo names an account: its marketplace, and the account when it is not the main one."""
        mp = DEMO_ACCOUNTS[account]
        return TITLES[mp] if ACCOUNT_NAMES.get(mp) == account else f"{TITLES[mp]} ({account})"

    def start_sandboxes(self) -> None:
        chosen = [m.strip() for m in self.args.marketplaces.split(",") if m.strip()]
        cabinets: dict[str, int] = {}  # a marketplace's second cabinet has ids and buyers of its own
        for account, mp in DEMO_ACCOUNTS.items():
            if mp not in chosen:
                continue
            cabinet = cabinets[mp] = cabinets.get(mp, -1) + 1
            try:
                info = self.service(f"sandbox-{account}", "sandbox", "serve", mp, "--port", "0",
                                    "--seed", str(self.args.items), "--cabinet", str(cabinet),
                                    "--time-scale", str(self.args.time_scale))
            except ServiceFailed as exc:
                self.errors.append(f"sandbox {account}: {str(exc).splitlines()[0]}")
                self.say(f"{self.title(account)} sandbox could not start — carrying on without it ({exc})")
                continue
            info["marketplace"] = mp
            self.sandboxes[account] = info
            self.say(f"{self.title(account)} sandbox: {info['url']}  ({self.args.items} cards seeded)")
            if mp in ("wildberries", "ozon"):  # orders of marked goods need their Честный знак codes sent
                try:
                    http_json("POST", info["url"].rstrip("/") + "/_sandbox/x/marking", {})
                except OSError as exc:
                    self.errors.append(f"{account} sandbox: marking not switched on: {exc}")
            try:  # the day is short: parcels reach their buyers (or come back) within it
                http_json("POST", info["url"].rstrip("/") + "/_sandbox/fates",
                          {"transit_s": FATE_TRANSIT_S, "return_s": FATE_RETURN_S})
            except OSError as exc:
                self.errors.append(f"{account} sandbox: parcel fates not set: {exc}")
        if not self.sandboxes:
            self.fatal = True
            raise ServiceFailed("no marketplace sandbox started")

    def start_marking_register(self) -> None:
        """The Честный знак sandbox the site checks marking codes against at packing (without it the site
        packs on structure checks alone)."""
        try:
            self.register = self.service("sandbox-chestny_znak", "sandbox", "serve", "chestny_znak", "--port", "0",
                                         "--seed", str(self.args.items))
        except ServiceFailed as exc:
            self.errors.append(f"sandbox chestny_znak: {str(exc).splitlines()[0]}")
            self.say(f"Честный знак sandbox could not start — codes are checked for structure only ({exc})")
            return
        self.say(f"Честный знак sandbox: {self.register['url']} — the site checks every marking code there "
                 "before it ships (status, owner INN, GTIN)")

    def load_1c_catalog(self) -> None:
        files = write_files(demo_items(self.args.items), self.work / "1c")
        self.cloud_db = self.work / "cloud" / "cloud.db"
        self.cloud_db.parent.mkdir(parents=True, exist_ok=True)
        out = subprocess_run(marketsync_argv("onec", "import", *map(str, files), "--db", str(self.cloud_db)))
        if out.returncode != 0:
            self.fatal = True
            raise ServiceFailed(f"1C catalog import failed: {out.stderr.strip() or out.stdout.strip()}")
        counts = json.loads(out.stdout.strip().splitlines()[-1])
        self.say(
            f"1C: imported {counts['items']} items, {counts['barcodes']} barcodes, "
            f"{counts['price_types']} price types and the balances of {counts['warehouses']} warehouse(s) "
            f"from CommerceML ({self.work / '1c'})"
        )

    def start_cloud(self) -> None:
        assert self.broker is not None
        folder = self.work / "cloud"
        cloud = write_cloud_config(folder, db_path=self.cloud_db, link=self.broker.link_settings(),
                                   time_scale=self.args.time_scale, sandboxes=self.sandboxes,
                                   port=self.cloud_port, tenants_dir="tenants" if self.second_seller else "")
        config = cloud.path
        self.cloud_config = config
        self.onec_password_file, self.push_tokens = cloud.onec_password_file, cloud.push_tokens
        password_file, self.api_token = write_demo_owner(config, folder / "secrets")
        info = self.service("cloud", "cloud", "serve", "--config", str(config), timeout=90)
        self.cloud_url = info["url"]
        self.say(f"cloud: {self.cloud_url}  (manager UI and JSON API; config {config})")
        self.say(f"manager UI: log in at {self.cloud_url}/login as 'owner' with the password in {password_file}")
        self.register_pushes()

    def register_pushes(self) -> None:
        """Yandex.Market, Megamarket and Ozon push order events: register the cloud's push URL in their
        sandboxes (each notification is sent twice, as the real ones may be: the cloud keeps one; Ozon's
        sandbox checks the URL with a TYPE_PING first, as its cabinet does). Polling stays on as the
        fallback; an order is never created twice."""
        for account, info in self.sandboxes.items():
            mp = info["marketplace"]
            if mp not in PUSHING or account not in self.push_tokens:
                continue
            url = f"{self.cloud_url}/push/{mp}/{account}/{self.push_tokens[account]}"
            try:
                http_json("POST", info["url"].rstrip("/") + "/_sandbox/x/push",
                          {"url": url, "duplicates": 1})
            except OSError as exc:
                self.errors.append(f"push registration {account}: {exc}")
                continue
            self.say(f"{self.title(account)} pushes its order events to {self.cloud_url}/push/{mp}/{account}/… "
                     "(polling stays on as the fallback)")

    def start_site(self) -> None:
        assert self.broker is not None
        config, labels = write_edge_config(self.work / SITE_ID, self.broker.link_settings(SITE_ID), self.register,
                                           auto_pack=getattr(self.args, "packer", "auto") == "auto")
        info = self.service("edge-" + SITE_ID, "edge", "serve", "--config", str(config), timeout=90)
        self.edge_url = info["url"]
        self.labels_dir = labels
        self.say(f"warehouse site {SITE_ID}: packers' page {self.edge_url}")
        self.say(f"printed labels appear as PNG files in {labels}")

    def add_second_seller(self) -> None:
        """`marketsync tenant add` made a second seller (started beside the site); the demo installs its
        broker lines as an operator would (appended to the broker's passwd and acl, Mosquitto told to
        reload them): its cloud link then runs in its own tree ms/t/<id>/v1."""
        assert self._adding is not None and self.broker is not None and self.broker.proc is not None
        out, err = self._adding.communicate(timeout=60)
        self._adding = None
        found = re.search(r"(?:password|пароль): (\S+)", out)
        if found is None:
            self.errors.append(f"tenant add: {(err.strip() or out.strip())[:300]}")
            return
        self._second_password = found.group(1)
        broker_dir = self.work / "cloud" / "tenants" / SECOND_SELLER / "broker"
        for name in ("passwd", "acl"):
            with open(self.broker.workdir / name, "a", encoding="utf-8") as fh:
                fh.write("\n" + (broker_dir / name).read_text("utf-8"))
        self.broker.proc.send_signal(signal.SIGHUP)  # Mosquitto reads its passwd and acl again
        self.say(f"a second seller «{SECOND_NAME}» on the same installation: its pages at "
                 f"{self.cloud_url}/t/{SECOND_SELLER}/ (its owner's password: printed once by `marketsync tenant add`)")

    def show_second_seller(self) -> None:
        """The second seller's login page answers under its prefix, its owner logs in there, and none of the
        first seller's orders is visible to it (nor does the first seller's API token open anything there)."""
        password = getattr(self, "_second_password", "")
        if not password:
            return
        root = f"{self.cloud_url}/t/{SECOND_SELLER}"
        jar = http.cookiejar.CookieJar()
        web = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        try:
            web.open(f"{root}/login", timeout=10).read()
            token = next(c.value for c in jar if c.name == "ms_login_csrf")
            form = urllib.parse.urlencode({"name": "owner", "password": password, "csrf_token": token}).encode()
            web.open(f"{root}/login", data=form, timeout=10).read()
            theirs = json.loads(web.open(f"{root}/api/orders", timeout=10).read())
            mine = http_json("GET", f"{self.cloud_url}/api/orders", token=self.api_token)
            try:
                http_json("GET", f"{root}/api/orders", token=self.api_token)
                foreign = "the first seller's token was let in"
            except OSError as exc:  # http_json says the status in its message
                foreign = "" if str(exc).endswith("HTTP 401") else f"the first seller's token: {exc}"
        except (OSError, StopIteration, ValueError) as exc:
            self.errors.append(f"second seller: {exc}")
            return
        if theirs or foreign:
            self.errors.append(f"second seller sees the first one's data: {len(theirs)} orders; {foreign}".strip())
            return
        self.tenants = 2
        self.say(f"the second seller's owner logged in at {root}/login: 0 orders there, {len(mine)} on the first "
                 "seller's list; the first seller's API token is refused there (401)")

    # ------------------------------------------------------------------ the day

    def run(self) -> None:
        """The day: orders as they come, ticking; mid-day (half the day, or `OPEN_DAY_MIDDAY_S` into a day with
        no end given, so that `make demo` shows it too) 1C sends its balances and Ozon moves a deadline."""
        duration = self.args.duration
        balances_sent = False
        self.say("orders start arriving on every marketplace; the site packs them as they come")
        day_started = time.monotonic()  # the day's length counts from here: a slow start shortens no day
        while True:
            now = time.monotonic()
            if duration and now - day_started >= duration:
                break
            self.tick(new_orders=not duration or now - day_started < duration - 6)
            if not balances_sent and now - day_started >= (duration / 2 if duration else OPEN_DAY_MIDDAY_S):
                self.onec_sends_balances()
                self.marketplace_moves_a_deadline()
                balances_sent = True
            time.sleep(0.5)
        self.say("the day is over; waiting for the last parcels…")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            self.report_events()
            time.sleep(0.5)
        self.onec_takes_orders()
        self.reconcile()
        self.marketplace_stock_and_fees()
        self.commission_reports()

    def onec_sends_balances(self) -> None:
        """Mid-shift, 1C sends its balances as its books have them (formed 30 s ago, knowing nothing of
        today's orders): the units reserved and packed since stay off — they are "in flight" until 1C books
        the shipments — so no marketplace is shown a shipped unit again."""
        formed = datetime.now(ZoneInfo("Europe/Moscow")) - timedelta(seconds=30)
        files = write_files(demo_items(self.args.items), self.work / "1c-midday",
                            formed_at=formed.strftime("%Y-%m-%dT%H:%M:%S"))
        password = Path(self.onec_password_file).read_text("utf-8").strip()
        try:
            reply = OneCExchange(f"{self.cloud_url}/1c/exchange", "1c", password).send_catalog_file(
                "offers.xml", files[1].read_bytes())
        except OSError as exc:
            self.errors.append(f"1C balances: {exc}")
            self.say(f"1C could not send its balances: {exc}")
            return
        self.say(f"1C sent its balances formed at {formed:%H:%M:%S} (Moscow time), as its books have them: "
                 f"{reply.splitlines()[0]}; units packed since then stay off every marketplace (in flight until "
                 "1C books the shipments)")

    def marketplace_moves_a_deadline(self) -> None:
        """A buyer orders on Ozon, and Ozon then moves that posting's shipping date by a day (its sandbox's
        `x/cutoff`, as Ozon does when a cutoff changes): the cloud learns it by push or by its next poll,
        moves the order's deadline and tells the site's pick task (`task_deadline`), which re-sorts by it;
        `deadlines_moved` in the summary counts the orders so moved."""
        account = ACCOUNT_NAMES.get("ozon")
        if account not in self.sandboxes:
            return
        sandbox = self.sandboxes[account]["url"].rstrip("/")
        try:
            [number] = http_json("POST", sandbox + "/_sandbox/orders", {"count": 1})["orders"]
            self.orders_created += 1
            key = urllib.parse.quote(f"{account}:{number}", safe="")
            order = self._wait_for_order(key, lambda o: bool(o.get("ship_by")))
            if order is None:
                self.say(f"{self.title(account)} order {number} did not reach the cloud in time: no date moved")
                return
            was = datetime.fromisoformat(order["ship_by"].replace("Z", "+00:00"))
            later = (was + timedelta(days=1)).astimezone(UTC)
            http_json("POST", sandbox + "/_sandbox/x/cutoff",
                      {"posting_number": number, "new_cutoff_date": later.strftime("%Y-%m-%dT%H:%M:%SZ")})
            moved = self._wait_for_order(key, lambda o: datetime.fromisoformat(
                o["ship_by"].replace("Z", "+00:00")) == later)
        except (OSError, KeyError, ValueError) as exc:
            self.errors.append(f"{account} moved date: {exc}")
            return
        at_site = moved is not None and self._site_deadline(f"{account}:{number}", later.strftime("%Y-%m-%dT%H:%M:%SZ"))
        moscow = ZoneInfo("Europe/Moscow")
        self.say(f"{self.title(account)} moved the shipping date of order {number} from {was.astimezone(moscow):%d.%m %H:%M}"
                 f" to {later.astimezone(moscow):%d.%m %H:%M} (Moscow time): "
                 + ("the cloud has not taken it yet" if moved is None else "the cloud took it and the site's pick task"
                    " shows it" if at_site else "the cloud took it (no pick task at the site shows it)"))

    def _site_deadline(self, order_id: str, deadline: str, timeout: float = 10.0) -> bool:
        """Whether the site's pick task of `order_id` comes to show `deadline` within `timeout` (its file,
        read-only)."""
        path = self.work / SITE_ID / "site.sqlite"
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            try:
                conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
                try:
                    row = conn.execute("SELECT deadline FROM tasks WHERE order_id=? ORDER BY created_at DESC",
                                       (order_id,)).fetchone()
                finally:
                    conn.close()
            except sqlite3.Error:
                row = None
            if row is not None and row[0] == deadline:
                return True
            time.sleep(0.3)
        return False

    def _wait_for_order(self, key: str, ready: Any, timeout: float = 20.0) -> dict[str, Any] | None:
        """The cloud's order `key` (`/api/orders/<key>`) once `ready(order)` holds, or None after `timeout`."""
        until = time.monotonic() + timeout
        while time.monotonic() < until:
            try:
                order = http_json("GET", f"{self.cloud_url}/api/orders/{key}", token=self.api_token)
                if ready(order):
                    return order
            except OSError as exc:
                if "HTTP 404" not in str(exc):  # not in the cloud yet
                    raise
            time.sleep(0.3)
        return None

    def deadlines_moved(self) -> int:
        """Orders whose assembly deadline a marketplace moved during the day (their history's «срок сборки
        перенесён»), read from the cloud's database, read-only."""
        try:
            conn = db.connect_readonly(self.cloud_db)
            try:
                return int(conn.execute("SELECT COUNT(DISTINCT order_id) FROM order_events WHERE kind='ship_by'"
                                        ).fetchone()[0])
            finally:
                conn.close()
        except (OSError, sqlite3.Error) as exc:
            self.say(f"could not read the cloud's order history: {exc}")
            return 0

    def reconcile(self) -> None:
        """The evening's «Сверка»: 1C, the ledger with its moves in flight, what each marketplace shows."""
        out = subprocess_run(marketsync_argv("reconcile", "--config", str(self.cloud_config)))
        lines = out.stdout.strip().splitlines()
        try:
            self.reconciled = json.loads(lines[-1])
        except (IndexError, ValueError):
            self.errors.append(f"reconcile: {(out.stderr or out.stdout).strip()[:200]}")
            return
        for line in lines[:-1][:8]:
            self.say(f"сверка: {line}")
        self.say(f"сверка остатков: {self.reconciled['differences']} расхождений, объяснено "
                 f"{self.reconciled['explained']}, без объяснения {self.reconciled['unexplained']}")

    def marketplace_stock_and_fees(self) -> None:
        """What the cloud read of the marketplaces' own warehouses (FBO) and fees: the FBO lines it holds,
        the critical-stock alerts raised on them, and the cards whose unit economics use the marketplace's
        own fees (the prices page shows them). Read from the cloud's database, read-only."""
        try:
            conn = db.connect_readonly(self.cloud_db)  # the file mode=ro, or the cloud's PostgreSQL store
            try:
                self.fbo = {
                    "fbo_items": conn.execute("SELECT COUNT(*) FROM fbo_stock").fetchone()[0],
                    "fbo_alerts": conn.execute("SELECT COUNT(*) FROM alert_outbox WHERE kind='fbo_stock'").fetchone()[0],
                    "cards_with_fees": conn.execute("SELECT COUNT(*) FROM sale_fees").fetchone()[0]}
                warehouses = conn.execute("SELECT account, COUNT(*) FROM fbo_warehouses GROUP BY account").fetchall()
                first = conn.execute("SELECT text FROM alert_outbox WHERE kind='fbo_stock' ORDER BY id LIMIT 1").fetchone()
            finally:
                conn.close()
        except (OSError, sqlite3.Error) as exc:
            self.errors.append(f"fbo and fees: {exc}")
            return
        self.say("остатки на складах площадок (FBO): " + (", ".join(f"{a} — {n} скл." for a, n in warehouses) or "нет")
                 + f"; {self.fbo['fbo_items']} строк, {self.fbo['fbo_alerts']} предупреждений о малом остатке")
        if first:
            self.say(f"предупреждение: {first[0]}")
        self.say(f"юнит-экономика: комиссии и логистика площадок прочитаны для {self.fbo['cards_with_fees']} карточек"
                 " (страница «Цены», столбец «Прибыль после удержаний»)")
    def commission_reports(self) -> None:
        """The evening's commission agent reports of Wildberries and Ozon, as the manager asks for them on
        the Reports page: built in the background by the cloud, followed to the end, «К перечислению»
        (every deduction taken) reconciled with the marketplace's own total."""
        self.report_summary = {"reports_built": 0, "report_reconciled": 0, "report_build_s": 0.0}
        today = datetime.now(ZoneInfo("Europe/Moscow")).date()
        for account in ("wb-main", "ozon-main"):
            if account not in self.sandboxes:
                continue
            try:
                asked = http_json("POST", f"{self.cloud_url}/api/reports/builds", token=self.api_token,
                                  body={"account": account, "from": (today - timedelta(days=1)).isoformat(),
                                        "to": (today + timedelta(days=1)).isoformat()})
                deadline = time.monotonic() + 150
                build = asked
                while time.monotonic() < deadline:
                    build = http_json("GET", f"{self.cloud_url}/api/reports/builds/{asked['id']}", token=self.api_token)
                    if build["state"] in ("done", "failed"):
                        break
                    time.sleep(0.5)
            except OSError as exc:
                self.errors.append(f"commission report of {account}: {exc}")
                continue
            if build.get("state") != "done":
                self.errors.append(f"commission report of {account}: {build.get('state')} {build.get('error', '')}")
                self.say(f"commission report of {account} not built: {build.get('error') or build.get('state')}")
                continue
            totals, theirs = build["totals"], build["native_totals"]
            self.report_summary["reports_built"] += 1
            self.report_summary["report_reconciled"] += 1 if build["reconciled"] else 0
            self.report_summary["report_build_s"] = max(self.report_summary["report_build_s"], build["seconds"] or 0)
            self.say(f"отчёт комиссионера {account}: выручка {totals.get('revenue')}, логистика {totals.get('logistics')},"
                     f" хранение {totals.get('storage')}, штрафы {totals.get('penalty')}, К перечислению "
                     f"{totals.get('to_pay')} (площадка: {theirs.get('to_pay', '—')}); сверка: "
                     f"{'сходится' if build['reconciled'] else 'РАСХОДИТСЯ' if build['reconciled'] is False else 'нечего сравнить'}"
                     f"; сформирован в фоне за {build['seconds']} с")

    def tick(self, new_orders: bool = True) -> None:
        """One look at the day (every half second): a new order when one is due, the couriers when
        they are due, the cloud's news told, the services checked. `marketsync soak` runs the day
        with it too."""
        now = time.monotonic()
        if self._next_courier is None:
            self._next_courier = now + self.args.courier_every
        if new_orders and now >= self._next_order:
            self.new_order()
            self._next_order = now + self.args.order_every
        if now >= self._next_courier:
            self.courier_arrives()
            self._next_courier = now + self.args.courier_every
        self.report_events()
        self.check_services()

    def onec_takes_orders(self) -> None:
        """What 1C does in the evening over the CommerceML exchange: log in, ask for the orders
        (`type=sale&mode=query`), confirm them (`mode=success`) so they are not sent again."""
        password = Path(self.onec_password_file).read_text("utf-8").strip()
        try:
            client = OneCExchange(f"{self.cloud_url}/1c/exchange", "1c", password)
            documents, again = client.take_orders()
        except OSError as exc:
            self.errors.append(f"1C exchange: {exc}")
            self.say(f"1C could not take the orders: {exc}")
            return
        self.say(f"1C took {documents} order(s) as CommerceML «Заказ товара» documents over "
                 f"{self.cloud_url}/1c/exchange (its «Заказ клиента» are made from them); "
                 f"after 1C confirmed them, a second query returned {again}")

    def new_order(self) -> None:
        account = self.rng.choice(sorted(self.sandboxes))
        url = self.sandboxes[account]["url"].rstrip("/") + "/_sandbox/orders"
        try:
            answer = http_json("POST", url, {"count": 1})
        except OSError as exc:
            self.errors.append(f"{account} sandbox: {exc}")
            return
        for native_id in answer.get("orders", []):
            self.orders_created += 1
            self.say(f"a buyer ordered on {self.title(account)}: order {native_id}")

    def courier_arrives(self) -> None:
        """The marketplaces' couriers come for the packed parcels: a hand-over per account, which the
        site's packer scans parcel by parcel and closes (WB supplies are delivered, the rest shipped)."""
        for account in sorted(self.sandboxes):
            try:
                handovers = http_json("POST", f"{self.cloud_url}/api/handovers", {"account": account},
                                      token=self.api_token)
            except OSError as exc:
                self.errors.append(f"handover {account}: {exc}")
                continue
            for h in handovers:
                self.say(f"the {self.title(account)} courier came to {h['site']}: {len(h['orders'])} parcel(s) to hand over"
                         + (f" in supply {h['supply_id']}" if h.get("supply_id") else ""))

    def report_events(self) -> None:
        if not self.cloud_url:
            return
        try:
            events = http_json("GET", f"{self.cloud_url}/api/events?after={self._seen_events}",
                               token=self.api_token)
        except OSError:
            return
        pushes: list[str] = []  # consecutive stock pushes are told in one line
        for event in events.get("events", []):
            self._seen_events = max(self._seen_events, int(event["id"]))
            if event.get("kind") == "stock_pushed":
                pushes.append(event["text"].removeprefix("stock pushed: "))
                continue
            if pushes:
                self.say("stock pushed: " + "; ".join(pushes))
                pushes = []
            self.say(event["text"])
        if pushes:
            self.say("stock pushed: " + "; ".join(pushes))

    def check_services(self) -> None:
        for svc in self.services:
            if not svc.alive and svc.name not in {e.split(":")[0] for e in self.errors}:
                self.errors.append(f"{svc.name}: exited with {svc.proc.returncode if svc.proc else '?'}")
                self.say(f"{svc.name} stopped unexpectedly; see {svc.log_path}")

    # ------------------------------------------------------------------ stop

    def keep_sandbox_states(self) -> None:
        """Each sandbox's final state (`GET /_sandbox/state`) in <workdir>/sandboxes/, to judge the day by."""
        folder = self.work / "sandboxes"
        for account, info in self.sandboxes.items():
            try:
                state = http_json("GET", info["url"].rstrip("/") + "/_sandbox/state", timeout=30)
            except OSError:
                continue
            folder.mkdir(parents=True, exist_ok=True)
            (folder / _state_file(account, info["marketplace"])).write_text(
                json.dumps(state, ensure_ascii=False, indent=1, default=str), "utf-8")

    def stop(self) -> dict[str, Any]:
        if self.second_seller and self.cloud_url:
            self.show_second_seller()  # while every part still runs
        summary = {"orders_seen": 0, "orders_packed": 0, "labels_printed": 0, "stock_pushes": 0,
                   "errors": len(self.errors), **dict.fromkeys(LIFECYCLE, 0)}
        if self.reconciled is not None:
            summary["stock_unexplained"] = int(self.reconciled.get("unexplained", 0))
        summary.update(self.fbo)
        summary.update(self.report_summary)
        if self.cloud_url:
            try:
                cloud = http_json("GET", f"{self.cloud_url}/api/summary", token=self.api_token)
                for key in ("orders_seen", "orders_packed", "labels_printed", "stock_pushes", *LIFECYCLE):
                    summary[key] = int(cloud.get(key, 0))
                summary["errors"] += int(cloud.get("errors", 0))
            except OSError as exc:
                summary["errors"] += 1
                self.say(f"could not read the cloud's summary: {exc}")
            summary["orders_oversold"] = self.oversold()
            summary["orders_pushed"] = self.orders_pushed()
            summary["deadlines_moved"] = self.deadlines_moved()
        summary["picked_by_bin"] = self.picked_by_bin()
        if self.second_seller:
            summary["tenants"] = self.tenants
        self.keep_sandbox_states()
        for svc in reversed(self.services):
            svc.stop()
        if self.broker is not None:
            self.broker.stop()
        self.say(f"stopped everything; files kept in {self.work}")
        return summary


    def orders_pushed(self) -> int:
        """Orders a marketplace's push brought in before any poll saw them (the push event that created
        the order), told per account; read from the cloud's database, read-only."""
        try:
            conn = db.connect_readonly(self.cloud_db)  # the file mode=ro, or the cloud's PostgreSQL store
            try:
                rows = conn.execute("SELECT account, COUNT(*) FROM push_events WHERE kind='created' AND outcome='new'"
                                    " GROUP BY account ORDER BY account").fetchall()
                seen = dict(conn.execute("SELECT account, COUNT(*) FROM orders GROUP BY account").fetchall())
            finally:
                conn.close()
        except (OSError, sqlite3.Error) as exc:
            self.say(f"could not read the cloud's push events: {exc}")
            return 0
        pushed = {str(a): int(n) for a, n in rows}
        told = [f"{self.title(a)} {pushed.get(a, 0)} of {seen.get(a, 0)}" for a, info in sorted(self.sandboxes.items())
                if info["marketplace"] in PUSHING]
        if told:
            self.say("orders that came in by push (before any poll): " + ", ".join(told)
                     + "; polling took the rest")
        return sum(pushed.values())

    def picked_by_bin(self) -> int:
        """Orders the site's packer picked in a combined pick list walked by bin («Общая сборка»), as the
        simulated packer noted them in the site's file (read-only)."""
        db = self.work / SITE_ID / "site.sqlite"
        if not db.exists():
            return 0
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
            try:
                row = conn.execute("SELECT value FROM site_meta WHERE key = 'demo_picked_by_bin'").fetchone()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            self.say(f"could not read the site's file: {exc}")
            return 0
        return int(row[0]) if row else 0

    def oversold(self) -> int:
        """Orders the stock could not cover (stage "short"): a marketplace sold what was not listed.
        The sandboxes place orders only within the published stock, so this stays 0."""
        try:
            orders = http_json("GET", f"{self.cloud_url}/api/orders?limit=5000", token=self.api_token)
        except OSError as exc:
            self.say(f"could not read the cloud's orders: {exc}")
            return -1
        short = [o for o in orders if o.get("stage") == "short"]
        for o in short:
            self.say(f"oversold: {o.get('key')} on {o.get('marketplace')}")
        return len(short)


def _state_file(account: str, marketplace: str) -> str:
    """`<marketplace>.json` for the marketplace's main account, `<marketplace>-<account>.json` for another."""
    return f"{marketplace}.json" if ACCOUNT_NAMES.get(marketplace) == account else f"{marketplace}-{account}.json"


def http_json(method: str, url: str, body: Any = None, timeout: float = 10.0, token: str = "") -> Any:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"  # the cloud's API token (marketsync cloud token)
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        raise OSError(f"{method} {url}: HTTP {exc.code}") from None
    return json.loads(raw) if raw else {}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
