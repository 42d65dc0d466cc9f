"""Stock push at the documented ceiling: N SKUs (default 100,000) over several warehouses per marketplace.

For each marketplace: a sandbox is served on 127.0.0.1 at a time scale (its limits run K times faster;
the adapter takes the same factor), the adapter reads the cards and warehouses through the API, then
pushes N stock levels (card x warehouse) in one `push_stocks` call. Reported:

- elapsed / floor: the floor is what the documented limits allow at best, from the endpoint map:
  `max(0, requests - burst) / rate` for the stock group (and the account-wide limit where there is one),
  or `(ceil(requests / max) - 1) * window` for a sliding-window group (Ozon: 80 in any minute),
  divided by the time scale. Target: ratio <= 1.10.
- throttled: 429s the sandbox answered for documented limits, plus per-item refusals inside 200 (Ozon
  TOO_MANY_REQUESTS). Target: 0.
- naive_ratio, in the same run: one SKU per request (as common open-source integrations do), through the
  same adapter with the endpoint map overridden to `batch = 1`, on a fresh sandbox; measured over a
  sample of SKUs and extrapolated linearly to N, as a ratio to the same floor.

The sandboxes run as child processes (`marketsync sandbox serve ... --no-validate`): the contract tests
hold them to the spec; this measures pacing, not validation. Last line: `ratio_to_floor=X throttled=N naive_ratio=Y`
(X: the worst marketplace, N: the sum, Y: the smallest naive ratio).

Other marketplaces plug in with `BENCHES[name] = Target(...)` (see `Target`), e.g. from their module.

    .venv/bin/python bench/stock_push.py [--skus 100000] [--only wildberries,ozon] [--naive-sample 400]
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import json
import signal
import subprocess

import httpx  # noqa: E402

from marketplaces import open_account  # noqa: E402
from marketplaces.base import AccountConfig, StockLevel  # noqa: E402
from marketplaces.endpoints import EndpointMap, load_endpoint_map  # noqa: E402
from marketplaces.http import reset_limiters  # noqa: E402


class SandboxProcess:
    """`marketsync sandbox serve <mp>` as a child process (its own interpreter, so the sandbox's CPU
    does not share the bench's GIL), without OpenAPI validation; stopped with SIGTERM."""

    def __init__(self, marketplace: str, *, seed: int, time_scale: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "marketsync.cli", "sandbox", "serve", marketplace, "--port", "0",
             "--seed", str(seed), "--time-scale", str(time_scale), "--no-validate"],
            cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, text=True)
        first = json.loads(self.proc.stdout.readline())
        self.url = first["url"]
        self.credentials = first["credentials"]

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except Exception:  # noqa: BLE001 - it must not outlive the bench
            self.proc.kill()
            self.proc.wait()


def start_sandbox(marketplace: str, *, seed: int, time_scale: float, validate: bool = False) -> SandboxProcess:
    return SandboxProcess(marketplace, seed=seed, time_scale=time_scale)


def requests_per_batch(levels: Sequence[StockLevel], batch: int) -> int:
    """Requests when any warehouse mixes in one request (Ozon): ceil(N / batch)."""
    return math.ceil(len(levels) / max(1, batch))


def requests_per_warehouse(levels: Sequence[StockLevel], batch: int) -> int:
    """Requests when each request is for one warehouse (WB `PUT /api/v3/stocks/{warehouseId}`)."""
    counts: dict[str, int] = {}
    for lv in levels:
        counts[lv.warehouse_id] = counts.get(lv.warehouse_id, 0) + 1
    return sum(math.ceil(c / max(1, batch)) for c in counts.values())


def documented_floor(levels: Sequence[StockLevel], emap: EndpointMap, endpoint: str, time_scale: float,
                     requests_fn: Callable[[Sequence[StockLevel], int], int]) -> tuple[float, int]:
    """(seconds, requests): the least time the documented limits allow for this push."""
    ep = emap[endpoint]
    requests = requests_fn(levels, ep.batch or 1)
    limits = [emap.groups[ep.group]] + ([emap.account_limit] if emap.account_limit else [])

    def least(lim) -> float:  # noqa: ANN001 - an endpoints.Limit
        if getattr(lim, "window_s", 0) > 0:  # at most `burst` in any window: full windows after the first
            return (math.ceil(requests / lim.burst) - 1) * lim.window_s
        return max(0.0, requests - lim.burst) / lim.rate

    floor = max(least(lim) for lim in limits)
    return floor / time_scale, requests


@dataclass
class Target:
    """How to bench one marketplace. `credentials_to_config` turns the sandbox's credentials and URL
    into an AccountConfig; `floor` may be replaced where the marketplace counts items, not requests."""

    marketplace: str
    time_scale: float
    endpoint: str = "stocks_update"
    requests_fn: Callable[[Sequence[StockLevel], int], int] = requests_per_batch
    options: dict = field(default_factory=dict)
    warehouses: int = 3  # the sandbox's warehouses: it is seeded with N / warehouses cards
    floor: Callable[..., tuple[float, int]] = documented_floor


def items_floor(levels: Sequence[StockLevel], emap: EndpointMap, endpoint: str, time_scale: float,
                requests_fn: Callable[[Sequence[StockLevel], int], int]) -> tuple[float, int]:
    """The floor where the limit counts items, not requests (Yandex.Market: 100,000 SKUs per minute):
    `max(0, items - burst) / rate` of the stock group, divided by the time scale."""
    ep = emap[endpoint]
    group = emap.groups[ep.group]
    return max(0.0, len(levels) - group.burst) / group.rate / time_scale, requests_fn(levels, ep.batch or 1)


