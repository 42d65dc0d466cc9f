"""The running site: the owner that wires the box's parts together.

`Site` holds the site's database and its link to the cloud (`link_handlers`), the devices
(`device_hub`), the print queue worker (`printing`) and the page's live updates (`changes`), and
offers what the packers' page, the CLI, plugins and tests use: a scan at a station (`scan`), a page
action (`act`), reads under the site's lock (`row`, `rows`), the link's state (`link_status`), and
listeners for what arrives from the cloud (`listen`). Plugins named in the config (`[site] plugins`,
e.g. the demo's simulated packer) are started and stopped with the site.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from edge_agent import store
from edge_agent.background import foreground
from edge_agent.changes import Changes
from edge_agent.chestny_znak import MarkingRegistry, open_registry
from edge_agent.config import EdgeConfig
from edge_agent.device_hub import DeviceHub
from edge_agent.link_handlers import DownHandlers, open_link
from edge_agent.printing import PrinterState, PrintQueue
from edge_agent.tasks import marking_check, station
from edge_agent.tasks.common import ScanResult
from edge_agent.tasks.marking import MarkingError, RegistryCheck, looks_like_marking, parse
from sitelink import SiteLink
from sitelink import store as link_store

log = logging.getLogger("marketsync.edge")
PAGE_SCAN_MEMORY_S = 86400.0  # how long a page's scan id is remembered (a resend comes within seconds)
EVENTS = ("new_task", "handover", "return")  # what `listen` can hear: a new pick task, a courier's hand-over,
# a returned parcel to expect


class Plugin(Protocol):
    """What a plugin's `function(site)` returns: started after the site's own workers, stopped first."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Site:
    """One warehouse site at work; `start` it, `begin_stop` before the web server closes, then `stop`."""

    def __init__(self, cfg: EdgeConfig, *, with_link: bool = True, with_devices: bool = True) -> None:
        self.cfg = cfg
        self.conn = store.connect(cfg.db_path)
        link_store.ensure_schema(self.conn)
        self.changes = Changes()
        self.devices = DeviceHub(cfg, self.changes)
        self.printing = PrintQueue(self.conn, self.send, self.devices, self.changes, cfg)
        self.with_devices = with_devices
        self.link: SiteLink | None = None
        self.plugins: list[Plugin] = []
        self._listeners: dict[str, list[Callable[..., None]]] = {event: [] for event in EVENTS}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        cz = cfg.chestny_znak
        self.marking_registry: MarkingRegistry | None = open_registry(
            cz.url, cz.token() if cz.url else "", cz.inn, timeout_s=cz.timeout_s, retry_after_s=cz.retry_after_s,
            product_group=cz.product_group)
        if with_link:
            self.link = open_link(cfg)
            DownHandlers(self.send, cfg.warehouse, self._after_commit, self._tell).register(self.link)

    # -- the parts, as the page and tests see them ------------------------------------------------

    @property
    def printer(self) -> Any:
        return self.devices.printer

    @property
    def printer_state(self) -> PrinterState:
        return self.printing.printer_state

    @property
    def scanners(self) -> list[Any]:
        return self.devices.scanners

    @property
    def recorders(self) -> dict[str, Any]:
        return self.devices.recorders

    def problems(self) -> list[str]:
        return self.devices.problems()

    def retry_printing(self) -> None:
        self.printing.wake()

    # -- sending up --------------------------------------------------------------------------

    def send(self, conn: sqlite3.Connection, msg_type: str, body: dict[str, Any]) -> Any:
        if self.link is not None:
            return self.link.send(conn, msg_type, body)
        return link_store.enqueue(conn, "site", self.cfg.site_id, msg_type, body)

    # -- what comes down ---------------------------------------------------------------------

    def listen(self, event: str, fn: Callable[..., None]) -> None:
        """Call `fn(**info)` when `event` comes from the cloud: "new_task" (task_id=) for a pick task the
        site did not have, "handover" (handover_id=) for a courier's hand-over, "return" (return_id=) for a
        returned parcel the cloud says is coming. It is called inside the
        link's transaction: the rows may not be committed yet, and `fn` must not wait for them."""
        if event not in self._listeners:
            raise ValueError(f"unknown site event {event!r}; expected one of {', '.join(EVENTS)}")
        self._listeners[event].append(fn)

    def _tell(self, event: str, **info: Any) -> None:
        for fn in self._listeners[event]:
            try:
                fn(**info)
            except Exception:  # a listener never stops a message from being applied
                log.exception("listener of %s", event)

    def _after_commit(self, what: str, **info: Any) -> None:
        """Handlers run inside the link's transaction: tell the page and the printer once it committed."""

        def later() -> None:
            time.sleep(0.05)
            self.changes.bump(what, **info)
            self.printing.wake()

        threading.Thread(target=later, daemon=True).start()

    # -- running -----------------------------------------------------------------------------

    def start(self) -> None:
        if self.with_devices:
            self.devices.open(self.on_device_scan)
        # before the link starts, so a plugin hears every task that arrives
        self.plugins = [load_plugin(entry)(self) for entry in self.cfg.plugin_entries()]
        if self.link is not None:
            self.link.start()
        self.spawn(lambda: self.printing.run(self._stop.is_set), "print-queue")
        self.spawn(lambda: self.printing.run_ahead(self._stop.is_set), "labels-ahead")
        if self.marking_registry is not None:
            self.spawn(self._recheck_loop, "marking-recheck")
        for plugin in self.plugins:
            plugin.start()

    def spawn(self, target: Callable[[], None], name: str) -> None:
        """Run `target` in a thread of the site's, joined when the site stops."""
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def add_scanner(self, scanner: Any) -> None:
        """A scanner the site listens to like its own (e.g. a virtual one fed by a plugin)."""
        self.devices.add_scanner(scanner, self.on_device_scan)

    def begin_stop(self) -> None:
        """Ask every loop and live-update stream to end (before the web server closes)."""
        self._stop.set()
        self.changes.bump("stopping")

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self.printing.stop()
        for plugin in self.plugins:
            with contextlib.suppress(Exception):
                plugin.stop()
        self.devices.stop_scanners()
        self.devices.stop_recorders()
        if self.link is not None:
            with contextlib.suppress(Exception):
                self.link.stop()
        for t in self._threads:
            t.join(timeout=5)
        self.devices.close_printer()
        self.changes.bump("stopped")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    # -- scans -------------------------------------------------------------------------------

    def on_device_scan(self, event: Any, *rest: Any) -> None:
        """Callback of the box's scanners: a ScanEvent (station, text) or plain text."""
        text = getattr(event, "text", event)
        st = getattr(event, "station", None) or (rest[0] if rest else self.cfg.stations[0])
        self.devices.scanner_reads(str(st))  # it reads again
        try:
            self.scan(str(st), str(text))
        except Exception:  # a scanner thread must never die on one bad scan
            log.exception("scan from %s failed", st)

    def scan(self, station_name: str, code: str, via: str = "scanner", scan_id: str | None = None) -> ScanResult:
        """Apply one scan at a station. `via` is "page" when the packers' page sent it: that page shows the
        answer it got, and the live update tells only the others (no second message, no second beep).
        `scan_id` is the page's id of the scan: a request sent again because its answer was lost on the
        way (Wi-Fi) gets the first answer back and is not applied twice."""
        with foreground():  # the camera's decoding waits for this scan and its label (background.give_way)
            return self._scan(station_name, code, via, scan_id)

    def _scan(self, station_name: str, code: str, via: str, scan_id: str | None) -> ScanResult:
        self.printing.active()  # labels are rendered ahead in the pauses, not while packers scan
        registry = self._registry_check(station_name, code)  # outside the transaction: a network call
        with store.transaction(self.conn):
            if scan_id:
                seen = store.row(self.conn, "SELECT result FROM page_scans WHERE scan_id = ?", scan_id)
                if seen is not None:
                    return ScanResult(**json.loads(seen["result"]))
            res = station.handle_scan(self.conn, self.send, station_name, code, self.cfg.warehouse, registry,
                                      self.cfg.bin_pattern)
            # before the commit: the print queue cannot print (and end the video of) this order yet
            self._video_scan(station_name, res)
            if scan_id:
                self.conn.execute("DELETE FROM page_scans WHERE ts < ?", (store.now() - PAGE_SCAN_MEMORY_S,))
                self.conn.execute("INSERT INTO page_scans (scan_id, result, ts) VALUES (?,?,?)",
                                  (scan_id, store.dumps(res.to_json()), store.now()))
        if res.kind == "done":  # the label first: the page's answer is built after it went to the printer
            self.printing.wake_and_wait()
        self.changes.bump("scan", station=station_name, result=res.to_json(), via=via)
        return res

    def _registry_check(self, station_name: str, code: str) -> RegistryCheck | None:
        """Честный знак's verdict on a marking code scanned for packing (None: not checked here)."""
        if self.marking_registry is None or not looks_like_marking(code):
            return None
        st = self.row("SELECT mode FROM stations WHERE station = ?", station_name)
        if st is not None and st["mode"] in ("pick", "handover", "receipt", "count"):
            return None  # only a packing scan ships a code
        try:
            mc = parse(code)
        except MarkingError:
            return None  # the pack check refuses it with the reason
        return self.marking_registry.check(mc)

    def recheck_marking(self) -> tuple[int, int]:
        """Ask Честный знак about the codes packed while it could not be reached; (ok, refused) now known.
        A code it refuses flags its order to the cloud."""
        if self.marking_registry is None:
            return 0, 0
        rows = self.rows("SELECT * FROM marking_checks WHERE state = 'unchecked' ORDER BY ts LIMIT 100")
        if not rows:
            return 0, 0
        verdicts = self.marking_registry.check_many([marking_check.code_of(r) for r in rows])
        with store.transaction(self.conn):
            got = marking_check.record(self.conn, self.send, rows, verdicts)
        if any(got):
            self.changes.bump("marking")
        return got

    def _recheck_loop(self) -> None:
        every = max(1.0, self.cfg.chestny_znak.retry_after_s)
        while not self._stop.wait(every):
            try:
                self.recheck_marking()
            except Exception:  # the loop must outlive one bad round
                log.exception("marking re-check failed")

    def _video_scan(self, station_name: str, res: ScanResult) -> None:
        if not self.devices.films(station_name) or not res.ok or not res.task_id:
            return
        t = self.row("SELECT order_id FROM tasks WHERE task_id = ?", res.task_id)
        if t is not None:
            self.devices.order_scanned(station_name, t["order_id"])

    def act(self, fn: Any, *args: Any, what: str = "task") -> Any:
        """Run one page action in a transaction (TaskError rolls it back) and notify the page."""
        with store.transaction(self.conn):
            out = fn(self.conn, *args)
        self.changes.bump(what)
        self.printing.wake()
        return out

    # -- what the page shows -----------------------------------------------------------------

    def row(self, sql: str, *args: Any) -> sqlite3.Row | None:
        with store.locked():
            return store.row(self.conn, sql, *args)

    def rows(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with store.locked():
            return store.rows(self.conn, sql, *args)

    def knows_code(self, code: str) -> bool:
        """Whether the site knows this text as it is: an item's barcode, a bin, an order's id or number."""
        return self.row("SELECT 1 FROM item_barcodes WHERE code = ? UNION ALL SELECT 1 FROM task_lines WHERE bin = ? "
                        "UNION ALL SELECT 1 FROM catalog WHERE bin = ? UNION ALL SELECT 1 FROM item_bins WHERE bin = ? "
                        "UNION ALL SELECT 1 FROM tasks WHERE order_id = ? OR number = ? LIMIT 1",
                        code, code, code, code, code, code) is not None

    def link_status(self) -> dict[str, Any]:
        if self.link is None:
            return {"online": False, "queue": self._outbox_depth()}
        try:
            s = self.link.status()
        except Exception:
            return {"online": False, "queue": self._outbox_depth()}
        online = s.get("connected")
        if online is None:
            online = s.get("online", False)
        depth = s.get("outbox_total")
        return {"online": bool(online), "queue": int(depth if depth is not None else self._outbox_depth())}

    def _outbox_depth(self) -> int:
        r = self.row("SELECT COUNT(*) AS n FROM link_outbox")
        return int(r["n"]) if r else 0


def load_plugin(entry: str) -> Callable[[Site], Plugin]:
    """The function a plugin entry names ("package.module:function"); the site calls it with itself."""
    module_name, sep, name = entry.partition(":")
    if not sep or not module_name or not name:
        raise ValueError(f"a plugin is named 'package.module:function', got {entry!r}")
    # by name: the config names the plugin (the demo's packer lives outside the edge), never an import
    return getattr(importlib.import_module(module_name), name)


__all__ = ["Changes", "EVENTS", "Plugin", "PrinterState", "Site", "load_plugin"]
