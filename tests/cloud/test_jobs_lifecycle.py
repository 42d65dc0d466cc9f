"""The service's job threads (cloud_sync.service.jobs): started, stopped, and an account's jobs added while
the service stops (its credentials entered in Settings at that moment) never start after the stop."""

from __future__ import annotations

import threading
import time

from cloud_sync.config import parse_config
from cloud_sync.schema import open_db
from cloud_sync.service.accounts import AccountAdapters
from cloud_sync.service.jobs import Jobs


def _jobs(tmp_path) -> Jobs:
    cfg = parse_config({"cloud": {"db_path": str(tmp_path / "cloud.sqlite")}})
    open_db(cfg.db_path).close()
    return Jobs(cfg, cfg.db_path, AccountAdapters(cfg, {}))


def test_a_job_added_after_the_stop_never_starts(tmp_path):
    jobs = _jobs(tmp_path)
    ran: list[str] = []
    first_ran = threading.Event()
    jobs.add("first", 0.05, lambda conn: (ran.append("first"), first_ran.set()))
    jobs.start()
    assert first_ran.wait(10)
    late_before_stop = jobs.add("added-while-running", 0.05, lambda conn: ran.append("running"))
    deadline = time.monotonic() + 10
    while "running" not in ran and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "running" in ran  # a job added to running jobs starts at once
    jobs.stop()
    assert not late_before_stop.thread.is_alive()
    late = jobs.add("added-after-stop", 0.05, lambda conn: ran.append("late"))
    time.sleep(0.3)
    assert late.thread is None and "late" not in ran


def test_stop_while_jobs_are_being_added_never_fails(tmp_path):
    """stop() racing add() from another thread (an account opening): every started thread is joined, none
    is joined before it started (that raised RuntimeError out of the service's stop)."""
    for round_ in range(10):
        jobs = _jobs(tmp_path / str(round_))
        jobs.add("first", 0.05, lambda conn: None)
        jobs.start()
        go = threading.Event()

        def adder(jobs: Jobs = jobs, go: threading.Event = go) -> None:
            go.wait()
            for i in range(50):
                jobs.add(f"account-{i}", 0.05, lambda conn: None)

        t = threading.Thread(target=adder)
        t.start()
        go.set()
        jobs.stop()
        t.join()
        assert all(job.thread is None or not job.thread.is_alive() for job in jobs.jobs)


def test_job_threads_on_postgresql_hold_server_connections_only_while_they_run(tmp_path, cluster, monkeypatch):
    """A seller with 40 accounts has ~200 jobs; one server connection held by each for its life filled a
    PostgreSQL server's default 100 connections with one process (bench/scale.py saw 511 backends for three).
    Each job gives its connection back to the pool while it waits: the server sees about as many as run at once."""
    import psycopg

    from cloud_sync import pg
    from cloud_sync.db import TEST_URL_ENV

    monkeypatch.setenv(TEST_URL_ENV, cluster.url)  # the store's path is a schema of this cluster
    jobs = _jobs(tmp_path)
    runs = [0] * 60
    for i in range(60):
        def run(conn, i: int = i) -> None:
            conn.execute("SELECT COUNT(*) FROM orders").fetchone()
            runs[i] += 1
        jobs.add(f"job-{i}", 0.5, run)

    def backends() -> int:
        with psycopg.connect(cluster.url, autocommit=True) as raw:
            return raw.execute("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                               " AND pid <> pg_backend_pid()").fetchone()[0]

    jobs.start()
    try:
        deadline = time.monotonic() + 30
        while min(runs) < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert min(runs) >= 3  # every job ran, again and again
        seen = max(backends() for _ in range(10))
        assert seen <= pg.POOL_MAX, seen  # 60 jobs: not one held connection each (61 on the code before)
    finally:
        jobs.stop()
        pg.close_pools()
