"""Orders followed after the hand-over to their final state, and returns back into stock — the cloud with
each real sandbox over HTTP and its real adapter (every exchange checked against the spec both ways).

A handed-over order is read back with a back-off until final: delivered; a cancellation after the
hand-over releases no stock and becomes an expected return at the site that shipped it (a
`return_expected` message in the link's outbox), as does a return found in the marketplace's returns
list. The site's `return_received` puts good units back on hand (published again) and defective ones
into the defect warehouse (never published); the order is `returned`, in its history, in 1C's orders
exchange (status and a «Возврат товара» document) and in the commission report's returned units.
"""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import httpx
import pytest

from cloud_sync import db
from cloud_sync.catalog import cards as catalog
from cloud_sync.config import parse_config
from cloud_sync.db import transaction
from cloud_sync.money import reports
from cloud_sync.orders import after_handover, intake, mp_actions, site_messages
from cloud_sync.schema import open_db
from cloud_sync.stock import push as stock_push
from cloud_sync.stock import warehouses
from marketplaces import open_account
from marketplaces.base import RealizationReport
from marketplaces.contract import ContractChecker
from marketplaces.http import reset_limiters
from marketplaces.sandbox.megamarket import register_schemas
from marketplaces.sandbox.registry import start_sandbox
from marketplaces.sandbox.yandex_market_spec import register
from marketsync.demo_catalog import seed_demo
from sitelink import Reject
from sitelink.envelope import Envelope
from sitelink.messages import check_body

register()
register_schemas()

FAR = 10 ** 7  # seconds ahead: every follow-up is due


class _Registry:
    def __init__(self):
        self.handlers = {}

    def on(self, msg_type, handler):
        self.handlers[msg_type] = handler


class Shop:
    """A cloud database, one account on a real sandbox (time_scale 1000), the real adapter, one site."""

    def __init__(self, tmp_path, market: str):
        self.market = market
        self.sb = start_sandbox(market, seed=8, time_scale=1000.0)
        options = dict(self.sb.app.account_options())
        if market == "ozon":
            options["client_id"] = self.sb.credentials["Client-Id"]
        self.cfg = parse_config({"accounts": {"a": {
            "marketplace": market, "base_url": self.sb.url, "credentials": dict(self.sb.credentials),
            "time_scale": 1000.0, "options": options}}, "sites": {"site-1": {"warehouses": ["main"]}}}, env={})
        self.conn = open_db(str(tmp_path / "cloud.sqlite"))
        seed_demo(self.conn, self.cfg, 8)
        self.adapter = open_account(self.cfg.accounts["a"].account)
        with transaction(self.conn):
            catalog.import_cards(self.conn, "a", market, list(self.adapter.list_cards()))
            catalog.auto_link(self.conn)
        reg = _Registry()
        site_messages.register_site_handlers(reg, self.cfg)
        after_handover.register_return_handlers(reg, self.cfg)
        self.handlers = reg.handlers
        self.seq = 0

    def site(self, msg_type: str, body: dict) -> None:
        self.seq += 1
        check_body(msg_type, body)
        with transaction(self.conn):
            self.handlers[msg_type](self.conn, Envelope(id=f"01T{self.seq:08d}", site="site-1", seq=self.seq,
                                                        type=msg_type, ts="2026-12-01T00:00:00Z", body=body))

    def run(self, rounds: int = 3) -> None:
        for _ in range(rounds):
            self.conn.execute("UPDATE order_actions SET next_try=0 WHERE state='pending'")
            mp_actions.run_actions(self.conn, self.cfg, {"a": self.adapter})

    def handed_over(self, n: int) -> list[str]:
        """n buyers' orders taken in, confirmed, packed at the site and handed over; shipped on the marketplace."""
        made = [str(x) for x in httpx.post(self.sb.url + "/_sandbox/orders", json={"count": n}, timeout=10)
                .json()["orders"]]
        intake.poll(self.conn, self.cfg, self.adapter)
        self.run()
        for native in made:
            key = f"a:{native}"
            units = self.conn.execute("SELECT SUM(l.units), MAX(l.marking_required OR i.marked) FROM order_lines l"
                                      " JOIN orders o ON o.id=l.order_id LEFT JOIN items i ON i.id=l.item_id"
                                      " WHERE o.key=?", (key,)).fetchone()
            codes = [f"0104607000000014215X{native}{k}" for k in range(units[0])] if units[1] else []
            self.site("task_progress", {"task_id": f"pick-{key}", "order_id": key, "state": "packed",
                                        "marking_codes": codes})
        self.run()
        for native in made:
            key = f"a:{native}"
            self.site("task_progress", {"task_id": f"pick-{key}", "order_id": key, "state": "handed_over"})
        self.run()
        assert self.stages(made) == ["handed_over"] * n
        assert all(r[0] == "done" for r in self.conn.execute("SELECT state FROM order_actions WHERE action='ship'"))
        return made

    def fates(self, forced: dict[str, str]) -> None:
        httpx.post(self.sb.url + "/_sandbox/fates", json={"orders": forced, "now": True},
                   timeout=10).raise_for_status()

    def follow(self, ahead: float = FAR) -> after_handover.FollowResult:
        return after_handover.follow(self.conn, self.cfg, self.adapter, now=time.time() + ahead)

    def stages(self, natives: list[str]) -> list[str]:
        return [self.conn.execute("SELECT stage FROM orders WHERE key=?", (f"a:{n}",)).fetchone()[0] for n in natives]

    def order(self, native: str):
        return self.conn.execute("SELECT * FROM orders WHERE key=?", (f"a:{native}",)).fetchone()

    def outbox(self, msg_type: str) -> list[dict]:
        return [json.loads(p)["body"] for (p,) in self.conn.execute(
            "SELECT payload FROM link_outbox WHERE type=? ORDER BY seq", (msg_type,))]

    def levels(self) -> dict[tuple[str, str], tuple[int, int]]:
        return {(r[0], r[1]): (r[2], r[3]) for r in self.conn.execute(
            "SELECT item_id, warehouse, on_hand, reserved FROM stock_levels")}

    def close(self) -> None:
        self.conn.close()
        getattr(self.adapter, "close", lambda: None)()
        self.sb.stop()
        assert not self.sb.app.spec_violations, self.sb.app.spec_violations


