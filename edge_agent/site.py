"""The running site: the store, the site link, the printer and scanners, wired to the task logic.

`Site` owns the pieces an edge box runs — the handlers of down messages, the print queue worker
(labels wait in `print_jobs` until the printer takes them, so a printer problem delays a label and
loses nothing), scans from the box's scanners routed to stations, live-update notifications for the
page, and (demo only) the simulated packer of `auto_pack`. The web page and the CLI use it; so do tests.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import queue
import sqlite3
import threading
import time
from dataclasses import dataclass
from typing import Any

from edge_agent import store
from edge_agent.config import EdgeConfig
from edge_agent.tasks import handover, inbox, station
from edge_agent.tasks.common import ScanResult, TaskError
from edge_agent.tasks.marking import demo_code, gtin_of_barcode

log = logging.getLogger("marketsync.edge")
PAGE_SCAN_MEMORY_S = 86400.0  # how long a page's scan id is remembered (a resend comes within seconds)


class Changes:
    """A version counter the page's live updates wait on (server-sent events)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.version = 0
        self.last: dict[str, Any] = {}

    def bump(self, what: str, **info: Any) -> None:
        with self._cond:
            self.version += 1
            self.last = {"what": what, "version": self.version, **info}
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self.version != seen, timeout=timeout)
            return self.version


@dataclass
class PrinterState:
    ok: bool = True
    message: str = ""
    pending: int = 0


