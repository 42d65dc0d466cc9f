"""Three `marketsync cloud serve` processes on one SQLite store, SIGKILLed from outside, judged from outside:
the jobs are shared (each process holds some), a killed process's jobs are taken over within 10 s, every
WB order is confirmed exactly once on the marketplace (the sandbox's own call counters), no Ozon posting
moves twice, no stock amount is written twice over itself with no kill in between (nothing changed it on
the marketplace since the first write), orders still reach the site
and come back packed after the process holding the site link is killed, and a manager logged in through
one process works through the others (sessions and CSRF tokens live in the store).

Real processes, nothing mocked: Mosquitto, the WB and Ozon sandboxes, the cloud processes and the site
with its simulated packer (the demo's). WB answers each order move 1.2 s after applying it
(`move_delay_ms`), and the process making the confirms is killed while one is under way.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from cloud_sync import db as cloud_db
from marketsync.demo import Demo, http_json
from marketsync.demo_config import ACCOUNT_NAMES
from marketsync.procs import Service

# Run by `make soak` (pytest -m faults). Once one WB stock amount was written twice over itself 22 ms apart
# with no kill between: a sender read the due pushes outside its claim's transaction and claimed, by
# version alone, the row queued again (version 1 again) after another sender had sent and recorded it;
# fixed in cloud_sync/stock/push.py, focused test in tests/cloud/test_leases.py.
pytestmark = [pytest.mark.slow, pytest.mark.faults]

TAKEOVER_S = 10.0


def _db(demo: Demo) -> sqlite3.Connection:
    return cloud_db.connect_readonly(demo.cloud_db)  # the file mode=ro, or the PostgreSQL leg's store


def _leases(demo: Demo) -> dict[str, int | None]:
    """Job name -> the pid of the process holding its lease (None: free)."""
    db = _db(demo)
    try:
        return {name: int(owner.split(":")[-2]) if owner else None
                for name, owner in db.execute("SELECT name, owner FROM job_leases")}
    finally:
        db.close()


def _state(demo: Demo, mp: str) -> dict:
    return http_json("GET", demo.sandboxes[ACCOUNT_NAMES[mp]]["url"].rstrip("/") + "/_sandbox/state")


def _wait(what: str, check, timeout: float) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


def _start_cloud(demo: Demo, template: Service, n: int) -> Service:
    svc = Service(f"cloud-{n}", template.argv, demo.work / "logs" / f"cloud-{n}.log", env=template.env)
    demo.services.append(svc)
    svc.start(timeout=90)
    return svc


def _kill(demo: Demo, clouds: list[Service], victim: Service) -> float:
    """SIGKILL `victim` (no goodbye); the time its jobs took to have a live owner again."""
    assert victim.proc is not None
    dead = victim.proc.pid
    os.killpg(dead, signal.SIGKILL)
    victim.proc.wait(10)
    clouds.remove(victim)
    demo.cloud_url = clouds[0].announcement["url"]
    live = {c.proc.pid for c in clouds if c.proc is not None}
    return _wait(f"the jobs of process {dead} taken over",
                 lambda: set(_leases(demo).values()) <= live, TAKEOVER_S + 5)


def _web_across_processes(urls: list[str], password: str) -> None:
    """Log in through one process, read a page through the second, change something through the third
    with the CSRF token the second gave: a plain round-robin proxy in front of them would do just that."""
    with httpx.Client(follow_redirects=False, timeout=30) as web:
        web.get(f"{urls[0]}/login")
        token = web.cookies.get("ms_login_csrf")
        r = web.post(f"{urls[1]}/login", data={"name": "owner", "password": password, "csrf_token": token})
        assert r.status_code in (302, 303), r.text[:300]
        page = web.get(f"{urls[2]}/orders")
        assert page.status_code == 200 and "owner" in page.text
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        r = web.post(f"{urls[0]}/language", data={"csrf_token": csrf, "language": "ru", "back": "/orders"})
        assert r.status_code in (302, 303), r.text[:300]
        r = web.post(f"{urls[1]}/language", data={"csrf_token": "x" * len(csrf), "language": "ru", "back": "/"})
        assert r.status_code == 400  # the check is real


def test_three_cloud_processes_share_the_jobs_and_survive_sigkills(tmp_path: Path):
    args = argparse.Namespace(duration=0, workdir=str(tmp_path / "demo"), items=12, order_every=3600,
                              courier_every=3600, time_scale=10.0, marketplaces="wildberries,ozon")
    demo = Demo(args)
    kills: list[float] = []
    try:
        demo.start()
        first = next(s for s in demo.services if s.name == "cloud")
        clouds = [first, _start_cloud(demo, first, 1), _start_cloud(demo, first, 2)]
        pids = {c.proc.pid for c in clouds if c.proc is not None}
        _wait("every process running its share of the jobs", lambda: set(_leases(demo).values()) == pids, 30)
        health = [http_json("GET", f"{c.announcement['url']}/api/health", token=demo.api_token) for c in clouds]
        assert {h["process"] for h in health} == set(health[0]["processes"]) and len(health[0]["processes"]) == 3
        password = (Path(demo.cloud_config).parent / "secrets" / "owner-password").read_text("utf-8").strip()
        _web_across_processes([c.announcement["url"] for c in clouds], password)

        wb_url = demo.sandboxes[ACCOUNT_NAMES["wildberries"]]["url"].rstrip("/")
        http_json("POST", f"{wb_url}/_sandbox/faults", {"move_delay_ms": 1200})
        made: dict[str, list[str]] = {"wildberries": [], "ozon": []}

        def order(n: int = 2) -> None:
            for mp in made:
                url = demo.sandboxes[ACCOUNT_NAMES[mp]]["url"].rstrip("/")
                made[mp] += [str(x) for x in http_json("POST", f"{url}/_sandbox/orders", {"count": n})["orders"]]

        def by_pid(pid: int | None) -> Service:
            return next(c for c in clouds if c.proc is not None and c.proc.pid == pid)

        # 1: the process making the confirms is killed while WB applies one
        order()
        _wait("a WB confirm under way", lambda: any(
            "confirm" in c for c in _state(demo, "wildberries")["order_calls"].values()), 30)
        victim = by_pid(_leases(demo)["order-actions"])
        kills.append(time.time())
        took = [_kill(demo, clouds, victim)]
        clouds.append(_start_cloud(demo, first, 3))
        # 2: the process holding the site link, with orders on their way to the site
        order()
        victim = by_pid(_leases(demo)["site-link"])
        kills.append(time.time())
        took.append(_kill(demo, clouds, victim))
        order()

        def packed() -> bool:
            db = _db(demo)
            try:
                stages = dict(db.execute("SELECT native_id, stage FROM orders"))
            finally:
                db.close()
            every = made["wildberries"] + made["ozon"]
            wb_orders = _state(demo, "wildberries")["orders"]
            return (all(stages.get(x) in ("packed", "handed_over") for x in every)
                    and all(wb_orders.get(x) == "confirm" for x in made["wildberries"]))
        _wait("every order confirmed and packed at the site", packed, 60)

        wb, oz = _state(demo, "wildberries"), _state(demo, "ozon")
        for x in made["wildberries"]:
            assert wb["order_calls"][x].get("confirm") == [1, 1], f"WB order {x}: confirm calls {wb['order_calls'][x]}"
        for x in made["ozon"]:
            steps = oz["transitions"][x]
            assert len(steps) == len(set(steps)), f"Ozon posting {x} moved twice: {steps}"
        assert wb["spec_violations"] == [] and oz["spec_violations"] == []
        assert wb["stock_sets"], "no stock pushed to WB at all"
        twice = [(key, a, b) for key, sets in wb["stock_sets"].items() for a, b in zip(sets, sets[1:], strict=False)
                 if a[1] == b[1] == b[2] and not any(a[0] <= k <= b[0] for k in kills)]
        assert twice == [], f"stock amounts written twice over themselves with no kill between: {twice[:5]}"
        assert max(took) <= TAKEOVER_S, f"jobs taken over in {took} s"
        db = _db(demo)
        in_doubt = db.execute("SELECT COUNT(*) FROM order_events WHERE kind='in_doubt'").fetchone()[0]
        db.close()
        print(f"takeover_s={max(took):.1f} kills={len(kills)} wb_orders={len(made['wildberries'])}"
              f" ozon_orders={len(made['ozon'])} in_doubt={in_doubt}")
    finally:
        demo.stop()
