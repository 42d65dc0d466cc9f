"""Prices → «Обновить цены с площадок»: a person asks, the running service reads every account's prices
at its next tick (the page answers at once and shows when they were last read)."""

from __future__ import annotations

from cloud_sync.money import price_reads

from .conftest import form_token


def test_the_button_asks_for_a_reading_of_every_account(as_user, cloud):
    app, conn, cfg = cloud
    c = as_user("masha")
    page = c.get("/prices")
    assert "Обновить цены с площадок" in page.text
    r = c.post("/prices/read", data={"csrf_token": form_token(page.text), "account": "wb1"})
    assert r.status_code == 200 and "Цены с площадок обновляются" in r.text
    assert price_reads.due(conn, ["wb1"], 3600) == ["wb1"]
    assert price_reads.state(conn)["wb1"]["asked_ts"] > 0
