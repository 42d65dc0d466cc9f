"""`marketsync edge ...`: run the site agent, and a helper to hash staff PINs.

`edge serve --config FILE` starts the site link, the devices and the packers' page (waitress), prints
one JSON line `{"role": "edge", "site", "url"}` once ready, tells systemd READY=1 and pings its watchdog
(sd_notify) while healthy, and stops cleanly on SIGTERM / SIGINT.
`edge hash-pin [PIN]` prints the hash to put in a `[[staff]]` entry of edge.toml.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import getpass
import json
import logging
import os
import signal
import socket
import sys
import threading
import time

import waitress

from edge_agent.app import WEB_THREADS, create_app
from edge_agent.config import DEFAULTS, ConfigError, hash_pin, load_config
from edge_agent.site import Site
from sitelink.service_manager import notify, watchdog_interval

sd_notify = notify  # kept under its old name for callers and tests


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="marketsync edge")
    sub = parser.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run the site agent: link, devices, packers' page")
    serve.add_argument("--config", help="edge.toml (default: the shipped config/edge.toml)")
    serve.add_argument("--port", type=int, help="override web.port (0: a free port)")
    hp = sub.add_parser("hash-pin", help="print the hash of a staff PIN for edge.toml")
    hp.add_argument("pin", nargs="?")
    args = parser.parse_args(argv)
    if args.cmd == "hash-pin":
        pin = args.pin or getpass.getpass("PIN: ")
        try:
            print(hash_pin(pin))
        except ConfigError as exc:
            print(f"marketsync edge: {exc}", file=sys.stderr)
            return 2
        return 0
    return serve_main(args.config, args.port)


M_ARENA_MAX = -8  # glibc's mallopt parameters
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 128 * 1024  # glibc's own starting value, kept: it no longer grows


def frugal_malloc(arenas: int = 1) -> bool:
    """One malloc arena for the whole process instead of up to eight per core: the page's threads, the
    print queue, the link and the cameras each kept freed memory in an arena of their own (~15 MB more on
    the Pi bench, bench/edge_pi.py, with eight; ~10 MB more peak with two). The threads rarely allocate at
    the same moment, and one core serves them anyway. And a fixed mmap threshold: glibc raises it to the
    size of the largest block freed (a camera frame; a label's picture), after which such blocks come
    from the heap and stay resident when freed; fixed, every block over 128 KB goes back to the system
    when freed (~28 MB less resident after packing with a camera on the Pi bench). glibc only; elsewhere
    nothing changes. True when applied."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas)) and bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


def serve_main(config_path: str | None, port: int | None = None) -> int:
    frugal_malloc()  # before any thread starts
    logging.basicConfig(level=os.environ.get("MARKETSYNC_LOG", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(config_path or (DEFAULTS if DEFAULTS.exists() else None))
    except ConfigError as exc:
        print(f"marketsync edge: {exc}", file=sys.stderr)
        return 2
    if port is not None:
        cfg.web_port = port

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        site = Site(cfg)
    except Exception as exc:
        print(f"marketsync edge: cannot start the site: {exc}", file=sys.stderr)
        return 3
    server = None
    try:
        # the page first, then the devices and workers: their threads (a camera loading OpenCV and decoding,
        # labels rendered ahead loading pdfium) took turns at the GIL with the page being built, and on one
        # core the box was ready ~0.3-1 s later under load (bench/edge_pi.py)
        server = waitress.create_server(create_app(site), host=cfg.web_host, port=cfg.web_port, threads=WEB_THREADS,
                                        channel_timeout=60, ident="marketsync-edge")
        try:
            site.start()
        except Exception as exc:
            print(f"marketsync edge: cannot start the site: {exc}", file=sys.stderr)
            return 3
        web = threading.Thread(target=server.run, name="web", daemon=True)
        web.start()
        host = cfg.web_host if cfg.web_host not in ("0.0.0.0", "::") else socket.gethostname()
        url = f"http://{host}:{server.effective_port}"
        print(json.dumps({"role": "edge", "site": cfg.site_id, "url": url}, ensure_ascii=False), flush=True)
        sd_notify(f"READY=1\nSTATUS=serving {url}")
        interval = _watchdog_interval()
        while not stop.wait(interval):
            if web.is_alive() and _healthy(site):
                sd_notify("WATCHDOG=1")
        sd_notify("STOPPING=1")
        return 0
    finally:
        site.begin_stop()  # ends the live-update streams, so the web server can close at once
        if server is not None:
            with contextlib.suppress(Exception):
                time.sleep(0.2)
                server.close()
                server.task_dispatcher.shutdown(timeout=3)
        site.stop()
        site.close()


_watchdog_interval = watchdog_interval


def _healthy(site: object) -> bool:
    try:
        return site.row("SELECT 1 AS ok") is not None  # type: ignore[attr-defined]
    except Exception:
        return False
