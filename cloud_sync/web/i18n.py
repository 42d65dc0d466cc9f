"""The manager's pages in the reader's language (Flask-Babel over the catalogs of cloud_sync.i18n): the
language is the user's own choice (cloud_sync.access.users.language), else cloud.toml's `[ui] language`
(Russian by default); dates and times are shown in `[ui] timezone`.

Registers the template filters every page writes values with, one format each: `money` («38 780 ₽»),
`number`, `percent`, `when` (a date and time), `day` (a date), `status_label` (a unified order status
in words: «Новый», «Собран», «Передан»…), `role_label`, `event_label`, `marketplace_title`,
`domain_text` (a text the domain stored in English, in the reader's language where its pattern is known); and the language switch (`POST /language`)."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask, g, redirect, request, url_for
from flask_babel import Babel, get_locale, lazy_gettext

from cloud_sync import i18n
from cloud_sync.access import users
from cloud_sync.web.context import ctx, get_db
from marketplaces import profiles

STATUS_LABELS = {
    "new": lazy_gettext("New"),
    "in_work": lazy_gettext("In work"),
    "reserved": lazy_gettext("Reserved"),
    "picking": lazy_gettext("Picking"),
    "packed": lazy_gettext("Packed"),
    "handed_over": lazy_gettext("Handed over"),
    "delivered": lazy_gettext("Delivered"),
    "cancelled": lazy_gettext("Cancelled"),
    "returned": lazy_gettext("Returned"),
}
EVENT_LABELS = {
    "reserved": lazy_gettext("reserved"), "short": lazy_gettext("not enough stock"),
    "problem": lazy_gettext("needs attention"), "confirmed": lazy_gettext("confirmed"),
    "label_sent": lazy_gettext("label sent to the site"), "label_requested": lazy_gettext("labels requested"),
    "picked": lazy_gettext("picked"), "packed": lazy_gettext("packed"), "printed": lazy_gettext("label printed"),
    "taken": lazy_gettext("taken into work"), "cancelled": lazy_gettext("cancelled"), "note": lazy_gettext("note"),
    "scan": lazy_gettext("scan"), "task_sent": lazy_gettext("pick task sent"), "handed_over": lazy_gettext("handed over"),
    "confirm": lazy_gettext("confirm"), "label": lazy_gettext("label"), "cancel": lazy_gettext("cancel"),
    "ship": lazy_gettext("ship"), "pending": lazy_gettext("waiting"), "done": lazy_gettext("done"),
    "failed": lazy_gettext("failed"), "running": lazy_gettext("running"), "status": lazy_gettext("status changed"),
    "barcode": lazy_gettext("by barcode"), "article": lazy_gettext("by article"), "manual": lazy_gettext("by hand"),
    "draft": lazy_gettext("draft"), "refused": lazy_gettext("refused"), "applied": lazy_gettext("applied"),
    "partial": lazy_gettext("partly applied"), "idle": lazy_gettext("idle"), "active": lazy_gettext("active"),
    "item": lazy_gettext("item"), "category": lazy_gettext("category"), "card": lazy_gettext("card"),
    "created": lazy_gettext("created"), "assemble": lazy_gettext("assembly"),
}
# Texts the domain stores or raises in English (a problem of an order, a refusal), shown in the reader's
# language: the first pattern that matches the whole text gives its translation with the same parts.
DOMAIN_TEXTS: list[tuple[re.Pattern[str], Any]] = [(re.compile(p), t) for p, t in [
    (r"card not linked to an item: (?P<cards>.+)", lazy_gettext("card not linked to a 1C item: %(cards)s")),
    (r"no site serves warehouse (?P<w>.+)", lazy_gettext("no site serves warehouse %(w)s")),
    (r"no site serves its warehouse", lazy_gettext("no site serves its warehouse")),
    (r"(?P<key>\S+): already cancelled", lazy_gettext("%(key)s: already cancelled")),
    (r"(?P<key>\S+): (?P<why>.+) — cannot be confirmed", lazy_gettext("%(key)s: %(why)s — cannot be confirmed")),
    (r"(?P<key>\S+): no site serves its warehouse", lazy_gettext("%(key)s: no site serves its warehouse")),
    (r"choose at least one order", lazy_gettext("choose at least one order")),
    (r"unknown order\(s\): (?P<keys>.+)", lazy_gettext("unknown order(s): %(keys)s")),
    (r"say why the orders are cancelled", lazy_gettext("say why the orders are cancelled")),
    (r"the reason is longer than 500 characters", lazy_gettext("the reason is longer than 500 characters")),
    (r"choose one of: (?P<what>.+)", lazy_gettext("choose one of: %(what)s")),
    (r"unknown item (?P<item>'[^']*') \(give its 1C id or article\)",
     lazy_gettext("unknown item %(item)s (give its 1C id or article)")),
    (r"unknown item (?P<item>.+)", lazy_gettext("unknown item %(item)s")),
    (r"unknown card (?P<card>'[^']*') of account (?P<account>.+)", lazy_gettext("unknown card %(card)s of account %(account)s")),
    (r"unknown account (?P<account>.+)", lazy_gettext("unknown account %(account)s")),
    (r"taken into work by (?P<by>.+)", lazy_gettext("taken into work by %(by)s")),
    (r"labels requested by (?P<by>.+)", lazy_gettext("labels requested by %(by)s")),
    (r"unlinked card", lazy_gettext("unlinked card")),
    (r"(?P<action>\w+) failed: (?P<error>.+)", lazy_gettext("%(action)s failed: %(error)s")),
    (r"site: (?P<state>.+)", lazy_gettext("site: %(state)s")),
    (r"line (?P<n>\d+): (?P<rest>.+)", lazy_gettext("line %(n)s: %(rest)s")),
    (r"would zero (?P<z>\d+) of (?P<l>\d+) listed cards \(more than (?P<p>[^)]+)\)",
     lazy_gettext("would zero %(z)s of %(l)s listed cards (more than %(p)s)")),
    (r"not enough stock: item (?P<item>\S+) at (?P<wh>\S+) has (?P<a>-?\d+) available, (?P<w>\d+) wanted",
     lazy_gettext("not enough stock: item %(item)s at %(wh)s has %(a)s available, %(w)s wanted")),
    (r"unknown (?P<scope>\w+) (?P<key>'[^']*') on account (?P<account>.+)",
     lazy_gettext("unknown %(scope)s %(key)s on account %(account)s")),
    (r"(?P<scope>\w+) (?P<key>'[^']*') has no cards on account (?P<account>.+)",
     lazy_gettext("%(scope)s %(key)s has no cards on account %(account)s")),
    (r"no current price is known for a percent change; read prices first \(marketsync sync prices\) or give an"
     r" absolute price", lazy_gettext("no current price is known for a percent change; read the prices first or"
                                      " give the new price itself")),
    (r"price (?P<p>\S+) is not positive", lazy_gettext("price %(p)s is not positive")),
    (r"price (?P<p>\S+) is below the 1C cost (?P<c>\S+)", lazy_gettext("price %(p)s is below the 1C cost %(c)s")),
    (r"price (?P<p>\S+) is below the card's minimum price (?P<m>\S+)",
     lazy_gettext("price %(p)s is below the card's minimum price %(m)s")),
    (r"large drop: (?P<old>\S+) -> (?P<new>\S+) \((?P<pct>[^)]+)\)",
     lazy_gettext("large drop: %(old)s → %(new)s (%(pct)s)")),
    (r"large rise: (?P<old>\S+) -> (?P<new>\S+) \((?P<pct>[^)]+)\):.*",
     lazy_gettext("large rise: %(old)s → %(new)s (%(pct)s): buyers see it at once — an extra zero?")),
    (r"row (?P<n>\d+): (?P<rest>.+)", lazy_gettext("row %(n)s: %(rest)s")),
    (r"give either an absolute price or a percent change", lazy_gettext("give either a new price or a change in %%")),
    (r"a change of (?P<p>\S+)% leaves no price", lazy_gettext("a change of %(p)s%% leaves no price")),
    (r"discount (?P<p>\S+)% is outside 0\.\.99", lazy_gettext("discount %(p)s%% is outside 0..99")),
    (r"give either discount_percent or old_price, not both",
     lazy_gettext("give either the discount or the crossed-out price, not both")),
    (r"old price (?P<p>\S+) is negative", lazy_gettext("crossed-out price %(p)s is negative")),
    (r"the document names no account", lazy_gettext("the document names no account")),
    (r"the document has no lines", lazy_gettext("the document has no lines")),
    (r"the file is refused, nothing was applied", lazy_gettext("the file is refused, nothing was applied")),
    (r"the file is empty", lazy_gettext("the file is empty")),
    (r"the file needs a header row and at least one price row",
     lazy_gettext("the file needs a header row and at least one price row")),
    (r"unknown column\(s\): (?P<cols>.+)", lazy_gettext("unknown columns: %(cols)s")),
    (r"no target column \(item, category, card or all\)",
     lazy_gettext("no column saying what to change (item, category, card or all)")),
    (r"no price or percent column", lazy_gettext("no price or percent column")),
    (r"(?P<f>.+): not a readable XLSX file \((?P<why>[^)]*)\)", lazy_gettext("%(f)s: not a readable XLSX file (%(why)s)")),
    (r"(?P<f>.+): the text is neither UTF-8 nor Windows-1251",
     lazy_gettext("%(f)s: the text is neither UTF-8 nor Windows-1251")),
    (r"(?P<f>.+): upload a \.csv or \.xlsx file", lazy_gettext("%(f)s: upload a .csv or .xlsx file")),
    (r"cannot read the rule (?P<t>.+): write it like .*",
     lazy_gettext("cannot read the rule %(t)s: write it like «-10%% пятница 18:00, вернуть понедельник 09:00»")),
    (r"cannot read the day (?P<d>'[^']*') in (?P<t>.+?): .*",
     lazy_gettext("cannot read the day %(d)s in %(t)s: write a weekday (пт, пятница, friday…) or a date")),
    (r"cannot read the time (?P<t>'[^']*'): .*",
     lazy_gettext("cannot read the time %(t)s: write it like «пятница 18:00» or «ежедневно 09:00»")),
    (r"the rule ends \((?P<end>[^)]+)\) before it starts \((?P<start>[^)]+)\)",
     lazy_gettext("the rule ends (%(end)s) before it starts (%(start)s)")),
    (r"a rule's start and end are the same time", lazy_gettext("a rule's start and end are the same time")),
    (r"a user name is 2-64 letters, digits or \. _ @ -", lazy_gettext("a user name is 2-64 letters, digits or . _ @ -")),
    (r"a password needs at least (?P<n>\d+) characters", lazy_gettext("a password needs at least %(n)s characters")),
    (r"the password must not be the user name", lazy_gettext("the password must not be the user name")),
    (r"user (?P<name>'[^']*') exists already", lazy_gettext("user %(name)s exists already")),
    (r"no user (?P<name>'[^']*')", lazy_gettext("no user %(name)s")),
    (r"(?P<name>\S+) is the last owner: make another owner first",
     lazy_gettext("%(name)s is the last owner: make another owner first")),
    (r"wrong user name or password", lazy_gettext("wrong user name or password")),
    (r"too many failed logins; try again in (?P<s>\d+) s", lazy_gettext("too many failed logins; try again in %(s)s s")),
    (r"HTTP (?P<code>\d+)(?P<rest>.*)", lazy_gettext("the marketplace answered HTTP %(code)s%(rest)s")),
    (r"(?P<n>\d+) zero\(s\) from missing or stale source data",
     lazy_gettext("%(n)s zeros from missing or stale source data")),
]]
LINK_STATES = {"online": lazy_gettext("online"), "offline": lazy_gettext("offline"),
               "never seen": lazy_gettext("never seen")}
DEVICE_KINDS = {"printer": lazy_gettext("printer"), "scanner": lazy_gettext("scanner"),
                "camera": lazy_gettext("camera"), "scale": lazy_gettext("scale")}
ROLE_LABELS = {"owner": lazy_gettext("owner"), "manager": lazy_gettext("manager"), "packer": lazy_gettext("packer")}
LANGUAGE_NAMES = {"ru": "Русский", "en": "English"}


def lang() -> str:
    """The language of this request."""
    if "ms_lang" not in g:
        user = g.get("user")  # set by cloud_sync.web.auth for every request
        chosen = users.language(get_db(), user.id) if user is not None else ""
        g.ms_lang = i18n.language(chosen or ctx().cfg.ui.language)
    return g.ms_lang


def _timezone() -> str:
    return ctx().cfg.ui.timezone


def status_label(status: str | None) -> str:
    return str(STATUS_LABELS.get(status or "", status or ""))


def event_label(kind: str | None) -> str:
    return str(EVENT_LABELS.get(kind or "", kind or ""))


def domain_text(text: object) -> str:
    """A text the domain wrote in English, in the reader's language where its pattern is known."""
    if text is None:
        return ""
    raw = str(text)
    whole = _translated(raw)
    if whole is not None or "; " not in raw:
        return raw if whole is None else whole
    parts, out, i = raw.split("; "), [], 0  # several texts joined with "; " (each may hold "; " itself)
    while i < len(parts):
        for j in range(len(parts), i, -1):
            done = _translated("; ".join(parts[i:j]))
            if done is not None:
                out.append(done)
                i = j
                break
        else:
            out.append(parts[i])
            i += 1
    return "; ".join(out)


