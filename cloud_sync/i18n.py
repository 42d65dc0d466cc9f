"""The languages people read marketsync in: the gettext catalogs (web/translations/<lang>/LC_MESSAGES/
messages.po, kept in the repo; msgids are English, Russian is the default language), compiled to .mo
when they are missing or older than their .po (at start: a fresh clone needs no build step), and the one
way each kind of value is written for a language: money («38 780 ₽»), numbers, dates, dates with times
(Babel's CLDR data for the locale, in the configured time zone).

Used by the web pages (through cloud_sync.web.i18n and Flask-Babel), by the CLI and by texts made away
from a request (Telegram alerts, XLSX headers): `translations(lang)` gives gettext/ngettext there.
Imports nothing of the cloud, so every floor may use it."""

from __future__ import annotations

import functools
import logging
import re
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo

from babel.dates import format_date, format_datetime
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

import web

LANGUAGES = ("ru", "en")
DEFAULT_LANGUAGE = "ru"
DOMAIN = "messages"
SOURCE = web.TRANSLATIONS

log = logging.getLogger("cloud_sync.i18n")


def N_(msgid: str) -> str:  # noqa: N802 - gettext's own name for "a text to translate later"
    """Marks a text for the catalog; it is translated where it is shown."""
    return msgid


EVENT_LABELS = {
    "reserved": N_("reserved"), "short": N_("not enough stock"),
    "problem": N_("needs attention"), "confirmed": N_("confirmed"),
    "label_sent": N_("label sent to the site"), "label_requested": N_("labels requested"),
    "picked": N_("picked"), "packed": N_("packed"), "printed": N_("label printed"),
    "taken": N_("taken into work"), "cancelled": N_("cancelled"), "note": N_("note"),
    "scan": N_("scan"), "task_sent": N_("pick task sent"), "handed_over": N_("handed over"),
    "confirm": N_("confirm"), "label": N_("label"), "cancel": N_("cancel"),
    "ship": N_("ship"), "pending": N_("waiting"), "done": N_("done"),
    "failed": N_("failed"), "running": N_("running"), "status": N_("status changed"),
    "barcode": N_("by barcode"), "article": N_("by article"), "manual": N_("by hand"),
    "draft": N_("draft"), "refused": N_("refused"), "applied": N_("applied"),
    "error": N_("error"), "info": N_("note"), "warning": N_("warning"), "partial": N_("partly applied"), "discarded": N_("discarded"), "expired": N_("expired unconfirmed"), "held": N_("held for a confirmation"), "idle": N_("idle"), "active": N_("active"),
    "item": N_("item"), "category": N_("category"), "card": N_("card"),
    "created": N_("created"), "assemble": N_("assembly"),
    "received": N_("received from the marketplace"), "served": N_("served after waiting"),
    "retry": N_("checked again"), "moved": N_("moved"), "cancel_sent": N_("cancelled on the marketplace"),
    "delivered": N_("delivered"), "return_expected": N_("coming back"), "returned": N_("came back"),
    "cancel_refused": N_("not cancelled"), "handover_missing": N_("stayed at the hand-over"),
    "shipped": N_("shipped"), "assembled": N_("assembled"), "in_doubt": N_("outcome unknown: read back"),
    "reduce": N_("remove the missing units"), "reduced": N_("missing units removed on the marketplace"),
    "ship_by": N_("assembly deadline moved"),
}
# Texts the domain stores or raises in English (a problem of an order, a refusal), shown in the reader's
# language: the first pattern that matches the whole text gives its translation with the same parts.
DOMAIN_TEXTS: list[tuple[re.Pattern[str], str]] = [(re.compile(p), t) for p, t in [
    # the waiting orders' reasons (cloud_sync/orders/waiting.py writes them in Russian, the seller's words)
    (r"не хватает: артикул (?P<article>\S+?)(?P<name> «.*»)?, есть (?P<have>\d+), нужно (?P<need>\d+)",
     N_("not enough: article %(article)s%(name)s, %(have)s available, %(need)s wanted")),
    (r"не хватает: товар (?P<item>\S+), есть (?P<have>\d+), нужно (?P<need>\d+)",
     N_("not enough: item %(item)s, %(have)s available, %(need)s wanted")),
    (r"карточка не связана с товаром 1С: (?P<cards>.+) — свяжите её на странице «Товары», заказ возьмётся в работу сам",
     N_("card not linked to a 1C item: %(cards)s — link it on the Products page and the order is taken into work by"
        " itself")),
    (r"склад маркетплейса (?P<wh>.+) кабинета (?P<account>\S+) не связан с нашим складом — укажите его в настройках"
     r" кабинета, заказ возьмётся в работу сам",
     N_("the marketplace warehouse %(wh)s of account %(account)s is not mapped to a warehouse of ours — set it in the"
        " account's settings and the order is taken into work by itself")),
    (r"склад (?P<w>\S+) не обслуживает ни (?:одна площадка|один пункт) — задание на сборку некуда отправить",
     N_("no site serves warehouse %(w)s — the pick task has nowhere to go")),
    (r"склад (?P<w>\S+): товар есть, заказ взят в работу", N_("warehouse %(w)s: in stock, the order is taken into work")),
    (r"card not linked to an item: (?P<cards>.+)", N_("card not linked to a 1C item: %(cards)s")),
    (r"no site serves warehouse (?P<w>.+)", N_("no site serves warehouse %(w)s")),
    (r"no site serves its warehouse", N_("no site serves its warehouse")),
    (r"(?P<key>\S+): already cancelled", N_("%(key)s: already cancelled")),
    (r"(?P<key>\S+): (?P<why>.+) — cannot be confirmed", N_("%(key)s: %(why)s — cannot be confirmed")),
    (r"(?P<key>\S+): no site serves its warehouse", N_("%(key)s: no site serves its warehouse")),
    (r"choose at least one order", N_("choose at least one order")),
    (r"unknown order\(s\): (?P<keys>.+)", N_("unknown order(s): %(keys)s")),
    (r"say why the orders are cancelled", N_("say why the orders are cancelled")),
    (r"the reason is longer than 500 characters", N_("the reason is longer than 500 characters")),
    (r"choose one of: (?P<what>.+)", N_("choose one of: %(what)s")),
    (r"unknown item (?P<item>'[^']*') \(give its 1C id or article\)",
     N_("unknown item %(item)s (give its 1C id or article)")),
    (r"unknown item (?P<item>.+)", N_("unknown item %(item)s")),
    (r"unknown card (?P<card>'[^']*') of account (?P<account>.+)", N_("unknown card %(card)s of account %(account)s")),
    (r"unknown account (?P<account>'[^']*'); configured: (?P<known>.+)",
     N_("unknown account %(account)s; configured: %(known)s")),
    (r"unknown account (?P<account>.+)", N_("unknown account %(account)s")),
    (r"taken into work by (?P<by>.+)", N_("taken into work by %(by)s")),
    (r"labels requested by (?P<by>.+)", N_("labels requested by %(by)s")),
    (r"unlinked card", N_("unlinked card")),
    (r"(?P<action>\w+) failed: (?P<error>.+)", N_("%(action)s failed: %(error)s")),
    (r"site: (?P<state>.+)", N_("site: %(state)s")),
    (r"line (?P<n>\d+): (?P<rest>.+)", N_("line %(n)s: %(rest)s")),
    (r"would zero (?P<z>\d+) of (?P<l>\d+) listed cards \(more than (?P<p>[^)]+)\)",
     N_("would zero %(z)s of %(l)s listed cards (more than %(p)s)")),
    (r"not enough stock: item (?P<item>\S+) at (?P<wh>\S+) has (?P<a>-?\d+) available, (?P<w>\d+) wanted",
     N_("not enough stock: item %(item)s at %(wh)s has %(a)s available, %(w)s wanted")),
    (r"unknown (?P<scope>\w+) (?P<key>'[^']*') on account (?P<account>.+)",
     N_("unknown %(scope)s %(key)s on account %(account)s")),
    (r"(?P<scope>\w+) (?P<key>'[^']*') has no cards on account (?P<account>.+)",
     N_("%(scope)s %(key)s has no cards on account %(account)s")),
    (r"no current price is known for a percent change; read prices first \(marketsync sync prices\) or give an"
     r" absolute price", N_("no current price is known for a percent change; read the prices first or"
                                      " give the new price itself")),
    (r"price (?P<p>\S+) is not positive", N_("price %(p)s is not positive")),
    (r"price (?P<p>\S+) is below the 1C cost (?P<c>\S+)", N_("price %(p)s is below the 1C cost %(c)s")),
    (r"price (?P<p>\S+) is below the card's minimum price (?P<m>\S+)",
     N_("price %(p)s is below the card's minimum price %(m)s")),
    (r"large drop: (?P<old>\S+) -> (?P<new>\S+) \((?P<pct>[^)]+)\)",
     N_("large drop: %(old)s → %(new)s (%(pct)s)")),
    (r"large rise: (?P<old>\S+) -> (?P<new>\S+) \((?P<pct>[^)]+)\):.*",
     N_("large rise: %(old)s → %(new)s (%(pct)s): buyers see it at once — an extra zero?")),
    (r"row (?P<n>\d+): (?P<rest>.+)", N_("row %(n)s: %(rest)s")),
    (r"give either an absolute price or a percent change", N_("give either a new price or a change in %%")),
    (r"a change of (?P<p>\S+)% leaves no price", N_("a change of %(p)s%% leaves no price")),
    (r"discount (?P<p>\S+)% is outside 0\.\.99", N_("discount %(p)s%% is outside 0..99")),
    (r"give either discount_percent or old_price, not both",
     N_("give either the discount or the crossed-out price, not both")),
    (r"old price (?P<p>\S+) is negative", N_("crossed-out price %(p)s is negative")),
    (r"the document names no account", N_("the document names no account")),
    (r"the document has no lines", N_("the document has no lines")),
    (r"the file is refused, nothing was applied", N_("the file is refused, nothing was applied")),
    (r"the file is empty", N_("the file is empty")),
    (r"the file needs a header row and at least one price row",
     N_("the file needs a header row and at least one price row")),
    (r"unknown column\(s\): (?P<cols>.+)", N_("unknown columns: %(cols)s")),
    (r"no target column \(item, category, card or all\)",
     N_("no column saying what to change (item, category, card or all)")),
    (r"no price or percent column", N_("no price or percent column")),
    (r"(?P<f>.+): not a readable XLSX file \((?P<why>[^)]*)\)", N_("%(f)s: not a readable XLSX file (%(why)s)")),
    (r"(?P<f>.+): the text is neither UTF-8 nor Windows-1251",
     N_("%(f)s: the text is neither UTF-8 nor Windows-1251")),
    (r"(?P<f>.+): upload a \.csv or \.xlsx file", N_("%(f)s: upload a .csv or .xlsx file")),
    (r"cannot read the rule (?P<t>.+): write it like .*",
     N_("cannot read the rule %(t)s: write it like «-10%% пятница 18:00, вернуть понедельник 09:00»")),
    (r"cannot read the day (?P<d>'[^']*') in (?P<t>.+?): .*",
     N_("cannot read the day %(d)s in %(t)s: write a weekday (пт, пятница, friday…) or a date")),
    (r"cannot read the time (?P<t>'[^']*'): .*",
     N_("cannot read the time %(t)s: write it like «пятница 18:00» or «ежедневно 09:00»")),
    (r"the rule ends \((?P<end>[^)]+)\) before it starts \((?P<start>[^)]+)\)",
     N_("the rule ends (%(end)s) before it starts (%(start)s)")),
    (r"a rule's start and end are the same time", N_("a rule's start and end are the same time")),
    (r"a user name is 2-64 letters, digits or \. _ @ -", N_("a user name is 2-64 letters, digits or . _ @ -")),
    (r"a password needs at least (?P<n>\d+) characters", N_("a password needs at least %(n)s characters")),
    (r"the password must not be the user name", N_("the password must not be the user name")),
    (r"user (?P<name>'[^']*') exists already", N_("user %(name)s exists already")),
    (r"no user (?P<name>'[^']*')", N_("no user %(name)s")),
    (r"(?P<name>\S+) is the last owner: make another owner first",
     N_("%(name)s is the last owner: make another owner first")),
    (r"wrong user name or password", N_("wrong user name or password")),
    (r"too many failed logins; try again in (?P<s>\d+) s", N_("too many failed logins; try again in %(s)s s")),
    (r"HTTP (?P<code>\d+)(?P<rest>.*)", N_("the marketplace answered HTTP %(code)s%(rest)s")),
    (r"(?P<n>\d+) zero\(s\) from missing or stale source data",
     N_("%(n)s zeros from missing or stale source data")),
    # scheduled price rules (cloud_sync/money/price_rules.py): their documents' comments and refusals
    (r"price rule (?P<name>.+)", N_("price rule %(name)s")),
    (r"end of price rule (?P<name>.+)", N_("end of price rule %(name)s")),
    (r"the rule's window has closed: nothing was sent", N_("the rule's time is over: nothing was sent")),
    (r"price document (?P<doc>\S+) needs confirmation, nothing was sent",
     N_("price document %(doc)s needs a confirmation: nothing was sent")),
    (r"this document is not waiting for a confirmation \(confirmed or discarded already\)",
     N_("this document is not waiting for a confirmation (confirmed or discarded already)")),
    (r"(?P<action>error|info|confirm|warning): (?P<rest>.+)", "%(action)s: %(rest)s"),  # a price note's level
    (r"(?P<offer>[^\s:]+): (?P<rest>.+)", "%(offer)s: %(rest)s"),  # a card's own note, after its article
]]


