"""The packers' page's live updates against the real `marketsync edge serve` (waitress, real HTTP): however
many streams the handhelds, stations and reloaded pages leave open, the box still takes scans."""

from __future__ import annotations

import http.cookiejar
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.parse
import urllib.request
from pathlib import Path

from edge_testkit import MUG, make_conn, offline_site_toml, pick_task

from edge_agent import store
from edge_agent.app import MAX_LIVE_STREAMS, WEB_THREADS, LiveStreams
from edge_agent.tasks import inbox

ROOT = Path(__file__).resolve().parents[2]


def test_the_oldest_stream_is_ended_when_the_limit_is_reached() -> None:
    streams = LiveStreams(2)
    a, b = streams.enter(), streams.enter()
    c = streams.enter()
    assert a.is_set() and not b.is_set() and not c.is_set() and streams.count == 2
    streams.leave(a)
    streams.leave(b)
    assert streams.count == 1


def test_more_open_streams_than_server_threads_do_not_stop_scans(tmp_path: Path) -> None:
    conn = make_conn(tmp_path / "site.sqlite")
    with store.transaction(conn):
        inbox.apply_pick_task(conn, pick_task("t1", [(MUG, 1)]))
    conn.close()
    cfg = offline_site_toml(tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "marketsync.cli", "edge", "serve", "--config", str(cfg)],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    socks: list[socket.socket] = []
    try:
        url = json.loads(proc.stdout.readline())["url"]
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        form = urllib.parse.urlencode({"name": "Анна", "pin": "4321", "station": "pack-1"}).encode()
        opener.open(url + "/login", data=form, timeout=10).close()
        cookie = "; ".join(f"{c.name}={c.value}" for c in jar)
        host, port = urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port
        assert MAX_LIVE_STREAMS < WEB_THREADS
        for _ in range(WEB_THREADS + 4):  # pages left open, reloaded, or closed without a goodbye
            s = socket.create_connection((host, port), timeout=10)
            s.sendall(f"GET /events HTTP/1.1\r\nHost: {host}\r\nCookie: {cookie}\r\n\r\n".encode())
            socks.append(s)
        req = urllib.request.Request(url + "/api/scan", data=json.dumps({"code": MUG["barcode"]}).encode(),
                                     headers={"Content-Type": "application/json"})
        with opener.open(req, timeout=10) as r:  # without a limit every thread is held and this hangs
            assert json.loads(r.read())["result"]["kind"] == "done"
    finally:
        for s in socks:
            s.close()
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