@pytest.fixture
def contract():
    reset_limiters()
    checker = ContractChecker().install()
    yield checker
    checker.uninstall()
    reset_limiters()
    checker.assert_clean()


@pytest.fixture(params=["wildberries", "ozon", "yandex_market", "megamarket"])
def shop(request, tmp_path, contract):
    s = Shop(tmp_path, request.param)
    yield s
    s.close()


# ---------------------------------------------------------------- following to the final state


def test_handed_over_orders_are_followed_to_delivered_or_back_to_the_site(shop):
    a, b, c, d = shop.handed_over(4)
    assert shop.follow(ahead=-60).read == 0  # the first read waits FIRST_CHECK_S (marketplace time) after it
    ledger_before = shop.levels()
    shop.fates({a: "delivered", b: "cancelled", c: "not_accepted", d: "returned"})
    res = shop.follow()
    # Ozon's posting is delivered first, its buyer's return is in the returns list
    assert res.read == 4 and res.delivered == (2 if shop.market == "ozon" else 1) and not res.errors
    stages = dict(zip((a, b, c, d), shop.stages([a, b, c, d]), strict=True))
    assert stages[a] == "delivered" and shop.order(a)["status"] == "delivered"
    assert stages[b] == stages[c] == "return_expected"  # on its way back: not cancelled, nothing released
    assert shop.order(b)["status"] == "cancelled"
    assert shop.levels() == ledger_before, "a cancellation after the hand-over moved stock"
    if shop.market == "ozon":  # the posting stays delivered: the buyer's return is in the returns list
        assert stages[d] == "return_expected"
        kinds = {r[0]: r[1] for r in shop.conn.execute("SELECT o.native_id, r.kind FROM order_returns r JOIN orders o"
                                                       " ON o.id=r.order_id")}
        assert kinds[d] == "return"
    assert stages[d] == "return_expected"
    expected = {m["order_id"]: m for m in shop.outbox("return_expected")}
    assert set(expected) == {f"a:{n}" for n in (b, c, d)}
    for m in expected.values():
        check_body("return_expected", m)
        assert m["warehouse"] == "main" and m["lines"] and all(ln["quantity"] >= 1 for ln in m["lines"])
        assert shop.order(m["native_id"])["number"] in m["parcel_codes"]
    # the returns list (Ozon, YM) names returns already expected by their status: no second one
    shop.follow()
    assert len(shop.outbox("return_expected")) == 3
    assert shop.conn.execute("SELECT COUNT(*) FROM order_returns").fetchone()[0] == 3
    # a delivered order is no longer read; returns are
    assert not shop.conn.execute("SELECT 1 FROM order_follow").fetchone()
    events = [r[0] for r in shop.conn.execute("SELECT e.kind FROM order_events e JOIN orders o ON o.id=e.order_id"
                                              " WHERE o.key=? ORDER BY e.id", (f"a:{b}",))]
    assert events.count("return_expected") == 1 and "cancelled" not in events


