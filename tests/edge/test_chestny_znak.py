"""Marking codes checked against Честный знак before they ship: a real site (its own SQLite file and outbox)
asking the Честный знак sandbox over real HTTP (`POST /api/v3/true-api/cises/info`, held to the call's
OpenAPI document), refusals at the packing table in Russian, and packing that goes on through an outage
with the codes checked later. Scanners are not involved: scans go in as the scanner thread gives them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from edge_testkit import SHIRT, outbox, pick_task

from edge_agent import store
from edge_agent.site import Site
from edge_agent.tasks import inbox
from edge_agent.tasks.marking import RegistryCheck, parse, registry_refusal
from marketplaces.sandbox.chestny_znak import OTHER_INN, SELLER_INN
from marketplaces.sandbox.registry import start_sandbox

GTIN = SHIRT["barcode"].zfill(14)


@pytest.fixture
def cz() -> Iterator[Any]:
    running = start_sandbox("chestny_znak", seed=5)
    yield running
    running.stop()
    assert not running.app.spec_violations


def _code(cz: Any, status: str = "INTRODUCED", owner: str = SELLER_INN, gtin: str = GTIN) -> str:
    return httpx.post(cz.url + "/_sandbox/x/add", json={"gtin": gtin, "status": status, "ownerInn": owner}).json()["code"]


def _faults(cz: Any, **faults: float) -> None:
    httpx.post(cz.url + "/_sandbox/faults", json={"rate_5xx": 0, "latency_ms": 0, "lost_reply_rate": 0, **faults})


@pytest.fixture
def site_for(tmp_path, cz, monkeypatch):
    monkeypatch.setenv("MARKETSYNC_CZ_TOKEN", cz.credentials["Authorization"].removeprefix("Bearer "))
    made: list[Site] = []

    def make(**section: Any) -> Site:
        from edge_testkit import edge_config

        table = {"url": cz.url, "inn": SELLER_INN, "timeout_s": 1.0, "retry_after_s": 0.3, **section}
        site = Site(edge_config(tmp_path, tables={"chestny_znak": table}), with_link=False, with_devices=False)
        with store.transaction(site.conn):
            inbox.apply_catalog(site.conn, {"items": [SHIRT]})
        made.append(site)
        return site

    yield make
    for site in made:
        site.close()


def _task(site: Site, task_id: str, qty: int = 1) -> None:
    with store.transaction(site.conn):
        assert inbox.apply_pick_task(site.conn, pick_task(task_id, [(SHIRT, qty)]))


def test_codes_that_must_not_ship_are_refused_at_the_packing_table(cz, site_for) -> None:
    site = site_for()
    _task(site, "t1", 2)
    cases = [(_code(cz, "RETIRED"), "товар уже выбыл из оборота (продан) (статус RETIRED)"),
             (_code(cz, "APPLIED"), "товар не введён в оборот"),
             (_code(cz, "WRITTEN_OFF"), "код списан"),
             (_code(cz, owner=OTHER_INN), f"другому владельцу (ИНН {OTHER_INN})"),
             (f"01{GTIN}21NeverIssued01\x1d91EE10\x1d92{'B' * 44}", "Честный знак не знает этот код")]
    for code, reason in cases:
        res = site.scan("pack-1", code)
        assert res.kind == "refused_marking" and not res.ok, (code, res)
        assert res.message.startswith("ЧЕСТНЫЙ ЗНАК НЕ РАЗРЕШАЕТ ОТГРУЗИТЬ ЭТОТ КОД") and reason in res.message
    assert site.row("SELECT COUNT(*) AS n FROM marking_codes")["n"] == 0  # nothing of them went into the parcel
    assert site.scan("pack-1", _code(cz)).kind == "packed"
    assert site.scan("pack-1", _code(cz)).kind == "done"
    assert [r["state"] for r in site.rows("SELECT state FROM marking_checks")] == ["ok", "ok"]
    reported = [b for t, b in outbox(site.conn) if t == "scan"]
    assert len(reported) == 5  # every refusal is told to the cloud as a bad scan
    assert cz.app.state()["by_path"]["/api/v3/true-api/cises/info"] == 7


@pytest.mark.parametrize("fault", [{"rate_5xx": 1.0}, {"lost_reply_rate": 1.0}, {"latency_ms": 3000}])
def test_an_outage_never_stops_packing_and_the_codes_are_checked_later(cz, site_for, fault) -> None:
    site = site_for()
    _task(site, "t2", 2)
    good, sold = _code(cz), _code(cz, "RETIRED")
    _faults(cz, **fault)
    started = time.monotonic()
    first = site.scan("pack-1", good)
    assert first.kind == "packed" and "Честный знак недоступен: код проверим позже" in first.message
    asked = cz.app.state()["by_path"]["/api/v3/true-api/cises/info"]
    last = site.scan("pack-1", sold)  # within retry_after_s: not asked again, packed at once
    assert last.kind == "done"
    assert time.monotonic() - started < 2.9  # the 1 s timeout bounds the wait, the second scan does not wait
    assert cz.app.state()["by_path"]["/api/v3/true-api/cises/info"] == asked
    packed = next(b for t, b in outbox(site.conn) if t == "task_progress" and b["state"] == "packed")
    assert "2 код(ов) маркировки упакованы без проверки" in packed["note"] and len(packed["marking_codes"]) == 2
    assert {r["state"] for r in site.rows("SELECT state FROM marking_checks")} == {"unchecked"}
    _faults(cz)
    time.sleep(0.35)  # retry_after_s
    assert site.recheck_marking() == (1, 1)
    states = {r["code_id"]: (r["state"], r["reason"]) for r in site.rows("SELECT * FROM marking_checks")}
    assert states[parse(good).code_id] == ("ok", "")
    assert states[parse(sold).code_id][0] == "refused" and "продан" in states[parse(sold).code_id][1]
    flagged = [b for t, b in outbox(site.conn) if t == "task_progress" and b["state"] == "failed"]
    assert len(flagged) == 1 and flagged[0]["order_id"] == "o-t2"
    assert "Честный знак отказал коду маркировки" in flagged[0]["note"] and "Замените единицу" in flagged[0]["note"]
    assert site.recheck_marking() == (0, 0)  # nothing left to check


def test_a_refused_token_packs_unchecked_too(cz, site_for, monkeypatch) -> None:
    monkeypatch.setenv("MARKETSYNC_CZ_TOKEN", "expired-token")
    site = site_for()
    _task(site, "t3")
    res = site.scan("pack-1", _code(cz))
    assert res.kind == "done"
    row = site.row("SELECT state, reason FROM marking_checks")
    assert row["state"] == "unchecked" and "токен не принят (401)" in row["reason"]
    assert "expired-token" not in row["reason"]


def test_without_a_register_the_site_packs_on_structure_checks(tmp_path) -> None:
    from edge_testkit import edge_config

    site = Site(edge_config(tmp_path), with_link=False, with_devices=False)
    with store.transaction(site.conn):
        inbox.apply_catalog(site.conn, {"items": [SHIRT]})
    _task(site, "t4")
    assert site.marking_registry is None
    assert site.scan("pack-1", f"01{GTIN}21Serial0000001\x1d91EE10\x1d92{'C' * 44}").kind == "done"
    assert site.row("SELECT COUNT(*) AS n FROM marking_checks")["n"] == 0
    site.close()


def test_a_register_answer_of_another_gtin_is_refused() -> None:
    mc = parse(f"01{GTIN}21Serial0000001\x1d91EE10\x1d92{'C' * 44}")
    row = {"cisInfo": {"requestedCis": mc.code_id, "gtin": "04600000000000", "status": "INTRODUCED",
                       "ownerInn": SELLER_INN}}
    assert "другим товаром (GTIN 04600000000000" in registry_refusal(row, mc, SELLER_INN)
    row["cisInfo"]["gtin"] = GTIN
    assert registry_refusal(row, mc, SELLER_INN) is None
    assert RegistryCheck("ok").reason == ""
