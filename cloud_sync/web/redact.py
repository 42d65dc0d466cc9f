"""No secret in any log line: the cloud's redaction of push tokens, passwords and other secrets.

Owns `redact(text)` (push URLs `/push/<marketplace>/<account>/<token>/…` keep everything but the token, a chat bot
API's `/bot<token>/` too;
query parameters and form fields named like a secret lose their value; an `Authorization` header's
credentials go; every secret value told to `remember()` — the accounts' credentials, the 1C and broker
passwords, the alerts bot token — is replaced wherever it appears) and `install()`, which puts it under
every log record of the process: a record factory formats each record once, message, traceback and
stack together, and keeps only the redacted text. So Flask's own "Exception on /push/…" log, waitress'
"Exception while serving …", werkzeug's request lines and our own loggers are covered alike, whatever
handler or formatter writes them.
"""

from __future__ import annotations

import logging
import re
import threading
import traceback
from collections.abc import Iterable
from typing import Any

MASK = "***"
MIN_SECRET_LEN = 6  # shorter values ("1", "yes") would blank ordinary words; no real secret is that short

_PUSH_PATH = re.compile(r"(/push/[^/\s?#'\"]+/[^/\s?#'\"]+/)[^/\s?#'\"]+")
_SECRET_PARAM = re.compile(
    r"(?i)\b([a-z_]*(?:token|password|passwd|secret|api[-_]?key|sessid)[\"']?\s*[=:]\s*[\"']?)"
    r"([^&\s\"',;}]+)")
_BOT_PATH = re.compile(r"(/bot)\d+:[A-Za-z0-9_-]+")  # a chat bot API's URL holds its token
_AUTH_HEADER = re.compile(r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?(?:basic|bearer)\s+)[^\s\"',;}]+")

_lock = threading.Lock()
_known: frozenset[str] = frozenset()
_installed = False


def remember(values: Iterable[Any]) -> None:
    """Secret values to blank wherever they show up in a log line (config credentials, passwords)."""
    global _known
    fresh = {str(v) for v in values if v is not None and len(str(v)) >= MIN_SECRET_LEN}
    if fresh - _known:
        with _lock:
            _known = _known | fresh


def redact(text: str) -> str:
    """`text` with every secret blanked (see the module docstring)."""
    if not text:
        return text
    out = _PUSH_PATH.sub(rf"\g<1>{MASK}", text)
    out = _BOT_PATH.sub(rf"\g<1>{MASK}", out)
    out = _AUTH_HEADER.sub(rf"\g<1>{MASK}", out)
    out = _SECRET_PARAM.sub(rf"\g<1>{MASK}", out)
    for value in sorted(_known, key=len, reverse=True):
        if value in out:
            out = out.replace(value, MASK)
    return out


def _redacting_factory(previous: Any) -> Any:
    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: keep what can be shown, redacted
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info and record.exc_info[0] is not None:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)).rstrip("\n"))
            record.exc_info = None  # the redacted text above is all a handler gets
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return record

    make.redacting = True  # type: ignore[attr-defined]
    return make


def install() -> None:
    """Redact every log record of this process from now on (idempotent)."""
    global _installed
    with _lock:
        current = logging.getLogRecordFactory()
        if _installed and getattr(current, "redacting", False):
            return
        logging.setLogRecordFactory(_redacting_factory(current))
        _installed = True
