"""Benchmark of several `marketsync cloud serve` processes on PostgreSQL: 1 process (the baseline), then 3.

Each phase gets a fresh database in a throwaway PostgreSQL cluster the bench starts itself
(`cloud_sync.pg_cluster`: its own directory, a free port, run as the unprivileged `postgres` user when
started as root; removed afterwards; never the system's PostgreSQL), a fresh secure Mosquitto (TLS, a user
per site and per cloud process, signed envelopes), and 4 marketplaces × `--accounts` accounts: each account
is a sandbox cabinet of its own (`sandbox serve --cabinet N`'s machinery, `start_sandbox`), the cabinets
of a marketplace served by one process (4 sandbox processes). The cloud.toml is the demo's
(`marketsync.demo_config.write_cloud_config`) with `[db] url` and `[link] share_group`; the catalog is the
demo's (`seed_demo`). Every process runs `--instance N` and receives its share of the sites' traffic.

`--sites` simulated sites (`bench/lib/sites.py`: real site links, each with its own SQLite outbox) hold
`--per-site` stock changes each; they connect, `--orders` orders per account are placed in the sandboxes
at the same moment, and the time runs until the store's ledger has every change (site messages/s) and the
store has every order (orders/s). In the 3-process phase a second wave follows, and the process holding
most job leases is SIGKILLed in it: take-over = seconds until every job it held is held by a live process
(the store's `job_leases`). Duplicates, judged from outside after everything settled: a site change twice
in the ledger (`stock_moves.ref`), an order moved twice by one action (the sandboxes' own `order_calls`:
applied more than once), a stock push sent twice (the sandboxes' `stock_repeats`: a card's last written
number written again; the writes above the store's count of pushes sent, `stock_push_stats`, are printed
beside it: a killed process's call in flight lands unrecorded, and a newer number after it is no repeat).
Last line:
`sites=N msgs_per_s=X ratio_3_to_1=Y takeover_s=Z duplicates=D` (msgs_per_s: 3 processes).

Sizes. `--sites` site links run in processes of 100 (`bench/lib/sites.py`: paho's select() takes no file
descriptor above 1023, and a process of 250 links never connected past the ~170th), all connecting at once;
a simulated site looks at its outbox once a second when idle. The cluster takes 1,000 connections (each job
thread of a cloud process keeps one). `MARKETSYNC_PG_LOCK_STATS=<folder>` makes every process write how long
each call site waited for and held the store's writer lock (`cloud_sync.pg`), the figure to read first when
msgs/s is low.

Where the time goes at the issue's size (`--sites 500 --accounts 10`, see the README's figures): the 40
accounts' jobs (order polls, status re-reads, stock pushes of every site change to 40 accounts' cards) and the
site link share one writer lock per store; the hot ones are keyed transactions now (leases, each account's
stock sender, a round of site deltas that only add units: `sitelink.sqlite.transaction`'s `keys`), the
others (planning, orders, actions) still take it whole, and a keyed transaction waits behind those queued.

usage: python bench/scale.py [--sites 100] [--per-site 2] [--accounts 2] [--orders 5] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import psycopg  # noqa: E402
from lib.cpu import Split  # noqa: E402
from lib.sites import LINKS_PER_PROCESS, delta, fill_outbox, outbox_depth, spawn_child, stop_child, wait_ready  # noqa: E402

from cloud_sync.config import load_config  # noqa: E402
from cloud_sync.db import connect  # noqa: E402
from cloud_sync.pg_cluster import Cluster, available  # noqa: E402
from cloud_sync.schema import open_db  # noqa: E402
from marketplaces.sandbox.registry import start_sandbox  # noqa: E402
from marketsync.broker import Broker  # noqa: E402
from marketsync.demo_catalog import demo_items, seed_demo  # noqa: E402
from marketsync.demo_config import write_cloud_config  # noqa: E402
from marketsync.onec_demo_files import WAREHOUSE_ID  # noqa: E402
from marketsync.procs import Service, marketsync_argv  # noqa: E402

MARKETPLACES = {"wildberries": "wb", "ozon": "ozon", "yandex_market": "ym", "megamarket": "mm"}
GROUP = "ms-cloud"
ITEMS = 40  # cards per sandbox cabinet = the demo catalog's items
TIME_SCALE = 10.0  # the marketplaces' limits 10 times faster (as bench/oversell.py)


# ---------------------------------------------------------------- the sandboxes' process


def serve_sandboxes(marketplace: str, accounts: int) -> None:
    """A process serving `accounts` cabinets of one marketplace, each on its own port; first line: the
    announcements (account -> {marketplace, url, credentials, options}) as `sandbox serve` prints them."""
    out: dict[str, Any] = {}
    for cabinet in range(accounts):
        sb = start_sandbox(marketplace, 0, seed=ITEMS, time_scale=TIME_SCALE, cabinet=cabinet, validate=False)
        info: dict[str, Any] = {"marketplace": marketplace, "url": sb.url, "credentials": sb.credentials}
        if sb.app.account_options():
            info["options"] = sb.app.account_options()
        out[f"{MARKETPLACES[marketplace]}-{cabinet + 1}"] = info
    print(json.dumps(out), flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})


def http_json(method: str, url: str, body: dict | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read() or b"null")


# ---------------------------------------------------------------- the store, read from outside


def one(url: str, sql: str, args: tuple = ()) -> Any:
    conn = connect(url)
    try:
        return conn.execute(sql, args).fetchone()[0]
    finally:
        conn.close()


def rows(url: str, sql: str, args: tuple = ()) -> list:
    conn = connect(url)
    try:
        return [tuple(r) for r in conn.execute(sql, args).fetchall()]
    finally:
        conn.close()


def applied(url: str) -> int:
    return one(url, "SELECT COUNT(*) FROM stock_moves WHERE source LIKE 'site:%'")


def wait(what: str, cond, timeout: float, every: float = 0.1) -> float:  # noqa: ANN001
    """Seconds until `cond()` is true (RuntimeError after `timeout`)."""
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise RuntimeError(f"not in {timeout:.0f} s: {what}")
        time.sleep(every)
    return time.monotonic() - t0


# ---------------------------------------------------------------- one phase


class Phase:
    """N cloud processes on a fresh database, broker and sandboxes (see the module doc)."""

    def __init__(self, procs: int, args: argparse.Namespace, cluster: Cluster, work: Path) -> None:
        self.n, self.args, self.work = procs, args, work
        self.sites = [f"site-{i}" for i in range(1, args.sites + 1)]
        dbname = f"scale_{procs}"
        admin = psycopg.connect(cluster.url, autocommit=True)
        admin.execute(f"CREATE DATABASE {dbname}")
        admin.close()
        self.url = cluster.url.replace("/postgres?", f"/{dbname}?")
        self.services: list[Service] = []
        self.clouds: list[Service] = []
        self.site_procs: list = []
        self.broker: Broker | None = None
        self.sandboxes: dict[str, dict[str, Any]] = {}
        self.items = [i.item_id for i in demo_items(ITEMS, 7)]
        self.orders_made = 0

    def say(self, text: str) -> None:
        print(f"  [{self.n}p] {text}", flush=True)

    def start(self) -> None:
        t0 = time.monotonic()
        self.broker = Broker(workdir=self.work / "broker", secure=True, sites=self.sites, cloud_processes=3).start()
        for mp in MARKETPLACES:
            svc = Service(f"sandboxes-{mp}", [sys.executable, __file__, "--sandboxes", mp, str(self.args.accounts)],
                          self.work / "logs" / f"sandboxes-{mp}.log")
            self.services.append(svc)
            self.sandboxes.update(svc.start(timeout=120))
        link = {**self.broker.link_settings(), "share_group": GROUP, "member_username": "cloud-{instance}"}
        written = write_cloud_config(self.work / "cloud", db_path=self.work / "unused.sqlite", link=link,
                                     time_scale=TIME_SCALE, sandboxes=self.sandboxes, db_url=self.url)
        cfg = load_config(str(written.path))
        conn = open_db(self.url)
        seed_demo(conn, cfg, ITEMS)
        conn.close()
        for n in range(1, self.n + 1):
            svc = Service(f"cloud-{n}", marketsync_argv("cloud", "serve", "--config", str(written.path),
                                                         "--instance", str(n)), self.work / "logs" / f"cloud-{n}.log")
            self.clouds.append(svc)
            svc.start(timeout=180)
        assert self.broker.log_path is not None
        wait("each process's member on the broker", lambda: all(
            f"as cloud-{n} " in self.broker.log_path.read_text() for n in range(1, self.n + 1)), 60)
        jobs = len(self.sandboxes)
        wait("every account's order polling held by a process", lambda: one(
            self.url, "SELECT COUNT(*) FROM job_leases WHERE name LIKE 'orders:%' AND owner IS NOT NULL") >= jobs, 120)
        # the first sync pushed the catalog's stock to every account (orders need published stock)
        wait("the first stock push on every account", lambda: one(
            self.url, "SELECT COUNT(*) FROM stock_push_stats WHERE sent > 0") >= jobs, 180, 0.5)
        owners = rows(self.url, "SELECT owner, COUNT(*) FROM job_leases WHERE owner IS NOT NULL GROUP BY owner")
        self.say(f"{self.n} process(es) up in {time.monotonic() - t0:.1f} s; job leases per process: "
                 f"{sorted(n for _, n in owners)}")

    def site_cfg(self, site: str) -> dict[str, Any]:
        assert self.broker is not None
        # a simulated site looks at its outbox once a second when idle (a real one every 50 ms, on its own box:
        # here 500 of them at 20 looks a second took most of a core from the cloud being measured); what
        # it sends it publishes at once, acknowledgements wake it
        return {"role": "site", "site_id": site, "db_path": str(self.work / "sites" / f"{site}.db"),
                "resend_after": 10.0, "poll_interval": 1.0, **self.broker.link_settings(site)}

    def fill(self, start: int) -> None:
        (self.work / "sites").mkdir(exist_ok=True)
        for k, s in enumerate(self.sites):
            fill_outbox(self.site_cfg(s), self.args.per_site, lambda j, s=s, k=k: delta(
                j, s, warehouse=WAREHOUSE_ID, item=self.items[(k + j) % len(self.items)]), start=start)

    def place_orders(self) -> None:
        made = []

        def one_account(info: dict) -> None:
            made.append(len(http_json("POST", info["url"] + "/_sandbox/orders",
                                      {"count": self.args.orders})["orders"]))
        threads = [threading.Thread(target=one_account, args=(info,)) for info in self.sandboxes.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.orders_made += sum(made)

    def connect_sites(self) -> None:
        cfgs = [self.site_cfg(s) for s in self.sites]
        procs = [spawn_child({"role": "sites", "links": cfgs[i:i + LINKS_PER_PROCESS]})
                 for i in range(0, len(cfgs), LINKS_PER_PROCESS)]
        self.site_procs.extend(procs)
        for p in procs:  # all connecting at once
            wait_ready(p)

    def disconnect_sites(self) -> None:
        for p in self.site_procs:
            stop_child(p)
        self.site_procs = []

    def wave(self, start: int, kill_after: float | None = None) -> dict[str, float]:
        """One wave: outboxes filled, orders placed, sites connected; seconds until applied/ingested."""
        self.fill(start)
        before, orders_before = applied(self.url), one(self.url, "SELECT COUNT(*) FROM orders")
        target = before + len(self.sites) * self.args.per_site
        t0 = time.monotonic()
        made_before = self.orders_made
        self.place_orders()
        orders_target = orders_before + self.orders_made - made_before
        done: dict[str, float] = {}
        stop = threading.Event()

        def watch() -> None:  # when each count first reached its target (and the first change landed), from t0
            while not stop.is_set() and len(done) < 3:
                now = time.monotonic() - t0
                n = applied(self.url) if "msgs_t" not in done else target
                if "first_t" not in done and n > before:
                    done["first_t"] = now
                if "msgs_t" not in done and n >= target:
                    done["msgs_t"] = now
                if "orders_t" not in done and one(self.url, "SELECT COUNT(*) FROM orders") >= orders_target:
                    done["orders_t"] = now
                time.sleep(0.05)
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        cpu = Split(self.cpu_group)
        cpu.start()
        self.connect_sites()
        out: dict[str, float] = {"connected_s": time.monotonic() - t0}
        if kill_after is not None:
            time.sleep(kill_after)
            out["takeover_s"] = self.kill_one()
        try:
            wait("every site change in the ledger and every order in the store", lambda: len(done) == 3, 900, 0.2)
        finally:
            stop.set()
        cpu.stop()
        self.say(f"CPU while the wave ran: {cpu.line()}")
        out.update(done, msgs=target - before, orders=orders_target - orders_before, busy_pct=cpu.busy_pct)
        wait("every site's outbox acknowledged", lambda: not any(
            outbox_depth(self.work / "sites" / f"{s}.db") for s in self.sites), 300, 0.5)
        self.disconnect_sites()
        return out

    def cpu_group(self, pid: int, name: str, pgid: int) -> str | None:
        """Which part of the bench a process is (lib.cpu.Split): the cloud processes, the sandboxes, the
        simulated sites, PostgreSQL, the broker, this bench."""
        if any(c.proc is not None and c.proc.pid == pgid for c in self.clouds):
            return "cloud"
        if any(s.proc is not None and s.proc.pid == pgid for s in self.services):
            return "sandboxes"
        if any(p.pid == pid for p in self.site_procs):
            return "sites"
        if name in ("postgres", "mosquitto"):
            return {"postgres": "PostgreSQL", "mosquitto": "broker"}[name]
        return "bench" if pid == os.getpid() else None

    def kill_one(self) -> float:
        """SIGKILL the process holding most job leases; seconds until each of its jobs has a live owner."""
        owners = rows(self.url, "SELECT p.pid, p.id, COUNT(*) FROM job_leases j JOIN cloud_processes p ON"
                                " p.id = j.owner GROUP BY p.pid, p.id ORDER BY COUNT(*) DESC")
        by_pid = {c.proc.pid: c for c in self.clouds if c.proc is not None and c.alive}
        pid, victim_id, held = next(r for r in owners if r[0] in by_pid)
        jobs = [r[0] for r in rows(self.url, "SELECT name FROM job_leases WHERE owner = ?", (victim_id,))]
        victim = by_pid[pid]
        t0 = time.monotonic()
        os.killpg(pid, signal.SIGKILL)
        assert victim.proc is not None
        victim.proc.wait(10)
        self.clouds.remove(victim)
        marks = ",".join("?" for _ in jobs)

        def taken() -> bool:
            owners_now = rows(self.url, "SELECT j.owner FROM job_leases j WHERE j.name IN (" + marks + ")",
                              tuple(jobs))
            return all(o and o != victim_id and any(f":{c.proc.pid}:" in o for c in self.clouds if c.proc)
                       for (o,) in owners_now)
        wait("the killed process's jobs taken over", taken, 120, 0.05)
        took = time.monotonic() - t0
        self.say(f"SIGKILLed {victim.name} (held {held} job leases): all taken over in {took:.2f} s")
        return took

    def duplicates(self) -> dict[str, int]:
        site = one(self.url, "SELECT COUNT(*) - COUNT(DISTINCT ref) FROM stock_moves WHERE source LIKE 'site:%'")
        order_dups = order_again = repeats = unrecorded = writes = 0
        samples: list[tuple] = []
        sent = dict(rows(self.url, "SELECT account, sent FROM stock_push_stats"))
        for account, info in self.sandboxes.items():
            st = http_json("GET", info["url"] + "/_sandbox/state")
            for acts in st.get("order_calls", {}).values():
                order_dups += sum(1 for received_applied in acts.values() if received_applied[1] > 1)
                order_again += sum(1 for received_applied in acts.values() if received_applied[0] > 1)
            repeats += int(st.get("stock_repeats", 0))
            samples += [(account, *x) for x in st.get("stock_repeat_samples", [])]
            unrecorded += max(0, int(st.get("stock_writes", 0)) - int(sent.get(account, 0)))
            writes += int(st.get("stock_writes", 0))
        self.say(f"stock writes the sandboxes received: {writes}; pushes the store counts sent: {sum(sent.values())};"
                 f" received and not counted (a killed process's call in flight, or a newer number after it):"
                 f" {unrecorded}; the same number written to a card twice in a row: {repeats}")
        if samples:
            self.say("  repeats (account, card, number, seconds since its last write): "
                     + "; ".join(" ".join(str(v) for v in x) for x in samples[:12]))
        return {"site_msgs": site, "order_moves": order_dups, "stock_pushes": repeats,
                "order_calls_repeated": order_again}

    def stop(self) -> None:
        self.disconnect_sites()
        for c in self.clouds:
            c.stop()
        for s in self.services:
            s.stop()
        if self.broker is not None:
            self.broker.close()


def run_phase(procs: int, args: argparse.Namespace, cluster: Cluster) -> dict[str, Any]:
    tmp = tempfile.mkdtemp(prefix=f"bench-scale-{procs}-")
    try:
        ph = Phase(procs, args, cluster, Path(tmp))
        try:
            ph.start()
            first = ph.wave(0)
            res: dict[str, Any] = {**first, "msg_s": first["msgs"] / first["msgs_t"],
                                   "orders_s": first["orders"] / first["orders_t"],
                                   "applying_s": first["msgs"] / max(first["msgs_t"] - first["first_t"], 1e-9)}
            ph.say(f"{first['msgs']:,} site changes in {first['msgs_t']:.2f} s ({res['msg_s']:,.2f} msg/s); "
                   f"{first['orders']} orders in {first['orders_t']:.2f} s ({res['orders_s']:,.1f} orders/s); "
                   f"sites connected in {first['connected_s']:.2f} s; the first change applied at "
                   f"{first['first_t']:.2f} s, from there {res['applying_s']:,.2f} msg/s")
            if procs > 1:
                second = ph.wave(args.per_site, kill_after=args.kill_after)
                res["takeover_s"] = second["takeover_s"]
                ph.say(f"wave with the kill: {second['msgs']:,} changes in {second['msgs_t']:.2f} s, "
                       f"{second['orders']} orders in {second['orders_t']:.2f} s")
            time.sleep(3.0)  # pushes and order moves in flight settle
            res["dups"] = ph.duplicates()
            ph.say(f"duplicates: {res['dups']}")
            return res
        finally:
            ph.stop()
    finally:
        if args.keep:
            print(f"  [{procs}p] kept: {tmp}", flush=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    if len(sys.argv) > 3 and sys.argv[1] == "--sandboxes":
        serve_sandboxes(sys.argv[2], int(sys.argv[3]))
        return
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sites", type=int, default=100)
    p.add_argument("--per-site", type=int, default=2, help="stock changes per site and wave")
    p.add_argument("--accounts", type=int, default=2, help="accounts per marketplace (4 marketplaces)")
    p.add_argument("--orders", type=int, default=5, help="orders placed per account and wave")
    p.add_argument("--keep", action="store_true", help="keep each phase's folder (logs, sites' outboxes)")
    p.add_argument("--kill-after", type=float, default=1.0, help="seconds into the second wave of 3 processes")
    args = p.parse_args()
    if not available():
        print("PostgreSQL server binaries not installed (scripts/install-system-deps.sh): nothing measured")
        return
    load0 = os.getloadavg()
    print(f"{args.sites} sites x {args.per_site} changes, 4 marketplaces x {args.accounts} accounts x "
          f"{args.orders} orders; load average before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}", flush=True)
    t0 = time.monotonic()
    with Cluster(max_connections=1000) as cluster:  # 3 processes x (a connection per job thread + pools)
        print(f"PostgreSQL: a throwaway cluster on 127.0.0.1:{cluster.port} ({cluster.dir})", flush=True)
        try:
            one_p = run_phase(1, args, cluster)
            three = run_phase(3, args, cluster)
        except BaseException:
            log = cluster.dir / "server.log"
            if log.exists():
                print("PostgreSQL's log (its end):\n" + log.read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
    load1 = os.getloadavg()
    ratio = three["msg_s"] / one_p["msg_s"]
    dups = sum(v for k, v in {**one_p["dups"]}.items() if k != "order_calls_repeated") + sum(
        v for k, v in three["dups"].items() if k != "order_calls_repeated")
    print(f"baseline, 1 process:  {one_p['msg_s']:8,.2f} site msg/s  {one_p['orders_s']:7,.1f} orders/s")
    print(f"3 processes:          {three['msg_s']:8,.2f} site msg/s  {three['orders_s']:7,.1f} orders/s  "
          f"(x{ratio:.2f} msgs, x{three['orders_s'] / one_p['orders_s']:.2f} orders)")
    print(f"while applying (from the first change in the ledger to the last; the sites' connecting, the same"
          f" in both phases, left out): 1 process {one_p['applying_s']:,.2f} msg/s, 3 processes"
          f" {three['applying_s']:,.2f} msg/s (x{three['applying_s'] / one_p['applying_s']:.2f})")
    print(f"the box's cores were busy {one_p['busy_pct']:.0f} % during the 1-process wave and"
          f" {three['busy_pct']:.0f} % during the 3-process one: at the same CPU per message, 3 processes can"
          f" go at most x{100 / max(one_p['busy_pct'], 1):.2f} of 1 on this box")
    print(f"take-over after SIGKILL: {three['takeover_s']:.2f} s; duplicates: 1 process {one_p['dups']}, "
          f"3 processes {three['dups']}")
    print(f"load average after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; {time.monotonic() - t0:.0f} s in all")
    print(f"sites={args.sites} msgs_per_s={three['msg_s']:.2f} ratio_3_to_1={ratio:.2f} "
          f"takeover_s={three['takeover_s']:.2f} duplicates={dups}")


if __name__ == "__main__":
    main()
