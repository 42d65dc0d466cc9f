"""Every door of the cloud's web app: who is asking, may they, and is the form really theirs.

The blueprint `bp` holds the login, logout and password pages and `/api/me`, and adds to the whole app
one `before_request` hook (`authenticate`), the security headers of every answer and the template
globals (`current_user`, `csrf_token`); the `[auth]` settings are read at request time:

* Identity: `Authorization: Bearer mst_…` (an API token, cloud_sync/access/users.py) or the `ms_session`
  cookie (a server-side session; HttpOnly, SameSite=Lax, Secure when served over TLS or when
  `[auth] secure_cookies = true`). Deny by default: every path needs a user except `OPEN_PATHS` — the
  login page, the health check, the OpenAPI document, static files — and the endpoints that
  authenticate their own callers (`/push/…`: the push token in the URL, cloud_sync/web/push.py; the 1C
  exchange: HTTP Basic, cloud_sync/onec/exchange.py).
* First run: while the database has no user at all, requests from the loopback are let in (the
  integration tests, a fresh install on one box); the login page says how to make the first owner
  (`marketsync cloud user add NAME --role owner`). Once a user exists, the loopback gets nothing for
  free. A cloud reached from elsewhere before any user exists answers 401 to everything — and so does a
  request a reverse proxy on the same box passes on (it comes from the loopback but carries
  X-Forwarded-For / X-Real-IP / Forwarded).
* CSRF: a request authenticated by the session cookie that changes something (POST/PUT/PATCH/DELETE)
  must carry the session's CSRF token (form field `csrf_token` or header `X-CSRF-Token`); the login
  form carries a double-submit token. Token-authenticated API calls carry no cookie and need none.
* Roles: `ROLE_RULES` says which roles reach which paths; `require(*roles)` guards single views.
* Login is throttled per name and address, per address, and per name from anywhere, with growing waits
  (cloud_sync/access/users.py `throttle_wait`); behind our own reverse proxy (`[auth] trusted_proxies`,
  CIDRs) the address is the client the proxy names (`client_address`). A successful login leaves a
  device cookie for that name (`ms_device_<hash of the name>`, HttpOnly, 180 days; only its hash is
  kept, in `login_devices`): that browser is a known device and logs in with the right password while a
  stranger guessing the same name is being throttled. A new password forgets every device of the name.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets as pysecrets
from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, Response, abort, g, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from cloud_sync.access import users
from cloud_sync.config import CloudConfig
from cloud_sync.config_sections import AuthSettings
from cloud_sync.web.context import ctx, get_db
from cloud_sync.web.i18n import domain_text, role_label

log = logging.getLogger("cloud_sync.web.auth")

SESSION_COOKIE = "ms_session"
LOGIN_CSRF_COOKIE = "ms_login_csrf"
DEVICE_COOKIE = "ms_device_"  # + the first 12 hex digits of the SHA-256 of the user name, casefolded
OPEN_PATHS = ("/login", "/api/health", "/api/openapi.json", "/static/")
OWN_AUTH_PATHS = ("/push/", "/1c/exchange", "/bitrix/admin/1c_exchange.php")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

bp = Blueprint("auth", __name__)

# (method or "*", path prefix, roles allowed); the first matching rule wins; no rule: owner and manager.
ROLE_RULES: list[tuple[str, str, tuple[str, ...]]] = [
    ("*", "/settings", ("owner",)),
    ("*", "/api/settings", ("owner",)),
    ("*", "/api/users", ("owner",)),
    ("*", "/prices", ("owner", "manager")),
    ("*", "/api/prices", ("owner", "manager")),
    ("*", "/reports", ("owner", "manager")),
    ("*", "/api/reports", ("owner", "manager")),
    ("*", "/print/prices", ("owner", "manager")),
    ("GET", "/orders/export", ("owner", "manager")),  # every order with its money: like the reports
    ("GET", "/orders", ("owner", "manager", "packer")),
    ("POST", "/orders/bulk", ("owner", "manager", "packer")),  # the view itself refuses cancel to packers
    ("GET", "/stocks", ("owner", "manager", "packer")),
    ("GET", "/sites", ("owner", "manager", "packer")),
    ("GET", "/print/", ("owner", "manager", "packer")),
    ("POST", "/logout", ("owner", "manager", "packer")),
    ("POST", "/language", ("owner", "manager", "packer")),
    ("*", "/password", ("owner", "manager", "packer")),
    ("GET", "/api/orders", ("owner", "manager", "packer")),
    ("GET", "/api/stock", ("owner", "manager", "packer")),
    ("GET", "/api/sites", ("owner", "manager", "packer")),
    ("GET", "/api/summary", ("owner", "manager", "packer")),
    ("GET", "/api/events", ("owner", "manager", "packer")),
    ("GET", "/api/me", ("owner", "manager", "packer")),
    ("GET", "/", ("owner", "manager", "packer")),  # "/" itself only: see allowed()
]


def allowed(role: str, method: str, path: str) -> bool:
    for rule_method, prefix, roles in ROLE_RULES:
        if rule_method not in ("*", method) and not (rule_method == "GET" and method == "HEAD"):
            continue
        hit = path == "/" if prefix == "/" else (path == prefix or path.startswith(prefix.rstrip("/") + "/")
                                                  or (prefix.endswith("/") and path.startswith(prefix)))
        if hit:
            return role in roles
    return role in ("owner", "manager")


def _loopback(address: str | None) -> bool:
    try:
        return ipaddress.ip_address(address or "").is_loopback
    except ValueError:
        return False


PROXY_HEADERS = ("X-Forwarded-For", "X-Real-IP", "Forwarded")


def _proxied() -> bool:
    """A request a reverse proxy on this box passed on: from the loopback, but not from this box's user."""
    return any(request.headers.get(h) for h in PROXY_HEADERS)


