"""Benchmark: many sellers (schemas) of one PostgreSQL database served by one cloud process (issue 20, point 4).

A throwaway cluster (cloud_sync.pg_cluster) with `--sellers` schemas, each a small table. A child process
checks out a connection for each seller in turn (connect, one SELECT, close: what a web request or a job
round does), first one round to warm up (as many threads), then `--rounds` rounds measured, once with one thread and once
with `--threads` threads at the same time. It prints per run: the server connections the process held
(most seen in pg_stat_activity, sampled every 20 ms), the server connections opened after warm-up, and the
checkout time (mean, median, 95th percentile), with the child's CPU seconds beside the wall time.

The baseline, alternating with this checkout's runs (baseline, this, baseline, this) so the box's load
weighs on both alike: this checkout with the pool switched off (`cloud_sync.pg.pooling = False`: a server
connection opened and closed per checkout), or with `--baseline DIR` the same child on another checkout of
the project (its `cloud_sync`).

    .venv/bin/python bench/sellers_pool.py [--sellers 40] [--rounds 10] [--threads 4] [--baseline /path/to/main]

Last line: `sellers=N held=H opened_after_warm_up=O checkout_ms=M` of this checkout (one thread), followed
by `baseline_held=... baseline_opened_after_warm_up=... baseline_checkout_ms=...` of the baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def _names(n: int) -> list[str]:
    return [f"t_seller_{i:03d}" for i in range(n)]


def _backends(raw) -> set[int]:
    rows = raw.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend'"
                       " AND pid <> pg_backend_pid() AND datname = current_database()").fetchall()
    return {int(r[0]) for r in rows}


def child(url: str, sellers: int, rounds: int, threads: int, pooled: bool = True) -> dict:
    """One process's run: every seller in turn, by `threads` threads at once (import from PYTHONPATH)."""
    import psycopg

    from cloud_sync import pg

    pg.pooling = pooled

    names = _names(sellers)
    watcher = psycopg.connect(url, autocommit=True)
    before = _backends(watcher)
    most = [0]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            most[0] = max(most[0], len(_backends(watcher) - before))
            time.sleep(0.02)

    def one_round(times: list[float], pids: set[int], offset: int) -> None:
        for k in range(len(names)):
            name = names[(k + offset) % len(names)]
            t0 = time.perf_counter()
            conn = pg.connect(url, schema=name)
            row = conn.execute("SELECT seller, pg_backend_pid() FROM notes").fetchone()
            conn.close()
            times.append(time.perf_counter() - t0)
            assert row[0] == name, (row, name)
            pids.add(int(row[1]))

    def run(n_threads: int, n_rounds: int) -> tuple[list[float], set[int]]:
        times: list[float] = []
        pids: set[int] = set()

        def work(offset: int) -> None:
            for _ in range(n_rounds):
                one_round(times, pids, offset)

        ts = [threading.Thread(target=work, args=(i * len(names) // n_threads,)) for i in range(n_threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return times, pids

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out: dict = {}
    for label, n_threads in (("one thread", 1), (f"{threads} threads", threads)):
        _, warm_pids = run(n_threads, 1)  # warm-up: one round, as many threads
        warm = _backends(watcher) - before
        most[0] = len(warm)
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        wall0 = time.perf_counter()
        times, pids = run(n_threads, rounds)
        wall = time.perf_counter() - wall0
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        held_now = _backends(watcher) - before
        opened = len((pids | held_now) - warm - warm_pids)
        times.sort()
        out[label] = {
            "checkouts": len(times), "held_max": most[0], "held_end": len(held_now), "opened_after_warm_up": opened,
            "checkout_ms_mean": round(1000 * statistics.fmean(times), 3),
            "checkout_ms_p50": round(1000 * times[len(times) // 2], 3),
            "checkout_ms_p95": round(1000 * times[int(len(times) * 0.95)], 3),
            "wall_s": round(wall, 2),
            "cpu_s": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 2),
        }
    stop.set()
    sampler.join()
    pg.close_pools()
    watcher.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sellers", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--baseline", default="", help="another checkout of the project to run beside this one")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)  # the cluster's URL: run one child
    ap.add_argument("--no-pool", action="store_true", help=argparse.SUPPRESS)  # a child with the pool off
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.sellers, args.rounds, args.threads, pooled=not args.no_pool)))
        return 0

    sys.path.insert(0, str(HERE))
    import psycopg

    from cloud_sync.pg_cluster import Cluster

    if args.baseline:
        trees = [("baseline", Path(args.baseline).resolve(), False), ("this", HERE, False)] * 2
    else:
        trees = [("baseline", HERE, True), ("this", HERE, False)] * 2  # baseline: the pool off
    with Cluster() as cluster:
        url = cluster.url
        with psycopg.connect(url, autocommit=True) as raw:
            for name in _names(args.sellers):
                raw.execute(f'CREATE SCHEMA "{name}"; CREATE TABLE "{name}".notes (seller text);'
                            f""" INSERT INTO "{name}".notes VALUES ('{name}')""")
        results: dict[str, list[dict]] = {}
        for label, tree, no_pool in trees:
            env = dict(os.environ, PYTHONPATH=str(tree))  # -P: not bench/ first (its sitelink.py is no package)
            done = subprocess.run([sys.executable, "-P", str(Path(__file__).resolve()), "--child", url,
                                   "--sellers", str(args.sellers), "--rounds", str(args.rounds),
                                   "--threads", str(args.threads), *(["--no-pool"] if no_pool else [])],
                                  env=env, capture_output=True, text=True, timeout=1800)
            if done.returncode != 0:
                print(done.stderr, file=sys.stderr)
                return 1
            results.setdefault(label, []).append(json.loads(done.stdout.strip().splitlines()[-1]))
    load = os.getloadavg()
    print(f"{args.sellers} sellers (schemas) of one database, {args.rounds} rounds each; load average"
          f" {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}; baseline: "
          + (f"the checkout at {args.baseline}" if args.baseline else "this checkout with the pool off"))
    for mode in ("one thread", f"{args.threads} threads"):
        print(f"-- {mode}: connect + one SELECT + close, every seller in turn")
        for label, runs in results.items():
            for i, r in enumerate(runs, 1):
                m = r[mode]
                print(f"  {label:8} run {i}: held max {m['held_max']:3d} (at end {m['held_end']:3d}),"
                      f" opened after warm-up {m['opened_after_warm_up']:4d}, checkout ms mean"
                      f" {m['checkout_ms_mean']:.3f} p50 {m['checkout_ms_p50']:.3f} p95 {m['checkout_ms_p95']:.3f}"
                      f" ({m['checkouts']} checkouts, wall {m['wall_s']} s, CPU {m['cpu_s']} s)")
    last = results["this"][-1]["one thread"]
    line = (f"sellers={args.sellers} held={last['held_max']} opened_after_warm_up={last['opened_after_warm_up']}"
            f" checkout_ms={last['checkout_ms_mean']}")
    base = results["baseline"][-1]["one thread"]
    line += (f" baseline_held={base['held_max']} baseline_opened_after_warm_up={base['opened_after_warm_up']}"
             f" baseline_checkout_ms={base['checkout_ms_mean']}")
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
