"""Stocks → «Сверка»: the last reconciliation in the seller's words, a run started from the page in the
background (the page answers at once), owners and managers only."""

from __future__ import annotations

import time

from cloud_sync.db import transaction
from cloud_sync.stock import ledger

from .conftest import form_token


def test_reconcile_page_runs_in_the_background_and_shows_the_differences(as_user, cloud):
    app, conn, cfg = cloud
    with transaction(conn):
        ledger.set_balances_many(conn, [("item-a", "main", 5)], as_of=time.time() - 60)
        ledger.site_delta(conn, "site-1", "main", "item-a", -2, "pick", ref="wb1:77")
    c = as_user("masha")
    page = c.get("/stocks/reconcile")
    assert page.status_code == 200 and "Сверок ещё не было" in page.text
    started = time.monotonic()
    r = c.post("/stocks/reconcile", data={"csrf_token": form_token(page.text)})
    assert r.status_code == 303 and time.monotonic() - started < 5
    deadline = time.monotonic() + 60
    while "Последняя сверка" not in (page := c.get("/stocks/reconcile")).text:
        assert time.monotonic() < deadline, "the reconciliation never finished"
        time.sleep(0.2)
    text = page.text
    assert "расхождений: <b>1</b>" in text and "без объяснения: <b class=\"\">0</b>" in text
    assert "сборка -2 (wb1:77)" in text
    assert "wb1: кабинет не открыт" in text  # its marketplace cannot be reached here: said, not hidden
    assert as_user("petya").get("/stocks/reconcile").status_code == 403
    assert 'id="to-reconcile"' in c.get("/stocks").text
