"""Helpers of the edge agent's tests: demo catalog items, pick task bodies, marking codes, the real
outbox write and a reader of the outbox."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge_agent import store
from edge_agent.tasks import inbox
from edge_agent.tasks.marking import GS
from sitelink import sqlite
from sitelink import store as link_store

SITE = "site-1"
WAREHOUSE = "main"


def ean13(n12: str) -> str:
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(n12))
    return n12 + str((10 - total % 10) % 10)


SHIRT = {"item_id": "item-shirt", "name": "Футболка", "barcode": ean13("460700000001"), "bin": "A-02",
         "marking_required": True}
MUG = {"item_id": "item-mug", "name": "Кружка", "barcode": ean13("460700000002"), "bin": "B-01"}
SOCKS = {"item_id": "item-socks", "name": "Носки", "barcode": ean13("460700000003"), "bin": "A-01"}
BAG = {"item_id": "item-bag", "name": "Рюкзак", "barcode": ean13("460700000004"), "bin": "C-09"}


def marking(item: dict[str, Any], serial: str, sep: str = GS) -> str:
    return f"01{item['barcode'].zfill(14)}21{serial}{sep}91EE10{sep}92{'A' * 40}abcd"


def send(conn: sqlite3.Connection, msg_type: str, body: dict[str, Any]) -> Any:
    """The site's real outbox write (what SiteLink.send does for a site)."""
    return link_store.enqueue(conn, "site", SITE, msg_type, body)


def outbox(conn: sqlite3.Connection) -> list[tuple[str, dict[str, Any]]]:
    rows = conn.execute("SELECT type, payload FROM link_outbox ORDER BY seq").fetchall()
    return [(r[0], json.loads(r[1])["body"]) for r in rows]


def pick_task(task_id: str, lines: list[tuple[dict[str, Any], int]], deadline: str = "2026-11-27T10:00:00Z",
              **extra: Any) -> dict[str, Any]:
    return {"task_id": task_id, "order_id": f"o-{task_id}", "marketplace": "wildberries", "number": f"N{task_id}",
            "deadline": deadline,
            "lines": [{"item_id": it["item_id"], "barcode": it["barcode"], "name": it["name"], "quantity": q,
                       "bin": it.get("bin"), "marking_required": bool(it.get("marking_required"))} for it, q in lines],
            **extra}


def make_conn(path: Any) -> sqlite3.Connection:
    c = store.connect(path)
    link_store.ensure_schema(c)
    with store.transaction(c):
        inbox.apply_catalog(c, {"items": [SHIRT, MUG, SOCKS, BAG]})
    return c


def label_png(text: str) -> str:
    """A marketplace-style PNG label (58x40 mm at 203 dpi) as base64, as the cloud sends it down."""
    import base64
    import io

    from PIL import Image, ImageDraw

    img = Image.new("L", (464, 320), 255)
    d = ImageDraw.Draw(img)
    for i in range(0, 400, 8):
        d.rectangle([30 + i, 40, 33 + i, 200], fill=0)
    d.text((30, 240), text, fill=0)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def deliver_label(conn: sqlite3.Connection, order_id: str) -> None:
    """The marketplace's label of an order, as the cloud sends it down."""
    with store.transaction(conn):
        inbox.apply_label(conn, {"order_id": order_id, "format": "png", "data_b64": label_png(order_id)})


def print_waiting(conn: sqlite3.Connection, folder: Path) -> list[Path]:
    """The site's own print queue prints what waits on the virtual printer (PNG files in folder/labels,
    the printer of `edge_config`); the files it printed."""
    from edge_agent.changes import Changes
    from edge_agent.device_hub import DeviceHub
    from edge_agent.printing import PrintQueue

    cfg = edge_config(folder)
    changes = Changes()
    hub = DeviceHub(cfg, changes)
    hub.open(lambda *_: None)
    PrintQueue(conn, send, hub, changes, cfg).print_pending()
    return list(hub.printer.printed)


def edge_config(tmp: Any, broker: Any | None = None, *, tables: dict[str, Any] | None = None, **tasks: Any) -> Any:
    """A site's config in `tmp`; `tables` adds or replaces whole tables of edge.toml."""
    from edge_agent.config import config_from_dict, hash_pin

    data: dict[str, Any] = {
        "site": {"id": SITE, "warehouse": WAREHOUSE, "db_path": str(tmp / "site.sqlite"),
                 "stations": ["pack-1", "tsd-1"]},
        "web": {"host": "127.0.0.1", "port": 0},
        "mqtt": _mqtt(broker),
        "printer": {"kind": "virtual", "out_dir": str(tmp / "labels")},
        "tasks": {"print_retry_s": 0.5, **tasks},
        "staff": [{"name": "Анна", "pin_hash": hash_pin("4321")}],
        **(tables or {}),
    }
    return config_from_dict(data, tmp)


def offline_site_toml(folder: Path) -> Path:
    """edge.toml of a one-station site with no broker reachable and the virtual printer, for `marketsync
    edge serve --config` run in `folder` (its database: folder/site.sqlite; PIN 4321)."""
    from edge_agent.config import hash_pin

    path = folder / "edge.toml"
    path.write_text(f"""
[site]
db_path = "site.sqlite"
stations = ["pack-1"]
[web]
port = 0
[mqtt]
port = 1
[printer]
kind = "virtual"
out_dir = "labels"
[[staff]]
name = "Анна"
pin_hash = "{hash_pin('4321')}"
""", encoding="utf-8")
    return path


def _mqtt(broker: Any | None) -> dict[str, Any]:
    if broker is None:
        return {"host": "127.0.0.1", "port": 1}  # nothing listens there: the broker is unreachable
    settings = broker.link_settings(SITE) if broker.secure else broker.link_settings()
    return {k: v for k, v in settings.items() if v is not None}


class CloudRecorder:
    """A real cloud-role SiteLink whose handlers record every up message in its own SQLite file."""

    def __init__(self, db_path: Any, broker: Any) -> None:
        from sitelink import LinkConfig, SiteLink

        self.db_path = str(db_path)
        c = sqlite3.connect(self.db_path)
        c.execute("CREATE TABLE IF NOT EXISTS received (n INTEGER PRIMARY KEY, id TEXT, site TEXT, seq INTEGER, "
                  "type TEXT, body TEXT)")
        c.commit()
        c.close()
        self.link = SiteLink(LinkConfig(role="cloud", db_path=self.db_path, **broker.link_settings()))
        for t in ("task_progress", "stock_delta", "stock_count", "printed", "scan", "device_status", "handover_closed",
                  "handover_request", "return_received", "item_bin"):
            self.link.on(t, self._record)

    def _record(self, conn: sqlite3.Connection, env: Any) -> None:
        conn.execute("INSERT INTO received (id, site, seq, type, body) VALUES (?,?,?,?,?)",
                     (env.id, env.site, env.seq, env.type, json.dumps(env.body, ensure_ascii=False)))

    def send(self, msg_type: str, body: dict[str, Any]) -> None:
        c = sqlite.connect(self.db_path)
        try:
            with sqlite.transaction(c):
                self.link.send(c, msg_type, body, site=SITE)
        finally:
            c.close()

    def received(self) -> list[tuple[str, int, str, dict[str, Any]]]:
        c = sqlite3.connect(self.db_path)
        try:
            return [(r[0], r[1], r[2], json.loads(r[3]))
                    for r in c.execute("SELECT id, seq, type, body FROM received ORDER BY n")]
        finally:
            c.close()


def wait_for(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `pred` until it holds or `timeout` seconds pass; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()
