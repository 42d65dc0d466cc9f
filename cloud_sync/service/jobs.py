"""The cloud's schedule: order polls, marketplace actions, status refreshes, card creations, price rules,
alerts — each job on its own thread with its own database connection, so one slow marketplace never
holds up the others. The stock pusher (stock_push.Pusher) runs beside it, woken by every change.

Other parts add their jobs with `Jobs.add(name, every_s, fn)`; `fn(conn)` runs on the job's thread
(exceptions are logged and counted, the job goes on). With `leases` (the running service), a job runs in
the one cloud process holding its lease (cloud_sync.leases); the others look again every second and take
it over when its process is gone.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from cloud_sync import leases
from cloud_sync.alerts import checks, outbox
from cloud_sync.catalog import cards as catalog
from cloud_sync.config import CloudConfig
from cloud_sync.config_sections import AlertsConfig
from cloud_sync.db import connect, is_postgres, transaction
from cloud_sync.leases import Leases
from cloud_sync.money import price_docs, price_reads, price_rules, price_sources, reports
from cloud_sync.orders import (
    after_handover,
    handover_documents,
    intake,
    mp_actions,
    records,
    site_messages,
    waiting,
)
from cloud_sync.service import sync
from cloud_sync.service.accounts import AccountAdapters
from cloud_sync.stock import fbo
from marketplaces.base import Marketplace, NotSupported

log = logging.getLogger("cloud_sync.service.jobs")

JobFn = Callable[[sqlite3.Connection], Any]
REPORT_BUILDS_S = 0.5  # how soon a report asked for on the page starts building
STORE_RETRY_S = 2.0  # a store that did not answer a job thread is asked again after this
SELDOM_S = 30.0  # a job this seldom keeps its last run in its lease: a process taking it over waits its turn


@dataclass
class Job:
    name: str
    every_s: float
    fn: JobFn
    runs: int = 0
    errors: int = 0
    last_error: str = ""
    last_run: float = 0.0
    here: bool = True  # this process holds the job's lease (cloud_sync.leases)
    thread: threading.Thread | None = field(default=None, repr=False)


class Jobs:
    def __init__(self, cfg: CloudConfig, db_path: str, adapters: AccountAdapters, *, link: Any = None,
                 wake_stock: Callable[[], None] | None = None, leases: Leases | None = None) -> None:
        self.cfg, self.db_path, self.adapters, self.link = cfg, db_path, adapters, link
        self.leases = leases  # several cloud processes on one store: each job runs where its lease is
        self.wake_stock = wake_stock or (lambda: None)
        self.jobs: list[Job] = []
        self._stop = threading.Event()
        self._running = False  # start() was called: a job added later starts at once (until stop())
        self._lock = threading.Lock()  # the list and the running state, between add() and stop()

    def add(self, name: str, every_s: float, fn: JobFn) -> Job:
        job = Job(name, every_s, fn)
        with self._lock:
            self.jobs.append(job)
            if self._running and not self._stop.is_set():  # already running: start this one too
                self._start(job)
        return job

    def add_defaults(self) -> None:
        j = self.cfg.jobs
        for name in list(self.adapters):
            self.add_account(name)
        self.add("order-actions", j.actions_s, self._actions)
        self.add("waiting-orders", 5.0, self._waiting)
        self.add("site-catalogs", 60.0, lambda conn: site_messages.send_site_catalogs(conn, self.cfg, link=self.link))
        if j.reconcile_s > 0:
            self.add("reconcile", j.reconcile_s,
                     lambda conn: sync.reconcile_stock(conn, self.cfg, self.adapters, alert=True))
        self._add_rooms()

    def add_account(self, name: str) -> None:
        """The account's own jobs (orders, statuses, card creations, FBO stock), started at once when the
        jobs already run (an account opened after the start: its credentials entered in Settings)."""
        if any(job.name == f"orders:{name}" for job in self.jobs):
            return
        j = self.cfg.jobs
        settings = self.cfg.accounts.get(name)
        every = settings.poll_interval(j.orders_poll_s) if settings else j.orders_poll_s
        self.add(f"orders:{name}", every, self._poll(name))
        self.add(f"statuses:{name}", j.status_refresh_s, self._refresh(name))
        self.add(f"after-handover:{name}", j.status_refresh_s, self._follow(name))
        self.add(f"cards:{name}", 60.0, self._follow_cards(name))
        self.add(f"fbo:{name}", j.fbo_read_s, self._read_fbo(name))

    def _adapter(self, account: str) -> AbstractContextManager[Marketplace]:
        """The account's adapter as it is now (one reopened from Settings takes over at the next run),
        held for one run."""
        return self.adapters.lease(account)

    def _poll(self, account: str) -> JobFn:
        def run(conn: sqlite3.Connection) -> None:
            with self._adapter(account) as adapter:
                res = intake.poll(conn, self.cfg, adapter, link=self.link)
            if res.new:
                self.wake_stock()
        return run

    def _refresh(self, account: str) -> JobFn:
        def run(conn: sqlite3.Connection) -> None:
            with self._adapter(account) as adapter:
                moved = intake.refresh_statuses(conn, self.cfg, adapter, link=self.link)
            if moved:
                self.wake_stock()
        return run

    def _follow(self, account: str) -> JobFn:
        """Orders handed over, to their final state, and the account's returns (orders.after_handover)."""
        def run(conn: sqlite3.Connection) -> None:
            with self._adapter(account) as adapter:
                after_handover.follow(conn, self.cfg, adapter, link=self.link, wake=self.wake_stock)
        return run

    def _follow_cards(self, account: str) -> JobFn:
        def run(conn: sqlite3.Connection) -> None:
            if conn.execute("SELECT 1 FROM card_creations WHERE account=? AND state='pending'", (account,)).fetchone():
                with self._adapter(account) as adapter, transaction(conn):
                    catalog.follow_creations(conn, adapter, account)
        return run

    def _read_fbo(self, account: str) -> JobFn:
        def run(conn: sqlite3.Connection) -> None:
            try:
                with self._adapter(account) as adapter:
                    levels = adapter.read_stocks("fbo")
            except NotSupported:
                return
            fbo.record_reading(conn, account, levels)  # keyed: the account's FBO rows alone
        return run

    def _waiting(self, conn: sqlite3.Connection) -> None:
        """The waiting orders checked again (stock from 1C, a card linked, a warehouse mapped since)."""
        if not conn.execute("SELECT 1 FROM orders WHERE stage IN ('short','problem') LIMIT 1").fetchone():
            return  # nothing waits: no write lock taken
        with transaction(conn):
            res = waiting.serve(conn, self.cfg, link=self.link)
        if res.served:
            self.wake_stock()

    def _actions(self, conn: sqlite3.Connection) -> None:
        mp_actions.run_actions(conn, self.cfg, self.adapters, link=self.link)
        handover_documents.fetch_due(conn, self.cfg, self.adapters, link=self.link)

    def add_report_builds(self) -> Job:
        """The commission reports the page asked for, built one after another in the background (the
        page follows their progress; a build a stopped service left running starts again)."""
        first = {"run": True}

        def run(conn: sqlite3.Connection) -> None:
            if first.pop("run", False):
                reports.requeue_interrupted(conn)
            while reports.run_next_build(conn, self._adapter):
                pass
        return self.add("report-builds", REPORT_BUILDS_S, run)

    def _add_rooms(self) -> None:
        """The alerts tick, the scheduled price rules and the reports built in the background."""
        try:
            settings = outbox.AlertSettings.from_config(self.cfg.alerts)
        except outbox.AlertConfigError as exc:  # a bad alerts section must not stop the cloud
            log.error("alerts disabled: %s", exc)
        else:
            self.add("alerts", (self.cfg.alerts or AlertsConfig()).tick_s, self._alerts(settings))
        adapters = self.adapters
        pricing = self.cfg.pricing

        def rules_tick(conn: sqlite3.Connection) -> None:
            price_docs.expire_drafts(conn, timedelta(days=pricing.draft_ttl_days))
            price_rules.run_due(conn, adapters.__getitem__, settings=pricing)
        self.add("price-rules", pricing.rules_tick_s, rules_tick)
        self.add("prices-read", 5.0, lambda conn: price_reads.read_due(
            conn, list(self.cfg.accounts), adapters.__getitem__, every_s=self.cfg.jobs.prices_read_s))
        self.add_report_builds()
        if any(a.prices_from_1c for a in self.cfg.accounts.values()):
            self.add("prices-from-1c", self.cfg.pricing.rules_tick_s,
                     lambda conn: price_sources.run(conn, self.cfg, adapters.__getitem__))

    def _alerts(self, first: outbox.AlertSettings) -> JobFn:
        """The alerts tick; [alerts] is read again each run, so a bot token stored in Settings takes over
        at once (the sender is made anew only when the token changed)."""
        current = {"settings": first, "sender": outbox.sender_for(first)}

        def run(conn: sqlite3.Connection) -> None:
            settings = outbox.AlertSettings.from_config(self.cfg.alerts)
            if settings.token != current["settings"].token:
                current["sender"] = outbox.sender_for(settings)
            current["settings"] = settings
            checks.tick(conn, settings, current["sender"])
        return run

    def start(self) -> None:
        with self._lock:
            self._running = True
            for job in self.jobs:
                self._start(job)

    def _start(self, job: Job) -> None:
        """Under `_lock`: the job's thread is set only once started, so stop() never joins an unstarted one."""
        thread = threading.Thread(target=self._loop, args=(job,), name=f"job-{job.name}", daemon=True)
        thread.start()
        job.thread = thread

    def stop(self, timeout: float = 10.0) -> None:
        """Every job's thread ends (each within `timeout`); a job added from now on never starts (an account
        opened from Settings while the service stops)."""
        with self._lock:
            self._stop.set()
            jobs = list(self.jobs)
        for job in jobs:
            if job.thread is not None:
                job.thread.join(timeout)

    def _loop(self, job: Job) -> None:
        """The job's thread. On SQLite it keeps one connection of the file for its life; on PostgreSQL it
        gives its connection back to the pool whenever it waits, so a seller's cloud holds about as many
        server connections as jobs run at the same moment, not one per job (40 accounts: ~200 jobs; a
        server's default max_connections is 100)."""
        give_back = is_postgres(self.db_path)
        conn: sqlite3.Connection | None = None

        def rest(seconds: float) -> None:
            nonlocal conn
            if give_back and conn is not None:
                conn.close()
                conn = None
            self._stop.wait(seconds)

        try:
            while not self._stop.is_set():
                if conn is None:
                    try:
                        conn = connect(self.db_path)
                    except sqlite3.Error as exc:  # the server is down: the job looks again later
                        log.warning("job %s: the store did not answer: %s", job.name, exc)
                        self._stop.wait(min(job.every_s, STORE_RETRY_S))
                        continue
                if self.leases is not None:
                    was_here = job.here
                    if not self._leased(conn, job):
                        rest(self.leases.check_s)  # another process runs it: look again soon
                        continue
                    if not was_here and self._wait_its_turn(conn, job, rest):
                        continue  # the lease is looked at again after the wait
                started = time.monotonic()
                try:
                    job.fn(conn)
                    job.runs += 1
                    if conn.in_transaction:  # a job left a transaction open: never hold the write lock
                        conn.execute("ROLLBACK")
                except Exception as exc:  # noqa: BLE001 - the job goes on; the error is counted and shown
                    job.errors += 1
                    text = str(exc)[:500]
                    log.warning("job %s: %s", job.name, exc)
                    if text != job.last_error:  # once per streak of the same failure
                        _record_error(conn, job.name, text)
                    job.last_error = text
                else:
                    job.last_error = ""
                job.last_run = time.time()
                if self.leases is not None and job.every_s >= SELDOM_S:
                    self._ran(conn, job)
                rest(max(0.0, job.every_s - (time.monotonic() - started)))
        finally:
            if conn is not None:
                conn.close()

    def _leased(self, conn: sqlite3.Connection, job: Job) -> bool:
        """Whether this process runs the job now (its lease; a database too busy to say: not now)."""
        assert self.leases is not None
        try:
            here = self.leases.hold(conn, job.name)
        except sqlite3.Error as exc:
            log.warning("job %s: lease not checked: %s", job.name, exc)
            here = False
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        job.here = here
        return here

    def _wait_its_turn(self, conn: sqlite3.Connection, job: Job, rest: Callable[[float], None]) -> bool:
        """A seldom job just taken over from another process waits its interval from that process's last
        run (a reconciliation is not run again because its process changed); True when it waited."""
        if job.every_s < SELDOM_S:
            return False
        try:
            last = leases.last_run(conn, job.name)
        except sqlite3.Error:
            return False
        wait = 0.0 if last is None else last + job.every_s - time.time()
        if wait <= 0:
            return False
        rest(min(wait, job.every_s))
        return True

    def _ran(self, conn: sqlite3.Connection, job: Job) -> None:
        try:
            leases.ran(conn, job.name)
        except sqlite3.Error as exc:
            log.warning("job %s: its run not recorded: %s", job.name, exc)

    def status(self) -> list[dict[str, Any]]:
        return [{"name": j.name, "every_s": j.every_s, "runs": j.runs, "errors": j.errors,
                 "last_error": j.last_error, "last_run": j.last_run, "here": j.here} for j in self.jobs]


def _record_error(conn: sqlite3.Connection, area: str, message: str) -> None:
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        with transaction(conn):
            records.log_error(conn, area, message)
    except sqlite3.Error:
        log.exception("could not record the error of %s", area)
