"""Issue 21.4: a stranger typing wrong passwords for `olga` (the owner) is throttled with growing waits and
then locked per name — but olga's own browser, which logged in before (its device cookie), still gets in
with the right password. Over real HTTP against `marketsync cloud serve` (addresses named through our
own reverse-proxy header, `[auth] trusted_proxies`, as a proxy in front of the cloud would)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud_sync import db as cloud_db
from cloud_sync.access import users

from .cloud_kit import start_cloud


def cloud_conn(path):
    """The cloud's database on either engine (PostgreSQL on the MARKETSYNC_TEST_PG leg), rows as tuples."""
    conn = cloud_db.connect(path)
    conn.row_factory = None
    return conn



@pytest.fixture
def cloud(tmp_path: Path):
    c = start_cloud(tmp_path, extra_toml='[auth]\ntrusted_proxies = ["127.0.0.1/32"]\n')
    yield c
    c.service.stop()


def _from(cloud, address: str):
    return cloud.client(headers={"X-Forwarded-For": address})


def _age_failures(cloud, seconds: float) -> None:
    with cloud_conn(cloud.db) as db:
        db.execute("UPDATE login_failures SET ts = ts - ?", (seconds,))


def test_a_stranger_hammering_the_owner_never_locks_out_the_owners_own_browser(cloud):
    owners_browser = _from(cloud, "198.51.100.20")
    first = cloud.login(owners_browser, "olga")
    assert first.status_code == 302
    device_cookie = [c for c in owners_browser.cookies.jar if c.name.startswith("ms_device_")]
    assert len(device_cookie) == 1 and device_cookie[0].has_nonstandard_attr("HttpOnly")
    owners_browser.post("/logout", headers={"X-CSRF-Token": cloud.session("olga")[1]})
    owners_browser.cookies.delete("ms_session")

    # the probe: 15 wrong passwords for the owner from one client, here the owner's own address
    stranger = _from(cloud, "198.51.100.20")
    answers = [cloud.login(stranger, "olga", "guess guess guess").status_code for _ in range(15)]
    assert answers[:users.MAX_FAILURES] == [401] * users.MAX_FAILURES and set(answers[users.MAX_FAILURES:]) == {429}
    assert cloud.login(stranger, "olga").status_code == 429  # the stranger (a browser never seen) waits
    assert cloud.login(owners_browser, "olga").status_code == 302  # the owner's own browser gets in

    # and the same when the name is guessed at from many addresses: locked for every unknown client
    for n in range(users.NAME_LOCK_FAILURES // users.MAX_FAILURES):
        for _ in range(users.MAX_FAILURES):
            assert cloud.login(_from(cloud, f"203.0.113.{n + 10}"), "olga", "guess guess guess").status_code == 401
    new_browser = _from(cloud, "192.0.2.77")
    locked = cloud.login(new_browser, "olga")
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    owners_browser.cookies.delete("ms_session")
    assert cloud.login(owners_browser, "olga").status_code == 302
    assert cloud.login(_from(cloud, "192.0.2.78"), "masha").status_code == 302  # other names untouched


def test_the_wait_grows_with_each_failure_and_a_known_browser_is_no_free_pass(cloud):
    stranger = _from(cloud, "203.0.113.5")
    for _ in range(users.MAX_FAILURES):
        assert cloud.login(stranger, "masha", "guess guess guess").status_code == 401
    waits = []
    for _ in range(3):
        r = cloud.login(stranger, "masha", "guess guess guess")
        assert r.status_code == 429
        waits.append(int(r.headers["Retry-After"]))
        _age_failures(cloud, waits[-1] + 1)  # the wait passes; the next guess is counted again
        assert cloud.login(stranger, "masha", "guess guess guess").status_code == 401
    assert waits[0] <= users.FIRST_WAIT_S + 1 and waits[0] < waits[1] < waits[2]  # 15 s, 30 s, 60 s

    # a browser that knows masha, guessing: it is throttled on its own count like anyone
    browser = _from(cloud, "198.51.100.30")
    assert cloud.login(browser, "masha").status_code == 302
    browser.cookies.delete("ms_session")
    for _ in range(users.MAX_FAILURES):
        assert cloud.login(browser, "masha", "guess guess guess").status_code == 401
    assert cloud.login(browser, "masha").status_code == 429


def test_before_the_first_user_a_request_a_proxy_passes_on_is_not_the_box_itself(tmp_path):
    """The first-run door (the loopback is let in while no user exists) stays shut to the internet behind a
    reverse proxy on the same box: its requests come from 127.0.0.1 but name their client in
    X-Forwarded-For — which the web server must pass on to the app instead of dropping."""
    cloud = start_cloud(tmp_path, with_users=False)
    try:
        c = cloud.client()
        assert c.get("/api/summary").status_code == 200  # this box's own user, first run
        for header in ("X-Forwarded-For", "X-Real-IP", "Forwarded"):
            proxied = c.get("/api/summary", headers={header: "203.0.113.9" if header != "Forwarded"
                                                      else "for=203.0.113.9"})
            assert proxied.status_code == 401, header
    finally:
        cloud.service.stop()
