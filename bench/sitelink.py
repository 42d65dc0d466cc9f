"""Benchmark of the site link: the durable link end to end beside raw paho QoS 1, same broker, same run.

1. raw:     one paho client publishes N QoS 1 messages (envelope-sized) to our own Mosquitto while a
            QoS 1 subscriber in another process receives them; time until every PUBACK is back
            (the baseline), and until the subscriber has them all (shown for reference).
2. durable: the cloud enqueues N pick tasks into its SQLite outbox (transactions of 100) while its link
            publishes them; a site link in another process applies each into its SQLite file (one row
            per task) and acknowledges; time from the first enqueue until the outbox is empty. The link
            packs a backlog into batches of up to 100 envelopes per publish; the same run without
            batching (one envelope per publish) is shown for reference.
3. drain:   with the broker down the cloud buffers 100,000 messages; the broker starts; time until all
            are applied at the site and acknowledged (outbox empty).
4. fan-in:  200 sites (in a few processes, each site its own link and SQLite file) write 50 stock changes
            each to their outboxes at once; one cloud applies them all: messages/s, and the time of each
            from its site's outbox (the envelope's `ts`) to its apply at the cloud (p50, p99).

`--secure` runs parts 2-4 on a broker set up as in production (TLS, a password per site, the ACL of
directions, every envelope and acknowledgement signed and checked); the raw baseline stays on an open one.
The machine is shared (2 cores, other work may run): figures vary by run; the ratio is measured within
one run so both sides see the same load. Last line:
`ratio_to_raw=X drain_100k_s=Y fanin_msg_s=Z fanin_p99_ms=W` (Y scaled to 100,000 messages when `--drain`
buffers another number).

usage: python bench/sitelink.py [--n 20000] [--drain 100000] [--sites 200] [--per-site 50] [--secure]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import paho.mqtt.client as mqtt  # noqa: E402

from marketsync.broker import Broker  # noqa: E402
from sitelink import LinkConfig, SiteLink, envelope, sqlite, store  # noqa: E402

SITE = "site-1"


def pick(i: int) -> dict:
    return {
        "task_id": f"t{i}",
        "order_id": f"o{i}",
        "marketplace": "wildberries",
        "lines": [{"item_id": "a", "quantity": 1}],
    }


# ------------------------------------------------------------------ child processes


def run_site(db: str, settings: dict) -> None:
    """The site side: apply every pick task into `applied`, print progress lines to stdout."""
    link = SiteLink(LinkConfig(role="site", db_path=db, site_id=SITE, **settings))
    conn = sqlite.connect(db)
    conn.execute("CREATE TABLE IF NOT EXISTS applied (task_id TEXT, seq INTEGER)")
    conn.close()

    def apply(conn: sqlite3.Connection, env: envelope.Envelope) -> None:
        conn.execute("INSERT INTO applied VALUES (?, ?)", (env.body["task_id"], env.seq))

    link.on("pick_task", apply)
    link.start()
    print("ready", flush=True)
    ready_cpu = time.process_time()
    sys.stdin.readline()  # until the parent closes stdin
    print(json.dumps({"cpu_s": time.process_time() - ready_cpu}), flush=True)  # this process's CPU since ready
    link.stop()


def run_sites(spec: dict) -> None:
    """Fan-in: many sites in one process, each its own link and SQLite file. After "go" on stdin every
    site writes `per_site` stock changes to its outbox in one transaction (a site back on line with a
    backlog, or a burst of picks), one site after the other."""
    links: list[tuple[SiteLink, sqlite3.Connection]] = []
    for site in spec["sites"]:
        link = SiteLink(LinkConfig(role="site", db_path=site["db"], site_id=site["id"], **site["settings"]))
        link.start()
        links.append((link, sqlite.connect(site["db"])))
    deadline = time.time() + 120
    while not all(link.connected for link, _ in links):
        if time.time() > deadline:
            raise SystemExit("sites not connected after 120 s")
        time.sleep(0.05)
    print("ready", flush=True)
    assert sys.stdin.readline().strip() == "go"
    for link, conn in links:
        with sqlite.transaction(conn):
            for i in range(spec["per_site"]):
                link.send(conn, "stock_delta", {"warehouse": "main", "item_id": f"i{i}", "delta": -1,
                                                "reason": "pick"})
    print("sent", flush=True)
    sys.stdin.readline()  # until the parent closes stdin
    for link, conn in links:
        conn.close()
        link.stop(timeout=1.0)


def run_raw_sub(port: int, n: int) -> None:
    got = 0
    done = threading.Event()

    def on_message(c, u, m):
        nonlocal got
        got += 1
        if got >= n:
            done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="raw-sub", protocol=mqtt.MQTTv5)
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.subscribe("bench/raw", qos=1)
    c.loop_start()
    time.sleep(0.3)
    print("ready", flush=True)
    done.wait(300)
    print(json.dumps({"received": got, "at": time.time()}), flush=True)
    c.disconnect()
    c.loop_stop()


def process_cpu() -> float:
    """CPU seconds of this process so far (every thread: the bench's enqueue, the cloud's link, paho)."""
    return time.process_time()


def site_cpu(site: subprocess.Popen) -> float:
    """Close a site child's stdin: it says its CPU seconds since it was ready, then stops."""
    site.stdin.close()  # type: ignore[union-attr]
    assert site.stdout is not None
    cpu = json.loads(site.stdout.readline())["cpu_s"]
    site.wait(30)
    return cpu