def event_label(kind: str | None, gettext: Callable[[str], str]) -> str:
    """An order event, a marketplace call or a state in words (what the domain stores as a code)."""
    return gettext(EVENT_LABELS[kind]) if kind in EVENT_LABELS else (kind or "")


def domain_text(text: object, gettext: Callable[[str], str]) -> str:
    """A text the domain wrote in English (an order's problem, a refusal, a price note), in the language
    of `gettext` where its pattern is known; several joined with "; " each; any other text as it is."""
    if text is None:
        return ""
    raw = str(text)
    whole = _translated(raw, gettext)
    if whole is not None or "; " not in raw:
        return raw if whole is None else whole
    parts, out, i = raw.split("; "), [], 0  # several texts joined with "; " (each may hold "; " itself)
    while i < len(parts):
        for j in range(len(parts), i, -1):
            done = _translated("; ".join(parts[i:j]), gettext)
            if done is not None:
                out.append(done)
                i = j
                break
        else:
            out.append(parts[i])
            i += 1
    return "; ".join(out)


def _translated(raw: str, gettext: Callable[[str], str]) -> str | None:
    for pattern, msgid in DOMAIN_TEXTS:
        m = pattern.fullmatch(raw)
        if m:
            parts = {k: domain_text(v, gettext) if k in ("why", "rest", "error")
                     else event_label(v, gettext) if k in ("action", "scope")
                     else gettext(v) if k == "known" and v == "none" else v
                     for k, v in m.groupdict().items()}
            return gettext(msgid) % parts
    return None

