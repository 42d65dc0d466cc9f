"""A site process for the SIGKILL test: runs a site link that applies pick tasks into its own SQLite
file (table `applied`) and answers each with a stock delta sent up in the same transaction.

usage: python site_process.py DB_PATH PORT SITE_ID    (prints "ready" once connected; runs until killed)
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sitelink import LinkConfig, SiteLink  # noqa: E402


def main() -> None:
    db, port, site_id = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    link = SiteLink(
        LinkConfig(role="site", db_path=db, port=port, site_id=site_id, resend_after=2.0, batch=50)
    )

    def apply_pick(conn, env):
        conn.execute("CREATE TABLE IF NOT EXISTS applied (msg_id TEXT, seq INTEGER, type TEXT, key TEXT)")
        conn.execute(
            "INSERT INTO applied VALUES (?, ?, ?, ?)", (env.id, env.seq, env.type, env.body["task_id"])
        )
        body = {"warehouse": "main", "item_id": env.body["task_id"], "delta": -1, "reason": "pick"}
        link.send(conn, "stock_delta", body)
        time.sleep(0.0005)  # a little work per task, so a kill lands mid-stream

    link.on("pick_task", apply_pick)
    stop = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    link.start()
    while not link.connected:
        time.sleep(0.01)
    print("ready", flush=True)
    while not stop:
        time.sleep(0.05)
    link.stop()


if __name__ == "__main__":
    main()
