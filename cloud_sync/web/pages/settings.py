"""Settings (owners only): accounts and their tokens (write-only: stored encrypted by
cloud_sync.access.secrets, shown afterwards only as "set on <date>"), the marketplaces' notifications of
each pushing account (cloud_sync.orders.pushes.push_doors: the URL with its token masked, where to enter
it, the last one received), the unified status map, endpoint overrides, alert rules (critical stock
minimums, cloud_sync.alerts), Telegram, and users.

A token or an endpoint override is in use as soon as it is stored (cloud_sync.web.settings_in_use: the
account's adapter is reopened in the shared holder that the pusher and the jobs read too; a stored bot
token is handed to the alerts job the same way `secrets.apply_to_config` does at start)."""

from __future__ import annotations

import logging
import re
from typing import Any

from flask import Blueprint, render_template, request
from flask_babel import gettext as _
from flask_babel import lazy_gettext, ngettext

from cloud_sync.access import secrets, users
from cloud_sync.alerts import checks, outbox
from cloud_sync.config import UNIFIED_STATUSES
from cloud_sync.config_sections import AlertsConfig
from cloud_sync.onec import commission
from cloud_sync.orders import pushes
from cloud_sync.web.auth import current_user
from cloud_sync.web.context import ctx, get_db
from cloud_sync.web.i18n import domain_text, marketplace_title, role_label, status_label
from cloud_sync.web.pages.common import accounts, find_item
from cloud_sync.web.settings_in_use import credentials_stored, put_in_use, use_bot_token
from marketplaces.endpoints import EndpointMapError, load_endpoint_map

log = logging.getLogger("cloud_sync.web.pages.settings")
FIELD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
PATH_RE = re.compile(r"^/[A-Za-z0-9_./{}-]{0,300}$")

bp = Blueprint("settings", __name__)


def _store() -> secrets.SecretStore:
    return secrets.SecretStore(secrets.key_file_for(ctx().cfg))


def _alerts_shown(section: AlertsConfig | None) -> dict[str, str]:
    """What the page says of [alerts]: the chat, the Bot API address and where the token comes from."""
    if section is None:
        return {}
    shown = {"chat_id": section.chat_id, "base_url": section.base_url, "token_env": section.token_env,
             "token_file": section.token_file}
    return {k: v for k, v in shown.items() if v}


def _page(status: int = 200, **kw: Any):
    conn, cfg = get_db(), ctx().cfg
    stored = {s["name"]: s for s in secrets.describe(conn)}
    rows = []
    for name, a in sorted(cfg.accounts.items()):
        rows.append({"name": name, "marketplace": a.marketplace, "base_url": a.account.base_url,
                     "fields": sorted(a.account.credentials),  # names only, never values
                     "stored": stored.get(secrets.account_secret_name(name)),
                     "uses_store": bool(a.credentials_secret),
                     "endpoints": a.account.endpoints, "enabled": a.enabled,
                     "running": name in ctx().adapters})
    minimums = [dict(r) for r in conn.execute(
        "SELECT m.*, COALESCE(i.article, '') AS article, COALESCE(i.name, '') AS name FROM stock_minimums m"
        " LEFT JOIN items i ON i.id=m.item_id ORDER BY i.article, m.item_id LIMIT 500")]
    kw.setdefault("errors", {})
    kw.setdefault("messages", [])
    return render_template("cloud/settings.html", active="settings", accounts=accounts(), account_rows=rows,
                           status_map=cfg.status_map, unified=[(s, status_label(s)) for s in UNIFIED_STATUSES],
                           minimums=minimums, push_doors=pushes.push_doors(cfg, pushes.last_received(conn),
                                                                            pings=pushes.last_pings(conn)),
                           push_base=pushes.cloud_base(cfg), public_url=cfg.public_url,
                           marketplace_choices=[(mp, marketplace_title(mp)) for mp in cfg.status_map],
                           role_choices=[(r, role_label(r)) for r in users.ROLES],
                           bot=stored.get(secrets.BOT_TOKEN), alerts_cfg=_alerts_shown(cfg.alerts),
                           alert_chats=outbox.chats(conn), alert_kinds=ALERT_KINDS,
                           users=users.list_users(conn), roles=users.ROLES, tokens=dict(conn.execute(
                               "SELECT user_id, COUNT(*) FROM api_tokens GROUP BY user_id").fetchall()),
                           token_used=dict(conn.execute(
                               "SELECT user_id, MAX(last_used_ts) FROM api_tokens GROUP BY user_id").fetchall()), form=request.form, **kw), status


