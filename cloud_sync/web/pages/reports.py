"""Reports: the commission agent report per account and period (cloud_sync.money.reports, from the
marketplace's realization report) with XLSX/CSV downloads, and the charts: orders and revenue per
marketplace per day."""

from __future__ import annotations

import io
import json
import sqlite3
import tempfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from flask import Blueprint, abort, render_template, request, send_file
from flask_babel import gettext as _

from cloud_sync.money import reports
from cloud_sync.onec.commission import CommissionError
from cloud_sync.onec.commission import saved_report as read_saved
from cloud_sync.web.context import ctx, get_db
from cloud_sync.web.i18n import domain_text
from cloud_sync.web.pages import charts
from cloud_sync.web.pages.common import accounts
from marketplaces.base import MarketplaceError, NotSupported

bp = Blueprint("reports", __name__)


def _period(errors: dict[str, str]) -> tuple[str, date, date]:
    a = request.values
    account = a.get("account", "")
    if account not in ctx().adapters:
        errors["account"] = _("choose a connected account")
    today = datetime.now(UTC).date()
    out = []
    for name, default in (("from", today - timedelta(days=7)), ("to", today)):
        raw = a.get(name, "")
        try:
            out.append(date.fromisoformat(raw) if raw else default)
        except ValueError:
            errors[name] = _("a date like 2026-11-01")
            out.append(default)
    if not errors and out[1] < out[0]:
        errors["to"] = _("the period ends before it starts")
    if not errors and (out[1] - out[0]).days > 92:
        errors["to"] = _("at most 92 days at once")
    return account, out[0], out[1]


def saved_report(conn: sqlite3.Connection, report_id: str) -> reports.CommissionReport | None:
    """A report built earlier (the page saves each one it builds), read back with its reconciliation, so
    a download is the report on screen and asks the marketplace nothing (its report calls are limited to
    about one a minute)."""
    try:
        report = read_saved(conn, report_id)
    except CommissionError:
        return None
    row = conn.execute("SELECT differences FROM commission_reports WHERE id=?", (report_id,)).fetchone()
    differing = {name: (Decimal(ours), Decimal(theirs)) for name, ours, theirs in json.loads(row["differences"])}
    for name, theirs in report.native_totals.items():
        if name not in reports.TOTAL_KEYS:
            report.not_compared.append(name)
        elif name in differing:
            report.compared[name] = differing[name][0]
            report.differences.append(reports.Difference(name, *differing[name]))
        else:  # agreed: a count equal to the marketplace's, a sum within the tolerance
            report.compared[name] = report.totals[name] if name in reports.MONEY else theirs
    return report


def _send(report: reports.CommissionReport, fmt: str):
    name = f"commission-{report.account}-{report.period_from}-{report.period_to}.{fmt}"
    with tempfile.TemporaryDirectory() as tmp:
        data = reports.export_commission(report, Path(tmp) / name).read_bytes()
    mime = ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" if fmt == "xlsx"
            else "text/csv; charset=utf-8")
    return send_file(io.BytesIO(data), mimetype=mime, as_attachment=True, download_name=name)


@bp.route("/reports", methods=["GET", "POST"])
def index():
    errors: dict[str, str] = {}
    report = table = recon = None
    today = datetime.now(UTC).date()
    account, d_from, d_to = "", today - timedelta(days=7), today
    if request.method == "POST":
        account, d_from, d_to = _period(errors)
        if not errors:
            try:
                report = reports.fetch_commission_report(get_db(), ctx().adapters[account], d_from, d_to)
            except NotSupported as exc:  # the marketplace offers no report: say so, it is no failure
                errors["account"] = exc.for_seller()
            except (reports.ReportError, MarketplaceError) as exc:
                errors["account"] = domain_text(exc)
        if report is not None:
            table, recon = reports.commission_table(report), reports.reconciliation_table(report)
    orders_chart, revenue_chart = charts.orders_per_day(get_db())
    return render_template("cloud/reports.html", active="reports", accounts=accounts(), errors=errors,
                           report=report, table=table, recon=recon, account=account,
                           d_from=d_from.isoformat(), d_to=d_to.isoformat(), orders_chart=orders_chart,
                           revenue_chart=revenue_chart), 400 if errors else 200


@bp.get("/reports/commission.<fmt>")
def download(fmt: str):
    errors: dict[str, str] = {}
    account, d_from, d_to = _period(errors)
    if fmt not in ("xlsx", "csv"):
        errors["fmt"] = "xlsx or csv"
    if errors:
        return {"errors": errors}, 400
    try:
        report = reports.fetch_commission_report(get_db(), ctx().adapters[account], d_from, d_to, save=False)
    except NotSupported as exc:
        return {"errors": {"account": exc.for_seller()}}, 409
    except (reports.ReportError, MarketplaceError) as exc:
        return {"errors": {"account": str(exc)}}, 502
    return _send(report, fmt)


@bp.get("/reports/commission/<report_id>.<fmt>")
def saved_download(report_id: str, fmt: str):
    """The report the page built, as it was built: no second call to the marketplace."""
    if fmt not in ("xlsx", "csv"):
        abort(404)
    report = saved_report(get_db(), report_id)
    if report is None:
        abort(404)
    return _send(report, fmt)