def child(args: list[str]) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


# ------------------------------------------------------------------ measurements


def bench_raw(broker: Broker, n: int, payload: str) -> tuple[float, float]:
    sub = child(["--child", "raw-sub", str(broker.port), str(n)])
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="raw-pub", protocol=mqtt.MQTTv5)
    c.max_inflight_messages_set(0)  # paho's fastest setting (a limit makes it rescan its queue per PUBACK)
    c.max_queued_messages_set(0)
    acked = 0
    done = threading.Event()

    def on_publish(client, userdata, mid, rc, props):
        nonlocal acked
        acked += 1
        if acked >= n:
            done.set()

    c.on_publish = on_publish
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    t0 = time.time()
    for _ in range(n):
        c.publish("bench/raw", payload, qos=1)
    done.wait(300)
    t_pub = time.time() - t0
    assert sub.stdout is not None
    line = json.loads(sub.stdout.readline())
    t_sub = line["at"] - t0
    sub.wait(30)
    c.disconnect()
    c.loop_stop()
    return n / t_pub, n / t_sub


def applied_count(db: str) -> int:
    conn = sqlite3.connect(db, timeout=30)
    try:
        return conn.execute("SELECT COUNT(*), COUNT(DISTINCT task_id) FROM applied").fetchone()
    finally:
        conn.close()


def enqueue(db: str, start: int, n: int, per_txn: int = 100, link: SiteLink | None = None) -> None:
    conn = sqlite.connect(db)
    for i in range(start, start + n, per_txn):
        conn.execute("BEGIN IMMEDIATE")
        for j in range(i, min(i + per_txn, start + n)):
            if link is not None:
                link.send(conn, "pick_task", pick(j), site=SITE)
            else:
                store.enqueue(conn, "cloud", SITE, "pick_task", pick(j))
        conn.execute("COMMIT")
    conn.close()


def wait_empty(db: str, timeout: float) -> float:
    conn = sqlite.connect(db)
    deadline = time.time() + timeout
    try:
        # is there a row at all (not COUNT(*): a scan of the whole outbox every 10 ms, 0.4 ms CPU at 100k
        # rows, in the cloud's own process, would be measured as the link's)
        while conn.execute("SELECT 1 FROM link_outbox LIMIT 1").fetchone():
            if time.time() > deadline:
                raise SystemExit(f"outbox not empty after {timeout}s")
            time.sleep(0.01)
        return time.time()
    finally:
        conn.close()


def bench_durable(broker: Broker, workdir: Path, n: int, publish_batch: int = 100) -> float:
    cloud_db, site_db = str(workdir / f"cloud-{publish_batch}.db"), str(workdir / f"site-{publish_batch}.db")
    site = child(["--child", "site", site_db, json.dumps(broker.link_settings(SITE))])
    cloud = SiteLink(
        LinkConfig(role="cloud", db_path=cloud_db, publish_batch=publish_batch, **broker.link_settings())
    )
    cloud.start()
    while not cloud.connected:
        time.sleep(0.01)
    enqueue(cloud_db, 0, 200, link=cloud)  # warm up
    wait_empty(cloud_db, 60)
    t0, cpu0 = time.time(), process_cpu()
    enqueue(cloud_db, 200, n, link=cloud)
    t_end = wait_empty(cloud_db, 600)
    cloud_cpu = process_cpu() - cpu0
    rate = n / (t_end - t0)
    total, distinct = applied_count(site_db)
    assert total == distinct == n + 200, f"applied {total} ({distinct} distinct), expected {n + 200}"
    cloud.stop()
    CPU[publish_batch] = (cloud_cpu / n * 100_000, site_cpu(site) / (n + 200) * 100_000)
    return rate


