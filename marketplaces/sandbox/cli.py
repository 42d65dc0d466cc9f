"""`marketsync sandbox serve <marketplace> [--port P] [--seed N] [--cabinet C] [--time-scale K] [--no-validate] [--marking]`.

Prints as its first stdout line one JSON object `{"marketplace", "url", "credentials"}` (credentials:
the exact headers an adapter must send), flushes it, serves every API family of that marketplace on
one 127.0.0.1 port, and exits cleanly (code 0) on SIGTERM or SIGINT. `--marking` (Wildberries, Ozon):
orders of marked demo goods require their Честный знак codes from the start, as the marketplace does
(otherwise off, so that flows which never scan codes keep going; `POST /_sandbox/x/marking` switches it).
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import signal
import sys
import threading

from marketplaces.sandbox.core import make_sandbox_server, quiet_werkzeug
from marketplaces.sandbox.registry import SANDBOXES, create_sandbox

MARKING = ("ozon", "wildberries")  # the sandboxes whose orders can require Честный знак codes


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="marketsync sandbox")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="serve a local sandbox of a marketplace API")
    serve.add_argument("marketplace", choices=sorted(SANDBOXES))
    serve.add_argument("--port", type=int, default=0)
    serve.add_argument("--seed", type=int, default=20, help="number of demo cards to start with")
    serve.add_argument("--time-scale", type=float, default=1.0, help="run every time-based limit K times faster")
    serve.add_argument("--cabinet", type=int, default=0,
                       help="the seller's N-th cabinet on this marketplace (0 the first): its own ids and buyers")
    serve.add_argument("--no-validate", action="store_true", help="skip OpenAPI validation (faster)")
    serve.add_argument("--marking", action="store_true",
                       help="orders of marked goods require Честный знак codes (wildberries, ozon)")
    args = parser.parse_args(argv)
    if args.marking and args.marketplace not in MARKING:
        parser.error(f"--marking: the {args.marketplace} sandbox has no Честный знак marking"
                     f" (it has: {', '.join(MARKING)})")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")

    quiet_werkzeug()

    try:
        app = create_sandbox(args.marketplace, seed=args.seed, time_scale=args.time_scale, cabinet=args.cabinet,
                             validate=not args.no_validate, **({"marking": True} if args.marking else {}))
    except ImportError as exc:
        print(f"sandbox {args.marketplace} is not available: {exc}", file=sys.stderr)
        return 3
    # the seeded catalog (100,000 cards in the benches) lives as long as the process: moved out of the
    # collector's reach, a full collection no longer walks it — such a pause (50-115 ms) landing on a
    # request was the tail of the stock push bench (the last request answered ~100 ms late)
    gc.freeze()
    server = make_sandbox_server(app, args.port)
    url = f"http://127.0.0.1:{server.server_port}"
    first = {"marketplace": args.marketplace, "url": url, "credentials": app.credentials}
    options = app.account_options()
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
