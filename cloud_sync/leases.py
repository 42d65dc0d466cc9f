"""Several `marketsync cloud serve` processes on one store: who is alive, which process runs which job, and
which process makes a recorded call (a marketplace action, a stock push, a Telegram message). All the SQL of
it is here, beside `db.py`, so a second engine ports it once.

* **Processes** (`cloud_processes`): each running cloud has a row (`me()`: host, pid and a random part)
  that its heartbeat (`Membership`) refreshes every `HEARTBEAT_S`. A process is alive while its row was
  seen within `TTL_S`. On one host (always so on SQLite: one WAL file) a heartbeat also removes the rows
  of processes that are gone (their pid no longer runs), so a SIGKILLed process's work moves on within a
  heartbeat, not a TTL; a process on another host (PostgreSQL) is given up after `TTL_S`.
* **Job leases** (`job_leases`): one row per job name naming its owner. `Leases.hold(conn, name)` says
  whether this process runs the job now: a lease whose owner is alive is kept by it; a free one (no owner,
  or its owner not alive) is taken in one atomic statement by the first process with room (each takes at
  most its fair share, `ceil(jobs / processes alive)`, and one over its share lets a job go now and then, so
  a process started later gets work; a job left free for `ORPHAN_S` — one that only some processes run,
  such as an account opened from Settings in one of them — is taken by any process that runs it). A lease is not renewed per job: the owner's heartbeat keeps them all.
* **Claims** (`claimed_by` on `order_actions`, `stock_push_queue`, `alert_outbox`): before a call that
  must happen once, the row is claimed in one UPDATE that succeeds only while the row is still due and
  not claimed by another live process (`claim`); the outcome's transaction clears it (`unclaim`). The job
  lease already keeps a second process away; the claim holds when a lease was lost and taken over while
  its old owner was only paused (SIGSTOP, a long stall): the paused process finds the row taken and
  makes no second call.

The bookkeeping writes that are one statement each (a heartbeat, taking, letting go of and marking the run
of a lease) run on their own, outside any transaction: on PostgreSQL they take no writer lock at all (their
row decides, as below), so a heartbeat never queues behind the domain's writers for longer than `TTL_S` (at
40 accounts on 3 processes it did: processes looked dead to each other and the site link's lease moved back
and forth). Forgetting gone processes and a process's leaving change many rows: a keyed transaction
(`sitelink.sqlite.transaction`'s `keys`) of the key `leases`; a claim is a keyed one with no key of its own.

On SQLite every write waits for the one writer (`db.transaction`, or a statement of its own) on the shared WAL
file with the 30 s busy wait. On PostgreSQL the same statements hold: the upsert with its WHERE is
`INSERT … ON CONFLICT (name) DO UPDATE … WHERE`, and a claim is an `UPDATE … WHERE claimed_by … AND due`
whose row lock makes a second claimer re-read the row and find it taken (READ COMMITTED); a batch claim
may read its candidates with `SELECT … FOR UPDATE SKIP LOCKED` first.
"""

from __future__ import annotations

import logging
import math
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from cloud_sync.db import connect, transaction

log = logging.getLogger("cloud_sync.leases")

HEARTBEAT_S = 2.0  # how often a process says it is alive
TTL_S = 8.0  # a process not heard of for this long is taken for dead (its jobs move on)
CHECK_S = 1.0  # how often a process without a job's lease looks whether the job is free
REBALANCE_S = 0.05  # a process over its fair share lets one job go at most this often (while others have room)
VIEW_S = 0.5  # how old the process's view of who runs what may be when it answers "another process runs it"
ORPHAN_S = 3.0  # a job free this long is taken by any process, over its fair share or not
FORGET_S = 86400.0
LEASES_KEY = ("leases",)  # the key of the lease writes that change many rows (see the module doc)  # rows of processes gone this long are deleted

MIGRATIONS = [
    """
    CREATE TABLE cloud_processes (
        id TEXT PRIMARY KEY,          -- host:pid:random (`me()`)
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started REAL NOT NULL,
        seen REAL NOT NULL            -- the last heartbeat
    );
    CREATE TABLE job_leases (
        name TEXT PRIMARY KEY,        -- the job (orders:<account>, stock-push:<account>, site-link, alerts...)
        owner TEXT,                   -- the process running it (cloud_processes.id); NULL: free
        since REAL NOT NULL,          -- when the owner took it (or, free, since when it is free)
        last_run REAL                 -- when a run of a seldom job last ended (`ran`), whoever ran it
    );
    CREATE INDEX job_leases_owner ON job_leases(owner);
    -- who is making the recorded call (cloud_processes.id); NULL: nobody
    ALTER TABLE order_actions ADD COLUMN claimed_by TEXT;
    ALTER TABLE stock_push_queue ADD COLUMN claimed_by TEXT;
    ALTER TABLE alert_outbox ADD COLUMN claimed_by TEXT;
    """,
]

