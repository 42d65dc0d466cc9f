"""The print queue: labels, supply QR codes and hand-over acts wait in `print_jobs` until the printer
takes them, so a printer problem delays a label and loses nothing.

`PrintQueue` owns the worker that prints every pending job whose label is here (a label that comes
after packing waits for the cloud), stops at the first printer problem and says, in the packer's words,
what to do about it (`PrinterState`); it tells the cloud that the printer went away and came back, and
what it printed, in the same commit as the job's new state.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edge_agent import store
from edge_agent.changes import Changes
from edge_agent.config import EdgeConfig
from edge_agent.device_hub import DeviceHub
from edge_agent.devices.base import PrinterProfile
from edge_agent.labels import own_label, prepare_label
from edge_agent.tasks.common import Send

log = logging.getLogger("marketsync.edge")


@dataclass
class PrinterState:
    """What the page says about the printer: fine or not (and why, in the packer's words), jobs waiting."""

    ok: bool = True
    message: str = ""
    pending: int = 0


class PrintQueue:
    """The site's print worker: `run` in a thread of its own, `wake` when there may be work."""

    def __init__(self, conn: sqlite3.Connection, send: Send, devices: DeviceHub, changes: Changes,
                 cfg: EdgeConfig) -> None:
        self.conn = conn
        self.send = send
        self.devices = devices
        self.changes = changes
        self.cfg = cfg
        self.printer_state = PrinterState()
        self._wake = threading.Event()

    @property
    def printer(self) -> Any:
        return self.devices.printer

    def wake(self) -> None:
        """Look at the queue now (a job was added, a label came, the packer asked to try again)."""
        self._wake.set()

    def run(self, stopping: Callable[[], bool]) -> None:
        """The worker: print what is pending whenever woken, and every `print_retry_s` anyway."""
        while not stopping():
            self._wake.wait(timeout=self.cfg.print_retry_s)
            self._wake.clear()
            if stopping():
                break
            try:
                self.print_pending()
            except Exception:
                log.exception("print queue")

    def print_pending(self) -> int:
        """Print every pending job whose label is here; stop at the first printer problem. Returns printed."""
        printed = 0
        jobs = self._rows("SELECT * FROM print_jobs WHERE state = 'pending' ORDER BY id")
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
                self.devices.label_printed(job["order_id"])
        self.printer_state.pending = self._row("SELECT COUNT(*) AS n FROM print_jobs WHERE state='pending'")["n"]
        if printed or jobs:
            self.changes.bump("print", printed=printed)
        return printed

    # -- reading, under the site's lock ---------------------------------------------------------

    def _row(self, sql: str, *args: Any) -> sqlite3.Row | None:
        with store.locked():
            return store.row(self.conn, sql, *args)

    def _rows(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        with store.locked():
            return store.rows(self.conn, sql, *args)

    # -- one job ---------------------------------------------------------------------------------

    def _label_format(self, job: sqlite3.Row) -> str | None:
        if job["kind"] != "label":
            return None
        r = self._row("SELECT format FROM labels WHERE order_id = ?", job["order_id"])
        return r["format"] if r else None

    def _render(self, job: sqlite3.Row) -> Any:
        profile = self._profile()
        if job["kind"] == "label":
            label = self._row("SELECT * FROM labels WHERE order_id = ?", job["order_id"])
            if label is None:
                raise _WaitForLabel("ждём этикетку маркетплейса: она придёт, когда облако будет на связи")
            return prepare_label(base64.b64decode(label["data_b64"]), label["format"], profile)
        payload = json.loads(job["payload"])
        if job["kind"] == "supply_qr":
            h = self._row("SELECT qr_b64 FROM handovers WHERE handover_id = ?", payload["handover_id"])
            return prepare_label(base64.b64decode(h["qr_b64"]), "png", profile)
        text = payload.get("supply_id") or payload["handover_id"]
        caption = f"Акт передачи: {payload['count']} посылок" + (
            f", не хватает {len(payload['missing'])}" if payload.get("missing") else "")
        return own_label("box", text, caption, profile)

    def _profile(self) -> Any:
        profile = getattr(self.printer, "profile", None)
        if profile is not None:
            return profile
        return PrinterProfile.from_config(self.cfg.label_profile.as_dict())

    def _job_error(self, job_id: int, message: str, attempt: bool) -> None:
        with store.transaction(self.conn):
            self.conn.execute("UPDATE print_jobs SET error=?, attempts=attempts+? WHERE id=?",
                              (message, int(attempt), job_id))

    # -- the printer -----------------------------------------------------------------------------

    def _printer_is_fine(self) -> bool:
        if self.printer is None:
            return False
        try:
            st = self.printer.status()
        except Exception:
            return False
        return bool(st.online) and st.paper_out is not True

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


def _last_file(printer: Any) -> str | None:
    """The file a printer that writes files (the virtual one) wrote last."""
    for attr in ("last_png", "last_file", "last_path"):
        value = getattr(printer, attr, None)
        if value:
            return str(value)
    return None


class _WaitForLabel(Exception):
    pass


class _NoPrinter(Exception):
    pass
