"""Every route of seller beta's app that changes something (POST/PUT/PATCH/DELETE, from its url_map), sent
under /t/beta/ with seller alfa's session cookie and alfa's CSRF token, and with alfa's API token: nothing
in beta's store changes. Beta's own jobs and stock pusher are stopped first, so that whatever changed
could only have come from those requests; the one table still written meanwhile is the processes' heartbeat
(`cloud_processes`: this process says it is alive), checked to be the only one."""

from __future__ import annotations

import time

import httpx
import pytest

from cloud_sync.web.auth import SAFE_METHODS

from .conftest import World, routes, rule_values, store_snapshot

pytestmark = pytest.mark.slow

HEARTBEAT = {"cloud_processes"}


def test_another_sellers_writes_change_nothing_in_the_store(world: World) -> None:
    alfa, beta = world.sellers["alfa"], world.sellers["beta"]
    service = world.host.services["beta"]
    assert service.jobs is not None and service.pusher is not None
    service.jobs.stop()
    service.pusher.stop()
    path = world.db("beta")
    first = store_snapshot(path)
    time.sleep(2.0)
    quiet = store_snapshot(path)
    moving = {t for t in first if first[t] != quiet.get(t)}
    assert moving <= HEARTBEAT, moving
    writes = [(m, p) for m, p, _ in routes(world, "beta", rule_values(beta)) if m not in SAFE_METHODS]
    assert len(writes) > 40
    with httpx.Client(base_url=world.url, follow_redirects=False, timeout=30) as web:
        for method, p in writes:
            web.request(method, beta.root + p, data={"csrf_token": alfa.csrf},
                        headers={"Cookie": f"ms_session={alfa.sid}", "X-CSRF-Token": alfa.csrf})
            web.request(method, beta.root + p, json={}, headers={"Authorization": f"Bearer {alfa.token}"})
        after = store_snapshot(path, skip=HEARTBEAT)
        changed = sorted(t for t in after if after[t] != quiet.get(t))
        assert changed == [], f"beta's store changed by alfa's requests: {changed}"
        # the check sees a real write: beta's own owner stores a secret, and its store changes (the key that
        # encrypts it is beta's own, in beta's folder)
        r = web.post(f"{beta.root}/api/settings/secrets", json={"name": "telegram/bot_token",
                                                               "fields": {"value": "12345:beta-own-token"}},
                     headers={"Authorization": f"Bearer {beta.token}"})
        assert r.status_code == 200, r.text
    mine = store_snapshot(path, skip=HEARTBEAT)
    changed = sorted(t for t in mine if mine[t] != after.get(t))
    assert "stored_secrets" in changed and set(changed) <= {"stored_secrets", "api_tokens"}, changed  # + its last use
    assert (beta.folder / "secret.key").is_file() and not (alfa.folder / "secret.key").exists()
