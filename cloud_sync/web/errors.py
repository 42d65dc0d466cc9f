"""How the web app answers what it refuses (registered by `create_app`): JSON {"error": ...} for the API,
the refusal page for the manager's pages; the push and 1C endpoints keep their own answers."""

from __future__ import annotations

from flask import jsonify, render_template, request
from flask_babel import lazy_gettext
from werkzeug.exceptions import HTTPException

from cloud_sync.web.auth import OWN_AUTH_PATHS
from cloud_sync.web.context import ApiError

PAGE_TEXTS = {  # what a refused page says, in the reader's language
    404: (lazy_gettext("Not found"), lazy_gettext("There is no such page, order or document.")),
    405: (lazy_gettext("Not allowed"), lazy_gettext("This page cannot be opened this way.")),
    413: (lazy_gettext("Too large"), lazy_gettext("The file or form is too large.")),
    400: (lazy_gettext("Wrong request"), lazy_gettext("The request cannot be read; go back and try again.")),
}


def http_error(exc: HTTPException):
    """Not found, method not allowed...: JSON for the API, a page of the UI for the pages (Flask's bare
    English page otherwise); the push and 1C endpoints keep their own answers."""
    if exc.code is None or exc.code < 400 or request.path.startswith(OWN_AUTH_PATHS):
        return exc
    if request.path.startswith("/api/"):
        return jsonify({"error": f"{exc.name}: {exc.description}"}), exc.code
    heading, message = PAGE_TEXTS.get(exc.code, (lazy_gettext("Refused"), lazy_gettext("This request cannot be done.")))
    return render_template("cloud/refused.html", heading=str(heading), message=str(message)), exc.code


def api_error(exc: ApiError):
    return jsonify({"error": str(exc)}), exc.status


def refused(exc: ValueError):
    """What the domain refuses (a stock, catalog or order rule): 422 with its words."""
    return jsonify({"error": str(exc)}), 422


def marketplace_error(exc: Exception):
    """The marketplace failed or refused: 502 with its words."""
    return jsonify({"error": str(exc)}), 502