@bp.get("/settings")
def index():
    return _page()


@bp.post("/settings/token")
def set_token():
    f = request.form
    errors: dict[str, str] = {}
    account, field, value = f.get("account", ""), f.get("field", "").strip(), f.get("value", "")
    if account not in ctx().cfg.accounts:
        errors["account"] = _("choose an account")
    if not FIELD_RE.match(field):
        errors["field"] = _("the credential's name, e.g. Authorization, Api-Key, Client-Id, token")
    if not value.strip() or len(value) > 4096 or any(c in value for c in "\r\n\0"):
        errors["value"] = _("paste the token (one line, up to 4096 characters)")
    if errors:
        return _page(400, errors=errors)
    name = secrets.account_secret_name(account)
    _store().put(get_db(), name, {field: value.strip()})
    log.info("credential %s of account %s stored (encrypted)", field, account)
    return _page(messages=[credentials_stored(account, _("%(field)s of %(account)s stored encrypted", field=field,
                                                         account=account), value.strip())])


@bp.post("/settings/telegram")
def set_bot():
    value = request.form.get("bot_token", "").strip()
    if not re.match(r"^\d{3,20}:[A-Za-z0-9_-]{20,100}$", value):
        return _page(400, errors={"bot_token": _("a bot token looks like 123456789:AA… (as @BotFather gives it)")})
    _store().put(get_db(), secrets.BOT_TOKEN, value, merge=False)
    log.info("Telegram bot token stored (encrypted)")
    return _page(messages=[("ok", use_bot_token(value))])


@bp.post("/settings/telegram/chat")
def set_chat():
    """The chat the alerts go to (a group's or a channel's id, as a bot sees it, or @channel)."""
    value = request.form.get("chat_id", "").strip()
    if not re.match(r"^(-?\d{3,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$", value):
        return _page(400, errors={"chat_id": _("a chat is its number (a group's starts with -100…) or @channel")})
    conn, cfg = get_db(), ctx().cfg
    secrets.put_setting(conn, "alerts", "", "chat_id", value)
    fresh = cfg.alerts is None
    cfg.alerts = cfg.alerts or AlertsConfig()
    cfg.alerts.chat_id = value  # the alerts job reads [alerts] again on its next tick
    said = _("chat %(chat)s stored; alerts go there", chat=value)
    stored = _store().value(conn, secrets.BOT_TOKEN) if fresh else None
    if stored:
        said += "; " + use_bot_token(stored)
    return _page(messages=[("ok", said)])


CHAT_RE = re.compile(r"^(-?\d{3,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$")
ALERT_KINDS = {  # what each kind of alert is, in the seller's words
    "order_new": lazy_gettext("new orders"), "order_short": lazy_gettext("orders short of stock"),
    "order_problem": lazy_gettext("orders with a problem"), "order_deadline": lazy_gettext("assembly deadlines"),
    "order_deadline_moved": lazy_gettext("assembly deadlines moved by the marketplace"),
    "order_cancelled": lazy_gettext("cancelled orders"), "critical_stock": lazy_gettext("stock below its minimum"),
    "zero_guard_hold": lazy_gettext("stock pushes held by the zero guard"),
    "price_rule": lazy_gettext("scheduled price rules"), "price_source": lazy_gettext("prices from 1C"),
}


@bp.post("/settings/telegram/chats")
def save_chat():
    """Another chat, or a chat's name and the kinds of alerts it takes."""
    f = request.form
    new = "new_chat_id" in f  # the form that adds a chat (each chat's row sends chat_id)
    chat_id = f.get("new_chat_id" if new else "chat_id", "").strip()
    title, kinds = f.get("new_title" if new else "title", "").strip(), f.getlist("kinds")
    errors = {}
    if not CHAT_RE.match(chat_id):
        errors["new_chat_id"] = _("a chat is its number (a group's starts with -100…) or @channel")
    if not kinds:
        errors["kinds"] = _("tick at least one kind of alert for this chat")
    if errors:
        return _page(400, errors=errors)
    try:
        outbox.save_chat(get_db(), chat_id, title[:80], kinds)
    except ValueError as exc:
        return _page(400, errors={"kinds": domain_text(exc)})
    return _page(messages=[("ok", _("chat %(chat)s takes: %(kinds)s", chat=title or chat_id, kinds=", ".join(
        str(ALERT_KINDS[k]) for k in outbox.KINDS if k in kinds)))])