CPU: dict[Any, tuple[float, float]] = {}  # per run: CPU seconds per 100,000 messages (cloud process, site process)


def bench_drain(broker: Broker, workdir: Path, n: int) -> tuple[float, float]:
    cloud_db, site_db = str(workdir / "cloud-drain.db"), str(workdir / "site-drain.db")
    site = child(["--child", "site", site_db, json.dumps(broker.link_settings(SITE))])
    cloud = SiteLink(LinkConfig(role="cloud", db_path=cloud_db, **broker.link_settings()))
    cloud.start()
    while not cloud.connected:
        time.sleep(0.01)
    broker.stop()
    t0 = time.time()
    enqueue(cloud_db, 0, n, per_txn=1000, link=cloud)
    t_buffer = time.time() - t0
    t0, cpu0 = time.time(), process_cpu()
    broker.start()
    t_end = wait_empty(cloud_db, 600)
    drain = t_end - t0
    cloud_cpu = process_cpu() - cpu0
    total, distinct = applied_count(site_db)
    assert total == distinct == n, f"applied {total} ({distinct} distinct), expected {n}"
    cloud.stop()
    CPU["drain"] = (cloud_cpu / n * 100_000, site_cpu(site) / n * 100_000)  # the site's: the drain, nearly all
    return drain, t_buffer


def fanin_sites(n: int) -> list[str]:
    return [f"fan-{i:03d}" for i in range(n)]