@pytest.mark.parametrize("shop", ["ozon"], indirect=True)
def test_reads_back_off_while_nothing_changes(shop):
    (a,) = shop.handed_over(1)
    scale = 1000.0
    t0 = time.time()
    for k in range(6):  # the first read finds the parcel taken (delivering); nothing new after that
        now = t0 + 10 ** 6 * (k + 1)
        assert after_handover.follow(shop.conn, shop.cfg, shop.adapter, now=now).read == 1
        nxt, quiet = shop.conn.execute("SELECT next_check, quiet FROM order_follow").fetchone()
        assert quiet == k and nxt == pytest.approx(now + after_handover.backoff_s(k, scale))
    waits = [after_handover.backoff_s(q, 1.0) for q in range(8)]
    assert waits == sorted(waits) and waits[0] == after_handover.FIRST_CHECK_S
    assert waits[-1] == after_handover.MAX_CHECK_S
    # not due yet: no request at all
    before = httpx.get(shop.sb.url + "/_sandbox/state", timeout=10).json()["requests"]
    after_handover.follow(shop.conn, shop.cfg, shop.adapter, now=t0 + 10 ** 6 * 6 + 0.001)  # not due
    after = httpx.get(shop.sb.url + "/_sandbox/state", timeout=10).json()["requests"]
    assert after - before == 1  # the returns list only


# ---------------------------------------------------------------- returns come back


def test_a_return_received_at_the_site_puts_good_units_on_hand_and_defective_aside(shop):
    a, b = shop.handed_over(2)
    shop.fates({a: "cancelled", b: "returned"})
    shop.follow()
    msgs = {m["order_id"]: m for m in shop.outbox("return_expected")}
    ma, mb = msgs[f"a:{a}"], msgs[f"a:{b}"]
    item_a, item_b = ma["lines"][0]["item_id"], mb["lines"][0]["item_id"]
    before = shop.levels()
    card_a = catalog.cards_of_item(shop.conn, item_a)[0]
    shown_before = stock_push.quantity_for(shop.conn, shop.cfg, card_a, "main")
    shop.site("return_received", {"return_id": ma["return_id"], "order_id": ma["order_id"],
                                  "lines": [{"item_id": item_a, "good": ma["lines"][0]["quantity"], "defective": 0}]})
    shop.site("return_received", {"return_id": mb["return_id"], "order_id": mb["order_id"], "warehouse": "main",
                                  "lines": [{"item_id": item_b, "good": 0, "defective": mb["lines"][0]["quantity"]}]})
    after = shop.levels()
    assert after[(item_a, "main")][0] == before[(item_a, "main")][0] + ma["lines"][0]["quantity"]
    assert after[(item_a, "main")][1] == before[(item_a, "main")][1]
    defect = warehouses.defect_warehouse("main")
    assert defect == "main:defect" and after[(item_b, defect)][0] == mb["lines"][0]["quantity"]
    assert after[(item_b, "main")] == before[(item_b, "main")] or item_a == item_b
    assert shop.stages([a, b]) == ["returned", "returned"]
    assert shop.order(a)["status"] == "cancelled"
    # Megamarket has no return after delivery: the buyer's refusal at pick-up is a cancellation
    assert shop.order(b)["status"] == ("cancelled" if shop.market == "megamarket" else "returned")
    history = [r[0] for r in shop.conn.execute("SELECT e.detail FROM order_events e JOIN orders o ON o.id=e.order_id"
                                               " WHERE o.key=? AND e.kind='returned'", (f"a:{b}",))]
    assert history == ["принято на складе main: годных 0, брак 1"]
    # the good unit is published again (the item is marked for the planner, its card shows one more);
    # the defect warehouse serves no marketplace warehouse, even when a map names it
    assert shop.conn.execute("SELECT 1 FROM stock_dirty WHERE item_id=?", (item_a,)).fetchone()
    assert stock_push.quantity_for(shop.conn, shop.cfg, card_a, "main") >= shown_before
    with transaction(shop.conn):
        catalog.record_warehouses(shop.conn, "a", [("X-DEFECT", "брак", "fbs", defect)])
    assert defect not in warehouses.account_warehouses(shop.conn, shop.cfg, "a").values()
    assert after_handover.summary(shop.conn) == {"delivered": 1 if shop.market == "ozon" else 0, "returned": 2,
                                                 "restocked": ma["lines"][0]["quantity"]}
    # the same report again (a new envelope): nothing moves twice
    shop.site("return_received", {"return_id": ma["return_id"], "order_id": ma["order_id"],
                                  "lines": [{"item_id": item_a, "good": 1, "defective": 0}]})
    assert shop.levels() == after


