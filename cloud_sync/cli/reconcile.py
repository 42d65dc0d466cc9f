"""`marketsync reconcile`: the three-way stock reconciliation (1C, the ledger, the marketplaces) in words,
the last line one JSON summary `{"items", "differences", "explained", "unexplained"}`."""

from __future__ import annotations

import argparse
import json
import sys

from cloud_sync.access import secrets
from cloud_sync.cli import fail, load, t, tn
from cloud_sync.config import ConfigError
from cloud_sync.schema import open_db
from cloud_sync.service import accounts, sync


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="marketsync reconcile",
                                description="stock reconciliation: 1C, the ledger and what the marketplaces show")
    p.add_argument("--config", help="cloud.toml (else $MARKETSYNC_CONFIG, ./config/cloud.toml, /etc/marketsync/cloud.toml)")
    p.add_argument("--db")
    p.add_argument("--account", action="append", help="only this account (may be repeated)")
    p.add_argument("--no-read-back", action="store_true", help="do not read the stocks back from the marketplaces")
    p.add_argument("--all", action="store_true", help="show the explained differences too")
    args = p.parse_args(argv)
    try:
        cfg = load(args)
    except ConfigError as exc:
        return fail("marketsync reconcile", exc)
    unknown = set(args.account or ()) - set(cfg.accounts)
    if unknown:
        return fail("marketsync reconcile", t("no such account: %(names)s", names=", ".join(sorted(unknown))))
    conn = open_db(cfg.db_path)
    report = accounts.SyncReport()
    adapters: dict = {}
    if not args.no_read_back:
        try:
            adapters, _ = accounts.open_with_settings(conn, cfg, report, only=args.account)
        except secrets.SecretError as exc:
            return fail("marketsync reconcile", exc)
    try:
        result = sync.reconcile_stock(conn, cfg, adapters, read_back=not args.no_read_back)
    finally:
        for a in adapters.values():
            accounts.close_adapter(a)
        conn.close()
    for account, note in sorted(result.accounts.items()):
        print(f"{account}: {note}")
    shown = result.differences if args.all else result.unexplained
    for d in shown:
        where = t("1C") if d.where == "1c" else f"{d.where} {d.card_id}@{d.mp_warehouse}"
        mark = t("explained") if d.explained else t("NOT EXPLAINED")
        print(t("%(mark)s: %(item)s at warehouse %(warehouse)s, %(where)s: %(why)s", mark=mark,
                item=d.article or d.item_id, warehouse=d.warehouse, where=where, why=d.why))
    s = result.summary()
    if not s["differences"]:
        print(tn("no differences: %(n)s item reconciled", "no differences: %(n)s items reconciled", s["items"]))
    for err in report.errors:
        print(t("error: %(error)s", error=err), file=sys.stderr)
    print(json.dumps(s))
    return 1 if s["unexplained"] else 0
