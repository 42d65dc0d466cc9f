"""Issue 21.5: 1C's HTTP Basic login on the exchange (`mode=checkauth`) is throttled per login and address
with growing waits, never delays a 1C that logs in correctly from where it always does, and never
repeats the login it was given. Over real HTTP against `marketsync cloud serve` (client addresses named
through our own reverse-proxy header, `[auth] trusted_proxies`)."""

from __future__ import annotations

import base64
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


CHECKAUTH = {"type": "catalog", "mode": "checkauth"}


@pytest.fixture
def cloud(tmp_path: Path):
    c = start_cloud(tmp_path, extra_toml='[auth]\ntrusted_proxies = ["127.0.0.1/32"]\n')
    yield c
    c.service.stop()


def _checkauth(cloud, address: str, login: str, password: str):
    basic = base64.b64encode(f"{login}:{password}".encode()).decode()
    with cloud.client(headers={"X-Forwarded-For": address}) as c:
        return c.get("/1c/exchange", params=CHECKAUTH, headers={"Authorization": f"Basic {basic}"})


def test_a_stranger_guessing_1cs_password_is_slowed_down_and_1c_itself_is_not(cloud):
    right = cloud.secrets["1C password"]
    assert _checkauth(cloud, "10.0.0.5", "1c", right).text.startswith("success")  # 1C, where it always runs

    answers = [_checkauth(cloud, "203.0.113.9", "1c", f"guess-{n}") for n in range(40)]  # the probe
    codes = [a.status_code for a in answers]
    assert codes[:users.MAX_FAILURES] == [401] * users.MAX_FAILURES and set(codes[users.MAX_FAILURES:]) == {429}
    assert all(a.text.startswith("failure\n") for a in answers)
    assert int(answers[-1].headers["Retry-After"]) > 0
    assert _checkauth(cloud, "203.0.113.9", "1c", right).status_code == 429  # the guesser waits, right or not
    assert _checkauth(cloud, "10.0.0.5", "1c", right).text.startswith("success")

    # the wait grows: each failure after a wait has passed doubles it
    waits = []
    for _ in range(3):
        r = _checkauth(cloud, "203.0.113.9", "1c", "guess")
        waits.append(int(r.headers["Retry-After"]))
        with cloud_conn(cloud.db) as db:
            db.execute("UPDATE login_failures SET ts = ts - ?", (waits[-1] + 1,))
        assert _checkauth(cloud, "203.0.113.9", "1c", "guess").status_code == 401
    assert waits[0] < waits[1] < waits[2]

    # guessed at from many addresses: locked for every address 1C never logged in from, not for 1C's own
    for n in range(users.NAME_LOCK_FAILURES // users.MAX_FAILURES):
        for _ in range(users.MAX_FAILURES):
            _checkauth(cloud, f"198.51.100.{n + 1}", "1c", "guess")
    assert _checkauth(cloud, "192.0.2.200", "1c", right).status_code == 429
    assert _checkauth(cloud, "10.0.0.5", "1c", right).text.startswith("success")


def test_a_refused_login_is_not_repeated_back_or_logged(cloud):
    r = _checkauth(cloud, "203.0.113.50", "probe-login-Зеленый", "whatever-password")
    assert r.status_code == 401 and r.text.startswith("failure\n")
    assert "probe-login" not in r.text and "Зеленый" not in r.text and "whatever-password" not in r.text
    assert "неверный логин или пароль" in r.text
    cloud.service.stop()
    log = cloud.log.read_text()
    assert "1C exchange refused" in log and "probe-login" not in log and "whatever-password" not in log
