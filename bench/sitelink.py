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

The machine is shared (2 cores, other work may run): figures vary by run; the ratio is measured within
one run so both sides see the same load. Last line: `ratio_to_raw=X drain_100k_s=Y`.

usage: python bench/sitelink.py [--n 20000] [--drain 100000]
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

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


def run_site(db: str, port: int) -> None:
    """The site side: apply every pick task into `applied`, print progress lines to stdout."""
    link = SiteLink(LinkConfig(role="site", db_path=db, port=port, site_id=SITE))
    conn = sqlite.connect(db)
    conn.execute("CREATE TABLE IF NOT EXISTS applied (task_id TEXT, seq INTEGER)")
    conn.close()

    def apply(conn: sqlite3.Connection, env: envelope.Envelope) -> None:
        conn.execute("INSERT INTO applied VALUES (?, ?)", (env.body["task_id"], env.seq))

    link.on("pick_task", apply)
    link.start()
    print("ready", flush=True)
    sys.stdin.readline()  # until the parent closes stdin
    link.stop()


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
        while conn.execute("SELECT COUNT(*) FROM link_outbox").fetchone()[0]:
            if time.time() > deadline:
                raise SystemExit(f"outbox not empty after {timeout}s")
            time.sleep(0.01)
        return time.time()
    finally:
        conn.close()


def bench_durable(broker: Broker, workdir: Path, n: int, publish_batch: int = 100) -> float:
    cloud_db, site_db = str(workdir / f"cloud-{publish_batch}.db"), str(workdir / f"site-{publish_batch}.db")
    site = child(["--child", "site", site_db, str(broker.port)])
    cloud = SiteLink(
        LinkConfig(role="cloud", db_path=cloud_db, port=broker.port, publish_batch=publish_batch)
    )
    cloud.start()
    while not cloud.connected:
        time.sleep(0.01)
    enqueue(cloud_db, 0, 200, link=cloud)  # warm up
    wait_empty(cloud_db, 60)
    t0 = time.time()
    enqueue(cloud_db, 200, n, link=cloud)
    t_end = wait_empty(cloud_db, 600)
    rate = n / (t_end - t0)
    total, distinct = applied_count(site_db)
    assert total == distinct == n + 200, f"applied {total} ({distinct} distinct), expected {n + 200}"
    cloud.stop()
    site.stdin.close()  # type: ignore[union-attr]
    site.wait(30)
    return rate


def bench_drain(broker: Broker, workdir: Path, n: int) -> tuple[float, float]:
    cloud_db, site_db = str(workdir / "cloud-drain.db"), str(workdir / "site-drain.db")
    site = child(["--child", "site", site_db, str(broker.port)])
    cloud = SiteLink(LinkConfig(role="cloud", db_path=cloud_db, port=broker.port))
    cloud.start()
    while not cloud.connected:
        time.sleep(0.01)
    broker.stop()
    t0 = time.time()
    enqueue(cloud_db, 0, n, per_txn=1000, link=cloud)
    t_buffer = time.time() - t0
    t0 = time.time()
    broker.start()
    t_end = wait_empty(cloud_db, 600)
    drain = t_end - t0
    total, distinct = applied_count(site_db)
    assert total == distinct == n, f"applied {total} ({distinct} distinct), expected {n}"
    cloud.stop()
    site.stdin.close()  # type: ignore[union-attr]
    site.wait(30)
    return drain, t_buffer


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        if argv[1] == "site":
            run_site(argv[2], int(argv[3]))
        else:
            run_raw_sub(int(argv[2]), int(argv[3]))
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="messages for the throughput comparison")
    ap.add_argument("--drain", type=int, default=100_000, help="messages buffered while the broker is down")
    args = ap.parse_args(argv)
    payload = envelope.make(SITE, 1, "pick_task", pick(123456)).to_json()
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; envelope {len(payload)} bytes"
    )
    with (
        tempfile.TemporaryDirectory(prefix="bench-sitelink-") as tmp,
        Broker(workdir=Path(tmp) / "broker") as broker,
    ):
        raw_pub, raw_sub = bench_raw(broker, args.n, payload)
        print(f"raw paho QoS 1 publish (all PUBACKs back): {raw_pub:,.0f} msg/s   [baseline]")
        print(f"raw paho QoS 1 publish -> subscriber received: {raw_sub:,.0f} msg/s   (reference)")
        durable = bench_durable(broker, Path(tmp), args.n)
        print(
            "durable link end to end (enqueued in SQLite, published, applied in SQLite, acked, deleted): "
            f"{durable:,.0f} msg/s"
        )
        single = bench_durable(broker, Path(tmp), args.n, publish_batch=1)
        print(f"  the same with one envelope per MQTT publish (no batching): {single:,.0f} msg/s (reference)")
        drain, t_buffer = bench_drain(broker, Path(tmp), args.drain)
        print(f"buffered {args.drain:,} messages in the outbox with the broker down in {t_buffer:.1f}s")
        print(
            f"drained {args.drain:,} messages after the broker came back in {drain:.1f}s ({args.drain / drain:,.0f} msg/s)"
        )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"ratio_to_raw={durable / raw_pub:.2f} drain_100k_s={drain:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
