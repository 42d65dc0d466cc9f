"""The cloud's command lines (top floor): `cloud serve` and the one-shot `sync`/`stock` commands
(`cloud`), prices and reports (`money`), users (`users`) and the 1C import (`onec`).

What they share lives here: finding and reading cloud.toml the way the service does (`load`: --config,
else $MARKETSYNC_CONFIG, else ./config/cloud.toml, else /etc/marketsync/cloud.toml; with $MARKETSYNC_TENANT=<id>
the seller's of that installation), saying which file
was read in every error (`fail`), and their texts in the `[ui] language` of that file (`t`, counted: `tn`)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from babel.numbers import format_decimal

from cloud_sync import tenants
from cloud_sync.config import CONFIG_ENV, CONFIG_PLACES, CloudConfig, ConfigError, find_config, load_config
from cloud_sync.i18n import DEFAULT_LANGUAGE, domain_text, set_service_language, translations

_read: dict[str, Any] = {"file": None, "lang": DEFAULT_LANGUAGE}
TENANT_ENV = "MARKETSYNC_TENANT"  # a command about one seller of an installation of several


def load(args: argparse.Namespace, env: dict[str, str] | None = None, *, installation: bool = False) -> CloudConfig:
    """The config of this command, found as the service finds it (a ConfigError names the file). With
    `$MARKETSYNC_TENANT` set, the config of that seller of the installation (cloud_sync.tenants: its own
    cloud.toml, its store), unless `installation` (the `tenant` commands themselves)."""
    path = find_config(getattr(args, "config", None), env=env)
    _read["file"] = str(path) if path is not None else None
    cfg = load_config(path, env=env)
    seller = (os.environ if env is None else env).get(TENANT_ENV, "")
    if seller and not installation:
        try:
            cfg = tenants.load(cfg, seller, env=env)
        except tenants.TenantError as exc:
            raise ConfigError(f"${TENANT_ENV}: {exc}") from None
        _read["file"] = cfg.config_file
    if getattr(args, "db", None):
        cfg.db_path = args.db
    _read["lang"] = cfg.ui.language
    set_service_language(cfg.ui.language, cfg.ui.timezone)  # the texts the domain writes for this command (alerts, why)
    return cfg


def t(text: str, **values: Any) -> str:
    """A text of the command line in the config's language."""
    out = translations(_read["lang"]).gettext(text)
    return out % values if values else out


def tn(singular: str, plural: str, count: int, **values: Any) -> str:
    """A counted text of the command line in the config's language (its plural forms), `%(n)s` the count."""
    n = format_decimal(count, locale=_read["lang"])
    return translations(_read["lang"]).ngettext(singular, plural, count) % {"n": n, **values}


def read_from() -> str:
    """Which cloud.toml this command read, in words."""
    if _read["file"] is not None:
        return t("config: %(file)s", file=_read["file"])
    return t("no config file found (--config, $%(env)s, %(places)s): the defaults apply", env=CONFIG_ENV,
             places=", ".join(CONFIG_PLACES))


def fail(prog: str, message: object, code: int = 2) -> int:
    """Say what went wrong (in the config's language where the text is known) and which config was read."""
    text = domain_text(message, translations(_read["lang"]).gettext)
    named = _read["file"] is not None and _read["file"] in text  # a config error names its file itself
    print(f"{prog}: {text}" + ("" if named else f" ({read_from()})"), file=sys.stderr)
    return code