def client_address(trusted: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> str:
    """Who is asking: the peer, or — when the peer is one of our own reverse proxies (`[auth]
    trusted_proxies`) — the client it names last in X-Forwarded-For (or X-Real-IP). Login limits and log
    lines go by it, so that behind a proxy every visitor is not one address."""
    peer = request.remote_addr or ""
    try:
        if not trusted or not any(ipaddress.ip_address(peer) in net for net in trusted):
            return peer
    except ValueError:
        return peer
    named = (request.headers.get("X-Forwarded-For") or "").split(",")[-1].strip() or \
        (request.headers.get("X-Real-IP") or "").strip()
    try:
        return str(ipaddress.ip_address(named)) if named else peer
    except ValueError:
        return peer


def current_user() -> users.User | None:
    return g.get("user")


def csrf_token() -> str:
    return g.get("csrf", "")


def require(*roles: str) -> Callable:
    """A view decorator: only these roles (403 otherwise)."""

    def deco(fn: Callable) -> Callable:
        @wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            user = current_user()
            if user is None or user.role not in roles:
                abort(403)
            return fn(*args, **kwargs)
        return wrapper
    return deco


def _auth_settings() -> AuthSettings:
    """The `[auth]` section of the config, read at request time."""
    return ctx().cfg.auth


def trusted_proxies(cfg: CloudConfig) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    """Our own reverse proxies (`[auth] trusted_proxies`, CIDRs); `create_app` reads them once so that a
    wrong one stops the start instead of the first login."""
    return [ipaddress.ip_network(n, strict=False) for n in cfg.auth.trusted_proxies]


def _trusted() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return trusted_proxies(ctx().cfg)


def _secure_cookie() -> bool:
    return _auth_settings().secure_cookies or request.is_secure


def cookie_path() -> str:
    """The path every cookie of the app is scoped to: `/`, or a seller's `/t/<id>/` on an installation of
    several (the app's SCRIPT_NAME, cloud_sync.service.tenants): one seller's cookies never reach another."""
    return request.script_root + "/"


def _set_cookie(resp: Response, name: str, value: str, *, max_age: int | None, secure: bool) -> None:
    resp.set_cookie(name, value, max_age=max_age, httponly=True, samesite="Lax", secure=secure, path=cookie_path())


def device_cookie_name(name: str) -> str:
    """The device cookie of user `name` (one per user, so a shared office PC is known to each of them)."""
    return DEVICE_COOKIE + hashlib.sha256(name.strip().casefold().encode()).hexdigest()[:12]


def _this_device(name: str) -> str:
    """This browser's device id for `name` ("" when it has no device cookie for that name)."""
    return users.cookie_device(request.cookies.get(device_cookie_name(name), ""))


def _keep_device(resp: Response, conn: Any, user: users.User, known: bool) -> None:
    """After a right password: a browser not yet known for the user gets a device cookie (see the module
    docstring); a known one keeps its cookie, refreshed."""
    cookie = request.cookies.get(device_cookie_name(user.name), "")
    if not known:
        cookie = users.new_device_cookie()
        users.remember_device(conn, user.name, users.cookie_device(cookie))
    _set_cookie(resp, device_cookie_name(user.name), cookie, max_age=int(users.DEVICE_S), secure=_secure_cookie())


def _safe_next(target: str) -> str:
    parts = urlsplit(target or "")
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        return "/"
    return target


def refuse(status: int, message: str) -> Response:
    """JSON for the API (401 with the Bearer challenge); the login page for a page without a user;
    the refusal page otherwise."""
    if request.path.startswith("/api/"):
        resp = jsonify({"error": message})
        resp.status_code = status
        if status == 401:
            resp.headers["WWW-Authenticate"] = 'Bearer realm="marketsync"'
        return resp
    if status == 401:
        return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))  # type: ignore[return-value]
    return Response(render_template("cloud/refused.html", message=message, user=current_user()), status)


