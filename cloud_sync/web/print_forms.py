"""The print forms' pages: documents as printable HTML (A4, print CSS; the browser's "Print" or "Save as
PDF"). What goes on them comes from cloud_sync.onec.print_forms; templates in web/templates/print/.

    /print/pick/<order key>              pick task of an order (lines, bins, barcodes, 1C ids)
    /print/ship/<account>[?supply=ID]    ship (handover) task: the packed orders of an account, or of one
                                         marketplace supply, with a signature block
    /print/prices/<document id>          a price document: before/after per card
    /print/stock/fbs | fbo | scheme      stock reports: own warehouses, FBO, FBS vs FBO per account
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, abort, render_template, request
from flask_babel import get_locale

import web
from cloud_sync import i18n
from cloud_sync.onec import print_forms as forms
from cloud_sync.web.context import get_db

bp = Blueprint("print_forms", __name__, template_folder=str(web.TEMPLATES))


def _now() -> str:
    return i18n.when(datetime.now(UTC), str(get_locale()))  # one format for a moment on every page


@bp.get("/print/pick/<path:key>")
def pick(key: str):
    task = forms.pick_task(get_db(), key)
    if task is None:
        abort(404, f"no order {key}")
    return render_template("print/pick_task.html", task=task, printed=_now())


@bp.get("/print/ship/<account>")
def ship(account: str):
    return render_template("print/ship_task.html", task=forms.ship_task(get_db(), account, request.args.get("supply")),
                           printed=_now())


@bp.get("/print/prices/<doc_id>")
def prices(doc_id: str):
    doc = forms.price_document(get_db(), doc_id)
    if doc is None:
        abort(404, f"no price document {doc_id}")
    return render_template("print/price_document.html", doc=doc, printed=_now())


@bp.get("/print/stock/<kind>")
def stock(kind: str):
    report = forms.stock_report(get_db(), kind)
    if report is None:
        abort(404, f"no stock report {kind}: fbs, fbo or scheme")
    return render_template("print/stock_report.html", report=report, printed=_now())
