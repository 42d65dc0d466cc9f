"""The print queue: labels, supply QR codes, the marketplaces' hand-over documents and our own hand-over
lists wait in `print_jobs` until the printer
takes them, so a printer problem delays a label and loses nothing.

`PrintQueue` owns the worker that prints every pending job whose label is here (a label that comes
after packing waits for the cloud), and a background worker (`background_thread`: it gives way to the
page and the printing) that renders ahead the labels of orders still to pack. The print worker stops at
the first printer problem and says, in the packer's words, what to do about it (`PrinterState`); it
tells the cloud that the printer went away and came back, and what it printed, in the same commit as
the job's new state.

`print_jobs` is also the print journal, so a crash never prints a label twice on its own: a job is
marked `sending` (with the file it will make, for a printer that writes files) and committed before
the first byte goes, and `done` after the printer took it. A job still `sending` at the next start was
cut short by the crash: `recover` marks it done when its file is there (the virtual printer writes it
whole or not at all), sends it again when its file is not, and — for a real printer, where nobody can
tell — asks the packer «этикетка напечаталась?» (state `unknown`; `answer` takes the reply). States:
pending | sending | done | unknown (a cancelled order's waiting job is closed as done, done_at empty).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent import store
from edge_agent.background import background_thread
from edge_agent.changes import Changes
from edge_agent.config import EdgeConfig
from edge_agent.device_hub import DeviceHub
from edge_agent.devices.base import PrinterProfile
from edge_agent.devices.printers import safe_name
from edge_agent.labels import own_label, prepare_label
from edge_agent.tasks.common import Send, TaskError, parcels_word

log = logging.getLogger("marketsync.edge")
AHEAD = 50  # labels rendered ahead per look at the queue
LABEL_FIRST_S = 0.5  # how long a page's scan waits for its label to go before it answers (`wake_and_wait`)
NEXT_AHEAD = 1  # labels rendered at once (no pause waited for) after each print (`PrintQueue.prepare_next`)
QUIET_S = 0.3  # labels are rendered ahead in the pauses of packing: this long without a scan or a print
AHEAD_CACHE_KB = 512  # SQLite's page cache of the labels-ahead worker's own connection (the site's: 2 MB)
UNKNOWN_WORDS = ("Программа склада перезапустилась, когда эта этикетка уходила на принтер: посмотрите, напечаталась "
                 "ли она, и ответьте «Да» или «Нет — напечатать снова»")


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
        self._ahead = threading.Event()  # wakes the worker that renders labels ahead
        self._active_at = 0.0  # when the last scan or print happened (time.monotonic)
        self._prepared: set[tuple[str, str, int, float]] = set()  # labels rendered ahead (or that cannot be)
        self._passes = threading.Condition()  # the worker's looks at the queue: started, finished
        self._started = self._finished = 0
        self._running = False
        self._next = threading.Event()  # a label printed: the labels-ahead worker renders the next one at once

    @property
    def printer(self) -> Any:
        return self.devices.printer

    def wake(self) -> None:
        """Look at the queue now (a job was added, a label came, the packer asked to try again)."""
        self._active_at = time.monotonic()
        self._wake.set()

    def wake_and_wait(self, timeout: float = LABEL_FIRST_S) -> bool:
        """Wake the worker and wait (at most `timeout`) until it has looked at the queue from now on: the
        page's scan that packed an order lets its label go to the printer before it builds its own answer.
        On one core the two ran side by side, and the label waited for the answer's share of the core
        (and under load for each turn of the scheduler between them). True if the worker looked in time;
        without a running worker (a site not started) it only wakes."""
        with self._passes:
            target = self._started + 1
        self.wake()
        if not self._running:
            return False
        with self._passes:
            return self._passes.wait_for(lambda: self._finished >= target, timeout)

    def active(self) -> None:
        """A packer scanned: rendering ahead waits for a pause in the packing (`QUIET_S`)."""
        self._active_at = time.monotonic()

    def stop(self) -> None:
        """Let both workers see that the site stops (`stopping` says so) at once."""
        self._wake.set()
        self._ahead.set()

    def run(self, stopping: Callable[[], bool]) -> None:
        """The worker: settle what a crash cut short, then print what is pending whenever woken, and
        every `print_retry_s` anyway."""
        try:
            self.recover()
        except Exception:
            log.exception("print journal recovery")
        self._wake.set()  # what waited while the box was off prints now
        self._running = True
        try:
            while not stopping():
                self._wake.wait(timeout=self.cfg.print_retry_s)
                self._wake.clear()
                if stopping():
                    break
                printed = 0
                with self._passes:
                    self._started += 1
                try:
                    try:
                        printed = self.print_pending()
                    finally:
                        with self._passes:
                            self._finished += 1
                            self._passes.notify_all()
                except Exception:
                    log.exception("print queue")
                if printed:  # the packer takes the next parcel: its label is rendered now (`prepare_next`)
                    self._next.set()
                self._ahead.set()  # what is still to pack may have changed: its labels, rendered ahead
        finally:
            self._running = False

    def _own_reader(self) -> sqlite3.Connection:
        """A connection of a worker's own (WAL: its reads neither wait for the site's writes nor hold its lock)."""
        reader = store.open_conn(self.cfg.db_path)
        reader.execute(f"PRAGMA cache_size=-{AHEAD_CACHE_KB}")
        return reader

    def prepare_next(self, stopping: Callable[[], bool], reader: sqlite3.Connection | None = None) -> int:
        """Right after a label printed, while the packer takes the next parcel: the label of the next order
        to pack (`NEXT_AHEAD`, earliest deadline first), rendered by the labels-ahead worker without
        waiting for a pause. Packing without pauses, that worker never got its pause (`QUIET_S`) and
        every PDF label was rendered on the scan's path (~5 ms, 12-35 ms p90-p99 with a camera decoding
        beside it, bench/edge_pi.py); now the scan's label is mostly ready. It renders at the worker's
        background priority, so a scan that comes meanwhile goes first; were that scan's label the one
        being rendered, the print worker waits for it (pdfium renders one document at a time) as it would
        have rendered it itself."""
        return self.prepare_ahead(stopping, limit=NEXT_AHEAD, reader=reader)

    def run_ahead(self, stopping: Callable[[], bool]) -> None:
        """The background worker: renders the labels of orders still to pack (`prepare_ahead`) after each
        look at the queue and every `print_retry_s`, in a thread that gives way to the page and the
        printing: it renders in the pauses of packing (`QUIET_S` without a scan or a print; a label needed
        before that is rendered by the print worker), at a background priority (a scan that comes during
        a render goes first; on one core, two threads taking turns at a render and a scan made each scan
        wait ~3x longer on the bench while the labels of 1,000 orders were rendered). It reads on a
        connection of its own: in WAL its reads never wait for the site's writes, nor hold
        the site's lock (a scan's transaction) while they run."""
        background_thread()
        reader = self._own_reader()
        try:
            while not stopping():
                self._ahead.wait(timeout=self.cfg.print_retry_s)
                self._ahead.clear()
                if stopping():
                    break
                try:
                    if self._next.is_set():
                        self._next.clear()
                        self.prepare_next(stopping, reader)
                    # in the pauses of packing; a label printed meanwhile makes it render the next one first
                    self.prepare_ahead(lambda: stopping() or self._next.is_set(), reader=reader, in_pauses=True)
                except Exception:
                    log.exception("labels rendered ahead")
        finally:
            reader.close()

    def prepare_ahead(self, stopping: Callable[[], bool] = lambda: False, limit: int = AHEAD,
                      reader: sqlite3.Connection | None = None, in_pauses: bool = False) -> int:
        """Render the labels of orders still to pack before their last scan (earliest deadline first, at
        most `limit`, each once: `prepare_label` keeps them), so the scan that packs an order only sends
        its label. Reads on `reader` when given (no lock: what it reads only decides what is rendered),
        else on the site's connection under its lock. `in_pauses`: each label waits for a pause in the
        packing (`QUIET_S`). Returns how many were rendered now."""
        if self.printer is None:
            return 0

        def rows(sql: str, *args: Any) -> list[sqlite3.Row]:
            return store.rows(reader, sql, *args) if reader is not None else self._rows(sql, *args)

        profile = self._profile()
        done = 0
        # a label is known by its row (a label sent again replaces it: a new rowid and time), not its bytes:
        # the list is read after every print, and reading every label's bytes took ~3 ms for 1,000 orders;
        # read through the covering index `labels_version` (store.py): the rows' bytes are never touched
        for row in rows(
                "SELECT l.order_id, l.format, l.rowid AS version, l.received_at FROM tasks t JOIN labels l INDEXED BY "
                "labels_version "
                "ON l.order_id = t.order_id WHERE t.state IN ('new','picking','picked','packing') AND l.order_id "
                "NOT IN (SELECT order_id FROM print_jobs WHERE kind = 'label') ORDER BY t.deadline, t.rowid"):
            if done >= limit or stopping():
                break
            key = (row["order_id"], row["format"], row["version"], row["received_at"])
            if key in self._prepared:
                continue
            if in_pauses and not self._wait_for_pause(stopping):
                break
            label = rows("SELECT format, data_b64 FROM labels WHERE order_id = ?", row["order_id"])
            try:
                if label:
                    prepare_label(base64.b64decode(label[0]["data_b64"]), label[0]["format"], profile)
                    done += 1
            except Exception as exc:  # printing it will say why, in the packer's words
                log.debug("label of %s not prepared ahead: %s", row["order_id"], exc)
            if len(self._prepared) > 20000:  # long-packed orders: forget them, the cache forgets their labels too
                self._prepared.clear()
            self._prepared.add(key)
        return done

    def _wait_for_pause(self, stopping: Callable[[], bool]) -> bool:
        """Wait until `QUIET_S` passed since the last scan or print; False if the site stops meanwhile."""
        while not stopping():
            left = QUIET_S - (time.monotonic() - self._active_at)
            if left <= 0:
                return True
            self._next.wait(min(left, QUIET_S))
        return False

    def recover(self) -> dict[str, int]:
        """At start: every job the journal says was being sent when the box stopped. Its file is there:
        it printed (marked done, told to the cloud). A file printer's file is not there: nothing printed,
        it is sent again. A real printer's: nobody knows — the packer is asked, nothing is re-sent."""
        seen = {"done": 0, "pending": 0, "unknown": 0}
        for job in self._rows("SELECT * FROM print_jobs WHERE state = 'sending' ORDER BY id"):
            target = job["file"]
            if target and Path(target).is_file():
                self._mark_printed(job, target, back=False)
                seen["done"] += 1
            elif target:
                with store.transaction(self.conn):
                    self.conn.execute("UPDATE print_jobs SET state='pending', file=NULL WHERE id=? AND state='sending'",
                                      (job["id"],))
                seen["pending"] += 1
            else:
                with store.transaction(self.conn):
                    self.conn.execute("UPDATE print_jobs SET state='unknown', error=? WHERE id=? AND state='sending'",
                                      (UNKNOWN_WORDS, job["id"]))
                seen["unknown"] += 1
        if any(seen.values()):
            log.warning("print journal after a restart: %s", seen)
            self.changes.bump("print", recovered=seen)
        return seen

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
            printer = self.printer
            if printer is None:
                self._printer_problem(job["id"], _NoPrinter("принтер не подключён"))
                break
            key = job_key(job)
            target = _target(printer, key)
            if not self._intent(job["id"], target):
                continue  # cancelled (or answered) meanwhile: not sent
            try:
                printer.send(dataclasses.replace(data, key=key))
            except Exception as exc:
                if self._printer_is_fine():  # the printer is there: it is this job it cannot take
                    self._job_error(job["id"], f"принтер не может напечатать эту этикетку: {exc}", attempt=False)
                    continue
                self._printer_problem(job["id"], exc, attempt=False)
                break
            back = not self.printer_state.ok
            if back:  # it printed: the printer is fine again
                self.printer_state = PrinterState(True, "")
            self._mark_printed(job, str(target) if target else None, back=back)
            printed += 1
        self.printer_state.pending = self._row("SELECT COUNT(*) AS n FROM print_jobs WHERE state='pending'")["n"]
        if printed or jobs:
            self.changes.bump("print", printed=printed)
        return printed

    def questions(self) -> list[dict[str, Any]]:
        """The jobs the packer is asked about («этикетка напечаталась?»), oldest first."""
        return [dict(r) for r in self._rows(
            "SELECT j.id AS job_id, j.order_id, j.kind, j.error AS message, "
            "(SELECT t.number FROM tasks t WHERE t.order_id = j.order_id ORDER BY t.created_at DESC LIMIT 1) AS number "
            "FROM print_jobs j WHERE j.state = 'unknown' ORDER BY j.id")]

    # -- the journal -----------------------------------------------------------------------------

    def _intent(self, job_id: int, target: Path | None) -> bool:
        """Before the first byte goes: the job is being sent (and to which file). Committed, so a crash
        from here on leaves a job the next start knows was in flight."""
        with store.transaction(self.conn):
            cur = self.conn.execute("UPDATE print_jobs SET state='sending', attempts=attempts+1, file=? "
                                    "WHERE id=? AND state='pending'", (str(target) if target else None, job_id))
            return cur.rowcount == 1

    def _mark_printed(self, job: sqlite3.Row, file: str | None, back: bool) -> None:
        """The printer took the job: done, and the cloud told (the printer being back too), in one commit."""
        with store.transaction(self.conn):
            if back:  # the printer is back: said before what it printed, in the same commit
                self.send(self.conn, "device_status", {"devices": [
                    {"kind": "printer", "name": self._printer_name(), "online": True, "detail": "printing again"}]})
            self.conn.execute("UPDATE print_jobs SET state='done', done_at=?, error=NULL, file=? WHERE id=?",
                              (store.now(), file, job["id"]))
            self.send(self.conn, "printed", self._printed_body(job, file))
        if job["kind"] == "label":
            self.devices.label_printed(job["order_id"])

    def _printed_body(self, job: sqlite3.Row, file: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {"order_id": job["order_id"], "printer": self._printer_name(), "kind": job["kind"]}
        if file:
            body["file"] = file
        fmt = self._label_format(job)
        if fmt:
            body["format"] = fmt
        return body

    def _printer_name(self) -> str:
        return str(getattr(self.printer, "name", None) or self.cfg.printer.as_dict().get("name") or "printer")

    def answer(self, conn: sqlite3.Connection, job_id: int, printed: bool) -> str:
        """The packer's answer to «этикетка напечаталась?» (a page action, in the caller's transaction):
        yes — the job is done, told to the cloud, nothing is sent; no — it is sent again."""
        job = store.row(conn, "SELECT * FROM print_jobs WHERE id = ?", job_id)
        if job is None:
            raise TaskError(f"нет задания печати {job_id}")
        if job["state"] != "unknown":
            raise TaskError("на этот вопрос уже ответили")
        if printed:
            conn.execute("UPDATE print_jobs SET state='done', done_at=?, error=NULL WHERE id=?", (store.now(), job_id))
            self.send(conn, "printed", self._printed_body(job, None))
            return "Отмечено: этикетка напечатана"
        conn.execute("UPDATE print_jobs SET state='pending', error=NULL WHERE id=?", (job_id,))
        return "Этикетка печатается снова"

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
        if job["kind"] == "document":  # a marketplace's hand-over document of label size, as the cloud fetched it
            doc = self._row("SELECT format, data_b64 FROM documents WHERE id = ?", payload["document_id"])
            return prepare_label(base64.b64decode(doc["data_b64"]), doc["format"], profile)
        if job["kind"] == "supply_qr":
            h = self._row("SELECT qr_b64 FROM handovers WHERE handover_id = ?", payload["handover_id"])
            return prepare_label(base64.b64decode(h["qr_b64"]), "png", profile)
        text = payload.get("supply_id") or payload["handover_id"]
        return own_label("box", text, handover_list_caption(payload), profile)

    def _profile(self) -> Any:
        profile = getattr(self.printer, "profile", None)
        if profile is not None:
            return profile
        return PrinterProfile.from_config(self.cfg.label_profile.as_dict())

    def _job_error(self, job_id: int, message: str, attempt: bool) -> None:
        """The job did not print (the printer said so): it waits again, with the reason for the packer."""
        with store.transaction(self.conn):
            self.conn.execute("UPDATE print_jobs SET state='pending', error=?, attempts=attempts+?, file=NULL "
                              "WHERE id=? AND state IN ('pending','sending')", (message, int(attempt), job_id))

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

    def _printer_problem(self, job_id: int, exc: Exception, attempt: bool = True) -> None:
        message = (f"Принтер {self._printer_words()}. Этикетка ждёт и напечатается, когда принтер вернётся "
                   f"({exc})")
        self._job_error(job_id, message, attempt=attempt)
        first = self.printer_state.ok
        self.printer_state = PrinterState(False, message)
        if first:
            with store.transaction(self.conn):
                self.send(self.conn, "device_status", {"devices": [
                    {"kind": "printer", "name": self._printer_name(), "online": False, "detail": str(exc)}]})
        self.changes.bump("printer")


def handover_list_caption(payload: dict[str, Any]) -> str:
    """Our own hand-over list, in the courier's words: the marketplace, how many parcels went (a number),
    the order numbers, and how many stayed."""
    numbers = payload.get("numbers") or []
    count = int(payload.get("count") or 0)
    head = f"Передача {payload.get('marketplace') or ''}: {count} {parcels_word(count)}".replace("  ", " ")
    missing = payload.get("missing") or []
    tail = f"; не хватает {len(missing)}" if missing else ""
    return head + tail + (": " + ", ".join(map(str, numbers)) if numbers else "")


def job_key(job: sqlite3.Row) -> str:
    """The journal's name of one sending of a job: when it went, the job's id and its order. A printer
    that writes files names the file by it (one file per job; a reprint is a new job)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime())
    return f"{stamp}-job{job['id']}-{safe_name(job['order_id'])}"


def _target(printer: Any, key: str) -> Path | None:
    """The file the printer will write for this job, if it writes files; None for a real printer."""
    target = getattr(printer, "target", None)
    return Path(target(key)) if callable(target) else None


class _WaitForLabel(Exception):
    pass


class _NoPrinter(Exception):
    pass