@bp.before_app_request
def authenticate() -> Response | None:
    """Who is asking, and may they: every request of the app passes here first."""
    path = request.path
    if path.startswith(OWN_AUTH_PATHS):
        return None  # these check their callers themselves (push token / HTTP Basic)
    g.user, g.csrf, g.auth_kind = None, "", ""
    header = request.headers.get("Authorization", "")
    conn = None
    if header.startswith("Bearer "):
        conn = get_db()
        user = users.token_user(conn, header[7:].strip())
        if user is None:
            return refuse(401, _("unknown or revoked API token"))
        g.user, g.auth_kind = user, "token"
    elif request.cookies.get(SESSION_COOKIE):
        conn = get_db()
        found = users.session_user(conn, request.cookies[SESSION_COOKIE])
        if found is not None:
            g.user, g.csrf = found
            g.auth_kind = "session"
    if path.startswith(OPEN_PATHS):
        return None
    if g.user is None:
        conn = conn or get_db()
        if not users.any_users(conn) and _loopback(request.remote_addr) and not _proxied():
            g.auth_kind = "setup"  # first run on this box: see the module docstring
            if request.method not in SAFE_METHODS and request.mimetype != "application/json":
                # a page elsewhere could make this browser post a form here: only JSON calls (which a
                # browser will not send cross-site without a CORS preflight we never grant) change things
                return refuse(403, _("before the first user exists, changes are taken as JSON API calls only"))
            return None
        return refuse(401, _("log in first (or send an API token: Authorization: Bearer …)"))
    if g.auth_kind == "session" and request.method not in SAFE_METHODS:
        given = request.form.get("csrf_token") or request.headers.get("X-CSRF-Token") or ""
        if not given or not hmac.compare_digest(given.encode(), g.csrf.encode()):
            log.warning("CSRF token missing or wrong: %s %s by %s", request.method, path, g.user.name)
            return refuse(400, _("the form has expired or did not come from this site (CSRF check); "
                                 "reload the page and try again"))
    if not allowed(g.user.role, request.method, path):
        return refuse(403, _("a %(role)s may not open this page", role=role_label(g.user.role)))
    return None


