"""The pages' home: `/` («Требует внимания» for owners and managers, the orders list for packers), the
templates and the static files of the manager's pages (/static/cloud, endpoint `ui.static`)."""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, request, url_for

import web
from cloud_sync.web.auth import current_user
from cloud_sync.web.context import get_db
from cloud_sync.web.pages.common import find_items, sort_href

bp = Blueprint("ui", __name__, template_folder=str(web.TEMPLATES), static_folder=str(web.STATIC / "cloud"),
               static_url_path="/static/cloud")


@bp.app_context_processor
def sorting() -> dict:
    return {"sort_href": sort_href}


@bp.get("/items/suggest")
def suggest_items():
    """1C items for a field being typed (article first, then name): what the forms offer as you type."""
    q = request.args.get("q", "").strip()[:100]
    return jsonify([{"article": r["article"], "name": r["name"]} for r in find_items(get_db(), q)] if q else [])


@bp.get("/")
def home():
    """A manager starts on «Требует внимания»; a packer on the orders."""
    user = current_user()
    return redirect(url_for("orders.index" if user is not None and user.role == "packer" else "attention.index"))
