"""Settings (owners only): accounts and their tokens (write-only: stored encrypted by
cloud_sync.secrets, shown afterwards only as "set on <date>"), the unified status map, endpoint
overrides, alert rules (critical stock minimums, cloud_sync.alerts), Telegram, and users.

A token or an endpoint override is in use as soon as it is stored: the account's adapter is reopened in
the shared holder (cloud_sync.sync.AccountAdapters) that the pusher and the jobs read too; a stored bot
token is handed to the alerts job the same way `secrets.apply_to_config` does at start."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import asdict
from typing import Any

from flask import Blueprint, render_template, request

from cloud_sync.access import secrets, users
from cloud_sync.alerts import checks
from cloud_sync.config import UNIFIED_STATUSES
from cloud_sync.web.pages import accounts

log = logging.getLogger("cloud_sync.web.pages.settings")
FIELD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
PATH_RE = re.compile(r"^/[A-Za-z0-9_./{}-]{0,300}$")


def _ctx():
    from cloud_sync.web.app import ctx

    return ctx()


def _db():
    from cloud_sync.web.app import db

    return db()


def _store() -> secrets.SecretStore:
    return secrets.SecretStore(secrets.key_file_for(_ctx().cfg))


def _scrub(text: str, account: str, *extra: str) -> str:
    """`text` with every credential value of the account (and `extra`) masked."""
    values = [*_ctx().cfg.accounts[account].account.credentials.values(), *extra]
    for v in sorted((str(v) for v in values if v and len(str(v)) >= 4), key=len, reverse=True):
        text = text.replace(v, "***")
    return text


def put_in_use(account: str, done: str, *secret_values: str) -> tuple[str, str]:
    """Reopen the account with what is stored now; the page's message (never a secret's value)."""
    try:
        _ctx().adapters.reopen(account, _db())  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - any reason the account cannot be opened is the seller's to see
        reason = _scrub(f"{exc.__class__.__name__}: {exc}", account, *secret_values)
        log.warning("account %s could not be reopened: %s", account, reason)
        return ("error", f"{done}, but the account could not be opened with it ({reason}); the running"
                         " connection keeps the previous settings")
    log.info("account %s reopened: the stored settings are in use", account)
    return ("ok", f"{done}; in use now")


def credentials_stored(account: str, done: str, *secret_values: str) -> tuple[str, str]:
    """After an account's credentials were stored: in use at once where its config reads them from the
    store (`credentials_secret`), else the message says when they will be."""
    name = secrets.account_secret_name(account)
    if _ctx().cfg.accounts[account].credentials_secret != name:
        return ("ok", f"{done}; it is not used until the account's config says credentials_secret = \"{name}\"")
    return put_in_use(account, done, *secret_values)


def use_bot_token(value: str) -> str:
    """Hand a stored bot token to the running alerts job (read on its next tick); the page's message."""
    section = _ctx().cfg.alerts
    if section is None:
        return "bot token stored encrypted; alerts are sent once cloud.toml has an [alerts] section with chat_id"
    if section.token_file is not None or section.token_env not in (None, secrets.BOT_TOKEN_ENV):
        return "bot token stored encrypted; not used while [alerts] names its own token_env or token_file"
    os.environ[secrets.BOT_TOKEN_ENV] = value  # this process only, as at start: never written out in clear
    section.token_env = secrets.BOT_TOKEN_ENV
    return "bot token stored encrypted; in use now"


