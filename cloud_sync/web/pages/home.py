"""The pages' home: `/` (the orders list), the templates and the static files of the manager's pages
(/static/cloud, endpoint `ui.static`) and the `timestamp_utc` template filter."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, redirect, url_for

import web

bp = Blueprint("ui", __name__, template_folder=str(web.TEMPLATES), static_folder=str(web.STATIC / "cloud"),
               static_url_path="/static/cloud")


@bp.get("/")
def home():
    return redirect(url_for("orders.index"))


@bp.app_template_filter("timestamp_utc")
def timestamp_utc(ts: float | None) -> str:
    """A unix time as a readable UTC date (app.js then shows it in the reader's own time zone)."""
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M UTC") if ts else ""
