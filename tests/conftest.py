"""Fixtures shared by every part's tests: a real Mosquitto on a free loopback port, free ports.

`broker` is a fresh, open (anonymous) Mosquitto per test: its own config, persistence and log in a
temporary directory, stopped when the test ends, even on failure. `broker.port` / `broker.host` /
`broker.restart()` / `broker.link_settings()` (LinkConfig keyword arguments). `secure_broker` is the
same with TLS, a password per site (`site-1`, `site-2`) and the per-site ACL. `bot_api_for(token)` is a
Telegram Bot API stand-in on 127.0.0.1. `documented_config(path)` is a shipped config file as a
person reads it: every key it shows, with its `# key = value` lines taken as written.

PostgreSQL leg: with `MARKETSYNC_TEST_PG=1` (`make test` runs the cloud's tests so a second time) a
throwaway PostgreSQL cluster (`cloud_sync.pg_cluster`) is started for the session (for each worker with
`-n N`) and removed after it, and
`MARKETSYNC_PG_TEST_URL` points at it: every cloud database a test (or a `marketsync cloud serve` it starts)
opens by file path is then a fresh schema of that cluster (`cloud_sync.db`). A test that needs the SQLite
file itself is marked `sqlite_only("why")` and skipped on that leg.
"""

from __future__ import annotations

import json
import os
import re
import threading
import tomllib
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from marketsync.broker import Broker
from marketsync.broker import free_port as _free_port

# `# key = value`, `# [table]`, `# [[array]]` (prose comments never start like that in config/*.toml)
_COMMENTED_KEY = re.compile(r'^# ?((\[\[?[A-Za-z0-9_."-]+\]\]?( *#.*)?)|([A-Za-z0-9_"/-]+ *= .*))$')


_PG_CLUSTER: Any = None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only(reason): needs the cloud's SQLite file itself; skipped "
                            "on the PostgreSQL leg (MARKETSYNC_TEST_PG=1)")
    global _PG_CLUSTER
    if os.environ.get("MARKETSYNC_TEST_PG") == "1" and _PG_CLUSTER is None and _runs_tests(config):
        from cloud_sync.db import TEST_URL_ENV
        from cloud_sync.pg_cluster import Cluster

        _PG_CLUSTER = Cluster()
        os.environ[TEST_URL_ENV] = _PG_CLUSTER.start()


def _runs_tests(config: pytest.Config) -> bool:
    """Whether this pytest process runs tests itself: with `-n N` (pytest-xdist) each worker does, and starts
    its own cluster, and the process that only hands the tests out does not."""
    return hasattr(config, "workerinput") or not getattr(config.option, "numprocesses", None)


def pytest_unconfigure(config: pytest.Config) -> None:
    global _PG_CLUSTER
    if _PG_CLUSTER is not None:
        from cloud_sync.pg import close_pools

        close_pools()  # before the server goes: their workers would try to reach it
        _PG_CLUSTER.stop()
        _PG_CLUSTER = None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("MARKETSYNC_TEST_PG") != "1":
        return
    for item in items:
        mark = item.get_closest_marker("sqlite_only")
        if mark is not None:
            reason = mark.args[0] if mark.args else "needs the SQLite file"
            item.add_marker(pytest.mark.skip(reason=f"SQLite only: {reason}"))


@pytest.fixture
def documented_config() -> Callable[[Path], dict[str, Any]]:
    """The parsed TOML of a shipped config file with every commented key and table uncommented."""

    def parse(path: Path) -> dict[str, Any]:
        lines = [m.group(1) if (m := _COMMENTED_KEY.match(line)) else line
                 for line in path.read_text(encoding="utf-8").splitlines()]
        return tomllib.loads("\n".join(lines))
    return parse


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
    """A TCP port on 127.0.0.1 nothing listens on (call `marketsync.broker.free_port()` for more)."""
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


class BotApi:
    """A local HTTP server that speaks the Telegram Bot API's sendMessage (real HTTP on 127.0.0.1:0) for
    one bot `token`. Each request is recorded (path, JSON body); answers come from a script the test
    fills (status, body), defaulting to {"ok": true}; a path with another token gets 404."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.requests: list[tuple[str, dict]] = []
        self.script: list[tuple[int, dict]] = []
        self.lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with api.lock:
                    api.requests.append((self.path, body))
                    status, answer = api.script.pop(0) if api.script else (200, None)
                if status == 200 and answer is None:
                    if self.path != f"/bot{api.token}/sendMessage":
                        status, answer = 404, {"ok": False, "error_code": 404, "description": "Not Found"}
                    else:
                        answer = {"ok": True, "result": {"message_id": len(api.requests),
                                                         "chat": {"id": body.get("chat_id")}, "text": body.get("text")}}
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def paths(self) -> list[str]:
        return [p for p, _ in self.requests]

    @property
    def texts(self) -> list[str]:
        return [b.get("text", "") for _, b in self.requests]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bot_api_for() -> Iterator[Callable[[str], BotApi]]:
    """`bot_api_for(token)`: a Telegram Bot API stand-in for that bot token, stopped after the test."""
    started: list[BotApi] = []

    def start(token: str) -> BotApi:
        started.append(BotApi(token))
        return started[-1]

    yield start
    for api in started:
        api.stop()
