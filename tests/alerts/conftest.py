"""The alerts tests' Bot API stand-in (`bot_api`, the root conftest's `bot_api_for` with TOKEN) and
a tenant database."""

from __future__ import annotations

import pytest

from cloud_sync.schema import open_db

TOKEN = "123456789:AAF-secret-test-token-never-log-me"


@pytest.fixture
def bot_api(bot_api_for):
    return bot_api_for(TOKEN)


@pytest.fixture
def db(tmp_path):
    conn = open_db(tmp_path / "tenant.sqlite")
    yield conn
    conn.close()
