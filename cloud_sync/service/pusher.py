"""The running cloud's stock sender: the push planner (cloud_sync/stock/push.py) run whenever the ledger
changes, and one sender thread per account, so every account is pushed at once, each at its own
marketplace's pace; an account opened later (its token entered in Settings) gets its sender at once.
With `leases` (the running service), the planner and each account's sender run in the one cloud process
holding their lease (cloud_sync.leases), like the jobs.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time

from cloud_sync.config import CloudConfig
from cloud_sync.db import connect, is_postgres
from cloud_sync.leases import Leases
from cloud_sync.service.accounts import AccountAdapters
from cloud_sync.stock import push as stock_push

log = logging.getLogger("cloud_sync.service.pusher")

ZEROS_FIRST_S = 0.02  # the planner's longest wait for the senders to claim the zeros already queued


class Pusher:
    """The planner thread and one sender thread per account, each with its own database connection."""

    def __init__(self, cfg: CloudConfig, db_path: str, adapters: AccountAdapters, *,
                 tick_s: float = 0.05, leases: Leases | None = None) -> None:
        self.cfg, self.db_path, self.adapters, self.tick_s = cfg, db_path, adapters, tick_s
        self.leases = leases  # several cloud processes: the planner and each sender run where their lease is
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._account_wake = {name: threading.Event() for name in adapters}
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._started = False
        self.errors: list[str] = []

    def wake(self) -> None:
        self._wake.set()
        self._wake_accounts()  # zeros planned by the ingest itself go out at once

    def _wake_accounts(self) -> None:
        with self._lock:
            events = list(self._account_wake.values())
        for ev in events:
            ev.set()

    def start(self) -> None:
        with self._lock:
            self._started = True
            self._threads = [threading.Thread(target=self._plan_loop, name="stock-planner", daemon=True)]
            self._threads += [self._sender(name) for name in self._account_wake]
            threads = list(self._threads)
        for t in threads:
            t.start()

    def _sender(self, account: str) -> threading.Thread:
        return threading.Thread(target=self._send_loop, args=(account,), name=f"stock-push-{account}", daemon=True)

    def add_account(self, account: str) -> None:
        """A sender for an account opened after the start (its credentials entered in Settings)."""
        with self._lock:
            if account in self._account_wake:
                return
            self._account_wake[account] = threading.Event()
            if not self._started or self._stop.is_set():
                return
            thread = self._sender(account)
            self._threads.append(thread)
        thread.start()
        self._wake.set()  # plan what the account is owed

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        self._wake_accounts()
        with self._lock:
            threads = list(self._threads)
        for t in threads:
            t.join(timeout)

    def _here(self, conn: sqlite3.Connection, name: str) -> bool:
        """Whether this process runs `name` now (always, without leases)."""
        if self.leases is None:
            return True
        try:
            return self.leases.hold(conn, name)
        except sqlite3.Error as exc:
            log.warning("%s: lease not checked: %s", name, exc)
            return False

    def lease_names(self) -> list[str]:
        with self._lock:
            return ["stock-planner", *(f"stock-push:{a}" for a in self._account_wake)]

    def _plan_loop(self) -> None:
        conn = connect(self.db_path)
        try:
            while not self._stop.is_set():
                self._wake.wait(self.tick_s)
                self._wake.clear()
                try:
                    if not self._here(conn, "stock-planner"):
                        self._stop.wait(self.leases.check_s if self.leases else 1.0)
                        continue
                    if conn.execute("SELECT 1 FROM stock_dirty LIMIT 1").fetchone():
                        self._zeros_first(conn)
                        res = stock_push.plan(conn, self.cfg)
                        if res.queued:
                            self._wake_accounts()
                except Exception as exc:  # noqa: BLE001 - keep planning; report
                    log.exception("stock planner")
                    self.errors.append(str(exc))
        finally:
            conn.close()

    def _zeros_first(self, conn: sqlite3.Connection) -> None:
        """Zeros queued by the order intake (an item ran out) are claimed by their senders before the
        planner takes the write lock for its round: a round recomputing the same items (the intake marks
        them dirty too) would hold the senders' claims back by its length. Waits at most `ZEROS_FIRST_S`."""
        end = time.monotonic() + ZEROS_FIRST_S
        while time.monotonic() < end and not self._stop.is_set():
            if conn.execute("SELECT 1 FROM stock_push_queue WHERE priority=0 AND state='pending' AND"
                            " claimed_by IS NULL AND next_try<=? LIMIT 1", (time.time(),)).fetchone() is None:
                return
            self._stop.wait(0.001)

    def _send_loop(self, account: str) -> None:
        """The account's sender. On PostgreSQL its connection goes back to the pool while it waits (a seller
        with 40 accounts would hold 40 server connections per process for nothing: cloud_sync.service.jobs)."""
        give_back = is_postgres(self.db_path)
        conn: sqlite3.Connection | None = None
        ev = self._account_wake[account]
        wait = self.tick_s
        try:
            while not self._stop.is_set():
                if give_back and conn is not None:
                    conn.close()
                    conn = None
                ev.wait(wait)
                ev.clear()
                try:
                    if conn is None:
                        conn = connect(self.db_path)
                    if not self._here(conn, f"stock-push:{account}"):
                        wait = self.leases.check_s if self.leases else 1.0
                        continue
                    while not self._stop.is_set():
                        # looked up per round: an adapter reopened from Settings takes over at the next round
                        with self.adapters.lease(account) as adapter:
                            res = stock_push.send_account(conn, self.cfg, account, adapter)
                        if res.sent == 0:
                            break
                    # sleep until the next push falls due (a marketplace's per-card interval), at most idle
                    due = conn.execute("SELECT MIN(next_try) FROM stock_push_queue WHERE account=? AND"
                                       " state='pending'", (account,)).fetchone()[0]
                    wait = self.cfg.jobs.push_idle_s if due is None else min(
                        self.cfg.jobs.push_idle_s, max(0.001, due - time.time()))
                except Exception as exc:  # noqa: BLE001 - keep sending; report
                    log.exception("stock push %s", account)
                    self.errors.append(f"{account}: {exc}")
                    self._stop.wait(1.0)
        finally:
            if conn is not None:
                conn.close()