@pytest.mark.parametrize("shop", ["yandex_market"], indirect=True)
def test_bad_return_reports_are_refused_with_a_reason_and_change_nothing(shop, caplog):
    (a,) = shop.handed_over(1)
    shop.fates({a: "returned"})
    shop.follow()
    (m,) = shop.outbox("return_expected")
    item, n = m["lines"][0]["item_id"], m["lines"][0]["quantity"]
    before = shop.levels()
    cases = [
        ({"return_id": "a:nope#1", "order_id": m["order_id"], "lines": []}, "не ожидается"),
        ({"return_id": m["return_id"], "order_id": m["order_id"],
          "lines": [{"item_id": "NOT-IN-ORDER", "good": 1, "defective": 0}]}, "не было в заказе"),
        ({"return_id": m["return_id"], "order_id": m["order_id"],
          "lines": [{"item_id": item, "good": n, "defective": 1}]}, "принято"),
        ({"return_id": m["return_id"], "order_id": "a:other",
          "lines": [{"item_id": item, "good": 1, "defective": 0}]}, "относится к заказу"),
    ]
    for body, words in cases:
        with pytest.raises(Reject) as err:
            shop.site("return_received", body)
        assert words in str(err.value)
    assert shop.levels() == before and shop.stages([a]) == ["return_expected"]
    logged = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(logged) == len(cases)  # and the link dead-letters each with its reason


@pytest.mark.parametrize("shop", ["ozon"], indirect=True)
def test_returns_and_statuses_of_unknown_orders_change_nothing(shop):
    (a,) = shop.handed_over(1)
    from marketplaces.base import OrderReturn, ReturnLine
    ghost = OrderReturn("777", "00000000-0000-1", "return", [ReturnLine("1", "x", 1)])
    with transaction(shop.conn):
        assert after_handover.take_return(shop.conn, shop.cfg, "a", ghost) == 0
        assert after_handover.take_return(shop.conn, shop.cfg, "a", ghost) == 0
    msgs = [r[0] for r in shop.conn.execute("SELECT message FROM cloud_errors")]
    assert len(msgs) == 1 and "которого нет в системе" in msgs[0]
    oid = shop.order(a)["id"]
    with transaction(shop.conn):
        assert after_handover.apply_status(shop.conn, shop.cfg, oid, "teleported") == "unknown status"
    assert shop.order(a)["stage"] == "handed_over" and shop.order(a)["native_status"] != "teleported"
    assert "неизвестный статус 'teleported'" in shop.conn.execute(
        "SELECT message FROM cloud_errors ORDER BY id DESC").fetchone()[0]


