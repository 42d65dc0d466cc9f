"""Marketplaces out of reach hold no one up: a stop (SIGTERM, as systemd sends it) ends the cloud at once
(the calls waiting out their retry backoff give up, instead of holding the stop until the SIGKILL grace
ran out: 10 s on every stop before, seen as a 10 s teardown of every test here), and a page that asks a
marketplace answers within seconds (it waited 47 s of backoff before its 502)."""

from __future__ import annotations

import time
from pathlib import Path

from .cloud_kit import start_cloud


def test_a_stop_does_not_wait_out_the_retries_of_unreachable_marketplaces(tmp_path: Path):
    cloud = start_cloud(tmp_path)  # every marketplace at a closed port: the jobs are retrying
    deadline = time.monotonic() + 30
    log = tmp_path / "cloud.log"
    while "retrying in" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "retrying in" in log.read_text()
    started = time.monotonic()
    code = cloud.service.stop(grace=10.0)
    took = time.monotonic() - started
    assert code == 0, f"the cloud did not end by itself (exit {code})"
    assert took < 5.0, f"the stop took {took:.1f} s"


def test_a_page_asking_an_unreachable_marketplace_answers_within_seconds(tmp_path: Path):
    cloud = start_cloud(tmp_path)
    try:
        owner, _ = cloud.session("olga")
        started = time.monotonic()
        r = owner.get("/api/cards/marketplace-categories/wb-main", params={"name": "Кружки"}, timeout=60)
        took = time.monotonic() - started
        assert r.status_code == 502, r.text
        assert took < 15.0, f"the page waited {took:.1f} s"
    finally:
        cloud.service.stop()
