"""How the web app answers what it refuses (registered by `create_app`): JSON {"error": ...} for the API,
the refusal page for the manager's pages; the push and 1C endpoints keep their own answers.

Whatever fails, no answer carries a secret or a traceback: a body nested too deep to read
(`RecursionError`) or holding a number too big to use (`OverflowError`) is the caller's mistake, a 400
with words in Russian; anything else unexpected is a 500 saying only that it is logged (Flask logs it
first, through the redacting log records of cloud_sync/web/redact.py)."""

from __future__ import annotations

from flask import Response, jsonify, render_template, request
from flask_babel import lazy_gettext
from werkzeug.exceptions import HTTPException, InternalServerError

from cloud_sync.web.auth import OWN_AUTH_PATHS
from cloud_sync.web.context import ApiError

TOO_DEEP = "тело запроса не разобрать: слишком глубокая вложенность"
TOO_BIG = "тело запроса не разобрать: число слишком велико"
INTERNAL = "внутренняя ошибка сервера; она записана в журнал, повторите попытку позже"
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


def _plain(message: str, status: int):
    """An answer that names nothing of the request (no path, no token): JSON for the API and the push
    endpoints, plain text for 1C, the refusal page for the manager's pages."""
    if request.path.startswith(("/api/", "/push/")):
        return jsonify({"error": message}), status
    if request.path.startswith(OWN_AUTH_PATHS):
        return Response(f"failure\n{message}\n", status, mimetype="text/plain")
    return render_template("cloud/refused.html", heading=str(status), message=message), status


def hostile_body(exc: Exception):
    """A body too deeply nested or with a number too big: the caller's mistake, 400."""
    return _plain(TOO_DEEP if isinstance(exc, RecursionError) else TOO_BIG, 400)


def internal_error(_exc: InternalServerError):
    """Anything unexpected: Flask has logged it (redacted); the caller learns nothing of it."""
    return _plain(INTERNAL, 500)


def api_error(exc: ApiError):
    return jsonify({"error": str(exc)}), exc.status


def refused(exc: ValueError):
    """What the domain refuses (a stock, catalog or order rule): 422 with its words."""
    return jsonify({"error": str(exc)}), 422


def marketplace_error(exc: Exception):
    """The marketplace failed or refused: 502 with its words."""
    return jsonify({"error": str(exc)}), 502