CLAIMABLE = ("order_actions", "stock_push_queue", "alert_outbox")

_HOST = socket.gethostname()
_ME = f"{_HOST}:{os.getpid()}:{secrets.token_hex(4)}"
_ME_PID = os.getpid()
_ALIVE = "SELECT 1 FROM cloud_processes p WHERE p.id={col} AND p.seen > ?"


def me() -> str:
    """This process's id (made again in a forked child)."""
    global _ME, _ME_PID
    if os.getpid() != _ME_PID:
        _ME, _ME_PID = f"{_HOST}:{os.getpid()}:{secrets.token_hex(4)}", os.getpid()
    return _ME


# ---------------------------------------------------------------- processes


def beat(conn: sqlite3.Connection, *, owner: str | None = None, now: float | None = None) -> int:
    """Say this process is alive, and forget the processes of this host that are gone (their pid runs no
    more, or is ours under another id: an earlier life of this process); the number forgotten."""
    owner, now = owner or me(), time.time() if now is None else now
    host, pid = _HOST, int(owner.split(":")[-2])
    # the heartbeat itself is one statement on its own (no transaction, no writer lock to queue for: a
    # process whose beat waited behind other writers for TTL_S would look dead and lose its jobs)
    conn.execute("INSERT INTO cloud_processes(id, host, pid, started, seen) VALUES (?,?,?,?,?)"
                 " ON CONFLICT(id) DO UPDATE SET seen=excluded.seen", (owner, host, pid, now, now))
    if not _gone(conn, host, owner, pid, now):
        return 0
    with transaction(conn, keys=LEASES_KEY):
        gone = _gone(conn, host, owner, pid, now)
        for pid_row in gone:
            conn.execute("DELETE FROM cloud_processes WHERE id=?", (pid_row,))
        if gone:
            conn.execute(f"UPDATE job_leases SET owner=NULL, since=? WHERE owner IN ({','.join('?' * len(gone))})",
                         (now, *gone))
    return len(gone)


def _gone(conn: sqlite3.Connection, host: str, owner: str, pid: int, now: float) -> list[str]:
    gone = [r[0] for r in conn.execute("SELECT id, pid FROM cloud_processes WHERE host=? AND id!=?",
                                       (host, owner)).fetchall() if r[1] == pid or not _runs(r[1])]
    return gone + [r[0] for r in conn.execute("SELECT id FROM cloud_processes WHERE seen < ?", (now - FORGET_S,))]


def leave(conn: sqlite3.Connection, *, owner: str | None = None) -> None:
    """A process stopping: its leases are free at once and it is no longer counted."""
    owner = owner or me()
    with transaction(conn, keys=LEASES_KEY):
        conn.execute("UPDATE job_leases SET owner=NULL, since=? WHERE owner=?", (time.time(), owner))
        conn.execute("DELETE FROM cloud_processes WHERE id=?", (owner,))


def alive(conn: sqlite3.Connection, *, now: float | None = None) -> list[str]:
    now = time.time() if now is None else now
    return [r[0] for r in conn.execute("SELECT id FROM cloud_processes WHERE seen > ? ORDER BY id", (now - TTL_S,))]


def _runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it runs
        return True
    return True


# ---------------------------------------------------------------- job leases


def owner_of(conn: sqlite3.Connection, name: str) -> str | None:
    row = conn.execute("SELECT owner FROM job_leases WHERE name=?", (name,)).fetchone()
    return row[0] if row else None


def acquire(conn: sqlite3.Connection, name: str, *, owner: str | None = None, now: float | None = None) -> bool:
    """Take the job's lease if it is free (no owner, or its owner not alive) or ours; True when ours."""
    owner, now = owner or me(), time.time() if now is None else now
    # one statement on its own, outside any transaction (its row decides; no writer lock to queue for)
    conn.execute(
        "INSERT INTO job_leases(name, owner, since) VALUES (?,?,?) ON CONFLICT(name) DO UPDATE SET"
        " owner=excluded.owner, since=excluded.since WHERE job_leases.owner IS NULL OR NOT EXISTS ("
        + _ALIVE.format(col="job_leases.owner") + ")", (name, owner, now, now - TTL_S))
    return owner_of(conn, name) == owner


