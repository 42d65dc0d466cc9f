"""`marketsync reconcile`: the three-way stock reconciliation (1C, the ledger, the marketplaces) in words,
the last line one JSON summary `{"items", "differences", "explained", "unexplained"}`."""

from __future__ import annotations

import argparse
import json
import sys

from cloud_sync.access import secrets
from cloud_sync.cli.cloud import _config
from cloud_sync.config import ConfigError
from cloud_sync.schema import open_db
from cloud_sync.service import accounts, sync


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="marketsync reconcile",
                                description="сверка остатков: 1С, учёт marketsync и то, что показывают площадки")
    p.add_argument("--config")
    p.add_argument("--db")
    p.add_argument("--account", action="append", help="только этот кабинет (можно несколько раз)")
    p.add_argument("--no-read-back", action="store_true", help="не читать остатки с площадок")
    p.add_argument("--all", action="store_true", help="показать и объяснённые расхождения")
    args = p.parse_args(argv)
    try:
        cfg = _config(args)
    except ConfigError as exc:
        print(f"marketsync reconcile: {exc}", file=sys.stderr)
        return 2
    unknown = set(args.account or ()) - set(cfg.accounts)
    if unknown:
        print(f"marketsync reconcile: нет такого кабинета: {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    conn = open_db(cfg.db_path)
    report = accounts.SyncReport()
    adapters: dict = {}
    if not args.no_read_back:
        try:
            adapters, _ = accounts.open_with_settings(conn, cfg, report, only=args.account)
        except secrets.SecretError as exc:
            print(f"marketsync reconcile: {exc}", file=sys.stderr)
            return 2
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
        where = "1С" if d.where == "1c" else f"{d.where} {d.card_id}@{d.mp_warehouse}"
        mark = "объяснено" if d.explained else "НЕ ОБЪЯСНЕНО"
        print(f"{mark}: {d.article or d.item_id} на складе {d.warehouse}, {where}: {d.why}")
    s = result.summary()
    if not s["differences"]:
        print(f"расхождений нет: сверено товаров {s['items']}")
    for err in report.errors:
        print(f"ошибка: {err}", file=sys.stderr)
    print(json.dumps(s))
    return 1 if s["unexplained"] else 0