def bench_fanin(broker: Broker, workdir: Path, n_sites: int, per_site: int, procs: int) -> dict:
    """`n_sites` sites (in `procs` processes) send `per_site` messages each at once to one cloud, which
    applies them; the time of each from its envelope's `ts` (written to the site's outbox) to its apply."""
    total = n_sites * per_site
    lags: list[float] = []
    applied_at: list[float] = []
    seen: set[str] = set()
    done = threading.Event()

    def apply(conn: sqlite3.Connection, env: envelope.Envelope) -> None:
        now = time.time()
        if env.id in seen:
            return
        seen.add(env.id)
        written = datetime.strptime(env.ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        lags.append(now - written)
        applied_at.append(now)
        conn.execute("INSERT INTO fanin VALUES (?, ?)", (env.site, env.seq))
        if len(seen) >= total:
            done.set()

    cloud_db = str(workdir / "cloud-fanin.db")
    conn = sqlite.connect(cloud_db)
    conn.execute("CREATE TABLE IF NOT EXISTS fanin (site TEXT, seq INTEGER)")
    conn.close()
    cloud = SiteLink(LinkConfig(role="cloud", db_path=cloud_db, **broker.link_settings()))
    cloud.on("stock_delta", apply)
    cloud.start()
    sites = fanin_sites(n_sites)
    children = []
    for k in range(procs):
        mine = sites[k::procs]
        spec = {"per_site": per_site, "sites": [
            {"id": s, "db": str(workdir / f"{s}.db"), "settings": broker.link_settings(s)} for s in mine]}
        children.append(child(["--child", "sites", json.dumps(spec)]))
    while not cloud.connected:
        time.sleep(0.01)
    t0 = time.time()
    for proc in children:
        proc.stdin.write("go\n")  # type: ignore[union-attr]
        proc.stdin.flush()  # type: ignore[union-attr]
    if not done.wait(600):
        raise SystemExit(f"fan-in: {len(seen)} of {total} applied after 600 s")
    t_end = max(applied_at)
    cloud.stop()
    for proc in children:
        proc.stdin.close()  # type: ignore[union-attr]
    for proc in children:
        proc.wait(60)
    check = sqlite3.connect(cloud_db)
    rows, distinct = check.execute("SELECT COUNT(*), COUNT(DISTINCT site || '/' || seq) FROM fanin").fetchone()
    check.close()
    assert rows == distinct == total, f"fan-in applied {rows} ({distinct} distinct), expected {total}"
    return {"messages": total, "rate": total / (t_end - t0), "p50": percentile(lags, 50),
            "p99": percentile(lags, 99), "max": max(lags)}


def percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, math.ceil(p / 100 * len(s)) - 1))]


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        if argv[1] == "site":
            run_site(argv[2], json.loads(argv[3]))
        elif argv[1] == "sites":
            run_sites(json.loads(argv[2]))
        else:
            run_raw_sub(int(argv[2]), int(argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="messages for the throughput comparison")
    ap.add_argument("--drain", type=int, default=100_000, help="messages buffered while the broker is down")
    ap.add_argument("--sites", type=int, default=200, help="sites sending at once for the fan-in (0: skip it)")
    ap.add_argument("--per-site", type=int, default=50, help="messages each fan-in site sends")
    ap.add_argument("--site-procs", type=int, default=4, help="processes the fan-in sites run in")
    ap.add_argument("--secure", action="store_true",
                    help="the link parts on a broker set up as in production: TLS, a password per site, the "
                    "ACL of directions, envelopes signed and checked (the raw baseline stays on the open one)")
    args = ap.parse_args(argv)
    payload = envelope.make(SITE, 1, "pick_task", pick(123456)).to_json()
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; envelope {len(payload)} bytes"
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-sitelink-") as tmp,
        Broker(workdir=Path(tmp) / "broker") as open_broker,
    ):
        raw_pub, raw_sub = bench_raw(open_broker, args.n, payload)
        print(f"raw paho QoS 1 publish (all PUBACKs back): {raw_pub:,.0f} msg/s   [baseline]")
        print(f"raw paho QoS 1 publish -> subscriber received: {raw_sub:,.0f} msg/s   (reference)")
        broker = open_broker
        if args.secure:
            broker = Broker(workdir=Path(tmp) / "secure-broker", secure=True,
                            sites=[SITE, *fanin_sites(args.sites)]).start()
            print("the link runs on a broker as in production: TLS, passwords, ACL, signed envelopes")
        durable = bench_durable(broker, Path(tmp), args.n)
        print(
            "durable link end to end (enqueued in SQLite, published, applied in SQLite, acked, deleted): "
            f"{durable:,.0f} msg/s"
        )
        print(f"  CPU per 100,000 messages: cloud process {CPU[100][0]:.2f} s (the enqueue and the link), site "
              f"process {CPU[100][1]:.2f} s")
        single = bench_durable(broker, Path(tmp), args.n, publish_batch=1)
        print(f"  the same with one envelope per MQTT publish (no batching): {single:,.0f} msg/s (reference)")
        drain, t_buffer = bench_drain(broker, Path(tmp), args.drain)
        print(f"buffered {args.drain:,} messages in the outbox with the broker down in {t_buffer:.1f}s")
        print(
            f"drained {args.drain:,} messages after the broker came back in {drain:.1f}s ({args.drain / drain:,.0f} msg/s)"
        )
        print(f"  CPU per 100,000 messages of the drain: cloud process {CPU['drain'][0]:.2f} s, site process "
              f"{CPU['drain'][1]:.2f} s")
        fanin = None
        if args.sites:
            fanin = bench_fanin(broker, Path(tmp), args.sites, args.per_site, args.site_procs)
            print(f"fan-in: {args.sites} sites ({args.site_procs} processes) sent {args.per_site} messages each at "
                  f"once: {fanin['messages']:,} applied by the cloud at {fanin['rate']:,.0f} msg/s; site outbox -> "
                  f"cloud apply p50 {fanin['p50'] * 1000:.0f} ms, p99 {fanin['p99'] * 1000:.0f} ms, "
                  f"max {fanin['max'] * 1000:.0f} ms")
        if broker is not open_broker:
            broker.stop()
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    last = f"ratio_to_raw={durable / raw_pub:.2f} drain_100k_s={drain / args.drain * 100_000:.1f}"
    if fanin is not None:
        last += f" fanin_msg_s={fanin['rate']:.0f} fanin_p99_ms={fanin['p99'] * 1000:.0f}"
    print(last)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
