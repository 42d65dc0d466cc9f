"""`marketsync orders ...`: the orders from the command line.

  marketsync orders export --config CLOUD_TOML [--format jsonl|csv|xlsx] [--out FILE]
      every order with marketplace, account, order id, status, deadline, lines, site and the time of each
      status (default: JSON Lines to standard output; csv/xlsx need --out or write orders.<format>)
  marketsync orders retry KEY [--config CLOUD_TOML] [--by NAME]
      check a waiting order again now (orders with an earlier deadline first); the last line is JSON

Exit codes: 0 done, 1 refused (nothing changed), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from cloud_sync.cli import fail, load, t, tn
from cloud_sync.config import ConfigError
from cloud_sync.db import transaction
from cloud_sync.orders import export, records, waiting
from cloud_sync.schema import open_db


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="marketsync orders", description="orders: export, retry a waiting one")
    sub = p.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("export", help="write every order (jsonl, csv or xlsx)")
    ex.add_argument("--format", default="jsonl", choices=export.FORMATS)
    ex.add_argument("--out", help="the file to write (jsonl: standard output when omitted)")
    rt = sub.add_parser("retry", help="check a waiting order again now")
    rt.add_argument("key", help="the order key, account:marketplace order id")
    rt.add_argument("--by", default="cli")
    for sp in (ex, rt):
        sp.add_argument("--config", help="cloud.toml (else $MARKETSYNC_CONFIG, ./config/cloud.toml,"
                        " /etc/marketsync/cloud.toml)")
        sp.add_argument("--db", help="the tenant database file (overrides [cloud] db_path)")
    args = p.parse_args(argv)
    try:
        cfg = load(args)  # found as the service finds it
    except ConfigError as exc:
        return fail("marketsync orders", exc)
    conn = open_db(cfg.db_path)
    try:
        if args.cmd == "export":
            return _export(conn, cfg, args.format, args.out)
        try:
            with transaction(conn):
                outcome = waiting.retry(conn, cfg, args.key, by=args.by)
        except records.OrderError as exc:
            return fail("marketsync orders retry", exc, 1)
        served = outcome == "served"
        print(t("order %(key)s: in stock, taken into work", key=args.key) if served
              else t("order %(key)s: still waiting — %(why)s", key=args.key, why=outcome))
        print(json.dumps({"order": args.key, "served": served, "reason": "" if served else outcome},
                         ensure_ascii=False))
        return 0
    finally:
        conn.close()


def _export(conn, cfg, fmt: str, out: str | None) -> int:
    try:
        if out is None and fmt == "jsonl":
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "orders.jsonl"
                export.write(conn, cfg, fmt, path)
                sys.stdout.write(path.read_text(encoding="utf-8"))
            return 0
        path = Path(out or f"orders.{fmt}")
        n = export.write(conn, cfg, fmt, path)
    except export.ExportError as exc:
        return fail("marketsync orders export", exc, 1)
    print(tn("%(n)s order exported → %(path)s", "%(n)s orders exported → %(path)s", n, path=path), file=sys.stderr)
    return 0
