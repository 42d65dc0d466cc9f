"""Simulated sites and bench-side cloud links, shared by bench/bridge.py and bench/scale.py.

A simulated site is a real `SiteLink` with its own SQLite outbox: `fill_outbox` puts stock deltas into it
before the site connects (each with a unique `ref`, so the receiving side can tell a message applied
twice), and `start_child({"role": "sites", "links": [...]})` runs the links in a process of their own
until `stop_child` (`spawn_child` + `wait_ready`: several processes connecting at once). A process holds at
most `LINKS_PER_PROCESS` links: paho's network loop waits on its sockets with select(), which takes no file
descriptor above 1023, and each link holds about six (its socket, paho's wake-up pair, its SQLite file with
WAL and shared memory): at 250 links per process the links past the ~170th never connected. The role `cloud` runs cloud links whose receiving part records each delta's item in the
`applied` table of their database (bench/bridge.py's stand-in for the cloud). `outbox_depth` is what a
site still holds unacknowledged.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sitelink import LinkConfig, SiteLink, sqlite, store  # noqa: E402

LINKS_PER_PROCESS = 100  # see the module doc: select() and file descriptors


def delta(i: int, site: str, *, warehouse: str = "main", item: str | None = None) -> dict[str, Any]:
    """The i-th stock change of `site` (item `item`, else one of its own; `ref` unique per site and i)."""
    return {"warehouse": warehouse, "item_id": item or f"{site}-{i}", "delta": 1, "reason": "adjust",
            "ref": f"{site}-{i}"}


def apply_delta(conn: sqlite3.Connection, env) -> None:  # noqa: ANN001 - an Envelope
    conn.execute("INSERT INTO applied(key) VALUES (?)", (env.body["item_id"],))


def fill_outbox(cfg: dict[str, Any], count: int, body: Callable[[int], dict[str, Any]], start: int = 0) -> None:
    """Put `count` stock deltas (`body(i)` for i from `start`) into the outbox of the site link `cfg`
    (LinkConfig keyword arguments) without connecting it."""
    link = SiteLink(LinkConfig(**cfg))
    conn = sqlite.connect(cfg["db_path"])
    try:
        store.ensure_schema(conn)
        for i in range(start, start + count, 500):
            with sqlite.transaction(conn):
                link.send_many(conn, cfg["site_id"],
                               [("stock_delta", body(j)) for j in range(i, min(start + count, i + 500))])
    finally:
        conn.close()


def outbox_depth(db: str | Path) -> int:
    c = sqlite3.connect(db, timeout=30)
    try:
        return c.execute("SELECT COUNT(*) FROM link_outbox").fetchone()[0]
    finally:
        c.close()


def run_child(spec: dict) -> None:
    """A process of a bench: `sites` (every site link of `links`) or `cloud` (cloud links of given parts)."""
    if spec["role"] == "sites":  # what the cloud sends down (pick tasks, labels) has no handler here
        logging.getLogger("sitelink").setLevel(logging.ERROR)
    links: list[SiteLink] = []
    for cfg in spec["links"]:
        link = SiteLink(LinkConfig(**cfg))
        if spec["role"] == "cloud" and cfg.get("part", "all") != "send":
            link.on("stock_delta", apply_delta)
        links.append(link)
    for link in links:
        link.start()
    t0 = last = time.monotonic()
    while not all(link.connected for link in links):
        time.sleep(0.01)
        if time.monotonic() - last > 5:
            last = time.monotonic()
            print(f"sites: {sum(link.connected for link in links)} of {len(links)} connected after"
                  f" {last - t0:.0f} s", file=sys.stderr, flush=True)
    print("ready", flush=True)
    sys.stdin.read()  # until the bench closes our stdin
    for link in links:
        link.stop()


def start_child(spec: dict, timeout_s: float = 300.0) -> subprocess.Popen:
    """Start a process running `spec`'s links; return once every link is connected."""
    proc = spawn_child(spec)
    wait_ready(proc)
    return proc


def spawn_child(spec: dict) -> subprocess.Popen:
    """Start a process running `spec`'s links without waiting for them (`wait_ready`): several such processes
    connect their links at the same time."""
    return subprocess.Popen([sys.executable, __file__, "--child", json.dumps(spec, default=str)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def wait_ready(proc: subprocess.Popen) -> None:
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        raise RuntimeError(f"a bench process did not start: {line!r}")


def stop_child(proc: subprocess.Popen) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


if __name__ == "__main__" and len(sys.argv) > 2 and sys.argv[1] == "--child":
    run_child(json.loads(sys.argv[2]))
