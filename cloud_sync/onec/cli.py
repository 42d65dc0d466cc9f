"""`marketsync onec ...`: the 1C exchange from the command line.

    marketsync onec import FILE... --db PATH [--cost-price-type NAME_OR_ID]...

imports CommerceML files (import*.xml, offers*.xml, prices*, rests*) into a cloud database in one
transaction and prints, as its last line, one JSON object with the counts, the stock total per
warehouse, the prices per item and price type and the warnings. An invalid file exits non-zero with
one clear line on stderr and leaves the database as it was.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys

from cloud_sync.db import open_db
from cloud_sync.onec.importer import import_files
from cloud_sync.onec.parser import CommerceMLError


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="marketsync onec", description="1C exchange (CommerceML 2)")
    sub = ap.add_subparsers(dest="cmd", required=True)
    imp = sub.add_parser("import", help="import CommerceML files into a cloud database")
    imp.add_argument("files", nargs="+", help="import*.xml, offers*.xml, prices*.xml, rests*.xml, in order")
    imp.add_argument("--db", required=True, help="the cloud database (SQLite file)")
    imp.add_argument("--cost-price-type", action="append", default=[],
                     help="the price type (name or id) that is the cost price; by default one named "
                          "like «Себестоимость»/«Закупочная»")
    args = ap.parse_args(argv)
    if args.cmd == "import":
        return _import(args)
    return 2


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
