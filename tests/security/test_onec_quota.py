"""Issue 21.6: 1C's uploads cannot fill the disk — a quota per exchange session and one for the whole
exchange folder ([onec] max_session_bytes, max_total_bytes), a clear refusal in Russian when full, the
refused file's part removed at once, and uploads abandoned for `abandoned_upload_s` cleaned to make room.
Over real HTTP against `marketsync cloud serve`, its real exchange folder on disk."""

from __future__ import annotations

import base64
import os
import time
from pathlib import Path

import pytest

from .cloud_kit import start_cloud

CHUNK = 100_000


@pytest.fixture
def cloud(tmp_path: Path):
    c = start_cloud(tmp_path, onec={"file_limit": CHUNK, "max_session_bytes": 250_000, "max_total_bytes": 450_000,
                                    "abandoned_upload_s": 3600, "zip": False})
    yield c
    c.service.stop()


def _session(cloud):
    c = cloud.client()
    basic = base64.b64encode(f"1c:{cloud.secrets['1C password']}".encode()).decode()
    r = c.get("/1c/exchange", params={"type": "catalog", "mode": "checkauth"}, headers={"Authorization": f"Basic {basic}"})
    cookie, sid = r.text.split("\n")[1:3]
    c.cookies.set(cookie, sid)
    assert c.get("/1c/exchange", params={"type": "catalog", "mode": "init"}).text.startswith("zip=no")
    return c, sid


def _chunk(c, filename: str):
    return c.post("/1c/exchange", params={"type": "catalog", "mode": "file", "filename": filename},
                  content=os.urandom(CHUNK))


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) if folder.exists() else 0


def test_uploads_stop_at_the_session_and_total_quotas_and_abandoned_ones_are_cleaned(cloud, tmp_path):
    work = tmp_path / "onec-work"
    a, sid_a = _session(cloud)
    assert _chunk(a, "import.xml").text == "success\n"
    assert _chunk(a, "import.xml").text == "success\n"
    full = _chunk(a, "import.xml")
    assert full.text.startswith("failure\n") and "max_session_bytes" in full.text and "исчерпано" in full.text
    assert _bytes(work / sid_a) == 0  # the refused file's part is gone at once
    assert _chunk(a, "offers.xml").text == "success\n"  # the session goes on within its quota

    b, sid_b = _session(cloud)
    for _ in range(2):
        assert _chunk(b, "import.xml").text == "success\n"
    c, sid_c = _session(cloud)
    assert _chunk(c, "import.xml").text == "success\n"
    total = _chunk(c, "import.xml")  # 100k (a) + 200k (b) + 100k (c) + 100k > 450k
    assert total.text.startswith("failure\n") and "max_total_bytes" in total.text and "заполнено" in total.text
    assert _bytes(work) <= 450_000 and _bytes(work / sid_c) == 0  # c's refused file went at once

    # b's exchange was abandoned two hours ago: its uploads go to make room, and c's upload is taken
    old = time.time() - 7200
    for p in [work / sid_b, *(work / sid_b).rglob("*")]:
        os.utime(p, (old, old))
    assert _chunk(c, "import.xml").text == "success\n"  # 400k: room enough
    assert (work / sid_b).exists()
    assert _chunk(c, "import.xml").text == "success\n"  # 500k: b's abandoned uploads made room
    assert not (work / sid_b).exists() and _bytes(work) <= 450_000
