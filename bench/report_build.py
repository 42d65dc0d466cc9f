"""The commission report's build: how long the page waits, how long the build takes, against the
marketplace's own report limits.

The Wildberries sandbox (real HTTP, WB's limits: one finance `sales-reports` call a minute per table, at
`--time-scale` 1) with `--orders` orders sold; the cloud's web app with its jobs building reports in the
background (cloud_sync.service.jobs). Measured, one after another:

1. the page: `POST /reports` answered (ms), then the background build to done (s) — the first report of
   the minute (WB's limits have a call left);
2. a second report at once (another period): WB answers its next report call only a minute later, so
   the build waits — the page still answers at once, with a progress bar;
3. baseline, the same run: the synchronous `GET /api/reports/commission` (the old way of the page: the
   request held for the whole build, which timed out at 30 s in front of a proxy).

The floor is WB's limit: one call of each report table a minute (`floor_s` = 60 / time scale).

Run: .venv/bin/python bench/report_build.py [--orders 10] [--time-scale 1]
Last line: page_answer_ms=X first_build_s=Y second_build_s=Z floor_s=F baseline_request_s=W
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project first: bench/sitelink.py is a bench

import httpx  # noqa: E402

from cloud_sync.access import users  # noqa: E402
from cloud_sync.config import parse_config  # noqa: E402
from cloud_sync.schema import open_db  # noqa: E402
from cloud_sync.service.accounts import AccountAdapters  # noqa: E402
from cloud_sync.service.jobs import Jobs  # noqa: E402
from cloud_sync.web.app import create_app  # noqa: E402
from marketplaces import open_account  # noqa: E402
from marketplaces.base import AccountConfig  # noqa: E402
from marketplaces.sandbox.registry import start_sandbox  # noqa: E402

BASELINE_ISSUE_S = 65.0  # issue #17: "Build" took 65 s with no progress (main b36c087)


def _token(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=10)
    ap.add_argument("--time-scale", type=float, default=1.0)
    args = ap.parse_args()
    scale = args.time_scale
    work = Path(tempfile.mkdtemp(prefix="report-bench-"))
    sandbox = start_sandbox("wildberries", seed=20, time_scale=scale)
    account = AccountConfig(name="wb1", marketplace="wildberries", base_url=sandbox.url,
                            credentials=dict(sandbox.credentials), time_scale=scale)
    adapter = open_account(account)
    httpx.post(f"{sandbox.url}/_sandbox/orders", json={"count": args.orders}, timeout=30).raise_for_status()
    orders = adapter.new_orders()
    for o in orders:
        adapter.set_order_status(o.native_id, "confirm")
    for o in orders:
        adapter.set_order_status(o.native_id, "ship")
    db = work / "cloud.sqlite"
    conn = open_db(db)
    users.add_user(conn, "bench", "bench password 1", "manager")
    conn.close()
    cfg = parse_config({"cloud": {"db_path": str(db)},
                        "accounts": {"wb1": {"marketplace": "wildberries", "base_url": sandbox.url,
                                             "credentials": dict(sandbox.credentials), "time_scale": scale}}})
    held = AccountAdapters(cfg, {"wb1": adapter})
    jobs = Jobs(cfg, cfg.db_path, held)
    jobs.add_report_builds()
    app = create_app(cfg, adapters=held, jobs=jobs)
    jobs.start()
    c = app.test_client()
    c.post("/login", data={"name": "bench", "password": "bench password 1", "csrf_token": _token(c.get("/login").text),
                           "next": "/reports"})
    token = _token(c.get("/reports").text)
    today = datetime.now(UTC).date()
    print(f"Wildberries sandbox, {len(orders)} orders sold; time scale {scale:g}; WB report limit: 1 call/min per table")

    def build(day_from, day_to) -> tuple[float, float, int]:
        t0 = time.monotonic()
        r = c.post("/reports", data={"csrf_token": token, "account": "wb1", "from": day_from.isoformat(),
                                     "to": day_to.isoformat()})
        answered = time.monotonic() - t0
        build_id = r.headers["Location"].rsplit("=", 1)[1]
        polls = 0
        while True:
            status = c.get(f"/reports/builds/{build_id}.json").get_json()
            polls += 1
            if status["state"] in ("done", "failed"):
                break
            time.sleep(0.2)
        assert status["state"] == "done", status
        return answered, time.monotonic() - t0, polls

    try:
        a1, b1, p1 = build(today - timedelta(days=1), today + timedelta(days=1))
        print(f"first report:  page answered in {a1 * 1000:.0f} ms; built in {b1:.1f} s ({p1} progress polls)")
        a2, b2, p2 = build(today - timedelta(days=2), today + timedelta(days=1))
        print(f"second report: page answered in {a2 * 1000:.0f} ms; built in {b2:.1f} s ({p2} progress polls),"
              f" waiting for WB's next report call")
        t0 = time.monotonic()
        r = c.get(f"/api/reports/commission?account=wb1&from={(today - timedelta(days=3)).isoformat()}"
                  f"&to={today.isoformat()}")
        baseline = time.monotonic() - t0
        print(f"baseline (the request holds the whole build, as the page did): {baseline:.1f} s, HTTP {r.status_code};"
              f" issue #17 measured {BASELINE_ISSUE_S:.0f} s")
    finally:
        jobs.stop()
        adapter.close()
        sandbox.stop()
    floor = 60.0 / scale
    print(f"page_answer_ms={max(a1, a2) * 1000:.0f} first_build_s={b1:.1f} second_build_s={b2:.1f} "
          f"floor_s={floor:.0f} baseline_request_s={baseline:.1f}")


if __name__ == "__main__":
    main()
