"""`marketsync sandbox serve <marketplace> [--port P] [--seed N] [--time-scale K] [--no-validate]`.

Prints as its first stdout line one JSON object `{"marketplace", "url", "credentials"}` (credentials:
the exact headers an adapter must send), flushes it, serves every API family of that marketplace on
one 127.0.0.1 port, and exits cleanly (code 0) on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading

from marketplaces.sandbox.registry import SANDBOXES, create_sandbox


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="marketsync sandbox")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a local sandbox of a marketplace API")
    serve.add_argument("marketplace", choices=sorted(SANDBOXES))
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--seed", type=int, default=20, help="number of demo cards to start with")
    serve.add_argument("--time-scale", type=float, default=1.0, help="run every time-based limit K times faster")
    serve.add_argument("--no-validate", action="store_true", help="skip OpenAPI validation (faster)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")

    from marketplaces.sandbox.core import make_sandbox_server, quiet_werkzeug

    quiet_werkzeug()

    try:
        app = create_sandbox(args.marketplace, seed=args.seed, time_scale=args.time_scale,
                             validate=not args.no_validate)
    except ImportError as exc:
        print(f"sandbox {args.marketplace} is not available: {exc}", file=sys.stderr)
        return 3
    server = make_sandbox_server(app, args.port)
    url = f"http://127.0.0.1:{server.server_port}"
    first = {"marketplace": args.marketplace, "url": url, "credentials": app.credentials}
    options = app.account_options() if hasattr(app, "account_options") else {}
    if options:  # ids the account's adapter needs (YM business/campaign, MM merchant/shipping point)
        first["options"] = options
    print(json.dumps(first), flush=True)

    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0
