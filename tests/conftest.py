"""Fixtures shared by every part's tests: a real Mosquitto on a free loopback port, free ports.

`broker` is a fresh, open (anonymous) Mosquitto per test: its own config, persistence and log in a
temporary directory, stopped when the test ends, even on failure. `broker.port` / `broker.host` /
`broker.restart()` / `broker.link_settings()` (LinkConfig keyword arguments). `secure_broker` is the
same with TLS, a password per site (`site-1`, `site-2`) and the per-site ACL.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sitelink.broker import Broker
from sitelink.broker import free_port as _free_port


@pytest.fixture
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with Broker(workdir=tmp_path_factory.mktemp("broker")) as b:
        yield b


@pytest.fixture
def secure_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    with Broker(workdir=tmp_path_factory.mktemp("broker"), secure=True, sites=["site-1", "site-2"]) as b:
        yield b


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on (call `sitelink.broker.free_port()` for more)."""
    return _free_port()
