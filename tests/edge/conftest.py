"""Fixtures of the edge agent's tests: a real site database (SQLite file with the link's tables)."""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from edge_testkit import make_conn  # noqa: E402


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    c = make_conn(tmp_path / "site.sqlite")
    yield c
    c.close()
