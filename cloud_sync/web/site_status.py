"""What the Sites page and `/api/sites` show of each edge site: online or not (the link's retained
state), last seen, its queue depth (our outbox toward it) and the printers and scanners it last reported
(sitelink.store.status and the `sites` table)."""

from __future__ import annotations

import json

from cloud_sync.web.context import ctx, get_db
from sitelink import store as link_store


def site_rows() -> list[dict]:
    conn = get_db()
    try:
        st = link_store.status(conn, dead_letters=0)
    except Exception:  # noqa: BLE001 - the link's tables may not exist on a cloud without a link
        st = {"outbox": {}, "peers": {}, "inbound": {}}
    seen = {r["id"]: dict(r) for r in conn.execute("SELECT * FROM sites")}
    out = []
    for s in ctx().cfg.sites.values():
        peer = st["peers"].get(s.id, {})
        try:
            devices = json.loads(seen.get(s.id, {}).get("devices") or "[]")
        except ValueError:
            devices = []
        out.append({"id": s.id, "name": s.name, "warehouses": s.warehouses,
                    "online": peer.get("state") == "online", "state": peer.get("state", "never seen"),
                    "last_seen": peer.get("last_seen") or st["inbound"].get(s.id, {}).get("last_message_at"),
                    "queue": st["outbox"].get(s.id, {}).get("depth", 0),
                    "oldest": st["outbox"].get(s.id, {}).get("oldest_at"),
                    "devices": devices if isinstance(devices, list) else []})
    return out
