"""A scheduled price rule's page (`/prices/rules/<id>`): what it changes (a category, an item, all
cards), that its percent is taken from the price list's price and not from one already cut, its state
and why (off, waiting for its time, running until when, held for a confirmation, refused), the other
rules it overlaps with in words, and its held document confirmed or discarded right there. Reads and
changes only through cloud_sync.money.price_rules."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from babel.dates import get_timezone_location
from flask import Blueprint, abort, redirect, render_template, request, url_for
from flask_babel import get_locale
from flask_babel import gettext as _

from cloud_sync.i18n import money, number
from cloud_sync.money import price_rules
from cloud_sync.money.price_rules import RETRY_AFTER
from cloud_sync.web.context import ctx, get_db
from cloud_sync.web.i18n import domain_text
from cloud_sync.web.pages.common import item_names

bp = Blueprint("rules", __name__)


def _target(line: dict) -> str:
    """A rule's line in words: «категория «Футболки»: −10 %»."""
    if "all" in line:
        what = _("all cards of the account")
    elif "category" in line:
        what = _("category «%(name)s»", name=line["category"])
    elif "item" in line:
        article, name = item_names(get_db(), [line["item"]]).get(line["item"], (line["item"], ""))
        what = _("item %(article)s «%(name)s»", article=article, name=name) if name else _(
            "item %(article)s", article=article)
    else:
        what = _("card %(card)s", card=line.get("card", ""))
    if line.get("percent") is not None:
        p = Decimal(str(line["percent"]))
        change = _("%(sign)s%(n)s %% of the price list's price", sign="−" if p < 0 else "+",
                   n=number(abs(p), str(get_locale())))
    else:
        change = _("price %(price)s", price=money(line.get("price"), str(get_locale())))
    return f"{what}: {change}"


@bp.get("/prices/rules/<rule_id>")
def page(rule_id: str, messages: list | None = None, status: int = 200):
    conn = get_db()
    try:
        r = price_rules.rule(conn, rule_id)
    except price_rules.RuleError:
        abort(404)
    now = datetime.now(UTC)
    held = price_rules.held(conn, rule_id)
    inside, change = price_rules.next_change(r, now)
    row = conn.execute("SELECT last_run FROM price_rules WHERE id=?", (rule_id,)).fetchone()
    retry = None
    if r.last_error and row["last_run"] and not held:
        retry = datetime.fromisoformat(row["last_run"]) + RETRY_AFTER
    overlaps = price_rules.overlaps(conn, rule_id, now)
    if request.args.get("done") and not messages:
        messages = [("ok", _("confirmed: the prices are sent"))]
    return render_template("cloud/price_rule.html", active="prices", rule=r, targets=[_target(x) for x in r.lines],
                           held=held, inside=inside, change=change, retry=retry, overlaps=overlaps,
                           messages=messages or [],
                           tz_city=get_timezone_location(r.tz, locale=str(get_locale()), return_city=True)), status


@bp.post("/prices/rules/<rule_id>/held/<doc_id>/<what>")
def decide(rule_id: str, doc_id: str, what: str):
    conn = get_db()
    if what == "discard":
        if not price_rules.discard_held(conn, rule_id, doc_id):
            return page(rule_id, messages=[("error", _("this document is not waiting for a confirmation"))],
                        status=409)
        return page(rule_id, messages=[("ok", _("the document is discarded; nothing was sent"))])
    if what != "confirm":
        abort(404)
    try:
        r = price_rules.rule(conn, rule_id)
    except price_rules.RuleError:
        abort(404)
    if doc_id not in price_rules.held(conn, rule_id):
        return page(rule_id, messages=[("error", _("this document is not waiting for a confirmation"))],
                    status=409)
    adapter = ctx().adapters.get(r.account)
    if adapter is None:
        return page(rule_id, messages=[("error", _("account %(account)s is not connected", account=r.account))],
                    status=409)
    try:
        ev = price_rules.confirm_held(conn, rule_id, doc_id, adapter, settings=ctx().cfg.pricing)
    except price_rules.RuleError as exc:
        return page(rule_id, messages=[("error", domain_text(exc))], status=409)
    if ev.action != "applied":
        return page(rule_id, messages=[("error", domain_text(ev.detail))], status=409)
    return redirect(url_for("rules.page", rule_id=rule_id, done="1"))