def release(conn: sqlite3.Connection, name: str, *, owner: str | None = None) -> None:
    conn.execute("UPDATE job_leases SET owner=NULL, since=? WHERE name=? AND owner=?",
                 (time.time(), name, owner or me()))


def orphaned(conn: sqlite3.Connection, name: str, *, now: float | None = None) -> bool:
    """Whether job `name` has had no owner for `ORPHAN_S` (a job only some processes run, or every
    process over its share): then a process takes it whatever its share. A job never seen before is
    recorded as free from now."""
    now = time.time() if now is None else now
    row = conn.execute("SELECT owner, since FROM job_leases WHERE name=?", (name,)).fetchone()
    if row is None:
        conn.execute("INSERT INTO job_leases(name, owner, since) VALUES (?, NULL, ?) ON CONFLICT(name) DO NOTHING",
                     (name, now))
        return False
    return row[0] is None and now - row[1] > ORPHAN_S


def ran(conn: sqlite3.Connection, name: str, *, now: float | None = None) -> None:
    """A run of job `name` ended now: a process taking the job over waits its interval from here."""
    conn.execute("UPDATE job_leases SET last_run=? WHERE name=?", (time.time() if now is None else now, name))


def last_run(conn: sqlite3.Connection, name: str) -> float | None:
    row = conn.execute("SELECT last_run FROM job_leases WHERE name=?", (name,)).fetchone()
    return row[0] if row else None


def held(conn: sqlite3.Connection, *, owner: str | None = None) -> list[str]:
    return [r[0] for r in conn.execute("SELECT name FROM job_leases WHERE owner=? ORDER BY name", (owner or me(),))]


def table(conn: sqlite3.Connection, *, now: float | None = None) -> list[dict[str, Any]]:
    """Every job's lease and whether its owner is alive (for status pages and tests)."""
    now = time.time() if now is None else now
    return [dict(r) for r in conn.execute(
        "SELECT l.name, l.owner, l.since, p.seen IS NOT NULL AND p.seen > ? AS alive FROM job_leases l"
        " LEFT JOIN cloud_processes p ON p.id=l.owner ORDER BY l.name", (now - TTL_S,))]


