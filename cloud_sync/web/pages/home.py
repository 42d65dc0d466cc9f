"""The pages' home: `/` («Требует внимания» for owners and managers, the orders list for packers), the
templates and the static files of the manager's pages (/static/cloud, endpoint `ui.static`)."""

from __future__ import annotations

from flask import Blueprint, redirect, url_for

import web
from cloud_sync.web.auth import current_user

bp = Blueprint("ui", __name__, template_folder=str(web.TEMPLATES), static_folder=str(web.STATIC / "cloud"),
               static_url_path="/static/cloud")


@bp.get("/")
def home():
    """A manager starts on «Требует внимания»; a packer on the orders."""
    user = current_user()
    return redirect(url_for("orders.index" if user is not None and user.role == "packer" else "attention.index"))