def _page(status: int = 200, **kw: Any):
    conn, cfg = _db(), _ctx().cfg
    stored = {s["name"]: s for s in secrets.describe(conn)}
    rows = []
    for name, a in sorted(cfg.accounts.items()):
        rows.append({"name": name, "marketplace": a.marketplace, "base_url": a.account.base_url,
                     "fields": sorted(a.account.credentials),  # names only, never values
                     "stored": stored.get(secrets.account_secret_name(name)),
                     "uses_store": bool(a.credentials_secret),
                     "endpoints": a.account.endpoints, "enabled": a.enabled,
                     "running": name in _ctx().adapters})
    minimums = [dict(r) for r in conn.execute(
        "SELECT m.*, COALESCE(i.article, '') AS article, COALESCE(i.name, '') AS name FROM stock_minimums m"
        " LEFT JOIN items i ON i.id=m.item_id ORDER BY i.article, m.item_id LIMIT 500")]
    kw.setdefault("errors", {})
    kw.setdefault("messages", [])
    return render_template("cloud/settings.html", active="settings", accounts=accounts(), account_rows=rows,
                           status_map=cfg.status_map, unified=UNIFIED_STATUSES, minimums=minimums,
                           bot=stored.get(secrets.BOT_TOKEN), alerts_cfg={k: v for k, v in (asdict(cfg.alerts) if cfg.alerts else {}).items()
                                                                    if k in ("chat_id", "base_url", "token_env", "token_file") and v},
                           users=users.list_users(conn), roles=users.ROLES, tokens=dict(conn.execute(
                               "SELECT user_id, COUNT(*) FROM api_tokens GROUP BY user_id").fetchall()),
                           token_used=dict(conn.execute(
                               "SELECT user_id, MAX(last_used_ts) FROM api_tokens GROUP BY user_id").fetchall()), form=request.form, **kw), status


