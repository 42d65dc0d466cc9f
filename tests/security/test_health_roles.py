"""Issue 21.6: `/api/health` tells anyone only that the cloud is alive; account names and the jobs' last
errors only an owner or a manager — not a packer, not a stranger. Over real HTTP against
`marketsync cloud serve`."""

from __future__ import annotations

from pathlib import Path

import pytest

from .cloud_kit import start_cloud


@pytest.fixture
def cloud(tmp_path: Path):
    c = start_cloud(tmp_path)
    yield c
    c.service.stop()


def test_health_details_only_for_owner_and_manager(cloud):
    assert cloud.client().get("/api/health").json() == {"ok": True}
    packer, _ = cloud.session("petya")
    assert packer.get("/api/health").json() == {"ok": True}
    for name in ("olga", "masha"):
        c, _ = cloud.session(name)
        body = c.get("/api/health").json()
        assert body["ok"] is True and body["accounts"] == ["mm-main", "wb-main", "ym-main"] and "jobs" in body
