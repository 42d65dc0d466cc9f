"""The manager's web pages (server-rendered Jinja2, templates in web/templates/cloud, CSS/JS in
web/static/cloud): one blueprint `ui`, each page group in its own module adding its routes. Pages read
and change through the domain modules (orders, catalog, pricing, stock, reports...), never around them.

`register(app)` is called by cloud_sync/app.py after cloud_sync.auth.install(app).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Flask, redirect, request, url_for

import web

WEB = web.ROOT
PAGE_SIZE = 50


def blueprint() -> Blueprint:
    bp = Blueprint("ui", __name__, template_folder=str(WEB / "templates"), static_folder=str(WEB / "static" / "cloud"),
                   static_url_path="/static/cloud")

    @bp.get("/")
    def home():
        return redirect(url_for("ui.orders"))

    @bp.app_template_filter("timestamp_utc")
    def timestamp_utc(ts: float | None) -> str:
        """A unix time as a readable UTC date (app.js then shows it in the reader's own time zone)."""
        return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M UTC") if ts else ""

    from cloud_sync.web.pages import orders, prices, products, reports, settings, sites, stocks

    for module in (orders, products, prices, stocks, reports, sites, settings):
        module.routes(bp)
    return bp


def register(app: Flask) -> None:
    app.register_blueprint(blueprint())


def page_number() -> int:
    try:
        return max(1, int(request.args.get("page", "1")))
    except ValueError:
        return 1


def args_for(**fixed: Any):
    """A function page -> query string keeping the current filters (for the pager)."""
    def make(page: int) -> str:
        q = {k: v for k, v in request.args.items() if k != "page" and v}
        q.update({k: v for k, v in fixed.items() if v})
        q["page"] = str(page)
        return urlencode(q)
    return make


def accounts() -> list[tuple[str, str]]:
    """(account, "account (marketplace)") of every configured account."""
    from cloud_sync.web.app import ctx

    return [(name, f"{name} ({a.marketplace})") for name, a in sorted(ctx().cfg.accounts.items())]
