"""Reports: the commission agent report per account and period (cloud_sync.reports, from the
marketplace's realization report) with XLSX/CSV downloads, and the charts: orders and revenue per
marketplace per day."""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from flask import Blueprint, render_template, request, send_file

from cloud_sync import reports
from cloud_sync.ui import accounts, charts
from marketplaces.base import MarketplaceError


def _period(errors: dict[str, str]) -> tuple[str, date, date]:
    from cloud_sync.app import ctx

    a = request.values
    account = a.get("account", "")
    if account not in ctx().adapters:
        errors["account"] = "choose a connected account"
    today = datetime.now(UTC).date()
    out = []
    for name, default in (("from", today - timedelta(days=7)), ("to", today)):
        raw = a.get(name, "")
        try:
            out.append(date.fromisoformat(raw) if raw else default)
        except ValueError:
            errors[name] = "a date like 2026-11-01"
            out.append(default)
    if not errors and out[1] < out[0]:
        errors["to"] = "the period ends before it starts"
    if not errors and (out[1] - out[0]).days > 92:
        errors["to"] = "at most 92 days at once"
    return account, out[0], out[1]


def routes(bp: Blueprint) -> None:
    @bp.route("/reports", methods=["GET", "POST"], endpoint="reports")
    def reports_page():
        from cloud_sync.app import ctx, db

        errors: dict[str, str] = {}
        report = table = recon = None
        today = datetime.now(UTC).date()
        account, d_from, d_to = "", today - timedelta(days=7), today
        if request.method == "POST":
            account, d_from, d_to = _period(errors)
            if not errors:
                try:
                    report = reports.fetch_commission_report(db(), ctx().adapters[account], d_from, d_to)
                except (reports.ReportError, MarketplaceError) as exc:
                    errors["account"] = str(exc)
            if report is not None:
                table, recon = reports.commission_table(report), reports.reconciliation_table(report)
        orders_chart, revenue_chart = charts.orders_per_day(db())
        return render_template("cloud/reports.html", active="reports", accounts=accounts(), errors=errors,
                               report=report, table=table, recon=recon, account=account,
                               d_from=d_from.isoformat(), d_to=d_to.isoformat(), orders_chart=orders_chart,
                               revenue_chart=revenue_chart), 400 if errors else 200

    @bp.get("/reports/commission.<fmt>", endpoint="reports_download")
    def download(fmt: str):
        from cloud_sync.app import ctx, db

        errors: dict[str, str] = {}
        account, d_from, d_to = _period(errors)
        if fmt not in ("xlsx", "csv"):
            errors["fmt"] = "xlsx or csv"
        if errors:
            return {"errors": errors}, 400
        try:
            report = reports.fetch_commission_report(db(), ctx().adapters[account], d_from, d_to, save=False)
        except (reports.ReportError, MarketplaceError) as exc:
            return {"errors": {"account": str(exc)}}, 502
        with tempfile.TemporaryDirectory() as tmp:
            path = reports.export_commission(report, Path(tmp) / f"commission-{account}-{d_from}-{d_to}.{fmt}")
            data = path.read_bytes()
        import io

        mime = ("application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" if fmt == "xlsx"
                else "text/csv; charset=utf-8")
        return send_file(io.BytesIO(data), mimetype=mime, as_attachment=True, download_name=path.name)