@pytest.mark.parametrize("shop", ["megamarket"], indirect=True)
def test_the_return_goes_to_1c_and_to_the_commission_report(shop):
    from cloud_sync.onec import orders_out

    (a,) = shop.handed_over(1)
    shop.fates({a: "cancelled"})
    shop.follow()
    (m,) = shop.outbox("return_expected")
    shop.site("return_received", {"return_id": m["return_id"], "order_id": m["order_id"],
                                  "lines": [{"item_id": m["lines"][0]["item_id"], "good": 1, "defective": 0}]})
    xml = orders_out.query_answer(shop.conn, "s1", encoding="utf-8")
    docs = {d.findtext("Ид"): d for d in ET.fromstring(xml).iter("Документ")}
    ret, order = docs[m["return_id"]], docs[m["order_id"]]
    assert ret.findtext("ХозОперация") == "Возврат товара" and order.findtext("ХозОперация") == "Заказ товара"

    def requisites(el):
        return {r.findtext("Наименование"): r.findtext("Значение") for r in el.find("ЗначенияРеквизитов")}
    assert requisites(ret)["Основание"] == m["order_id"] and requisites(ret)["Склад брака"] == "main:defect"
    assert requisites(order)["Статус заказа"] == "cancelled" and requisites(order)["Финальный статус"] == "true"
    (line,) = ret.find("Товары").findall("Товар")
    assert line.findtext("Ид") == m["lines"][0]["item_id"] and line.findtext("Количество") == "1.000"
    assert requisites(line)["Годных"] == "1" and requisites(line)["Брак"] == "0"
    orders_out.mark_delivered(shop.conn, "s1")
    assert m["return_id"] not in {o.id for o in orders_out.pending_orders(shop.conn)}  # once
    today = datetime.now(UTC).date().isoformat()
    units = after_handover.returned_units(shop.conn, "a", today, today)
    assert units == {m["lines"][0]["item_id"]: {"good": 1, "defective": 0}}
    day = datetime.now(UTC).date()
    report = reports.build_commission_report(shop.conn, RealizationReport("a", day, day, []), marketplace="megamarket")
    (row,) = [r for r in report.rows if r.item_id == m["lines"][0]["item_id"]]
    assert (row.back_good, row.back_defective) == (1, 0) and report.totals["back_good"] == 1
    headers, body = reports.commission_table(report)
    assert "Вернулось на склад, шт" in headers and body[-1][headers.index("Вернулось на склад, шт")] == 1
    reports.save_report(shop.conn, report)
    assert shop.conn.execute("SELECT back_good FROM commission_report_rows WHERE item_id=?",
                             (row.item_id,)).fetchone()[0] == 1
    last = after_handover.returned_units(shop.conn, "a", "2020-01-01", "2020-01-31")
    assert last == {}  # another period: none


# ---------------------------------------------------------------- over the real link (Mosquitto)


@pytest.mark.parametrize("shop", ["ozon"], indirect=True)
def test_a_return_goes_down_and_comes_back_up_over_the_real_link(shop, broker, tmp_path, caplog):
    """The cloud's `return_expected` reaches the site over MQTT; the site answers `return_received` (one good,
    and once more with a unit never in the order, which the cloud dead-letters with its reason)."""
    from sitelink.link import LinkConfig, SiteLink

    (a,) = shop.handed_over(1)
    shop.fates({a: "returned"})
    seen: list[dict] = []

    def on_return_expected(conn, env):
        seen.append(env.body)
        line = env.body["lines"][0]
        site.send(conn, "return_received", {"return_id": env.body["return_id"], "order_id": env.body["order_id"],
                                            "lines": [{"item_id": "NOT-IN-ORDER", "good": 1, "defective": 0}]})
        site.send(conn, "return_received", {"return_id": env.body["return_id"], "order_id": env.body["order_id"],
                                            "lines": [{"item_id": line["item_id"], "good": line["quantity"],
                                                       "defective": 0}], "note": "коробка вскрыта"})

    cloud = SiteLink(LinkConfig(role="cloud", db_path=str(tmp_path / "cloud.sqlite"), gap_timeout=5.0,
                                resend_after=2.0, connect=db.connect, **broker.link_settings(None)))
    after_handover.register_return_handlers(cloud, shop.cfg)
    site = SiteLink(LinkConfig(role="site", db_path=str(tmp_path / "site-1.db"), site_id="site-1", gap_timeout=5.0,
                               resend_after=2.0, **broker.link_settings("site-1")))
    site.on("return_expected", on_return_expected)
    cloud.start()
    site.start()
    try:
        after_handover.follow(shop.conn, shop.cfg, shop.adapter, link=cloud, now=time.time() + FAR)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and shop.stages([a]) != ["returned"]:
            time.sleep(0.2)
        assert shop.stages([a]) == ["returned"] and len(seen) == 1
        dead = shop.conn.execute("SELECT reason FROM link_dead_letters").fetchall()
        assert len(dead) == 1 and "не было в заказе" in dead[0][0]
        detail = shop.conn.execute("SELECT detail FROM order_events WHERE kind='returned'").fetchone()[0]
        assert detail == "принято на складе main: годных 1, брак 0 (коробка вскрыта)"
    finally:
        site.stop()
        cloud.stop()


