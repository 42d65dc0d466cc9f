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
import tempfile
import threading
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


@functools.cache
def translations(lang: str | None = None) -> Translations:
    """gettext/ngettext of a language, for texts made outside a web request (the CLI, alerts, files)."""
    return Translations.load(str(catalog_dir()), [language(lang)], DOMAIN)


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
    return format_datetime(dt, "short", tzinfo=ZoneInfo(tz), locale=language(lang))


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
