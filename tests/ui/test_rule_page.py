"""A scheduled price rule's page: a rule limited to a category or an item from the Prices form (an item by
its article or name; both at once refused beside the field), its held document reached from «Требует
внимания», discarded there, and a confirmation refused once the document is gone."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from cloud_sync.catalog import cards as catalog
from cloud_sync.money import price_rules
from marketplaces.base import Card

from .conftest import form_token


def test_a_rule_is_limited_and_its_held_document_is_handled_on_its_page(as_user, cloud):
    _, conn, _ = cloud
    conn.execute("INSERT INTO items(id, article, name) VALUES ('0d1f-guid-1', 'MUG-1', 'Кружка белая')")
    catalog.import_cards(conn, "wb1", "wildberries", [Card(native_id="101", offer_id="MUG-1", title="Кружка",
                                                           category="Посуда", price=Decimal(1000))])
    catalog.link(conn, "wb1", "101", "0d1f-guid-1", 1)
    conn.commit()
    c = as_user("masha")
    page = c.get("/prices?account=wb1").text
    r = c.post("/prices/rules", data={"csrf_token": form_token(page), "account": "wb1", "rule": "-10% пт 18:00, вернуть пн 09:00",
                                      "rule_category": "Посуда", "rule_item": "MUG-1"})
    assert r.status_code == 400 and 'id="err-rule_item"' in r.text and 'value="Посуда"' in r.text
    r = c.post("/prices/rules", data={"csrf_token": form_token(page), "account": "wb1", "rule": "-10% пт 18:00, вернуть пн 09:00",
                                      "rule_item": "Кружка белая"})
    assert r.status_code == 200
    [rule] = price_rules.rules(conn, "wb1")
    assert rule.lines == [{"item": "0d1f-guid-1", "percent": "-10"}]
    shown = c.get(f"/prices/rules/{rule.id}").text
    assert "товар MUG-1 «Кружка белая»: −10 % от цены прайс-листа" in shown and "0d1f-guid" not in shown
    now = datetime.now(UTC)
    big = price_rules.add_rule(conn, account="wb1", lines=[{"all": True, "percent": "-70"}], name="Распродажа",
                               start=(now - timedelta(days=1)).strftime("%Y-%m-%d %H:%M"),
                               end=(now + timedelta(days=8)).strftime("%Y-%m-%d %H:%M"), tz="UTC")

    class Market:
        name = "wildberries"

        def push_prices(self, changes):  # never reached: the drop is held for a person
            raise AssertionError("sent without a confirmation")

    events = price_rules.run_due(conn, lambda account: Market(), now=now)
    [doc] = price_rules.held(conn, big.id)
    assert [e.action for e in events if e.rule_id == big.id] == ["held"]
    attention = c.get("/attention").text
    assert f'href="/prices/rules/{big.id}"' in attention  # «Подтвердить или отменить» opens the rule's page
    page = c.get(f"/prices/rules/{big.id}").text
    assert "Ждёт вашего подтверждения" in page and "Пересекается с правилом" in page
    r = c.post(f"/prices/rules/{big.id}/held/{doc}/discard", data={"csrf_token": form_token(page)})
    assert r.status_code == 200 and "документ отменён, ничего не отправлено" in r.text
    r = c.post(f"/prices/rules/{big.id}/held/{doc}/confirm", data={"csrf_token": form_token(page)})
    assert r.status_code == 409 and "этот документ не ждёт подтверждения" in r.text, re.findall(r"class=\"msg[^>]*>([^<]*)", r.text)
    assert c.get("/prices/rules/nope").status_code == 404
