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


@pytest.fixture
def sandbox_process(tmp_path_factory: pytest.TempPathFactory):
    """Start `marketsync sandbox serve <mp> --port 0 --seed N` as its own process (real HTTP, the sandbox
    validating every request and response against the official spec); returns its announcement
    (`{"marketplace", "url", "credentials", ...}`). Stopped after the test, which fails if the sandbox
    answered outside its spec."""
    import httpx

    from marketsync.procs import Service, marketsync_argv

    started: list[tuple[Service, str]] = []

    def start(marketplace: str, seed: int = 10) -> dict:
        log = tmp_path_factory.mktemp("sandbox") / f"{marketplace}.log"
        svc = Service(f"sandbox-{marketplace}",
                      marketsync_argv("sandbox", "serve", marketplace, "--port", "0", "--seed", str(seed)), log)
        info = svc.start(timeout=60)
        started.append((svc, info["url"]))
        return info

    yield start
    violations = []
    for svc, url in started:
        try:
            violations += httpx.get(f"{url}/_sandbox/state", timeout=10).json().get("spec_violations", [])
        finally:
            svc.stop()
    assert violations == [], f"a sandbox answered outside its spec: {violations[:3]}"
