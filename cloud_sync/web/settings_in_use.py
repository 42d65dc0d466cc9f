"""Putting what Settings stores in use in the running cloud, from the Settings page and from
`/api/settings/secrets` alike: an account's adapter is reopened in the shared holder
(cloud_sync.service.accounts.AccountAdapters) that the pusher and the jobs read too; a stored bot token
is handed to the alerts job the same way `secrets.apply_to_config` does at start. Each returns the
seller's message, never a secret's value."""

from __future__ import annotations

import logging
import os

from flask_babel import gettext as _

from cloud_sync.access import secrets
from cloud_sync.web.context import ctx, get_db

log = logging.getLogger("cloud_sync.web.settings_in_use")


def _scrub(text: str, account: str, *extra: str) -> str:
    """`text` with every credential value of the account (and `extra`) masked."""
    values = [*ctx().cfg.accounts[account].account.credentials.values(), *extra]
    for v in sorted((str(v) for v in values if v and len(str(v)) >= 4), key=len, reverse=True):
        text = text.replace(v, "***")
    return text


def put_in_use(account: str, done: str, *secret_values: str) -> tuple[str, str]:
    """Reopen the account with what is stored now; the page's message (never a secret's value)."""
    try:
        ctx().adapters.reopen(account, get_db())  # type: ignore[attr-defined]
    except Exception as exc:  # noqa: BLE001 - any reason the account cannot be opened is the seller's to see
        reason = _scrub(f"{exc.__class__.__name__}: {exc}", account, *secret_values)
        log.warning("account %s could not be reopened: %s", account, reason)
        return ("error", _("%(done)s, but the account could not be opened with it (%(reason)s); the running"
                           " connection keeps the previous settings", done=done, reason=reason))
    log.info("account %s reopened: the stored settings are in use", account)
    return ("ok", _("%(done)s; in use now", done=done))


def credentials_stored(account: str, done: str, *secret_values: str) -> tuple[str, str]:
    """After an account's credentials were stored: in use at once where its config reads them from the
    store (`credentials_secret`), else the message says when they will be."""
    name = secrets.account_secret_name(account)
    if ctx().cfg.accounts[account].credentials_secret != name:
        return ("ok", _("%(done)s; it is not used until the account's config says credentials_secret = \"%(name)s\"",
                        done=done, name=name))
    return put_in_use(account, done, *secret_values)


def use_bot_token(value: str) -> str:
    """Hand a stored bot token to the running alerts job (read on its next tick); the page's message."""
    section = ctx().cfg.alerts
    if section is None:
        return _("bot token stored encrypted; alerts are sent once cloud.toml has an [alerts] section with chat_id")
    if section.token_file is not None or section.token_env not in (None, secrets.BOT_TOKEN_ENV):
        return _("bot token stored encrypted; not used while [alerts] names its own token_env or token_file")
    os.environ[secrets.BOT_TOKEN_ENV] = value  # this process only, as at start: never written out in clear
    section.token_env = secrets.BOT_TOKEN_ENV
    return _("bot token stored encrypted; in use now")