class Leases:
    """This process's side of the job leases: the heartbeat thread and `hold(conn, name)` for the job
    loops. `jobs()` counts the jobs this process could run (for its fair share)."""

    def __init__(self, db_path: str, jobs: Callable[[], int], *, owner: str | None = None) -> None:
        self.db_path, self.jobs, self.owner = db_path, jobs, owner or me()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._released_at = 0.0
        self._sticky: set[str] = set()  # jobs taken as orphans: only some processes run them, never let go
        self._lock = threading.Lock()
        self._view: _View | None = None  # `_look`
        self.check_s = CHECK_S

    def start(self) -> None:
        conn = connect(self.db_path)
        try:
            beat(conn, owner=self.owner)
        finally:
            conn.close()
        self._thread = threading.Thread(target=self._beat_loop, name="lease-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop beating and let every lease go (the other processes take the jobs at their next look)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(HEARTBEAT_S + 5)
        try:
            conn = connect(self.db_path)
            try:
                leave(conn, owner=self.owner)
            finally:
                conn.close()
        except sqlite3.Error:
            log.exception("could not give the leases back (they expire in %.0f s)", TTL_S)

    def _beat_loop(self) -> None:
        conn = connect(self.db_path)
        try:
            while not self._stop.wait(HEARTBEAT_S):
                try:
                    if beat(conn, owner=self.owner):
                        log.info("a cloud process is gone: its jobs are free")
                except sqlite3.Error as exc:
                    log.warning("heartbeat: %s", exc)
        finally:
            conn.close()

    def hold(self, conn: sqlite3.Connection, name: str) -> bool:
        """Whether this process runs job `name` now (taking it when free and within the fair share,
        giving it up when over the share and another process has room for it).

        The fair share is counted on this process's view of the leases (`_look`, at most `VIEW_S` old, one
        statement for all of the process's job threads), and a job another live process runs is answered
        from it without a statement: with 40 accounts a process has ~200 job threads looking once a second,
        each with 2-3 statements (one of them every job name it holds), and with 3 processes they were most
        of what the store served. Whether a job is ours is read afresh (one row); a job taken over from a
        process gone is seen at most `VIEW_S` later."""
        now = time.time()
        view = self._look(conn, now)
        if name in view.others:
            return False
        share = math.ceil(max(self.jobs(), 1) / view.processes)
        if owner_of(conn, name) == self.owner:
            if view.mine > share and name not in self._sticky:
                with self._lock:
                    if (now - self._released_at >= REBALANCE_S and len(held(conn, owner=self.owner)) > share
                            and _room_elsewhere(conn, self.owner, share, now)):
                        self._released_at = now
                        release(conn, name, owner=self.owner)
                        self._view = None  # what we let go is free in the view from now
                        log.info("job %s let go (%d jobs here, a fair share is %d)", name, view.mine, share)
                        return False
            return True
        orphan = False
        if view.mine >= share:
            orphan = orphaned(conn, name, now=now)
            if not orphan:
                return False
        if acquire(conn, name, owner=self.owner, now=now):
            log.info("job %s runs here now", name)
            with self._lock:
                self._view = None
                if orphan:
                    self._sticky.add(name)
            return True
        return False

    def _look(self, conn: sqlite3.Connection, now: float) -> _View:
        """The leases as read at most `VIEW_S` ago (read again now when older, or when this process took or
        let go of a job since)."""
        with self._lock:
            view = self._view
            if view is None or now - view.at > VIEW_S:
                live = set(alive(conn, now=now)) | {self.owner}
                others, mine = set(), 0
                for job, owner in conn.execute("SELECT name, owner FROM job_leases WHERE owner IS NOT NULL"):
                    if owner == self.owner:
                        mine += 1
                    elif owner in live:
                        others.add(job)
                view = self._view = _View(now, len(live), mine, frozenset(others))
            return view


@dataclass(frozen=True)
class _View:
    """A process's view of the leases: when it was read, the live processes (this one counted), how many
    jobs this process holds, and the jobs live others hold."""

    at: float
    processes: int
    mine: int
    others: frozenset[str]

def _room_elsewhere(conn: sqlite3.Connection, owner: str, share: int, now: float) -> bool:
    """Whether the other live processes have room for one more job: they hold fewer than the fair share
    between them by more than the jobs free already (those are theirs to take: letting go of more would
    leave jobs free with nobody to take them)."""
    counts = {p: 0 for p in alive(conn, now=now) if p != owner}
    free = 0
    # a job free for longer than ORPHAN_S is one no process runs any more (an account removed): not counted
    for p, n in conn.execute("SELECT owner, COUNT(*) FROM job_leases WHERE owner IS NOT NULL OR since > ?"
                             " GROUP BY owner", (now - ORPHAN_S - CHECK_S,)):
        if p in counts:
            counts[p] = n
        elif p != owner:
            free += n  # let go just now, or its owner not alive: about to be taken
    return sum(max(0, share - n) for n in counts.values()) > free


# ---------------------------------------------------------------- claims


def unclaimed(now: float | None = None) -> tuple[str, tuple]:
    """An SQL condition (and its parameters) for a row no live process claims (this one included)."""
    now = time.time() if now is None else now
    return "(claimed_by IS NULL OR NOT EXISTS (" + _ALIVE.format(col="claimed_by") + "))", (now - TTL_S,)


def claim(conn: sqlite3.Connection, table_name: str, key: Mapping[str, Any], *, due: str = "",
          params: tuple = (), owner: str | None = None, now: float | None = None, again: bool = True) -> bool:
    """Claim one row of `table_name` (one of `CLAIMABLE`) found by `key` (column -> value), while `due`
    (an SQL condition with `params`) still holds and no other live process claims it. True when ours.
    `again=False`: a row this process claims already is not claimed a second time (two threads of one
    process, each making the call: the caller gives its claims back itself when a call fails)."""
    if table_name not in CLAIMABLE:
        raise ValueError(f"{table_name} has no claims")
    owner, now = owner or me(), time.time() if now is None else now
    where = " AND ".join(f"{col}=?" for col in key)
    mine = "claimed_by=? OR " if again else ""
    sql = (f"UPDATE {table_name} SET claimed_by=? WHERE {where}" + (f" AND ({due})" if due else "")
           + f" AND (claimed_by IS NULL OR {mine}NOT EXISTS (" + _ALIVE.format(col="claimed_by") + "))")
    args = (owner, *key.values(), *params, *((owner,) if again else ()), now - TTL_S)
    with transaction(conn, keys=()):
        return conn.execute(sql, args).rowcount == 1


def unclaim(conn: sqlite3.Connection, table_name: str, key: Mapping[str, Any], *, owner: str | None = None) -> None:
    """Our claim of the row given up (the call's outcome is recorded, or it was not made)."""
    if table_name not in CLAIMABLE:
        raise ValueError(f"{table_name} has no claims")
    where = " AND ".join(f"{col}=?" for col in key)
    with transaction(conn, keys=()):
        conn.execute(f"UPDATE {table_name} SET claimed_by=NULL WHERE {where} AND claimed_by=?",
                     (*key.values(), owner or me()))