def routes(bp: Blueprint) -> None:
    @bp.get("/settings", endpoint="settings")
    def settings_page():
        return _page()

    @bp.post("/settings/token", endpoint="settings_token")
    def set_token():
        f = request.form
        errors: dict[str, str] = {}
        account, field, value = f.get("account", ""), f.get("field", "").strip(), f.get("value", "")
        if account not in _ctx().cfg.accounts:
            errors["account"] = "choose an account"
        if not FIELD_RE.match(field):
            errors["field"] = "the credential's name, e.g. Authorization, Api-Key, Client-Id, token"
        if not value.strip() or len(value) > 4096 or any(c in value for c in "\r\n\0"):
            errors["value"] = "paste the token (one line, up to 4096 characters)"
        if errors:
            return _page(400, errors=errors)
        name = secrets.account_secret_name(account)
        _store().put(_db(), name, {field: value.strip()})
        log.info("credential %s of account %s stored (encrypted)", field, account)
        return _page(messages=[credentials_stored(account, f"{field} of {account} stored encrypted", value.strip())])

    @bp.post("/settings/telegram", endpoint="settings_telegram")
    def set_bot():
        value = request.form.get("bot_token", "").strip()
        if not re.match(r"^\d{3,20}:[A-Za-z0-9_-]{20,100}$", value):
            return _page(400, errors={"bot_token": "a bot token looks like 123456789:AA… (as @BotFather gives it)"})
        _store().put(_db(), secrets.BOT_TOKEN, value, merge=False)
        log.info("Telegram bot token stored (encrypted)")
        return _page(messages=[("ok", use_bot_token(value))])

    @bp.post("/settings/status", endpoint="settings_status")
    def set_status():
        f = request.form
        errors: dict[str, str] = {}
        mp, native, unified = f.get("marketplace", ""), f.get("native", "").strip(), f.get("unified", "")
        if mp not in _ctx().cfg.status_map:
            errors["marketplace"] = "choose a marketplace"
        if not native or len(native) > 80:
            errors["native"] = "the marketplace's own status (or STATUS/SUBSTATUS)"
        if unified not in UNIFIED_STATUSES:
            errors["unified"] = f"one of {', '.join(UNIFIED_STATUSES)}"
        if errors:
            return _page(400, errors=errors)
        secrets.put_setting(_db(), "status_map", mp, native, unified)
        _ctx().cfg.status_map.setdefault(mp, {})[native] = unified
        return _page(messages=[("ok", f"{mp}: {native} → {unified}")])

    @bp.post("/settings/endpoint", endpoint="settings_endpoint")
    def set_endpoint():
        f = request.form
        errors: dict[str, str] = {}
        account, name, path = f.get("ep_account", ""), f.get("endpoint", "").strip(), f.get("path", "").strip()
        if account not in _ctx().cfg.accounts:
            errors["ep_account"] = "choose an account"
        if not re.match(r"^[a-z][a-z0-9_]{1,63}$", name):
            errors["endpoint"] = "the endpoint's name in the map, e.g. orders_new"
        if not PATH_RE.match(path):
            errors["path"] = "a path starting with /, e.g. /api/v4/orders/new"
        if not errors:
            from marketplaces.endpoints import EndpointMapError, load_endpoint_map

            try:  # the endpoint map's own loader checks the override (unknown name, bad value)
                load_endpoint_map(_ctx().cfg.accounts[account].marketplace, {name: {"path": path}})
            except (EndpointMapError, KeyError, ValueError) as exc:
                errors["endpoint"] = str(exc)
        if errors:
            return _page(400, errors=errors)
        secrets.put_setting(_db(), "endpoint", account, name, path)
        return _page(messages=[put_in_use(account, f"{account}: {name} → {path} stored")])

    @bp.post("/settings/minimum", endpoint="settings_minimum")
    def set_minimum():
        f = request.form
        errors: dict[str, str] = {}
        typed = f.get("item", "").strip()
        conn = _db()
        found = conn.execute("SELECT id FROM items WHERE id=? UNION ALL SELECT id FROM items WHERE article=?"
                             " LIMIT 2", (typed, typed)).fetchall() if typed else []
        item = found[0]["id"] if found else ""
        if not found:
            errors["item"] = "no 1C item with this id or article"
        elif len({r["id"] for r in found}) > 1:
            errors["item"] = "several 1C items have this article: give the item's id"
        try:
            qty = int(f.get("minimum", ""))
            if qty < 0:
                raise ValueError
        except ValueError:
            errors["minimum"] = "a whole number, 0 or more"
            qty = 0
        if errors:
            return _page(400, errors=errors)
        checks.set_minimum(conn, item, qty)
        return _page(messages=[("ok", f"critical stock of {typed}: below {qty}")])

    @bp.post("/settings/users", endpoint="settings_users")
    def add_user():
        f = request.form
        try:
            users.add_user(_db(), f.get("name", ""), f.get("password", ""), f.get("role", ""))
        except users.UserError as exc:
            return _page(400, errors={f"user_{exc.field or 'name'}": str(exc)})
        return _page(messages=[("ok", f"user {f.get('name')} added")])

    @bp.post("/settings/users/change", endpoint="settings_user_change")
    def change_user():
        """Another role for a user, or lock them out / let them back in (a packer who left)."""
        from cloud_sync.web.auth import current_user

        f = request.form
        name, action, me = f.get("user", ""), f.get("action", ""), current_user()
        try:
            if me is not None and name.casefold() == me.name.casefold() and action == "disable":
                raise users.UserError("you cannot lock yourself out; another owner can", "name")
            if action == "password":  # a forgotten or leaked password: the user's sessions end
                users.set_password(_db(), name, f.get("new_password", ""))
                done = f"new password of {name} set; their open sessions ended"
            elif action == "role":
                users.set_role(_db(), name, f.get("role", ""))
                done = f"{name} is now {f.get('role')}"
            elif action == "revoke":  # a token that leaked (a script's file, a handheld that was lost)
                n = users.revoke_tokens(_db(), name)
                done = f"{n} API token(s) of {name} revoked"
            elif action in ("disable", "enable"):
                users.set_disabled(_db(), name, action == "disable")
                done = f"{name} {'is locked out: sessions ended, API tokens refused' if action == 'disable' else 'may log in again'}"
            else:
                raise users.UserError("choose what to change", "name")
        except users.UserError as exc:
            return _page(400, messages=[("error", str(exc))])
        log.info("user %s changed by %s: %s", name[:64], me.name if me else "?", action)
        return _page(messages=[("ok", done)])