_lock = threading.Lock()


def _stale(po: Path, mo: Path) -> bool:
    return not mo.exists() or mo.stat().st_mtime < po.stat().st_mtime


def _compile_into(target: Path) -> None:
    for po in sorted(SOURCE.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        mo = target / po.relative_to(SOURCE).with_suffix(".mo")
        if not _stale(po, mo):
            continue
        with po.open("rb") as f:
            catalog = read_po(f, locale=po.parts[-3])
        mo.parent.mkdir(parents=True, exist_ok=True)
        tmp = mo.with_suffix(".mo.tmp")
        with tmp.open("wb") as f:
            write_mo(f, catalog, use_fuzzy=False)
        tmp.replace(mo)


@functools.cache
def catalog_dir() -> Path:
    """The directory of the compiled catalogs: beside the .po sources when that can be written (a clone,
    an install owned by the service), else a directory of this process's own in the temp folder."""
    with _lock:
        try:
            _compile_into(SOURCE)
            return SOURCE
        except OSError as exc:
            own = Path(tempfile.gettempdir()) / "marketsync-translations"
            log.info("catalogs compiled into %s (%s is read-only: %s)", own, SOURCE, exc)
            _compile_into(own)
            return own


def language(lang: str | None) -> str:
    """A language marketsync speaks: the one asked for, else Russian."""
    return lang if lang in LANGUAGES else DEFAULT_LANGUAGE


_service_language = [DEFAULT_LANGUAGE, "Europe/Moscow"]


def set_service_language(lang: str, tz: str | None = None) -> None:
    """The language (and time zone) of the texts nobody reads in a page (alerts, the CLI): cloud.toml's
    `[ui] language` and `timezone`, set once at start (create_app, the CLI's config load)."""
    _service_language[0] = language(lang)
    if tz:
        _service_language[1] = tz


def service_when(value: object) -> str:
    """A moment as the service's language and time zone write it (Telegram alerts)."""
    return when(value, _service_language[0], _service_language[1])


def translations(lang: str | None = None) -> Translations:
    """gettext/ngettext of a language (default: the service's), for texts made outside a web request
    (the CLI, Telegram alerts, files)."""
    return _catalog(language(lang or _service_language[0]))


@functools.cache
def _catalog(lang: str) -> Translations:
    return Translations.load(str(catalog_dir()), [lang], DOMAIN)


def _decimal(value: object) -> Decimal | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def number(value: object, lang: str | None = None) -> str:
    """A quantity or any plain number: «1 234», «62 782,5» (as it was given, grouped for the locale)."""
    d = _decimal(value)
    if d is None:
        return "" if value is None else str(value)
    return format_decimal(d, locale=language(lang), decimal_quantization=False)


def money(value: object, lang: str | None = None) -> str:
    """Roubles: «38 780 ₽» when whole, «62 782,50 ₽» with kopecks."""
    d = _decimal(value)
    if d is None:
        return "" if value is None else str(value)
    pattern = "#,##0" if d == d.to_integral_value() else "#,##0.00"
    return f"{format_decimal(d, format=pattern, locale=language(lang))}\u00a0₽"


def percent(value: object, lang: str | None = None) -> str:
    d = _decimal(value)
    if d is None:
        return "" if value is None else str(value)
    return f"{format_decimal(d, format='#,##0.##', locale=language(lang))}\u00a0%"


def _moment(value: object) -> datetime | None:
    """A unix time, an ISO text ("Z", an offset, or none: UTC) or a datetime, as an aware datetime."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), UTC)
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def when(value: object, lang: str | None = None, tz: str = "Europe/Moscow") -> str:
    """A moment in the configured time zone: «27.11.2026, 23:30» (ru), «11/27/26, 11:30 PM» (en)."""
    dt = _moment(value)
    if dt is None:
        return "" if value in (None, "") else str(value)
    return _when(dt, language(lang), tz)


@functools.lru_cache(maxsize=4096)
def _when(dt: datetime, lang: str, tz: str) -> str:
    """Babel's formatting, once per moment (a page of orders repeats the marketplaces' cut-off times)."""
    return format_datetime(dt, "short", tzinfo=ZoneInfo(tz), locale=lang)


def day(value: object, lang: str | None = None) -> str:
    """A calendar date: «27.11.2026» (ru), «11/27/26» (en)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        d = value
    else:
        try:
            d = date.fromisoformat(str(value)[:10])
        except ValueError:
            return "" if value in (None, "") else str(value)
    return format_date(d, "short", locale=language(lang))
