"""Reports: the commission agent report per account and period (cloud_sync.money.reports, from the
marketplace's realization report) with XLSX/CSV downloads, and the charts: orders and revenue per
marketplace per day."""

from __future__ import annotations

import io
import json
import sqlite3
import tempfile
from contextlib import AbstractContextManager, nullcontext
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from flask import Blueprint, abort, redirect, render_template, request, send_file, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext

from cloud_sync.money import reports
from cloud_sync.onec.commission import CommissionError, parties, write_xlsx
from cloud_sync.onec.commission import saved_report as read_saved
from cloud_sync.web.context import ctx, get_db
from cloud_sync.web.i18n import domain_text
from cloud_sync.web.pages import charts
from cloud_sync.web.pages.common import accounts

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
            report.compared[name] = report.totals.get(name, theirs) if name in reports.MONEY else theirs
    return report


def _send(report: reports.CommissionReport, fmt: str):
    name = f"commission-{report.account}-{report.period_from}-{report.period_to}.{fmt}"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        if fmt == "xlsx":  # laid out as 1C's «Отчет комиссионера», with the parties entered in Settings
            write_xlsx(report, path, legal=parties(get_db(), report.account, ctx().cfg.legal))
        else:
            reports.export_commission(report, path)
        data = path.read_bytes()
    mime = ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" if fmt == "xlsx"
            else "text/csv; charset=utf-8")
    return send_file(io.BytesIO(data), mimetype=mime, as_attachment=True, download_name=name)


def _stage_text(build: dict) -> str:
    stage = build["stage"]
    if stage == "queued":
        return _("waiting for its turn")
    if stage == "reading":
        return _("reading the marketplace's report (it answers reports about once a minute)")
    if stage == "saving":
        return _("summing per item and reconciling")
    if stage == "done":
        return _("ready")
    return _("failed")


def _market_for(account: str) -> AbstractContextManager:
    """The account's adapter held for one build (the shared holder's lease, or the adapter itself)."""
    adapters = ctx().adapters
    if hasattr(adapters, "lease"):
        return adapters.lease(account)
    return nullcontext(adapters[account])


def _build_json(build: dict) -> dict:
    return {"id": build["id"], "state": build["state"], "progress": round(100 * build["progress"]),
            "stage": _stage_text(build), "error": domain_text(build["error"]) if build["error"] else "",
            "url": url_for("reports.index", build=build["id"])}


@bp.route("/reports", methods=["GET", "POST"])
def index():
    errors: dict[str, str] = {}
    report = table = recon = build = None
    today = datetime.now(UTC).date()
    account, d_from, d_to = "", today - timedelta(days=7), today
    conn = get_db()
    if request.method == "POST":
        account, d_from, d_to = _period(errors)
        if not errors:
            try:
                build_id = reports.queue_build(conn, account, d_from, d_to)
            except reports.ReportError as exc:
                errors["to"] = domain_text(exc)
            else:
                if ctx().jobs is None:  # no service jobs (the app run on its own): built in this request
                    reports.run_next_build(conn, _market_for)
                return redirect(url_for("reports.index", build=build_id), code=303)
    elif request.args.get("build"):
        build = reports.build_status(conn, request.args["build"])
        if build is None:
            abort(404)
        account, d_from, d_to = (build["account"], date.fromisoformat(build["period_from"]),
                                 date.fromisoformat(build["period_to"]))
        if build["state"] == "failed":
            errors["account"] = domain_text(build["error"]) or _("the report could not be built")
        elif build["state"] == "done":
            report = saved_report(conn, build["report_id"])
        if report is not None:
            table, recon = _commission_table(report), _reconciliation(report)
    orders_chart, revenue_chart = charts.orders_per_day(conn)
    return render_template("cloud/reports.html", active="reports", accounts=accounts(), errors=errors,
                           report=report, table=table, recon=recon, account=account, build=build,
                           build_json=_build_json(build) if build else None,
                           money_columns={i for i, k in enumerate(reports.HEADERS_RU) if k in reports.MONEY},
                           d_from=d_from.isoformat(), d_to=d_to.isoformat(), orders_chart=orders_chart,
                           revenue_chart=revenue_chart), 400 if errors and request.method == "POST" else 200


COLUMN_LABELS = {
    "article": lazy_gettext("1C article"), "name": lazy_gettext("Item"),
    "offer_ids": lazy_gettext("Marketplace articles"), "sold": lazy_gettext("Sold, pcs"),
    "returned": lazy_gettext("Returned, pcs"), "revenue": lazy_gettext("Revenue"),
    "fee": lazy_gettext("Marketplace fee"), "acquiring": lazy_gettext("Acquiring"),
    "logistics": lazy_gettext("Logistics"), "storage": lazy_gettext("Storage"), "penalty": lazy_gettext("Penalties"),
    "other": lazy_gettext("Other deductions"), "to_pay": lazy_gettext("To be paid"),
    "back_good": lazy_gettext("Back at the warehouse, pcs"), "back_defective": lazy_gettext("Of them defective, pcs"),
}
RECON_STATES = {"agrees": lazy_gettext("agrees"), "differs": lazy_gettext("differs"),
                "not_compared": lazy_gettext("not compared")}


def _commission_table(report: reports.CommissionReport) -> tuple[list[str], list[list]]:
    """The report's table in the reader's language (the files keep 1C's Russian)."""
    _headers, body = reports.commission_table(report)
    body[-1][1] = _("Total of the report")
    return [str(COLUMN_LABELS[k]) for k in reports.HEADERS_RU], body


def _reconciliation(report: reports.CommissionReport) -> tuple[list[str], list[dict]]:
    headers = [_("Figure"), _("Ours"), _("Marketplace"), _("Difference"), _("Result"), _("Explanation")]
    # a figure of the marketplace's own goes by its name in its API, translated where the catalog knows it
    rows = [{"name": str(COLUMN_LABELS.get(x.name) or _(x.name)), "values": x.values(), "count": x.count,
             "state": x.state, "said": str(RECON_STATES[x.state]), "note": _(x.note) if x.note else ""}
            for x in reports.reconciliation_lines(report)]
    return headers, rows


@bp.get("/reports/builds/<build_id>.json")
def build_progress(build_id: str):
    """A build's state for the page's progress bar: {state, progress (0-100), stage, error, url}."""
    build = reports.build_status(get_db(), build_id)
    if build is None:
        return {"error": _("no such report build")}, 404
    return _build_json(build)


@bp.get("/reports/commission.<fmt>")
def download(fmt: str):
    """A report of an account and period asked for by its address: built in the background like the
    page's (no request waits for the marketplace); the page then follows it and offers the file."""
    errors: dict[str, str] = {}
    account, d_from, d_to = _period(errors)
    if fmt not in ("xlsx", "csv"):
        errors["fmt"] = "xlsx or csv"
    if errors:
        return {"errors": errors}, 400
    try:
        build_id = reports.queue_build(get_db(), account, d_from, d_to)
    except reports.ReportError as exc:
        return {"errors": {"to": domain_text(exc)}}, 400
    if ctx().jobs is None:
        reports.run_next_build(get_db(), _market_for)
    return redirect(url_for("reports.index", build=build_id), code=303)


@bp.get("/reports/commission/<report_id>.<fmt>")
def saved_download(report_id: str, fmt: str):
    """The report the page built, as it was built: no second call to the marketplace."""
    if fmt not in ("xlsx", "csv"):
        abort(404)
    report = saved_report(get_db(), report_id)
    if report is None:
        abort(404)
    return _send(report, fmt)