@pytest.mark.parametrize("shop", ["yandex_market"], indirect=True)
def test_a_pushed_cancellation_after_the_hand_over_expects_the_parcel_back_and_releases_nothing(shop):
    """Market pushes ORDER_CANCELLED / a status for an order already handed over (webhooks, `ingest_event`;
    the status poll takes the same way): the units left with the parcel — nothing is released, the site
    is told to expect it back; a manager's or 1C's cancellation of a parcel already gone changes nothing."""
    from marketplaces.base import OrderEvent

    a, b = shop.handed_over(2)
    before = shop.levels()
    with transaction(shop.conn):
        got = intake.ingest_event(shop.conn, shop.cfg, "a", OrderEvent("cancelled", order_native_id=a))
    assert got == "cancelled" and shop.stages([a]) == ["return_expected"]
    with transaction(shop.conn):
        intake.update_native_status(shop.conn, shop.cfg, shop.order(b)["id"], "CANCELLED", "USER_REFUSED_DELIVERY")
    assert shop.stages([b]) == ["return_expected"] and shop.order(b)["status"] == "cancelled"
    assert shop.levels() == before
    assert {m["order_id"] for m in shop.outbox("return_expected")} == {f"a:{a}", f"a:{b}"}
    assert not shop.outbox("cancel_task")  # nothing left at the site to stop
    with transaction(shop.conn):
        assert intake.cancel(shop.conn, shop.cfg, shop.order(a)["id"], reason="отменён в 1С") == 0
    assert shop.stages([a]) == ["return_expected"] and shop.levels() == before


def test_the_return_messages_contract():
    from sitelink.messages import DIRECTION, BadMessage

    assert DIRECTION["return_expected"] == "down" and DIRECTION["return_received"] == "up"
    check_body("return_expected", {"return_id": "a:1#1", "order_id": "a:1", "kind": "return", "parcel_codes": ["1"],
                                   "lines": [{"item_id": "i", "quantity": 1}]})
    check_body("return_received", {"return_id": "a:1#1", "order_id": "a:1", "lines": [{"item_id": "i", "good": 1}]})
    for lines in ([{"item_id": "i", "good": -1}], [{"item_id": "i", "defective": True}], [{"good": 1}], ["i"],
                  [{"item_id": "i", "good": 1.5}]):
        with pytest.raises(BadMessage, match="return_received"):
            check_body("return_received", {"return_id": "a:1#1", "order_id": "a:1", "lines": lines})
    with pytest.raises(BadMessage, match="return_id"):
        check_body("return_expected", {"order_id": "a:1", "lines": []})


@pytest.mark.parametrize("shop", ["wildberries"], indirect=True)
def test_orders_of_a_batch_are_followed_once_the_batch_has_shipped(shop):
    """A WB parcel handed over while another of its supply is still on the packing table: the supply has
    not left, WB still says `confirm` — nothing to read until the supply ships."""
    made = [str(x) for x in httpx.post(shop.sb.url + "/_sandbox/orders", json={"count": 2}, timeout=10)
            .json()["orders"]]
    intake.poll(shop.conn, shop.cfg, shop.adapter)
    shop.run()
    for native in made:
        shop.site("task_progress", {"task_id": f"pick-a:{native}", "order_id": f"a:{native}", "state": "packed"})
    shop.site("task_progress", {"task_id": f"pick-a:{made[0]}", "order_id": f"a:{made[0]}", "state": "handed_over"})
    shop.run()
    assert shop.follow().read == 0
    shop.site("task_progress", {"task_id": f"pick-a:{made[1]}", "order_id": f"a:{made[1]}", "state": "handed_over"})
    shop.run()
    assert shop.follow().read == 2
