"""A local HTTP server that speaks the Telegram Bot API's sendMessage (real HTTP on 127.0.0.1:0).

Each request is recorded (path, JSON body); answers come from a script the test fills (status,
body), defaulting to {"ok": true}. 429 answers carry `parameters.retry_after` the way the Bot API does.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cloud_sync.db import open_db

TOKEN = "123456789:AAF-secret-test-token-never-log-me"


class BotApi:
    def __init__(self) -> None:
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
                    if self.path != f"/bot{TOKEN}/sendMessage":
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
    def texts(self) -> list[str]:
        return [b.get("text", "") for _, b in self.requests]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def bot_api():
    api = BotApi()
    yield api
    api.stop()


@pytest.fixture
def db(tmp_path):
    conn = open_db(tmp_path / "tenant.sqlite")
    yield conn
    conn.close()