@bp.post("/settings/telegram/chats/remove")
def remove_chat():
    chat_id = request.form.get("chat_id", "")
    if not outbox.remove_chat(get_db(), chat_id):
        return _page(404, messages=[("error", _("no such chat"))])
    return _page(messages=[("ok", _("chat %(chat)s takes no more alerts; they go to the main chat", chat=chat_id))])


@bp.post("/settings/telegram/test")
def test_telegram():
    """Send a test message now with the token in use, to the main chat or the chat asked, and say what the
    Bot API answered."""
    try:
        settings = outbox.AlertSettings.from_config(ctx().cfg.alerts)
    except outbox.AlertConfigError as exc:
        return _page(400, messages=[("error", domain_text(exc))])
    if not settings.enabled:
        return _page(400, messages=[("error", _("store the bot token and the chat first"))])
    chat = request.form.get("chat_id") or settings.chat_id
    if chat != settings.chat_id and chat not in {c.chat_id for c in outbox.chats(get_db())}:
        return _page(404, messages=[("error", _("no such chat"))])
    sender = outbox.TelegramSender(settings.base_url, settings.token, timeout_s=settings.timeout_s)
    result = sender.send(chat, _("marketsync: a test message; alerts reach this chat."))
    if result.ok:
        return _page(messages=[("ok", _("Telegram answered: ok — the message is in chat %(chat)s",
                                        chat=chat))])
    log.warning("Telegram test message refused: %s", result.error)  # redacted by the sender
    return _page(502, messages=[("error", _("Telegram answered: %(answer)s", answer=result.error))])


@bp.post("/settings/status")
def set_status():
    f = request.form
    errors: dict[str, str] = {}
    mp, native, unified = f.get("marketplace", ""), f.get("native", "").strip(), f.get("unified", "")
    if mp not in ctx().cfg.status_map:
        errors["marketplace"] = _("choose a marketplace")
    if not native or len(native) > 80:
        errors["native"] = _("the marketplace's own status (or STATUS/SUBSTATUS)")
    if unified not in UNIFIED_STATUSES:
        errors["unified"] = _("choose one from the list")
    if errors:
        return _page(400, errors=errors)
    secrets.put_setting(get_db(), "status_map", mp, native, unified)
    ctx().cfg.status_map.setdefault(mp, {})[native] = unified
    return _page(messages=[("ok", f"{marketplace_title(mp)}: {native} → {status_label(unified)}")])


@bp.post("/settings/endpoint")
def set_endpoint():
    f = request.form
    errors: dict[str, str] = {}
    account, name, path = f.get("ep_account", ""), f.get("endpoint", "").strip(), f.get("path", "").strip()
    if account not in ctx().cfg.accounts:
        errors["ep_account"] = _("choose an account")
    if not re.match(r"^[a-z][a-z0-9_]{1,63}$", name):
        errors["endpoint"] = _("the endpoint's name in the map, e.g. orders_new")
    if not PATH_RE.match(path):
        errors["path"] = _("a path starting with /, e.g. /api/v4/orders/new")
    if not errors:
        try:  # the endpoint map's own loader checks the override (unknown name, bad value)
            load_endpoint_map(ctx().cfg.accounts[account].marketplace, {name: {"path": path}})
        except (EndpointMapError, KeyError, ValueError) as exc:
            errors["endpoint"] = domain_text(exc)
    if errors:
        return _page(400, errors=errors)
    secrets.put_setting(get_db(), "endpoint", account, name, path)
    return _page(messages=[put_in_use(account, _("%(account)s: %(name)s → %(path)s stored", account=account, name=name,
                                                 path=path))])


@bp.post("/settings/minimum")
def set_minimum():
    f = request.form
    errors: dict[str, str] = {}
    typed = f.get("item", "").strip()
    conn = get_db()
    item, problem = find_item(conn, typed) if typed else ("", _("give the 1C item: its article or name"))
    if problem:
        errors["item"] = problem
    try:
        qty = int(f.get("minimum", ""))
        if qty < 0:
            raise ValueError
    except ValueError:
        errors["minimum"] = _("a whole number, 0 or more")
        qty = 0
    if errors:
        return _page(400, errors=errors)
    checks.set_minimum(conn, item, qty)
    return _page(messages=[("ok", _("critical stock of %(item)s: below %(qty)s", item=typed, qty=qty))])


