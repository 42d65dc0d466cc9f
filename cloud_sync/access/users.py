"""Who may use the cloud: users with argon2 password hashes and a role, their API tokens, their web
sessions and the record of failed logins (the login rate limit).

Owns the tables `users` (name, argon2id hash, role owner|manager|packer, disabled, the chosen language), `api_tokens` (only
the SHA-256 of each token is kept: a token is shown once, when it is made), `web_sessions` (the SHA-256
of each session id, its CSRF token, its expiry) and `login_failures` (one row per failed login, by name
and by address, for the rate limit) and `login_devices` (the browsers — and 1C's addresses — that logged
in with the right password before: they are not locked out by a stranger's guessing).

The login throttle (`throttle_wait`, used by the web login and by 1C's exchange): wrong passwords from
one client for one name are free up to `MAX_FAILURES`, then each next try waits `FIRST_WAIT_S`, doubling
with every further failure (up to `FAILURE_WINDOW_S`); one address guessing across names waits the same
way after 4x as many; a name guessed at from anywhere (10x failures) is locked for every unknown client
until they age out of the window. A known device — a browser holding the device cookie it got at a
successful login of that name, 1C at an address it logged in from before — skips those three and counts
only its own failures. So a stranger hammering `owner` slows himself and strangers, never the owner's own
browser typing the right password.

Roles: an owner may do everything (Settings, users, tokens); a manager everything but Settings; a
packer sees orders, stocks and sites and may take orders into work and print labels, nothing else.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sqlite3
import time
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from cloud_sync.db import transaction, write_if_free

MIGRATIONS = [
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('owner', 'manager', 'packer')),
        disabled INTEGER NOT NULL DEFAULT 0,
        created_ts REAL NOT NULL
    );
    CREATE TABLE api_tokens (
        id INTEGER PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        label TEXT NOT NULL DEFAULT '',
        token_sha256 TEXT NOT NULL UNIQUE,
        created_ts REAL NOT NULL,
        last_used_ts REAL
    );
    CREATE TABLE web_sessions (
        id_sha256 TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf TEXT NOT NULL,
        created_ts REAL NOT NULL,
        expires_ts REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE login_failures (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL COLLATE NOCASE,
        address TEXT NOT NULL,
        ts REAL NOT NULL
    );
    CREATE INDEX login_failures_name ON login_failures(name, ts);
    CREATE INDEX login_failures_address ON login_failures(address, ts);
    """,
    # The manager's order list (cloud_sync.orders.listing.list_orders: by deadline, none last, then status) reads
    # a page of 100,000 orders through these instead of sorting them all (bench/ui.py). The expressions
    # must stay the same as list_orders' ORDER BY for SQLite to use them.
    """
    CREATE INDEX orders_page ON orders(ship_by IS NULL, ship_by, CASE status WHEN 'new' THEN 0 WHEN 'in_work'
        THEN 1 WHEN 'reserved' THEN 2 WHEN 'picking' THEN 3 WHEN 'packed' THEN 4 WHEN 'handed_over' THEN 5
        WHEN 'delivered' THEN 6 ELSE 7 END, id);
    CREATE INDEX orders_page_account ON orders(account, ship_by IS NULL, ship_by, CASE status WHEN 'new' THEN 0
        WHEN 'in_work' THEN 1 WHEN 'reserved' THEN 2 WHEN 'picking' THEN 3 WHEN 'packed' THEN 4
        WHEN 'handed_over' THEN 5 WHEN 'delivered' THEN 6 ELSE 7 END, id);
    CREATE INDEX orders_page_status ON orders(status, ship_by IS NULL, ship_by, id);
    """,
    # known devices: a stranger's failed logins never lock out a browser (or 1C) that logged in before
    """
    ALTER TABLE login_failures ADD COLUMN device TEXT NOT NULL DEFAULT '';
    CREATE INDEX login_failures_device ON login_failures(device, ts);
    CREATE TABLE login_devices (
        name TEXT NOT NULL COLLATE NOCASE,
        device TEXT NOT NULL,             -- "cookie:<SHA-256 of the device cookie>" or "address:<ip>" (1C)
        last_ok_ts REAL NOT NULL,
        PRIMARY KEY (name, device)
    ) WITHOUT ROWID;
    """,
    # The language a user chose for the pages ('': the [ui] language of cloud.toml); the manager's order
    # search (by the marketplace's number, its id, an article on a line) and sorting by date or number
    # (cloud_sync.orders.listing.list_orders) read these instead of every order (bench/ui.py).
    """
    ALTER TABLE users ADD COLUMN language TEXT NOT NULL DEFAULT '';
    CREATE INDEX orders_number ON orders(number);
    CREATE INDEX orders_native_id ON orders(native_id);
    CREATE INDEX orders_created ON orders(created_at);
    CREATE INDEX order_lines_offer ON order_lines(offer_id);
    """,
]

