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
from flask_babel import Babel, get_locale, gettext, lazy_gettext
from markupsafe import Markup, escape

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
    return i18n.event_label(kind, gettext)


def domain_text(text: object) -> str:
    """A text the domain wrote in English, in the reader's language where its pattern is known."""
    return i18n.domain_text(text, gettext)


# what a person types as it stands inside a sentence: a setting with its table, a file, a snake_case key, an
# address, a push path
CODE_WORDS = re.compile(r"\[[a-z_.]+\] [a-z_]+|\b[a-z]+\.toml\b|\b[a-z]+(?:_[a-z]+)+\b|https?://[^\s,;)«»]+"
                        r"|/?\border/(?:new|cancel)\b|/notification\b")


def codes(text: object) -> Markup:
    """A translated sentence with the words a person types as they stand (`CODE_WORDS`) set as <code>."""
    escaped = str(escape(str(text)))
    return Markup(CODE_WORDS.sub(lambda m: f"<code>{m.group(0)}</code>", escaped))


def marketplace_title(name: str | None) -> str:
    """A marketplace as sellers write it (its profile's title: Wildberries, Ozon...)."""
    known = profiles().get(name or "")
    return known.title if known is not None else (name or "")


def role_label(role: str | None) -> str:
    return str(ROLE_LABELS.get(role or "", role or ""))


def setup(app: Flask) -> None:
    ui = app.extensions["marketsync"].cfg.ui
    i18n.set_service_language(ui.language, ui.timezone)
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
        "codes": codes,
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
