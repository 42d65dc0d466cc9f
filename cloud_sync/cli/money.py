"""`marketsync sync prices` and `marketsync sync reports`: the command-line side of pricing and reports.

The cloud CLI's `sync_main` (cloud_sync/cli/cloud.py) hands these the arguments after the word
prices/reports:

  marketsync sync prices [--config F] [--db F] [--account A]...     read current prices back into the price list
  marketsync sync prices --doc FILE [--apply [--yes]] [--json]        preview (or apply) a price document
  marketsync sync prices --rules                                      run the due price rules once, now
  marketsync sync prices --add-rule "-10% Friday 18:00, back Monday 09:00" --account A [--target category=X]
  marketsync sync prices --list-rules | --disable-rule ID | --enable-rule ID
  marketsync sync prices --history [CARD] --account A
  marketsync sync reports --account A [--from D --to D] [--out F.xlsx|F.csv]   the commission agent report
  marketsync sync reports --stock warehouse|account|scheme [--out F]           stock reports

A price document file is TOML or JSON: account = "wb1", comment = "...", [[lines]] item|category|card|all
= ..., price|percent, discount_percent, old_price, min_price. Exit codes: 0 done, 1 refused or failed
(nothing half-applied), 2 bad usage or configuration.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from cloud_sync.access import secrets
from cloud_sync.cli import fail, load
from cloud_sync.config import ConfigError
from cloud_sync.money import price_apply, price_docs, price_list, price_preview, price_rules, reports
from cloud_sync.schema import open_db
from cloud_sync.service import accounts
from marketplaces import open_account
from marketplaces.base import NotSupported


def _common(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", help="cloud.toml (else $MARKETSYNC_CONFIG, ./config/cloud.toml, /etc/marketsync/cloud.toml)")
    p.add_argument("--db", help="the tenant database file (overrides [cloud] db_path)")
    p.add_argument("--account", action="append", help="only this account (repeatable)")
    p.add_argument("--no-progress", action="store_true")
    return p


def _load(args: argparse.Namespace) -> tuple[Any, Any]:
    cfg = load(args)  # found as the service finds it; errors name the file read
    return cfg, open_db(cfg.db_path)


class UsageError(Exception):
    """Bad usage or configuration (exit code 2)."""


def _adapter(cfg: Any, conn: Any, account: str) -> Any:
    """The account opened as the running service opens it: with the credentials and endpoint overrides
    entered in Settings."""
    if account not in cfg.accounts:
        raise UsageError(f"unknown account {account!r}; configured: {', '.join(sorted(cfg.accounts)) or 'none'}")
    try:
        return open_account(accounts.fresh_account_config(conn, cfg, account))
    except secrets.SecretError as exc:
        raise UsageError(str(exc)) from None


def _fail(message: str, code: int = 1) -> int:
    return fail("marketsync sync", message, code)  # names the config read


def read_document_file(path: str) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return json.loads(text) if p.suffix.lower() == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ValueError(f"{path} is not valid {'JSON' if p.suffix.lower() == '.json' else 'TOML'}: {exc}") from None


def _print_preview(pv: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps({"document": pv.document.id, "account": pv.document.account, "ok": pv.ok,
                          "errors": pv.all_errors, "to_confirm": pv.to_confirm, "warnings": pv.warnings,
                          "rows": pv.as_table()}, ensure_ascii=False, indent=1))
        return
    print(f"price document {pv.document.id} for {pv.document.account} ({pv.marketplace}): "
          f"{len(pv.changed)} changes, {len(pv.rows) - len(pv.changed)} unchanged")
    for r in pv.as_table():
        if r["unchanged"]:
            continue
        margin = f" margin {r['margin']} ({r['margin_percent']}%)" if r["margin"] is not None else ""
        e = r.get("economics") or {}
        if e.get("profit") is not None:  # after the marketplace's commission, logistics and acquiring
            guessed = f", estimated: {', '.join(e['estimated'])}" if e["estimated"] else ""
            margin += f", after fees {e['profit']} ({e['profit_percent']}%{guessed})"
        crossed = f" (crossed out {r['new_crossed_out']})" if r["new_crossed_out"] else ""
        print(f"  {r['offer_id']:<20} {r['old_price'] or '?':>10} -> {r['new_price']:>10}{crossed}"
              f" {r['change_percent'] or '':>7}%{margin}")
        for n in r["notes"]:
            print(f"      {n}")
    for w in pv.warnings:
        print(f"warning: {w}")
    for e in pv.errors:
        print(f"error: {e}")


def sync_prices(argv: list[str]) -> int:
    """`marketsync sync prices ...` (see the module docstring)."""
    try:
        return _sync_prices(argv)
    except UsageError as exc:
        return _fail(str(exc), 2)


def _sync_prices(argv: list[str]) -> int:
    p = _common("marketsync sync prices", "price list, price documents and price rules")
    p.add_argument("--doc", help="a price document (TOML or JSON) to preview, or with --apply to send")
    p.add_argument("--apply", action="store_true", help="send the document (after a clean preview)")
    p.add_argument("--yes", action="store_true", help="confirm large drops, quarantine and below-cost prices")
    p.add_argument("--json", action="store_true")
    p.add_argument("--rules", action="store_true", help="run the due price rules once, now")
    p.add_argument("--add-rule", metavar="TEXT", help="e.g. '-10%% Friday 18:00, back Monday 09:00'")
    p.add_argument("--target", action="append", default=[], help="for --add-rule: item=X, category=X or card=X")
    p.add_argument("--tz", default="Europe/Moscow")
    p.add_argument("--list-rules", action="store_true", help="the price rules and where each stands")
    p.add_argument("--disable-rule", metavar="ID", help="switch a rule off (an active one is reverted next tick)")
    p.add_argument("--enable-rule", metavar="ID")
    p.add_argument("--history", nargs="?", const="", default=None, metavar="CARD")
    args = p.parse_args(argv)
    try:
        cfg, conn = _load(args)
    except ConfigError as exc:
        return _fail(str(exc), 2)
    settings = cfg.pricing

    if args.doc:
        try:
            data = read_document_file(args.doc)
            if args.account and not data.get("account"):
                data["account"] = args.account[0]
            doc = price_docs.parse_document(data)
        except (ValueError, price_docs.PriceDocumentError) as exc:
            return _fail(str(exc) if isinstance(exc, price_docs.PriceDocumentError) else f"price document refused: {exc}")
        mp = cfg.accounts[doc.account].marketplace if doc.account in cfg.accounts else None
        pv = price_preview.preview(conn, doc, settings=settings, marketplace=mp)
        _print_preview(pv, args.json)
        if not args.apply:
            return 0 if pv.ok else 1
        try:
            res = price_apply.apply(conn, doc, _adapter(cfg, conn, doc.account), confirm=args.yes, settings=settings)
        except price_docs.ConfirmationRequired as exc:
            return _fail(f"{exc}\n  (run again with --yes to confirm)")
        except price_docs.PriceDocumentError as exc:
            return _fail(str(exc))
        print(f"{res.status}: {sum(1 for r in res.results if r.ok)} sent, {len(res.failed)} refused, "
              f"{res.unchanged} unchanged")
        for r in res.failed:
            print(f"  {r.offer_id}: {r.error}", file=sys.stderr)
        return 0 if res.status == "applied" else 1

    if args.add_rule:
        if not args.account or len(args.account) != 1:
            return _fail("--add-rule needs exactly one --account", 2)
        targets = []
        for t in args.target:
            scope, _, key = t.partition("=")
            targets.append({scope.strip(): key.strip()} if scope.strip() != "all" else {"all": True})
        try:
            rule = price_rules.add_rule(conn, account=args.account[0], text=args.add_rule, lines=targets or None,
                                        tz=args.tz, confirmed=args.yes)
        except price_rules.RuleError as exc:
            return _fail(f"price rule refused: {exc}")
        print(f"price rule {rule.id} added: {rule.name} ({rule.start_at} -> {rule.end_at}, {rule.tz})")
        return 0

    if args.list_rules:
        for r in price_rules.rules(conn, args.account[0] if args.account else None):
            flag = "" if r.enabled else " (disabled)"
            err = f" last error: {r.last_error}" if r.last_error else ""
            print(f"{r.id} {r.account} {r.state}{flag}: {r.name} [{r.start_at} -> {r.end_at} {r.tz}]"
                  f" {json.dumps(r.lines, ensure_ascii=False)}{err}")
        return 0

    if args.disable_rule or args.enable_rule:
        try:
            price_rules.set_enabled(conn, args.disable_rule or args.enable_rule, bool(args.enable_rule))
        except price_rules.RuleError as exc:
            return _fail(str(exc))
        print(f"price rule {args.disable_rule or args.enable_rule} {'enabled' if args.enable_rule else 'disabled'}")
        return 0

    if args.rules:
        adapters: dict[str, Any] = {}

        def adapter_for(account: str) -> Any:
            if account not in adapters:
                adapters[account] = _adapter(cfg, conn, account)
            return adapters[account]

        events = price_rules.run_due(conn, adapter_for, settings=settings)
        for e in events:
            print(f"rule {e.rule_id}: {e.action} {e.document_id} {e.detail}".rstrip())
        if not events:
            print("no price rule is due")
        return 1 if any(e.action in ("refused", "failed") for e in events) else 0

    if args.history is not None:
        if not args.account:
            return _fail("--history needs --account", 2)
        for h in price_list.history(conn, args.account[0], args.history or None):
            state = "ok" if h["ok"] else f"REFUSED {h['error']}"
            print(f"{h['sent_at']} {h['offer_id']:<20} {h['price_before'] or '?':>10} -> {h['price']:>10}"
                  f" doc {h['document_id']} {state}")
        return 0

    # default: read the current prices back from the marketplaces into the price list
    report = accounts.SyncReport()
    try:
        adapters, waiting = accounts.open_with_settings(conn, cfg, report, only=args.account)
    except secrets.SecretError as exc:
        return _fail(str(exc), 2)
    names = args.account or sorted(adapters)
    failed = list(report.errors)
    for name in names:
        if name not in adapters:
            if name not in waiting:  # a waiting account is said already
                failed.append(f"account {name}: no adapter (unknown account or adapter not built)")
            continue
        try:
            n = price_list.read_prices(conn, name, adapters[name])
        except Exception as exc:  # noqa: BLE001 - report per account and go on
            failed.append(f"account {name}: {exc}")
            continue
        print(f"account {name}: {n} prices read into the price list")
    for f in failed:
        print(f"error: {f}", file=sys.stderr)
    return 1 if failed else 0


def _last_week() -> tuple[date, date]:
    today = date.today()
    monday = today - timedelta(days=today.weekday() + 7)
    return monday, monday + timedelta(days=6)


def sync_reports(argv: list[str]) -> int:
    """`marketsync sync reports ...` (see the module docstring)."""
    try:
        return _sync_reports(argv)
    except UsageError as exc:
        return _fail(str(exc), 2)


def _sync_reports(argv: list[str]) -> int:
    p = _common("marketsync sync reports", "commission agent report and stock reports")
    p.add_argument("--from", dest="date_from", type=date.fromisoformat, help="YYYY-MM-DD (default: last Monday week)")
    p.add_argument("--to", dest="date_to", type=date.fromisoformat, help="YYYY-MM-DD (default: the Sunday after)")
    p.add_argument("--out", help="a .xlsx or .csv file (for one account; several: ACCOUNT is put before the name)")
    p.add_argument("--stock", choices=sorted(reports.STOCK_REPORTS), help="a stock report instead")
    args = p.parse_args(argv)
    try:
        cfg, conn = _load(args)
    except ConfigError as exc:
        return _fail(str(exc), 2)

    if args.stock:
        if not args.out:
            headers, rows = reports.STOCK_REPORTS[args.stock](conn)
            sys.stdout.write(reports.write_csv(None, headers, rows))
            return 0
        try:
            print(reports.export_stock(conn, args.stock, args.out))
        except reports.ReportError as exc:
            return _fail(str(exc))
        return 0

    start, end = args.date_from, args.date_to
    if start is None or end is None:
        d0, d1 = _last_week()
        start, end = start or d0, end or d1
    names = args.account or sorted(cfg.accounts)
    if not names:
        return _fail("no accounts configured", 2)
    status = 0
    for name in names:
        try:
            market = _adapter(cfg, conn, name)
            rep = reports.fetch_commission_report(conn, market, start, end)
        except UsageError:
            raise
        except NotSupported as exc:  # the marketplace offers no report: an answer, not a failure
            print(f"{name}: {exc.for_seller()}")
            continue
        except Exception as exc:  # noqa: BLE001 - report per account and go on
            print(f"error: account {name}: {exc}", file=sys.stderr)
            status = 1
            continue
        t = rep.totals
        state = {True: "reconciled", False: "DIFFERS from the marketplace", None: "no marketplace totals"}[rep.reconciled]
        print(f"{name} {start}..{end}: {len(rep.rows)} rows, sold {t['sold']}, returned {t['returned']}, "
              f"revenue {t['revenue']}, fee {t['fee']}, logistics {t['logistics']}, other {t['other']}, "
              f"to pay {t['to_pay']} - {state}")
        for d in rep.differences:
            print(f"  {d.name}: ours {d.ours}, marketplace {d.marketplace} (difference {d.delta})")
        if rep.reconciled is False:
            status = 1
        if args.out:
            out = Path(args.out)
            if len(names) > 1:
                out = out.with_name(f"{name}-{out.name}")
            try:
                print(f"  written {reports.export_commission(rep, out)}")
            except reports.ReportError as exc:
                print(f"error: {exc}", file=sys.stderr)
                status = 1
    return status