@bp.post("/settings/users")
def add_user():
    f = request.form
    try:
        users.add_user(get_db(), f.get("name", ""), f.get("password", ""), f.get("role", ""))
    except users.UserError as exc:
        return _page(400, errors={f"user_{exc.field or 'name'}": domain_text(exc)})
    return _page(messages=[("ok", _("user %(name)s added", name=f.get("name")))])


@bp.post("/settings/users/change")
def change_user():
    """Another role for a user, or lock them out / let them back in (a packer who left)."""
    f = request.form
    name, action, me = f.get("user", ""), f.get("action", ""), current_user()
    try:
        if me is not None and name.casefold() == me.name.casefold() and action == "disable":
            raise users.UserError(_("you cannot lock yourself out; another owner can"), "name")
        if action == "password":  # a forgotten or leaked password: the user's sessions end
            users.set_password(get_db(), name, f.get("new_password", ""))
            done = _("new password of %(name)s set; their open sessions ended", name=name)
        elif action == "role":
            users.set_role(get_db(), name, f.get("role", ""))
            done = _("%(name)s is now %(role)s", name=name, role=role_label(f.get("role")))
        elif action == "revoke":  # a token that leaked (a script's file, a handheld that was lost)
            n = users.revoke_tokens(get_db(), name)
            done = ngettext("%(num)d API token of %(name)s revoked", "%(num)d API tokens of %(name)s revoked", n,
                            name=name)
        elif action in ("disable", "enable"):
            users.set_disabled(get_db(), name, action == "disable")
            done = (_("%(name)s is locked out: sessions ended, API tokens refused", name=name) if action == "disable"
                    else _("%(name)s may log in again", name=name))
        else:
            raise users.UserError(_("choose what to change"), "name")
    except users.UserError as exc:
        return _page(400, messages=[("error", domain_text(exc))])
    log.info("user %s changed by %s: %s", name[:64], me.name if me else "?", action)
    return _page(messages=[("ok", done)])


# ---------------------------------------------------------------- legal details of the commission report


@bp.app_template_global()
def legal_details() -> dict[str, Any]:
    """What the Settings page shows of the legal details (cloud_sync.onec.commission.parties): the seller
    and each account's marketplace with its contract, and the choices of the form."""
    conn = get_db()
    legal = ctx().cfg.legal
    own = commission.parties(conn, "", legal)
    rows = [{"scope": commission.SELLER_SCOPE, "title": _("Seller (principal)"), "name": own.seller.name,
             "inn": own.seller.inn, "kpp": own.seller.kpp, "contract_number": "", "contract_date": None}]
    choices = [(commission.SELLER_SCOPE, _("Seller (principal)"))]
    for name, a in sorted(ctx().cfg.accounts.items()):
        p = commission.parties(conn, name, legal)
        title = _("%(marketplace)s, account %(account)s (agent)", marketplace=marketplace_title(a.marketplace),
                  account=name)
        rows.append({"scope": name, "title": title, "name": p.marketplace.name, "inn": p.marketplace.inn,
                     "kpp": p.marketplace.kpp, "contract_number": p.contract_number, "contract_date": p.contract_date})
        choices.append((name, title))
    return {"rows": rows, "choices": choices}


@bp.post("/settings/legal")
def set_legal():
    f = request.form
    scope = f.get("legal_scope", "")
    values = {k: f.get(f"legal_{k}", "").strip() for k in commission.LEGAL_KEYS}
    if scope == commission.SELLER_SCOPE:
        values.pop("contract_number")
        values.pop("contract_date")
    said = {"inn": _("INN is 10 digits for a company or 12 for a sole trader"), "kpp": _("KPP is 9 digits"),
            "contract_date": _("a date like 2026-01-31")}
    errors = {f"legal_{k}": said[k] for k in commission.check_legal(values)}
    if scope != commission.SELLER_SCOPE and scope not in ctx().cfg.accounts:
        errors["legal_scope"] = _("choose the seller or an account")
    if not values["name"]:
        errors["legal_name"] = _("the name as in the contract, e.g. ООО «Ромашка»")
    if errors:
        return _page(400, errors=errors)
    commission.store_parties(get_db(), scope, values)
    return _page(messages=[("ok", _("legal details of %(whom)s stored", whom=values["name"]))])