BENCHES: dict[str, Target] = {
    "wildberries": Target("wildberries", time_scale=5.0, requests_fn=requests_per_warehouse),
    "ozon": Target("ozon", time_scale=20.0, requests_fn=requests_per_batch),
    # YM: one store per warehouse, stocks counted per SKU; the sandbox's cabinet and store ids
    "yandex_market": Target("yandex_market", time_scale=5.0, requests_fn=requests_per_warehouse,
                            options={"business_id": 7700001, "campaign_id": 21000001}, warehouses=1,
                            floor=items_floor),
    # MM: one warehouse per store, 300 offers a request, 5 requests/s per seller; the sandbox's merchant
    "megamarket": Target("megamarket", time_scale=3.0, requests_fn=requests_per_batch,
                         options={"merchant_id": 5001234, "shipping_point": 1001}, warehouses=1),
}


def _config(running, target: Target, name: str, endpoints: dict | None = None) -> AccountConfig:
    options = dict(target.options)
    options.setdefault("limit_key", name)
    return AccountConfig(name=name, marketplace=target.marketplace, base_url=running.url,  # type: ignore[arg-type]
                         credentials=dict(running.credentials), endpoints=endpoints or {},
                         time_scale=target.time_scale, options=options)


def _levels(adapter, n: int) -> list[StockLevel]:
    cards = list(adapter.list_cards())
    whs = [w for w in adapter.warehouses() if w.kind == "fbs"] or adapter.warehouses()
    levels = [StockLevel(c.native_id, c.offer_id, w.native_id, (i * 7 + j) % 100)
              for j, w in enumerate(whs) for i, c in enumerate(cards)]
    return levels[:n]


def _throttled(running) -> int:
    state = httpx.get(running.url + "/_sandbox/state", timeout=30).json()
    return int(state["throttled"]) + int(state.get("throttled_items", 0))


def bench_one(target: Target, n: int, naive_sample: int) -> dict:
    reset_limiters()
    seed = math.ceil(n / target.warehouses)  # N levels = cards x warehouses
    with start_sandbox(target.marketplace, seed=seed, time_scale=target.time_scale, validate=False) as running:
        adapter = open_account(_config(running, target, f"bench-{target.marketplace}"))
        levels = _levels(adapter, n)
        n_wh = len({lv.warehouse_id for lv in levels})
        emap = load_endpoint_map(target.marketplace)
        floor_s, requests = target.floor(levels, emap, target.endpoint, target.time_scale, target.requests_fn)
        before = _throttled(running)
        started = time.perf_counter()
        results = adapter.push_stocks(levels)
        elapsed = time.perf_counter() - started
        throttled = _throttled(running) - before
        failed = sum(not r.ok for r in results)
    reset_limiters()
    sample = levels[:naive_sample]
    with start_sandbox(target.marketplace, seed=seed, time_scale=target.time_scale, validate=False) as running:
        naive = open_account(_config(running, target, f"naive-{target.marketplace}",
                                     endpoints={target.endpoint: {"batch": 1}}))
        naive.list_cards()  # adapters that map ids from the catalog have it before the clock starts
        started = time.perf_counter()
        naive.push_stocks(sample)
        naive_elapsed = time.perf_counter() - started
    naive_total = naive_elapsed * n / max(1, len(sample))
    return {"marketplace": target.marketplace, "skus": len(levels), "warehouses": n_wh, "requests": requests,
            "time_scale": target.time_scale, "elapsed_s": elapsed, "floor_s": floor_s,
            "ratio": elapsed / floor_s if floor_s > 0 else None, "throttled": throttled, "failed": failed,
            "naive_sample": len(sample), "naive_elapsed_s": naive_elapsed, "naive_total_s": naive_total,
            "naive_ratio": naive_total / floor_s if floor_s > 0 else None}


def _fmt(value: float | None, digits: int) -> str:
    return "n/a (within the burst)" if value is None else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--skus", type=int, default=100_000, help="stock levels (card x warehouse) to push")
    parser.add_argument("--only", default="", help="comma-separated marketplaces (default: all registered)")
    parser.add_argument("--naive-sample", type=int, default=400, help="SKUs pushed one per request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    names = [n for n in (args.only.split(",") if args.only else BENCHES) if n]
    rows = []
    for name in names:
        row = bench_one(BENCHES[name], args.skus, args.naive_sample)
        rows.append(row)
        print(f"{name}: {row['skus']} SKUs on {row['warehouses']} warehouses in {row['requests']} requests at "
              f"time scale {row['time_scale']:g}: {row['elapsed_s']:.2f}s vs floor {row['floor_s']:.2f}s "
              f"(ratio {_fmt(row['ratio'], 3)}), throttled {row['throttled']}, failed {row['failed']}; naive one "
              f"SKU per request: {row['naive_sample']} SKUs in {row['naive_elapsed_s']:.2f}s -> "
              f"{row['naive_total_s']:.0f}s for {row['skus']} (ratio {_fmt(row['naive_ratio'], 1)})", flush=True)
    ratios = [r["ratio"] for r in rows if r["ratio"] is not None]  # None: the push fits in the burst
    worst = max(ratios) if ratios else 1.0
    throttled = sum(r["throttled"] for r in rows)
    naive_ratios = [r["naive_ratio"] for r in rows if r["naive_ratio"] is not None]
    naive = min(naive_ratios) if naive_ratios else float("nan")
    print(f"ratio_to_floor={worst:.3f} throttled={throttled} naive_ratio={naive:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