@bp.after_app_request
def security_headers(resp: Response) -> Response:
    resp.headers.setdefault("X-Content-Type-Options", "nosniff")
    resp.headers.setdefault("Referrer-Policy", "same-origin")
    if resp.mimetype == "text/html":
        resp.headers.setdefault("X-Frame-Options", "DENY")
        resp.headers.setdefault("Content-Security-Policy",
                                "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline';"
                                " img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
    if g.get("auth_kind") == "session" or request.path == "/login":
        resp.headers.setdefault("Cache-Control", "no-store")
    return resp


@bp.app_context_processor
def template_globals() -> dict[str, Any]:
    return {"current_user": current_user(), "csrf_token": csrf_token}


@bp.route("/login", methods=["GET", "POST"])
def login():
    conn = get_db()
    nxt = _safe_next(request.values.get("next", "/"))
    if request.method == "GET":
        # one token per browser, kept while it lives: a second GET (another tab, the favicon's
        # redirect) must not invalidate the form already on screen
        token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
        if not re.fullmatch(r"[A-Za-z0-9_-]{32}", token):
            token = pysecrets.token_urlsafe(24)
        resp = Response(render_template("cloud/login.html", login_csrf=token, next=nxt, errors={}, name="",
                                        first_run=not users.any_users(conn)))
        _set_cookie(resp, LOGIN_CSRF_COOKIE, token, max_age=3600, secure=_secure_cookie())
        return resp
    name = request.form.get("name", "")
    password = request.form.get("password", "")
    form_token = request.form.get("csrf_token", "")
    cookie_token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    errors: dict[str, str] = {}
    status, retry_after = 200, 0
    if not form_token or not cookie_token or not hmac.compare_digest(form_token.encode(), cookie_token.encode()):
        errors["form"] = _("the login form has expired or did not come from this site; try again")
        status = 400
    else:
        trusted = _trusted()
        device = users.known_device(conn, name.strip(), _this_device(name))
        try:
            user = users.login(conn, name, password, client_address(trusted), device=device)
        except users.LoginLocked as exc:
            errors["form"] = domain_text(exc)
            status, retry_after = 429, int(exc.retry_after_s) + 1
            log.warning("login locked for %r from %s", name[:64], client_address(trusted))
        except users.UserError as exc:
            errors["password"] = domain_text(exc)
            status = 401
            log.info("failed login for %r from %s", name[:64], client_address(trusted))
        else:
            sid, _csrf = users.new_session(conn, user)
            log.info("%s logged in from %s", user.name, client_address(trusted))
            resp = redirect(request.script_root + nxt)  # `next` is a path of this app (under its prefix)
            _set_cookie(resp, SESSION_COOKIE, sid, max_age=int(users.SESSION_S), secure=_secure_cookie())
            resp.delete_cookie(LOGIN_CSRF_COOKIE, path=cookie_path())
            _keep_device(resp, conn, user, bool(device))
            return resp
    token = pysecrets.token_urlsafe(24)
    resp = Response(render_template("cloud/login.html", login_csrf=token, next=nxt, errors=errors,
                                    name=name, first_run=False), status)
    if status == 429:
        resp.headers["Retry-After"] = str(retry_after)
    _set_cookie(resp, LOGIN_CSRF_COOKIE, token, max_age=3600, secure=_secure_cookie())
    return resp


@bp.route("/password", methods=["GET", "POST"])
def password():
    """Any user changes their own password: the current one first (counted like a failed login when
    wrong), the new one twice. Every session of the user ends; this browser gets a fresh one."""
    user, conn, f = current_user(), get_db(), request.form
    if user is None:  # the first-run loopback has no password to change
        return refuse(403, _("log in first"))
    if request.method == "GET":
        return render_template("cloud/password.html", errors={}, active="")
    errors: dict[str, str] = {}
    try:
        users.login(conn, user.name, f.get("current", ""), client_address(_trusted()),
                    device=_this_device(user.name))
    except users.LoginLocked as exc:
        errors["current"] = domain_text(exc)
    except users.UserError:
        errors["current"] = _("this is not your current password")
    if not errors and f.get("new_password", "") != f.get("again", ""):
        errors["again"] = _("the two new passwords differ")
    if not errors:
        try:
            users.set_password(conn, user.name, f.get("new_password", ""))
        except users.UserError as exc:
            errors["new_password"] = domain_text(exc)
    if errors:
        return Response(render_template("cloud/password.html", errors=errors, active=""), 400)
    sid, g.csrf = users.new_session(conn, user)
    log.info("%s changed their password", user.name)
    resp = Response(render_template("cloud/password.html", errors={}, active="",
                                    messages=[("ok", _("password changed; your other sessions ended"))]))
    _set_cookie(resp, SESSION_COOKIE, sid, max_age=int(users.SESSION_S), secure=_secure_cookie())
    _keep_device(resp, conn, user, False)  # the new password forgot every device: this one is known again
    return resp


@bp.post("/logout")
def logout():
    sid = request.cookies.get(SESSION_COOKIE, "")
    if sid:
        users.end_session(get_db(), sid)
    resp = redirect(url_for("auth.login"))
    resp.delete_cookie(SESSION_COOKIE, path=cookie_path())
    return resp


@bp.get("/api/me")
def me():
    user = current_user()
    return jsonify({"name": user.name if user else None, "role": user.role if user else None,
                    "auth": g.get("auth_kind", "")})
