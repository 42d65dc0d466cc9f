"""Fixtures for the marketplace tests: sandboxes served in-process and the contract check.

- `contract` (autouse): every exchange an adapter makes through `marketplaces.http` during a test is
  validated against the official spec; any violation fails the test at teardown. A test that injects
  malformed replies sets `contract.check_responses = False`.
- `sandbox_factory(name, **options)`: serves a sandbox on 127.0.0.1 (port 0) in a thread and stops it
  after the test; at teardown its own `spec_violations` must be empty (a sandbox bug otherwise).
- `account_for(running, **options)`: an `AccountConfig` pointing at a running sandbox.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import pytest

from marketplaces.base import AccountConfig
from marketplaces.contract import ContractChecker
from marketplaces.http import reset_limiters
from marketplaces.sandbox.core import RunningSandbox
from marketplaces.sandbox.registry import start_sandbox


@pytest.fixture(autouse=True)
def contract() -> Iterator[ContractChecker]:
    reset_limiters()
    checker = ContractChecker().install()
    try:
        yield checker
    finally:
        checker.uninstall()
        reset_limiters()
    checker.assert_clean()


class ProcessSandbox:
    """`marketsync sandbox serve` as a child process (its own CPU core and GIL), validating against the
    spec like the in-thread one; `.app` answers marketplace, time_scale and spec_violations over HTTP."""

    def __init__(self, name: str, *, seed: int, time_scale: float) -> None:
        import json
        import subprocess
        import sys
        from pathlib import Path
        from types import SimpleNamespace

        self.proc = subprocess.Popen(
            [sys.executable, "-m", "marketsync.cli", "sandbox", "serve", name, "--port", "0", "--seed", str(seed),
             "--time-scale", str(time_scale)], cwd=Path(__file__).resolve().parents[2], stdout=subprocess.PIPE,
            text=True)
        first = json.loads(self.proc.stdout.readline())
        self.url, self.credentials = first["url"], first["credentials"]
        self.app = SimpleNamespace(marketplace=name, time_scale=time_scale, spec_violations=[])

    def stop(self) -> None:
        import httpx

        try:
            self.app.spec_violations = httpx.get(self.url + "/_sandbox/state", timeout=30).json()["spec_violations"]
        finally:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except Exception:  # noqa: BLE001 - never leave it running
                self.proc.kill()
                self.proc.wait()


REPO = Path(__file__).resolve().parents[2]


@contextmanager
def _served(market: str, *args: str) -> Iterator[dict[str, Any]]:
    proc = subprocess.Popen([sys.executable, "-m", "marketsync.cli", "sandbox", "serve", market, *args], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        yield json.loads(proc.stdout.readline())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0, "the sandbox stops cleanly on SIGTERM"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture
def sandbox_cli() -> Callable[..., AbstractContextManager[dict[str, Any]]]:
    """`with sandbox_cli(market, *args) as first:` — `marketsync sandbox serve` as a subprocess, its first
    stdout line (JSON) as `first`; stopped with SIGTERM at the end, which it must exit 0 on."""
    return _served


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., RunningSandbox]]:
    """`make(name, seed=, time_scale=, process=False)`: in a thread, or as a child process."""
    started: list[Any] = []

    def make(name: str, *, process: bool = False, **options: Any) -> Any:
        options.setdefault("seed", 20)
        if process:
            running: Any = ProcessSandbox(name, seed=options["seed"], time_scale=options.get("time_scale", 1.0))
        else:
            running = start_sandbox(name, **options)
        started.append(running)
        return running

    yield make
    violations: list[str] = []
    for running in started:
        running.stop()
        violations += running.app.spec_violations
    assert not violations, "sandbox answered outside its spec (a sandbox bug):\n" + "\n".join(violations[:10])


def make_account(running: RunningSandbox, *, name: str = "", time_scale: float | None = None,
                **options: Any) -> AccountConfig:
    """An AccountConfig for the adapter of the sandbox's marketplace, pointing at it."""
    market = running.app.marketplace
    opts = dict(options)
    if market == "ozon":
        opts.setdefault("client_id", running.credentials["Client-Id"])
    endpoints = opts.pop("endpoints", {})
    return AccountConfig(
        name=name or f"{market}-test",
        marketplace=market,  # type: ignore[arg-type]
        base_url=running.url,
        credentials=dict(running.credentials),
        endpoints=endpoints,
        time_scale=running.app.time_scale if time_scale is None else time_scale,
        options=opts,
    )


@pytest.fixture
def account_for() -> Callable[..., AccountConfig]:
    """`account_for(running, name=..., time_scale=..., endpoints=..., **options)` -> AccountConfig."""
    return make_account


class HostileServer:
    """A real HTTP server on 127.0.0.1 that answers every request with the reply set last (raw bytes),
    to feed adapters what a marketplace should never send: HTML pages, broken JSON, bodies cut short."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.raw = b""
        self.requests = 0
        hostile = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                hostile.requests += 1
                self.wfile.write(hostile.raw)
                self.wfile.flush()
                self.close_connection = True

            do_GET = do_POST = do_PUT = do_PATCH = _any

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, status: int, body: bytes, *, ctype: str = "application/json", length: int | None = None) -> None:
        head = [f"HTTP/1.1 {status} X", f"Content-Type: {ctype}",
                f"Content-Length: {len(body) if length is None else length}", "Connection: close"]
        self.raw = ("\r\n".join(head) + "\r\n\r\n").encode() + body

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile(contract: ContractChecker) -> Iterator[HostileServer]:
    contract.check_responses = False  # its answers are broken on purpose
    contract.check_requests = True
    server = HostileServer()
    yield server
    server.stop()
