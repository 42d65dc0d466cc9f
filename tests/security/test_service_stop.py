"""A stop (SIGTERM, as systemd sends it) ends the cloud promptly even while its marketplaces are out of
reach: the calls waiting out their retry backoff give up at once instead of holding the stop until the
SIGKILL grace runs out (10 s on every stop before, seen as a 10 s teardown of every test here)."""

from __future__ import annotations

import time
from pathlib import Path

from .cloud_kit import start_cloud


def test_a_stop_does_not_wait_out_the_retries_of_unreachable_marketplaces(tmp_path: Path):
    cloud = start_cloud(tmp_path)  # every marketplace at a closed port: the jobs are retrying
    deadline = time.monotonic() + 30
    log = tmp_path / "cloud.log"
    while "retrying in" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "retrying in" in log.read_text()
    started = time.monotonic()
    code = cloud.service.stop(grace=10.0)
    took = time.monotonic() - started
    assert code == 0, f"the cloud did not end by itself (exit {code})"
    assert took < 5.0, f"the stop took {took:.1f} s"
