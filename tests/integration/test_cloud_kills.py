"""The cloud SIGKILLed again and again in the middle of its marketplace calls (confirm, label, assemble,
ship), judged from outside: every order ends shipped on its marketplace, and the marketplace got exactly
one confirm and one ship per order.

Real processes, nothing mocked: Mosquitto, the WB and Ozon sandboxes (`marketsync sandbox serve`), the
cloud (`marketsync cloud serve`, killed with SIGKILL and started again on the same SQLite file) and the
site with its simulated packer (`marketsync edge serve`). Each sandbox answers a request that moves an
order 1.2 s after applying it (`move_delay_ms`), so most kills land while a move is applied but not yet
answered — the outcome the cloud must not repeat nor lose. The verdict comes from the sandboxes' own
state: each order's status and its per-order call counters (`order_calls`: calls received / applied).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import time
from pathlib import Path

import pytest

from cloud_sync import db as cloud_db
from marketsync.demo import Demo, http_json
from marketsync.demo_config import ACCOUNT_NAMES
from marketsync.procs import Service

# With the demo's shelf shortage on (an order served again, so not handed over when its supply leaves),
# a kill mid-ship lost where WB had moved that order: the cloud kept the old supply, with no record of the
# move (3 runs of 3 failed before mp_actions._shipped cleared it on an interrupted ship).
# Two more WB orders stayed `confirm` in 1 run of 3: a parcel moved out by a ship whose answer was lost, then
# handed over before the retry, kept the delivered supply on record; a parcel handed over between the ship
# reading the bag and delivering was moved to the next supply and nothing delivered it (mp_actions._shipped
# now ships each parcel the batch did not take once it is handed over; tests/cloud/test_shipping.py).
pytestmark = pytest.mark.slow

KILLS = 12  # an order per marketplace arrives before each kill


def _restart_cloud(demo: Demo) -> None:
    """SIGKILL the cloud's whole process group (no goodbye) and start it again on the same files."""
    old = next(s for s in demo.services if s.name == "cloud")
    assert old.proc is not None
    os.killpg(old.proc.pid, signal.SIGKILL)
    old.proc.wait(10)
    new = Service("cloud", old.argv, old.log_path, env=old.env)
    demo.services[demo.services.index(old)] = new
    demo.cloud_url = new.start(timeout=90)["url"]


def _state(demo: Demo, mp: str) -> dict:
    return http_json("GET", demo.sandboxes[ACCOUNT_NAMES[mp]]["url"].rstrip("/") + "/_sandbox/state")


def test_cloud_killed_mid_call_makes_every_marketplace_move_exactly_once(tmp_path: Path):
    args = argparse.Namespace(duration=0, workdir=str(tmp_path / "demo"), items=12, order_every=3600,
                              courier_every=3600, time_scale=10.0, marketplaces="wildberries,ozon")
    demo = Demo(args)
    try:
        demo.start()
        made: dict[str, list[str]] = {"wildberries": [], "ozon": []}
        for mp in made:
            http_json("POST", demo.sandboxes[ACCOUNT_NAMES[mp]]["url"].rstrip("/") + "/_sandbox/faults", {"move_delay_ms": 1200})

        def order(mp: str) -> None:
            url = demo.sandboxes[ACCOUNT_NAMES[mp]]["url"].rstrip("/")
            made[mp] += [str(x) for x in http_json("POST", f"{url}/_sandbox/orders", {"count": 1})["orders"]]

        def short() -> set[str]:
            """Orders the cloud holds short of stock (the demo's shelf ran out): they wait for the seller,
            untouched on the marketplace — not the kills' doing."""
            db = cloud_db.connect_readonly(demo.cloud_db)
            try:
                return {r[0] for r in db.execute("SELECT native_id FROM orders WHERE stage='short'")}
            finally:
                db.close()

        def finished() -> bool:
            wb, oz, held = _state(demo, "wildberries")["orders"], _state(demo, "ozon")["orders"], short()
            return (all(wb.get(x) == "complete" or x in held for x in made["wildberries"])
                    and all(oz.get(x) in ("delivering", "delivered") or x in held for x in made["ozon"]))

        rng = random.Random(15)
        for _ in range(KILLS):  # orders keep coming while the cloud dies at random moments of their flow
            for mp in made:
                order(mp)
            time.sleep(rng.uniform(0.3, 2.5))
            _restart_cloud(demo)
            try:
                demo.courier_arrives()  # hand over whatever is packed by now
            except OSError:
                pass
        deadline = time.monotonic() + 150  # within the test's own timeout
        while time.monotonic() < deadline and not finished():
            time.sleep(3)
            demo.courier_arrives()
        assert finished(), (f"not every order shipped: WB {_state(demo, 'wildberries')['orders']},"
                            f" Ozon {_state(demo, 'ozon')['orders']}")

        held = short()
        wb, oz = _state(demo, "wildberries"), _state(demo, "ozon")
        assert len(held) <= 2, f"too many orders short of stock to judge the kills: {sorted(held)}"
        for x in held:  # told to the seller, and nothing was done to them on the marketplace
            assert wb["orders"].get(x, "new") == "new" and oz["orders"].get(x, "awaiting_packaging") == \
                "awaiting_packaging", f"order {x} short of stock was moved on its marketplace"
        made = {mp: [x for x in ids if x not in held] for mp, ids in made.items()}
        db = cloud_db.connect_readonly(demo.cloud_db)
        moved_out = {r[0].split(":")[1] for r in db.execute(  # the one move the cloud makes: out of a supply
            "SELECT o.key FROM order_events e JOIN orders o ON o.id=e.order_id WHERE e.kind='batch_changed'")}
        for x in made["wildberries"]:
            calls = wb["order_calls"].get(x, {})
            assert calls.get("confirm") == [1, 1], f"WB order {x}: confirm calls {calls}"
            assert "move" not in calls or x in moved_out, f"WB order {x} was added to a second supply: {calls}"
            assert calls.get("ship") == [1, 1], f"WB order {x}: delivered with {calls.get('ship')} supply deliveries"
            # the seller's moves exactly once each; what follows is the buyer's (delivered, returned...)
            assert wb["transitions"][x][:3] == ["new", "confirm", "complete"], wb["transitions"][x]
            assert not {"new", "confirm", "complete"} & set(wb["transitions"][x][3:]), wb["transitions"][x]
        delivered = [s for s in wb["supplies"].values() if s["done"]]
        assert sorted(o for s in delivered for o in map(str, s["orders"])) == sorted(made["wildberries"])
        for x in made["ozon"]:
            steps = oz["transitions"][x]
            assert len(steps) == len(set(steps)), f"Ozon posting {x} moved twice: {steps}"
        assert wb["spec_violations"] == [] and oz["spec_violations"] == []
        in_doubt = db.execute("SELECT COUNT(*) FROM order_events WHERE kind='in_doubt'").fetchone()[0]
        db.close()
        assert in_doubt >= 3, f"only {in_doubt} kill(s) landed in the middle of a marketplace call"
    finally:
        demo.stop()