class Site:
    def __init__(self, cfg: EdgeConfig, *, with_link: bool = True, with_devices: bool = True) -> None:
        self.cfg = cfg
        self.conn = store.connect(cfg.db_path)
        from sitelink import store as link_store

        link_store.ensure_schema(self.conn)
        self.changes = Changes()
        self.printer_state = PrinterState()
        self.link: Any = None
        self.printer: Any = None
        self.scanners: list[Any] = []
        self.auto_scanner: Any = None
        self.recorders: dict[str, Any] = {}  # station -> PackingRecorder
        self.device_problems: dict[str, str] = {}
        self._stop = threading.Event()
        self._print_wake = threading.Event()
        self._auto_queue: queue.Queue[str] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._with_devices = with_devices
        if with_link:
            self.link = self._make_link()

    # -- sending up --------------------------------------------------------------------------

    def send(self, conn: sqlite3.Connection, msg_type: str, body: dict[str, Any]) -> Any:
        if self.link is not None:
            return self.link.send(conn, msg_type, body)
        from sitelink import store as link_store

        return link_store.enqueue(conn, "site", self.cfg.site_id, msg_type, body)

    # -- the site link -----------------------------------------------------------------------

    def _make_link(self) -> Any:
        from sitelink import LinkConfig, SiteLink

        m = self.cfg.mqtt
        # the link's own connection commits with synchronous=FULL too: an applied (and then acknowledged)
        # message survives a power cut
        link = SiteLink(LinkConfig(role="site", site_id=self.cfg.site_id, db_path=self.cfg.db_path, host=m.host,
                                   port=m.port, username=m.username, password=self.cfg.mqtt_password(),
                                   tls_ca=m.tls_ca, connect=store.open_conn))
        link.on("pick_task", self._on_pick_task)
        link.on("cancel_task", self._on_cancel)
        link.on("label", self._on_label)
        link.on("catalog", self._on_catalog)
        link.on("handover", self._on_handover)
        link.on("reservation", lambda conn, env: None)
        return link

    def _reject(self, exc: Exception) -> None:
        from sitelink import Reject

        raise Reject(str(exc)) from exc

    def _on_pick_task(self, conn: sqlite3.Connection, env: Any) -> None:
        try:
            new = inbox.apply_pick_task(conn, env.body)
        except inbox.Unusable as exc:
            self._reject(exc)
        self._after_commit("task", task_id=env.body["task_id"])
        if new and self.cfg.auto_pack:
            self._auto_queue.put(env.body["task_id"])

    def _on_cancel(self, conn: sqlite3.Connection, env: Any) -> None:
        inbox.apply_cancel(conn, self.send, env.body, self.cfg.warehouse)
        self._after_commit("task", task_id=env.body["task_id"])

    def _on_label(self, conn: sqlite3.Connection, env: Any) -> None:
        try:
            inbox.apply_label(conn, env.body)
        except inbox.Unusable as exc:
            self._reject(exc)
        self._after_commit("label", order_id=env.body["order_id"])

    def _on_catalog(self, conn: sqlite3.Connection, env: Any) -> None:
        try:
            inbox.apply_catalog(conn, env.body)
        except inbox.Unusable as exc:
            self._reject(exc)
        self._after_commit("catalog")

    def _on_handover(self, conn: sqlite3.Connection, env: Any) -> None:
        try:
            inbox.apply_handover(conn, env.body)
        except inbox.Unusable as exc:
            self._reject(exc)
        self._after_commit("handover")
        if self.cfg.auto_pack:
            self._auto_queue.put(("handover", env.body["handover_id"]))

    def _after_commit(self, what: str, **info: Any) -> None:
        """Handlers run inside the link's transaction: tell the page and the printer once it committed."""

        def later() -> None:
            time.sleep(0.05)
            self.changes.bump(what, **info)
            self._print_wake.set()

        threading.Thread(target=later, daemon=True).start()

    # -- running -----------------------------------------------------------------------------

    def start(self) -> None:
        if self._with_devices:
            self._open_devices()
        if self.link is not None:
            self.link.start()
        self._spawn(self._print_loop, "print-queue")
        if self.cfg.auto_pack:
            self._spawn(self._auto_pack_loop, "auto-pack")
            for t in self.rows("SELECT task_id FROM tasks WHERE state IN ('new','picking','picked','packing') "
                                "ORDER BY created_at"):
                self._auto_queue.put(t["task_id"])

    def begin_stop(self) -> None:
        """Ask every loop and live-update stream to end (before the web server closes)."""
        self._stop.set()
        self.changes.bump("stopping")

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()
        self._print_wake.set()
        self._auto_queue.put("")
        for s in self.scanners:
            with contextlib.suppress(Exception):
                s.stop()
        if self.link is not None:
            with contextlib.suppress(Exception):
                self.link.stop()
        for t in self._threads:
            t.join(timeout=5)
        if self.printer is not None:
            with contextlib.suppress(Exception):
                self.printer.close()
        self.changes.bump("stopped")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.conn.close()

    def _spawn(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _open_devices(self) -> None:
        from edge_agent.devices import open_printer, open_scanner

        printer_cfg = self.cfg.printer.as_dict()
        for key, value in self.cfg.label_profile.as_dict().items():
            printer_cfg.setdefault(key, value)
        self.printer = open_printer(printer_cfg)
        for scfg in (s.as_dict() for s in self.cfg.scanners):
            scanner = open_scanner(scfg)
            scanner.start(self.on_device_scan, self._scanner_error(str(scfg.get("station", "?"))))
            self.scanners.append(scanner)
        for ccfg in (c.as_dict() for c in self.cfg.cameras):
            self._open_camera(ccfg)
        if self.cfg.auto_pack:
            self.auto_scanner = open_scanner({"kind": "virtual", "station": self.cfg.auto_pack_station})
            self.auto_scanner.start(self.on_device_scan)
            self.scanners.append(self.auto_scanner)

    def _scanner_error(self, st: str) -> Any:
        def on_error(exc: Exception) -> None:
            self.device_problems[f"scanner:{st}"] = f"сканер места {st}: {exc}. Сканы можно вводить на странице"
            self.changes.bump("device")

        return on_error

    def _open_camera(self, ccfg: dict[str, Any]) -> None:
        """Packing video for one station; a camera that cannot open is reported, never fatal."""
        st = str(ccfg.get("station", self.cfg.stations[0]))
        try:
            from edge_agent.devices import open_camera
            from edge_agent.video import PackingRecorder, Retention

            retention = Retention(max_files=int(ccfg.get("max_files", 2000)),
                                  max_bytes=int(float(ccfg.get("max_gb", 20)) * 1024**3),
                                  max_age_days=float(ccfg.get("retention_days", 60)))
            self.recorders[st] = PackingRecorder(open_camera(ccfg), f"{self.cfg.video_dir}/{st}",
                                                 fps=float(ccfg.get("fps", 10)), retention=retention, station=st)
        except Exception as exc:
            self.device_problems[st] = f"камера места {st}: {exc}"
            log.warning("camera of %s: %s", st, exc)

    def _video_scan(self, station_name: str, res: ScanResult) -> None:
        rec = self.recorders.get(station_name)
        if rec is None or not res.ok or not res.task_id:
            return
        t = self.row("SELECT order_id FROM tasks WHERE task_id = ?", res.task_id)
        if t is None:
            return
        try:
            rec.order_scanned(t["order_id"])
            self.device_problems.pop(station_name, None)
        except Exception as exc:
            self.device_problems[station_name] = f"камера места {station_name}: {exc}"

    def problems(self) -> list[str]:
        """Device problems the page shows: scanners and cameras that failed, and a packing video that
        lost its camera while recording (the seller's proof for that order is missing)."""
        out = dict(self.device_problems)
        for st, rec in self.recorders.items():
            if rec.last_error and st not in out:
                out[st] = f"камера места {st}: видео упаковки не пишется — {rec.last_error}"
        return sorted(out.values())

    def _video_printed(self, order_id: str) -> None:
        for st, rec in self.recorders.items():
            try:
                rec.label_printed(order_id)
            except Exception as exc:
                self.device_problems[st] = f"камера места {st}: {exc}"

    # -- scans -------------------------------------------------------------------------------

    def on_device_scan(self, event: Any, *rest: Any) -> None:
        """Callback of the box's scanners: a ScanEvent (station, text) or plain text."""
        text = getattr(event, "text", event)
        st = getattr(event, "station", None) or (rest[0] if rest else self.cfg.stations[0])
        self.device_problems.pop(f"scanner:{st}", None)  # it reads again
        try:
            self.scan(str(st), str(text))
        except Exception:  # a scanner thread must never die on one bad scan
            log.exception("scan from %s failed", st)

    def scan(self, station_name: str, code: str, via: str = "scanner", scan_id: str | None = None) -> ScanResult:
        """Apply one scan at a station. `via` is "page" when the packers' page sent it: that page shows the
        answer it got, and the live update tells only the others (no second message, no second beep).
        `scan_id` is the page's id of the scan: a request sent again because its answer was lost on the
        way (Wi-Fi) gets the first answer back and is not applied twice."""
        with store.transaction(self.conn):
            if scan_id:
                seen = store.row(self.conn, "SELECT result FROM page_scans WHERE scan_id = ?", scan_id)
                if seen is not None:
                    return ScanResult(**json.loads(seen["result"]))
            res = station.handle_scan(self.conn, self.send, station_name, code, self.cfg.warehouse)
            # before the commit: the print queue cannot print (and end the video of) this order yet
            self._video_scan(station_name, res)
            if scan_id:
                self.conn.execute("DELETE FROM page_scans WHERE ts < ?", (store.now() - PAGE_SCAN_MEMORY_S,))
                self.conn.execute("INSERT INTO page_scans (scan_id, result, ts) VALUES (?,?,?)",
                                  (scan_id, store.dumps(res.to_json()), store.now()))
        self.changes.bump("scan", station=station_name, result=res.to_json(), via=via)
        if res.kind == "done":
            self._print_wake.set()
        return res

    def act(self, fn: Any, *args: Any, what: str = "task") -> Any:
        """Run one page action in a transaction (TaskError rolls it back) and notify the page."""
        with store.transaction(self.conn):
            out = fn(self.conn, *args)
        self.changes.bump(what)
        self._print_wake.set()
        return out

    # -- printing ----------------------------------------------------------------------------

    def _print_loop(self) -> None:
        while not self._stop.is_set():
            self._print_wake.wait(timeout=self.cfg.print_retry_s)
            self._print_wake.clear()
            if self._stop.is_set():
                break
            try:
                self.print_pending()
            except Exception:
                log.exception("print queue")

    def print_pending(self) -> int:
        """Print every pending job whose label is here; stop at the first printer problem. Returns printed."""
        printed = 0
        jobs = self.rows("SELECT * FROM print_jobs WHERE state = 'pending' ORDER BY id")
        for job in jobs:
            try:
                data = self._render(job)
            except _WaitForLabel as exc:
                self._job_error(job["id"], str(exc), attempt=False)
                continue
            except Exception as exc:  # a label the printer cannot take: keep it, tell the packer
                self._job_error(job["id"], f"этикетку нельзя напечатать: {exc}", attempt=True)
                continue
            try:
                if self.printer is None:
                    raise _NoPrinter("принтер не подключён")
                self.printer.send(data)
            except Exception as exc:
                if self._printer_is_fine():  # the printer is there: it is this job it cannot take
                    self._job_error(job["id"], f"принтер не может напечатать эту этикетку: {exc}", attempt=True)
                    continue
                self._printer_problem(job["id"], exc)
                break
            file = _last_file(self.printer)
            back = not self.printer_state.ok
            if back:  # it printed: the printer is fine again
                self.printer_state = PrinterState(True, "")
            with store.transaction(self.conn):
                if back:  # the printer is back: said before what it printed, in the same commit
                    self.send(self.conn, "device_status", {"devices": [
                        {"kind": "printer", "name": getattr(self.printer, "name", "printer"), "online": True,
                         "detail": "printing again"}]})
                self.conn.execute("UPDATE print_jobs SET state='done', done_at=?, attempts=attempts+1, error=NULL, "
                                  "file=? WHERE id=?", (store.now(), file, job["id"]))
                body: dict[str, Any] = {"order_id": job["order_id"], "printer": getattr(self.printer, "name", "printer"),
                                        "kind": job["kind"]}
                if file:
                    body["file"] = file
                fmt = self._label_format(job)
                if fmt:
                    body["format"] = fmt
                self.send(self.conn, "printed", body)
            printed += 1
            if job["kind"] == "label":
                self._video_printed(job["order_id"])
        self.printer_state.pending = self.row("SELECT COUNT(*) AS n FROM print_jobs WHERE state='pending'")["n"]
        if printed or jobs:
            self.changes.bump("print", printed=printed)
        return printed

    def _label_format(self, job: sqlite3.Row) -> str | None:
        if job["kind"] != "label":
            return None
        r = self.row("SELECT format FROM labels WHERE order_id = ?", job["order_id"])
        return r["format"] if r else None

    def _render(self, job: sqlite3.Row) -> Any:
        from edge_agent.labels import own_label, prepare_label

        profile = self._profile()
        if job["kind"] == "label":
            label = self.row("SELECT * FROM labels WHERE order_id = ?", job["order_id"])
            if label is None:
                raise _WaitForLabel("ждём этикетку маркетплейса: она придёт, когда облако будет на связи")
            return prepare_label(base64.b64decode(label["data_b64"]), label["format"], profile)
        payload = json.loads(job["payload"])
        if job["kind"] == "supply_qr":
            h = self.row("SELECT qr_b64 FROM handovers WHERE handover_id = ?", payload["handover_id"])
            return prepare_label(base64.b64decode(h["qr_b64"]), "png", profile)
        text = payload.get("supply_id") or payload["handover_id"]
        caption = f"Акт передачи: {payload['count']} посылок" + (
            f", не хватает {len(payload['missing'])}" if payload.get("missing") else "")
        return own_label("box", text, caption, profile)

    def _profile(self) -> Any:
        profile = getattr(self.printer, "profile", None)
        if profile is not None:
            return profile
        from edge_agent.devices.base import PrinterProfile

        return PrinterProfile.from_config(self.cfg.label_profile.as_dict())

    def _printer_is_fine(self) -> bool:
        if self.printer is None:
            return False
        try:
            st = self.printer.status()
        except Exception:
            return False
        return bool(st.online) and st.paper_out is not True

    def _job_error(self, job_id: int, message: str, attempt: bool) -> None:
        with store.transaction(self.conn):
            self.conn.execute("UPDATE print_jobs SET error=?, attempts=attempts+? WHERE id=?",
                              (message, int(attempt), job_id))

    def _printer_words(self) -> str:
        """What the packer can do about the printer, from what the printer says about itself."""
        try:
            st = self.printer.status() if self.printer is not None else None
        except Exception:
            st = None
        if st is None or not st.online:
            return "не на связи — проверьте, что он включён и кабель на месте"
        if st.paper_out:
            return "без этикеток — заправьте новый рулон"
        return "не печатает"

    def _printer_problem(self, job_id: int, exc: Exception) -> None:
        message = (f"Принтер {self._printer_words()}. Этикетка ждёт и напечатается, когда принтер вернётся "
                   f"({exc})")
        self._job_error(job_id, message, attempt=True)
        first = self.printer_state.ok
        self.printer_state = PrinterState(False, message)
        if first:
            with store.transaction(self.conn):
                self.send(self.conn, "device_status", {"devices": [
                    {"kind": "printer", "name": getattr(self.printer, "name", "printer"), "online": False,
                     "detail": str(exc)}]})
        self.changes.bump("printer")

    def retry_printing(self) -> None:
        self._print_wake.set()

    # -- the simulated packer (demo only) ----------------------------------------------------

    def _auto_pack_loop(self) -> None:
        while not self._stop.is_set():
            task_id = self._auto_queue.get()
            if not task_id or self._stop.is_set():
                return
            try:
                if isinstance(task_id, tuple):
                    self.auto_handover(task_id[1])
                else:
                    self.auto_pack(task_id)
            except Exception:
                log.exception("auto-pack of %s", task_id)

    def auto_pack(self, task_id: str) -> None:
        """Scan every unit of a task with the virtual scanner, the way a packer would."""
        st = self.cfg.auto_pack_station
        for _ in range(50):  # the handler's transaction may not have committed yet
            t = self.row("SELECT state FROM tasks WHERE task_id = ?", task_id)
            if t is not None:
                break
            time.sleep(0.05)
        else:
            return
        with store.transaction(self.conn):
            try:
                station.open_task(self.conn, st, task_id, "pack")
            except TaskError:
                return
        for ln in self.rows("SELECT * FROM task_lines WHERE task_id = ? ORDER BY line_no", task_id):
            barcode = ln["barcode"] or ""
            for unit in range(ln["packed"], ln["quantity"] - ln["short"]):
                if self._stop.is_set():
                    return
                text = barcode
                if ln["marking_required"]:
                    gtin = gtin_of_barcode(barcode) or "0" * 14
                    text = demo_code(gtin, f"{task_id[-8:]}{ln['line_no']:02d}{unit:03d}"[-13:].replace("-", "X"))
                self._feed(st, text)
                time.sleep(self.cfg.auto_pack_delay_s)

    def auto_handover(self, handover_id: str) -> None:
        """Scan every parcel of a hand-over at a station in handover mode, then close it, the way a
        packer does when the courier comes."""
        st = self.cfg.auto_pack_station
        for _ in range(50):  # the handler's transaction may not have committed yet
            h = self.row("SELECT order_ids, state FROM handovers WHERE handover_id = ?", handover_id)
            if h is not None:
                break
            time.sleep(0.05)
        else:
            return
        if h["state"] != "open":
            return
        self.act(station.set_mode, st, "handover", handover_id)
        for order_id in json.loads(h["order_ids"]):
            if self._stop.is_set():
                return
            self._feed(st, order_id)
            time.sleep(self.cfg.auto_pack_delay_s)
        self.act(handover.close, self.send, handover_id, False, what="handover")
        self.act(station.set_mode, st, "pack")

    def _feed(self, st: str, text: str) -> None:
        if self.auto_scanner is not None and hasattr(self.auto_scanner, "feed"):
            self.auto_scanner.feed(text)
        else:
            self.scan(st, text)

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
                        "UNION ALL SELECT 1 FROM catalog WHERE bin = ? UNION ALL SELECT 1 FROM tasks "
                        "WHERE order_id = ? OR number = ? LIMIT 1", code, code, code, code, code) is not None

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


def _last_file(printer: Any) -> str | None:
    for attr in ("last_png", "last_file", "last_path"):
        value = getattr(printer, attr, None)
        if value:
            return str(value)
    return None


class _WaitForLabel(Exception):
    pass


class _NoPrinter(Exception):
    pass


__all__ = ["Changes", "PrinterState", "Site"]