def _translated(raw: str) -> str | None:
    for pattern, template in DOMAIN_TEXTS:
        m = pattern.fullmatch(raw)
        if m:
            parts = {k: domain_text(v) if k in ("why", "rest", "error") else event_label(v) if k in ("action", "scope")
                     else v for k, v in m.groupdict().items()}
            return str(template) % parts
    return None


def marketplace_title(name: str | None) -> str:
    """A marketplace as sellers write it (its profile's title: Wildberries, Ozon...)."""
    known = profiles().get(name or "")
    return known.title if known is not None else (name or "")


def role_label(role: str | None) -> str:
    return str(ROLE_LABELS.get(role or "", role or ""))


def setup(app: Flask) -> None:
    app.config["BABEL_DEFAULT_LOCALE"] = i18n.DEFAULT_LANGUAGE
    Babel(app, locale_selector=lang, timezone_selector=_timezone,
          default_translation_directories=str(i18n.catalog_dir()))
    filters: dict[str, Any] = {
        "money": lambda v: i18n.money(v, str(get_locale())),
        "number": lambda v: i18n.number(v, str(get_locale())),
        "percent": lambda v: i18n.percent(v, str(get_locale())),
        "when": lambda v: i18n.when(v, str(get_locale()), _timezone()),
        "day": lambda v: i18n.day(v, str(get_locale())),
        "status_label": status_label,
        "role_label": role_label,
        "event_label": event_label,
        "link_state": lambda v: str(LINK_STATES.get(v or "", v or "")),
        "device_kind": lambda v: str(DEVICE_KINDS.get(v or "", v or "")),
        "domain_text": domain_text,
        "marketplace_title": marketplace_title,
    }
    app.jinja_env.filters.update(filters)
    app.jinja_env.globals.update(languages=LANGUAGE_NAMES, page_lang=lambda: str(get_locale()),
                                 ui_timezone=_timezone)
    app.add_url_rule("/language", "language", set_language, methods=["POST"])


def set_language():
    """The signed-in user switches their pages' language; back to the page they were on."""
    chosen = request.form.get("language", "")
    user = g.get("user")
    if user is not None and chosen in i18n.LANGUAGES:
        users.set_language(get_db(), user.id, chosen)
    back = request.form.get("back", "")
    return redirect(back if back.startswith("/") and not back.startswith("//") else url_for("ui.home"))
