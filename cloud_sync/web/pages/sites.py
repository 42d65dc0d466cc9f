"""Sites: each edge agent online or not, its queue depth, last seen, and the printers and scanners it
last reported (the rows come from cloud_sync.web.site_status, as `/api/sites` gives them)."""

from __future__ import annotations

from flask import Blueprint, render_template

from cloud_sync.web.site_status import site_rows

bp = Blueprint("sites", __name__)


@bp.get("/sites")
def index():
    return render_template("cloud/sites.html", active="sites", sites=site_rows())
