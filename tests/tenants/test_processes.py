"""Several `marketsync cloud serve --instance N` processes on one installation of several sellers: each
seller's jobs are shared between the processes through leases in that seller's own store, and a SIGKILLed
process's jobs of every seller are taken over by the other within seconds."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from cloud_sync import tenants
from cloud_sync.config import load_config
from cloud_sync.db import connect
from marketsync.procs import Service, marketsync_argv

from .conftest import wait_for

pytestmark = pytest.mark.slow


def _owners(path: str) -> dict[str, int | None]:
    """Job -> the pid holding its lease in this store (None: free)."""
    conn = connect(path)
    try:
        return {name: int(owner.split(":")[-2]) if owner else None
                for name, owner in conn.execute("SELECT name, owner FROM job_leases")}
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        conn.close()


def test_each_sellers_jobs_are_shared_by_the_processes_through_its_own_store(tmp_path: Path, broker) -> None:
    main_file = tmp_path / "cloud.toml"
    main_file.write_text(f'[cloud]\ndb_path = "main/cloud.sqlite"\nport = 0\n[tenants]\n[link]\nport = {broker.port}\n',
                         "utf-8")
    main = load_config(main_file)
    tenants.add(main, "alfa")
    alfa = tenants.load(main, "alfa").db_path
    procs = [Service(f"cloud-{n}", marketsync_argv("cloud", "serve", "--config", str(main_file), "--instance", str(n)),
                     tmp_path / f"cloud-{n}.log") for n in (1, 2)]
    try:
        for p in procs:
            assert p.start(timeout=90)["tenants"] == ["alfa"]
        pids = {p.proc.pid for p in procs if p.proc is not None}
        for store in (main.db_path, alfa):
            wait_for("both processes holding a share of the jobs", lambda s=store: set(_owners(s).values()) == pids,
                     40)
        victim = procs[0]
        assert victim.proc is not None
        dead = victim.proc.pid
        os.killpg(dead, signal.SIGKILL)
        victim.proc.wait(10)
        for store in (main.db_path, alfa):
            wait_for("the killed process's jobs taken over", lambda s=store: set(_owners(s).values()) == pids - {dead},
                     15)
    finally:
        for p in procs:
            p.stop()