ROLES = ("owner", "manager", "packer")
NAME_RE = re.compile(r"^[\w.@-]{2,64}$")  # letters of any alphabet («Иван»), digits, . _ @ -
MIN_PASSWORD = 10
SESSION_S = 12 * 3600.0
# Login throttle (see the module docstring): free tries per name and client, then growing waits.
MAX_FAILURES = 5
FAILURE_WINDOW_S = 900.0
FIRST_WAIT_S = 15.0  # the wait after MAX_FAILURES failures; doubles with each further one
NAME_LOCK_FAILURES = 10 * MAX_FAILURES  # failures of one name from anywhere that lock it for unknown clients
DEVICE_S = 180 * 24 * 3600.0  # a known device is forgotten after this long without a successful login
MAX_DEVICES = 20  # per name; the least recently used goes first
TOKEN_USE_EVERY_S = 60.0  # an API token's last use is written at most this often

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
_dummy_hash = ""


def _dummy() -> str:
    """A hash to verify against for unknown names (the same time as a real check). Made on first use:
    hashing takes argon2's 64 MB, which a process that never logs anyone in (an import) need not pay."""
    global _dummy_hash
    if not _dummy_hash:
        _dummy_hash = _hasher.hash("not a real password, used to spend the same time on unknown names")
    return _dummy_hash


class UserError(ValueError):
    """A user, password or token request that cannot be done; says why (never echoes a password)."""

    def __init__(self, message: str, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class LoginLocked(UserError):
    """Too many failed logins for this name or address: wait `retry_after_s`."""

    def __init__(self, retry_after_s: float) -> None:
        super().__init__(f"too many failed logins; try again in {int(retry_after_s) + 1} s")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: str

    def can(self, *roles: str) -> bool:
        return self.role in roles


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def check_password(password: str, name: str = "") -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"a password needs at least {MIN_PASSWORD} characters", "password")
    if name and password.casefold() == name.casefold():
        raise UserError("the password must not be the user name", "password")


def add_user(conn: sqlite3.Connection, name: str, password: str, role: str) -> User:
    name = name.strip()
    if not NAME_RE.match(name):
        raise UserError("a user name is 2-64 letters, digits or . _ @ -", "name")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}", "role")
    check_password(password, name)
    with transaction(conn):
        if conn.execute("SELECT 1 FROM users WHERE name=?", (name,)).fetchone():
            raise UserError(f"user {name!r} exists already", "name")
        cur = conn.execute("INSERT INTO users(name, password_hash, role, created_ts) VALUES (?,?,?,?)",
                           (name, _hasher.hash(password), role, time.time()))
    return User(int(cur.lastrowid or 0), name, role)


def set_password(conn: sqlite3.Connection, name: str, password: str) -> None:
    check_password(password, name)
    with transaction(conn):
        cur = conn.execute("UPDATE users SET password_hash=? WHERE name=?", (_hasher.hash(password), name))
        if cur.rowcount == 0:
            raise UserError(f"no user {name!r}", "name")
        conn.execute("DELETE FROM web_sessions WHERE user_id=(SELECT id FROM users WHERE name=?)", (name,))
        forget_devices(conn, name)


def _last_owner(conn: sqlite3.Connection, name: str) -> bool:
    """Whether `name` is the only owner still able to log in (Settings would be out of everyone's reach)."""
    owners = [r[0] for r in conn.execute("SELECT name FROM users WHERE role='owner' AND disabled=0")]
    return [o.casefold() for o in owners] == [name.casefold()]


def set_role(conn: sqlite3.Connection, name: str, role: str) -> None:
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}", "role")
    with transaction(conn):
        if role != "owner" and _last_owner(conn, name):
            raise UserError(f"{name} is the last owner: make another owner first", "role")
        if conn.execute("UPDATE users SET role=? WHERE name=?", (role, name)).rowcount == 0:
            raise UserError(f"no user {name!r}", "name")


def set_disabled(conn: sqlite3.Connection, name: str, disabled: bool) -> None:
    """Lock a user out (their sessions end at once, their API tokens stop working) or let them back in."""
    with transaction(conn):
        if disabled and _last_owner(conn, name):
            raise UserError(f"{name} is the last owner: make another owner first", "name")
        if conn.execute("UPDATE users SET disabled=? WHERE name=?", (int(disabled), name)).rowcount == 0:
            raise UserError(f"no user {name!r}", "name")
        if disabled:
            conn.execute("DELETE FROM web_sessions WHERE user_id=(SELECT id FROM users WHERE name=?)", (name,))
            forget_devices(conn, name)


def list_users(conn: sqlite3.Connection) -> list[dict]:
    return [dict(r) for r in conn.execute("SELECT id, name, role, disabled, created_ts FROM users ORDER BY name")]


