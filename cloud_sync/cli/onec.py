"""`marketsync onec ...`: the 1C exchange from the command line.

    marketsync onec import FILE... --db PATH [--cost-price-type NAME_OR_ID]...

imports CommerceML files (import*.xml, offers*.xml, prices*, rests*) into a cloud database in one
transaction and prints, as its last line, one JSON object with the counts, the stock total per
warehouse, the prices per item and price type and the warnings. An invalid file exits non-zero with
one clear line on stderr and leaves the database as it was.

    marketsync onec commission REPORT_ID --db PATH [--xlsx FILE] [--principal NAME] [--odata --config cloud.toml]

writes a saved commission agent report as the XLSX of 1C's «Отчет комиссионера (агента) о продажах»
and/or creates that document in 1C through OData (`[onec.odata]` of cloud.toml).

    marketsync onec new-items --config cloud.toml [--create] [--article ART]...

cards into 1C: lists (as one JSON object, its last line) the 1C items the marketplace cards that match
no 1C item would make — the batch to preview; with `--create`, creates them (or the `--article` ones)
in 1C through OData, records them in the cloud's catalog and links the cards.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys

from cloud_sync.config import ConfigError, load_config
from cloud_sync.db import transaction
from cloud_sync.onec import items_out
from cloud_sync.onec.commission import (
    CommissionError,
    create_document,
    odata_settings,
    parties,
    saved_report,
    write_xlsx,
)
from cloud_sync.onec.importer import import_files
from cloud_sync.onec.parser import CommerceMLError
from cloud_sync.schema import open_db


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="marketsync onec", description="1C exchange (CommerceML 2)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    imp = sub.add_parser("import", help="import CommerceML files into a cloud database")
    imp.add_argument("files", nargs="+", help="import*.xml, offers*.xml, prices*.xml, rests*.xml, in order")
    imp.add_argument("--db", required=True, help="the cloud database (SQLite file)")
    imp.add_argument("--cost-price-type", action="append", default=[],
                     help="the price type (name or id) that is the cost price; by default one named "
                          "like «Себестоимость»/«Закупочная»")
    com = sub.add_parser("commission", help="a saved commission report to 1C (XLSX and/or OData)")
    com.add_argument("report_id")
    com.add_argument("--db", required=True)
    com.add_argument("--xlsx", help="write the XLSX here")
    com.add_argument("--principal", default="", help="the seller's organization (комитент)")
    com.add_argument("--odata", action="store_true", help="create the document in 1C via OData")
    com.add_argument("--config", help="cloud.toml: its [legal] parties, and [onec.odata] (for --odata)")
    new = sub.add_parser("new-items", help="cards that match no 1C item: preview them, and create them in 1C")
    new.add_argument("--config", required=True, help="cloud.toml (its database and [onec.odata])")
    new.add_argument("--create", action="store_true", help="create them in 1C (else only the preview)")
    new.add_argument("--article", action="append", default=[], help="only these articles (repeatable)")
    args = ap.parse_args(argv)
    if args.cmd == "import":
        return _import(args)
    if args.cmd == "commission":
        return _commission(args)
    if args.cmd == "new-items":
        return _new_items(args)
    return 2


def _new_items(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"marketsync onec new-items: {exc}", file=sys.stderr)
        return 2
    section = cfg.onec.odata if cfg.onec is not None else None
    if args.create and section is None:
        print(f"marketsync onec new-items: {args.config} has no [onec.odata]: 1C's OData address is needed",
              file=sys.stderr)
        return 2
    conn = open_db(cfg.db_path)
    try:
        batch = items_out.proposals(conn)
        if args.article:
            unknown = sorted(set(args.article) - {i.article for i in batch})
            if unknown:
                print(f"marketsync onec new-items: no unmatched cards with article(s) {', '.join(unknown)}",
                      file=sys.stderr)
                return 1
            batch = [i for i in batch if i.article in args.article]
        out: dict = {"items": [i.as_dict() for i in batch]}
        if args.create and section is not None:
            outcomes = items_out.create_in_1c(batch, items_out.item_settings(section))
            with transaction(conn):
                linked = items_out.record(conn, batch, outcomes)
            out["outcomes"] = [o.__dict__ for o in outcomes]
            out["linked"] = linked.linked_by_barcode + linked.linked_by_article
        failed = [o for o in out.get("outcomes", []) if o["error"]]
    finally:
        conn.close()
    print(json.dumps(out, ensure_ascii=False))
    return 1 if failed else 0


def _commission(args: argparse.Namespace) -> int:
    if not args.xlsx and not args.odata:
        print("marketsync onec commission: say --xlsx FILE and/or --odata", file=sys.stderr)
        return 2
    section = None
    legal = None
    if args.odata and not args.config:
        print("marketsync onec commission: --odata needs --config cloud.toml", file=sys.stderr)
        return 2
    if args.config:  # the config is read before anything is written ([legal], [onec.odata])
        try:
            cfg = load_config(args.config)
        except ConfigError as exc:
            print(f"marketsync onec commission: {exc}", file=sys.stderr)
            return 2
        legal, onec = cfg.legal, cfg.onec
        section = onec.odata if onec is not None and args.odata else None
    if args.odata and section is None:
        print(f"marketsync onec commission: {args.config} has no [onec.odata]", file=sys.stderr)
        return 2
    conn = open_db(args.db)
    try:
        report = saved_report(conn, args.report_id)
        out: dict = {"report": report.id, "rows": len(report.rows)}
        if args.xlsx:
            out["xlsx"] = str(write_xlsx(report, args.xlsx, principal=args.principal,
                                         legal=parties(conn, report.account, legal)))
        if section is not None:
            result = create_document(report, odata_settings(section, report.account))
            out["odata"] = {"ref_key": result.ref_key, "posted": result.posted, "lines": result.lines,
                            "skipped": result.skipped}
    except CommissionError as exc:
        print(f"marketsync onec commission: {exc}", file=sys.stderr)
        return 1
    finally:
        conn.close()
    print(json.dumps(out, ensure_ascii=False))
    return 0


def _import(args: argparse.Namespace) -> int:
    for f in args.files:
        try:
            with open(f, "rb"):
                pass
        except OSError as exc:
            print(f"marketsync onec import: cannot read {f}: {exc.strerror}", file=sys.stderr)
            return 2
    try:
        conn = open_db(args.db)
    except (sqlite3.Error, OSError) as exc:
        print(f"marketsync onec import: cannot open database {args.db}: {exc}", file=sys.stderr)
        return 2
    try:
        result = import_files(conn, args.files, cost_price_types=args.cost_price_type)
    except CommerceMLError as exc:
        print(f"marketsync onec import: {exc}; nothing was imported", file=sys.stderr)
        return 1
    finally:
        conn.close()
    print(json.dumps(result.as_json(), ensure_ascii=False))
    return 0
