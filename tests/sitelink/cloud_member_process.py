"""A cloud process of a share group, for the SIGKILL tests of shared subscriptions: a receiving link
(`part="receive"`, `share_group`) applying stock deltas into the shared cloud SQLite file (table
`applied`, with the member's name), as a `marketsync cloud serve` of several would.

usage: python cloud_member_process.py DB_PATH PORT NAME [SHARE_GROUP]
       (prints "ready" once subscribed; runs until killed or SIGTERM)
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sitelink import LinkConfig, SiteLink  # noqa: E402


def main() -> None:
    db, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    group = sys.argv[4] if len(sys.argv) > 4 else "ms-cloud"
    link = SiteLink(LinkConfig(role="cloud", db_path=db, port=port, part="receive", share_group=group,
                               client_id=f"member-{name}", gap_timeout=60.0))

    def apply_delta(conn, env):
        conn.execute("CREATE TABLE IF NOT EXISTS applied (msg_id TEXT, seq INTEGER, type TEXT, key TEXT,"
                     " site TEXT, member TEXT)")
        conn.execute("INSERT INTO applied VALUES (?, ?, ?, ?, ?, ?)",
                     (env.id, env.seq, env.type, env.body["item_id"], env.site, name))
        time.sleep(0.0002)  # a little work per message, so a kill lands mid-stream

    link.on("stock_delta", apply_delta)
    stop: list[int] = []
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