def any_users(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None


def language(conn: sqlite3.Connection, user_id: int) -> str:
    """The language the user chose ('' when they chose none)."""
    r = conn.execute("SELECT language FROM users WHERE id=?", (user_id,)).fetchone()
    return r["language"] if r else ""


def set_language(conn: sqlite3.Connection, user_id: int, lang: str) -> None:
    with transaction(conn):
        conn.execute("UPDATE users SET language=? WHERE id=?", (lang, user_id))


def get_user(conn: sqlite3.Connection, name: str) -> User | None:
    r = conn.execute("SELECT id, name, role FROM users WHERE name=? AND disabled=0", (name,)).fetchone()
    return User(r["id"], r["name"], r["role"]) if r else None


# ---------------------------------------------------------------- login and its rate limit


def _recent(conn: sqlite3.Connection, where: str, values: tuple, since: float, limit: int) -> list[float]:
    return [r[0] for r in conn.execute(
        f"SELECT ts FROM login_failures WHERE {where} AND ts>? ORDER BY ts DESC LIMIT ?", (*values, since, limit))]


def _growing(failures: list[float], free: int, now: float) -> float:
    """The wait a client still has after `failures` (newest first) when `free` are allowed."""
    if len(failures) < free:
        return 0.0
    wait = min(FIRST_WAIT_S * 2 ** min(len(failures) - free, 16), FAILURE_WINDOW_S)
    return failures[0] + wait - now


def throttle_wait(conn: sqlite3.Connection, name: str, address: str, device: str = "", *,
                  now: float | None = None) -> float:
    """Seconds this client must still wait before its next try for `name` (0: it may try now). `device`
    is a known device's id (`known_device`): then only that device's own failures count."""
    now = time.time() if now is None else now
    since = now - FAILURE_WINDOW_S
    if device:
        return max(0.0, _growing(_recent(conn, "device=?", (device,), since, 64), MAX_FAILURES, now))
    worst = max(_growing(_recent(conn, "name=? AND address=? AND device=''", (name, address), since, 64),
                         MAX_FAILURES, now),
                _growing(_recent(conn, "address=? AND device=''", (address,), since, 128), 4 * MAX_FAILURES, now))
    anywhere = _recent(conn, "name=? AND device=''", (name,), since, NAME_LOCK_FAILURES)
    if len(anywhere) >= NAME_LOCK_FAILURES:  # guessed at from many addresses: locked for unknown clients
        worst = max(worst, anywhere[-1] + FAILURE_WINDOW_S - now)
    return max(0.0, worst)


def note_failure(conn: sqlite3.Connection, name: str, address: str, device: str = "", *,
                 now: float | None = None) -> None:
    now = time.time() if now is None else now
    with transaction(conn):
        conn.execute("INSERT INTO login_failures(name, address, device, ts) VALUES (?,?,?,?)",
                     (name, address, device, now))
        conn.execute("DELETE FROM login_failures WHERE ts<?", (now - 24 * 3600,))


def note_success(conn: sqlite3.Connection, name: str, address: str, device: str = "") -> None:
    """A right password: this client's failures for the name go (a stranger's elsewhere stay counted); a
    known `device` is remembered afresh."""
    with transaction(conn):
        conn.execute("DELETE FROM login_failures WHERE name=? AND address=? AND device=''", (name, address))
        if device:
            conn.execute("DELETE FROM login_failures WHERE device=?", (device,))
    if device:
        remember_device(conn, name, device)


def remember_device(conn: sqlite3.Connection, name: str, device: str) -> None:
    """`device` logged in as `name` with the right password just now: it is known from now on."""
    now = time.time()
    with transaction(conn):
        conn.execute("INSERT INTO login_devices(name, device, last_ok_ts) VALUES (?,?,?)"
                     " ON CONFLICT(name, device) DO UPDATE SET last_ok_ts=excluded.last_ok_ts", (name, device, now))
        conn.execute("DELETE FROM login_devices WHERE last_ok_ts<?", (now - DEVICE_S,))
        conn.execute("DELETE FROM login_devices WHERE name=? AND device NOT IN (SELECT device FROM login_devices"
                     " WHERE name=? ORDER BY last_ok_ts DESC LIMIT ?)", (name, name, MAX_DEVICES))


def known_device(conn: sqlite3.Connection, name: str, device: str) -> str:
    """`device` when it logged in as `name` before (and is not forgotten), else ""."""
    if not device:
        return ""
    row = conn.execute("SELECT 1 FROM login_devices WHERE name=? AND device=? AND last_ok_ts>?",
                       (name, device, time.time() - DEVICE_S)).fetchone()
    return device if row else ""


def new_device_cookie() -> str:
    """A fresh device cookie's value (256 random bits; only its hash is kept, like a session id's)."""
    return secrets.token_urlsafe(32)


def cookie_device(cookie: str) -> str:
    """The device id a device cookie stands for ("" for none)."""
    return f"cookie:{_sha(cookie)}" if cookie else ""


def forget_devices(conn: sqlite3.Connection, name: str) -> None:
    """No browser of `name` is known any more (a new password, a disabled user)."""
    conn.execute("DELETE FROM login_devices WHERE name=?", (name,))


def login(conn: sqlite3.Connection, name: str, password: str, address: str = "", *, device: str = "",
          now: float | None = None) -> User:
    """The user when name and password match; `LoginLocked` while the throttle says wait (checked before
    the password, so a locked name cannot be guessed at); `UserError` otherwise, the same for an unknown
    name and a wrong password. `device`: this browser's device id (`cookie_device`), counted as known
    only if it logged in as `name` before; a successful login makes it known."""
    now = time.time() if now is None else now
    name = name.strip()
    device = known_device(conn, name, device)
    wait = throttle_wait(conn, name, address, device, now=now)
    if wait > 0:
        raise LoginLocked(wait)
    row = conn.execute("SELECT id, name, role, password_hash FROM users WHERE name=? AND disabled=0",
                       (name,)).fetchone()
    ok = False
    try:
        ok = _hasher.verify(row["password_hash"] if row else _dummy(), password) and row is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        ok = False
    if not ok:
        note_failure(conn, name, address, device, now=now)
        raise UserError("wrong user name or password", "password")
    note_success(conn, row["name"], address, device)
    if _hasher.check_needs_rehash(row["password_hash"]):
        with transaction(conn):
            conn.execute("UPDATE users SET password_hash=? WHERE id=?", (_hasher.hash(password), row["id"]))
    return User(row["id"], row["name"], row["role"])


# ---------------------------------------------------------------- web sessions


def new_session(conn: sqlite3.Connection, user: User, *, now: float | None = None) -> tuple[str, str]:
    """(session id for the cookie, CSRF token for the forms). Only the id's hash is stored."""
    now = time.time() if now is None else now
    sid, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    with transaction(conn):
        conn.execute("DELETE FROM web_sessions WHERE expires_ts<?", (now,))
        conn.execute("INSERT INTO web_sessions(id_sha256, user_id, csrf, created_ts, expires_ts) VALUES (?,?,?,?,?)",
                     (_sha(sid), user.id, csrf, now, now + SESSION_S))
    return sid, csrf


def session_user(conn: sqlite3.Connection, sid: str, *, now: float | None = None) -> tuple[User, str] | None:
    """(user, CSRF token) of a live session, or None."""
    if not sid:
        return None
    now = time.time() if now is None else now
    r = conn.execute(
        "SELECT u.id, u.name, u.role, s.csrf FROM web_sessions s JOIN users u ON u.id=s.user_id"
        " WHERE s.id_sha256=? AND s.expires_ts>? AND u.disabled=0", (_sha(sid), now)).fetchone()
    return (User(r["id"], r["name"], r["role"]), r["csrf"]) if r else None


def end_session(conn: sqlite3.Connection, sid: str) -> None:
    with transaction(conn):
        conn.execute("DELETE FROM web_sessions WHERE id_sha256=?", (_sha(sid),))


# ---------------------------------------------------------------- API tokens


TOKEN_PREFIX = "mst_"


def new_token(conn: sqlite3.Connection, name: str, label: str = "") -> str:
    """A new API token for user `name`; the only time its value exists outside the caller."""
    user = get_user(conn, name)
    if user is None:
        raise UserError(f"no user {name!r}", "name")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction(conn):
        conn.execute("INSERT INTO api_tokens(user_id, label, token_sha256, created_ts) VALUES (?,?,?,?)",
                     (user.id, label, _sha(token), time.time()))
    return token


def token_user(conn: sqlite3.Connection, token: str) -> User | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    r = conn.execute("SELECT t.id AS tid, t.last_used_ts, u.id, u.name, u.role FROM api_tokens t"
                     " JOIN users u ON u.id=t.user_id WHERE t.token_sha256=? AND u.disabled=0",
                     (_sha(token),)).fetchone()
    if r is None:
        return None
    now = time.time()
    if r["last_used_ts"] is None or now - r["last_used_ts"] >= TOKEN_USE_EVERY_S:  # shown in Settings → Users
        write_if_free(conn, "UPDATE api_tokens SET last_used_ts=? WHERE id=?", (now, r["tid"]))
    return User(r["id"], r["name"], r["role"])


def revoke_tokens(conn: sqlite3.Connection, name: str) -> int:
    with transaction(conn):
        return conn.execute("DELETE FROM api_tokens WHERE user_id=(SELECT id FROM users WHERE name=?)",
                            (name,)).rowcount
