"""Fixtures of the 1C exchange tests: the CommerceML corpus, a real HTTP server with the exchange
blueprint (werkzeug on 127.0.0.1, a free port, stopped after the test), and a 1C client emulator that
speaks the protocol as 1C does (Basic auth at checkauth, the cookie after, chunked uploads)."""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path

import httpx
import pytest
from flask import Flask
from werkzeug.serving import make_server

from cloud_sync.onec.exchange import ExchangeConfig, exchange_blueprint

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "corpus" / "commerceml"
PASSWORD = "s3cret-1c"


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"the shared CommerceML corpus is not beside the project ({CORPUS})")
    return CORPUS


class OneC:
    """What 1C does over HTTP, step by step (no knowledge of the server's internals)."""

    def __init__(self, base: str, kind: str = "catalog", login: str = "1c", password: str = PASSWORD) -> None:
        self.base = base
        self.kind = kind
        self.auth = (login, password)
        self.http = httpx.Client(timeout=30)
        self.cookie: tuple[str, str] | None = None
        self.file_limit = 0
        self.zip = False

    def close(self) -> None:
        self.http.close()

    def call(self, mode: str, *, method: str = "GET", body: bytes | None = None, auth=None, **params) -> httpx.Response:
        headers = {}
        if self.cookie:
            headers["Cookie"] = f"{self.cookie[0]}={self.cookie[1]}"
        return self.http.request(method, self.base, params={"type": self.kind, "mode": mode, **params},
                                 content=body, headers=headers, auth=auth)

    def checkauth(self) -> httpx.Response:
        r = self.call("checkauth", auth=self.auth)
        lines = r.text.splitlines()
        if lines and lines[0] == "success":
            self.cookie = (lines[1], lines[2])
        return r

    def init(self) -> httpx.Response:
        r = self.call("init")
        values = dict(line.split("=", 1) for line in r.text.splitlines() if "=" in line)
        self.zip = values.get("zip") == "yes"
        self.file_limit = int(values.get("file_limit", "0"))
        return r

    def upload(self, filename: str, data: bytes, chunk: int | None = None) -> list[httpx.Response]:
        size = chunk or self.file_limit
        out = []
        for i in range(0, len(data), size):
            out.append(self.call("file", method="POST", body=data[i:i + size], filename=filename))
        return out

    def import_until_done(self, filename: str, max_calls: int = 400) -> tuple[str, int]:
        """Call mode=import until it stops answering progress; (final answer, number of progress answers)."""
        for progress in range(max_calls):
            r = self.call("import", filename=filename)
            if not r.text.startswith("progress"):
                return r.text, progress
            threading.Event().wait(0.05)
        raise AssertionError(f"import of {filename} never finished")


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


@pytest.fixture
def make_zip():
    return zip_bytes


@pytest.fixture
def exchange_server(tmp_path):
    """Start the exchange on a free loopback port; yields (url, config, blueprint); always stopped."""
    started = []

    def start(**overrides):
        cfg = ExchangeConfig(db_path=str(tmp_path / "cloud.db"), work_dir=str(tmp_path / "exchange"),
                             password=PASSWORD, **overrides)
        app = Flask("onec-test")
        bp = exchange_blueprint(cfg)
        app.register_blueprint(bp)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        started.append((server, thread, bp))
        return f"http://127.0.0.1:{server.server_port}/1c/exchange", cfg, bp

    yield start
    for server, thread, bp in started:
        server.shutdown()
        thread.join(10)
        bp.exchange.wait_idle()


@pytest.fixture
def onec_client():
    clients = []

    def make(base: str, kind: str = "catalog", **kw) -> OneC:
        c = OneC(base, kind, **kw)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
