"""Fixtures of the manager-UI tests: a cloud app over a real SQLite file (or, on the PostgreSQL leg, a
schema of its cluster) with users of every role, and a logged-in test client."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloud_sync import db as cloud_db
from cloud_sync.access import users
from cloud_sync.config import parse_config
from cloud_sync.schema import open_db
from cloud_sync.web.app import create_app

PASSWORDS = {"olga": "owner password 1", "masha": "manager password 1", "petya": "packer password 1"}
ROLES = {"olga": "owner", "masha": "manager", "petya": "packer"}


def add_users(path: Path) -> None:
    conn = open_db(path)
    for name, pw in PASSWORDS.items():
        users.add_user(conn, name, pw, ROLES[name])
    if not cloud_db.is_postgres(conn):
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


@pytest.fixture(scope="session")
def users_db(tmp_path_factory) -> Path:
    """A migrated database with one user of each role, made once (argon2 hashing is deliberately slow)
    and copied for each test. On the PostgreSQL leg a database is a schema, not a file to copy: each
    test's is made anew (`cloud`)."""
    path = tmp_path_factory.mktemp("ui-template") / "cloud.sqlite"
    if not cloud_db.is_postgres(path):
        add_users(path)
    return path


def start_db(users_db: Path, path: Path) -> None:
    """A test's database with the users: the template file copied (SQLite), or made anew (PostgreSQL)."""
    if cloud_db.is_postgres(path):
        add_users(path)
    else:
        shutil.copy(users_db, path)


@pytest.fixture
def cloud(tmp_path, users_db) -> Iterator[tuple]:
    start_db(users_db, tmp_path / "cloud.sqlite")
    cfg = parse_config({"cloud": {"db_path": str(tmp_path / "cloud.sqlite")},
                        "accounts": {"wb1": {"marketplace": "wildberries", "base_url": "http://127.0.0.1:9",
                                             "credentials": {"Authorization": "sandbox-secret-wb1"}}}})
    conn = open_db(cfg.db_path)
    app = create_app(cfg)
    yield app, conn, cfg
    conn.close()


def form_token(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "the page carries a CSRF token"
    return m.group(1)


def login(client, name: str, password: str | None = None):
    page = client.get("/login")
    return client.post("/login", data={"name": name, "password": PASSWORDS[name] if password is None else password,
                                       "csrf_token": form_token(page.text), "next": "/orders"})


@pytest.fixture
def as_user(cloud):
    app = cloud[0]

    def make(name: str):
        c = app.test_client()
        r = login(c, name)
        assert r.status_code == 302, r.text
        return c
    return make
