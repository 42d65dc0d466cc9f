"""The site process is killed with SIGKILL in the middle of a stream and started again: every pick task
is applied exactly once at the site, every stock delta it sent exactly once at the cloud."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from .conftest import applied_rows, pick_body, record, wait_for
from .test_link import send_many

SCRIPT = Path(__file__).with_name("site_process.py")


def start_site(db: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), str(db), str(port), "site-1"], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def test_site_killed_mid_stream_and_restarted(make_link, broker, tmp_path):
    n = 1500
    site_db = tmp_path / "site-proc.db"
    cloud = make_link("cloud", window=300, handlers={"stock_delta": record})
    procs = []
    try:
        procs.append(start_site(site_db, broker.port))
        send_many(cloud, cloud.cfg.db_path, "pick_task", [pick_body(i) for i in range(n)], site="site-1")
        for _ in range(2):  # kill it twice, at different points
            wait_for(lambda: len(applied_rows(site_db)) >= n // 4 * (len(procs)), 30, "the stream to run")
            procs[-1].send_signal(signal.SIGKILL)
            procs[-1].wait(10)
            assert len(applied_rows(site_db)) < n, "killed mid-stream"
            procs.append(start_site(site_db, broker.port))
        assert cloud.wait_idle(40)
        wait_for(lambda: len(applied_rows(tmp_path / "cloud.db")) >= n, 40, "every stock delta up")
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(10)
    at_site = Counter(r[3] for r in applied_rows(site_db))
    at_cloud = Counter(r[3] for r in applied_rows(tmp_path / "cloud.db"))
    assert len(at_site) == n and max(at_site.values()) == 1
    assert len(at_cloud) == n and max(at_cloud.values()) == 1
    assert set(at_cloud) == {f"t{i}" for i in range(n)}
