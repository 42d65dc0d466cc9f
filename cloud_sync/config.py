"""The cloud's configuration: one TOML file (config/cloud.toml) with working defaults, read once at load.

Owns `CloudConfig`, what the running service uses: the seller accounts (which marketplace, where,
credentials from the environment or a secrets file), the sites and their own warehouses, the mapping of
each account's marketplace warehouses to own warehouses, the allocation rules per account (share of
available, safety buffer, maximum listed), the unified order-status map (each marketplace's
defaults from its profile, overridable per marketplace), the zero guard, the site link, the job intervals, and the
sections other rooms own, typed (cloud_sync.config_sections): `pricing`, `alerts`, `auth`, `secrets`,
`onec`. The store: the SQLite file of [cloud] db_path, or PostgreSQL when [db] url is set (`db_path` is
then that URL, its password from `password_env`/`password_file` put in; it is never shown). Every table is checked when the file is read: an unknown key or a value of the wrong type stops
the start with one line naming the file and the key (`ConfigError`, never a secret's value).

Credentials are never read from the repo: `credentials_env = {Authorization = "WB_TOKEN"}` names an
environment variable per auth value, `credentials_file` a TOML/JSON file readable by the service alone;
inline `credentials` are accepted for local sandboxes only (the demo writes them to a temp file).
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from cloud_sync.config_sections import (
    AlertsConfig,
    AuthSettings,
    CloudSection,
    DbSection,
    JobSettings,
    LegalSettings,
    LinkSettings,
    OnecSettings,
    PriceFrom1CSection,
    PricingSettings,
    SecretsSettings,
    StockSection,
    UiSettings,
    read_tables,
)
from cloud_sync.pg import Url as PgUrl
from cloud_sync.pg import redact as pg_redact
from marketplaces import profiles
from marketplaces.base import UNIFIED_STATUSES, AccountConfig
from sitelink import keys
from sitelink.config_file import ConfigError, Place, shown

__all__ = ["UNIFIED_STATUSES", "AccountSettings", "Allocation", "CloudConfig", "ConfigError", "JobSettings",
           "LinkSettings", "SiteConfig", "load_config", "parse_config"]

def default_status_map() -> dict[str, dict[str, str]]:
    """Native status (or "STATUS/SUBSTATUS", which wins over the bare status) -> unified status, per
    marketplace: each marketplace profile's defaults (`marketplaces.profile(name).statuses`), to override."""
    return {name: dict(p.statuses) for name, p in profiles().items()}


@dataclass
class Allocation:
    """How much of an own warehouse's available stock an account publishes."""

    share: float = 1.0  # share of available (0..1)
    buffer: int = 0  # safety buffer subtracted after the share
    max_listed: int | None = None  # never publish more than this

    def publish(self, available: int, pack: int = 1) -> int:
        qty = int(max(0, available) * self.share) - self.buffer
        qty = max(0, qty) // max(1, pack)
        if self.max_listed is not None:
            qty = min(qty, self.max_listed)
        return qty


@dataclass
class AccountSettings:
    account: AccountConfig
    warehouses: dict[str, str] = field(default_factory=dict)  # marketplace warehouse id -> own warehouse
    default_warehouse: str = ""  # own warehouse for marketplace FBS warehouses not mapped explicitly
    allocation: Allocation = field(default_factory=Allocation)
    enabled: bool = True
    min_stock_interval_s: float = 0.0
    label_after: str = "confirm"
    label_format: str = ""  # "" = the adapter's default
    orders_poll_s: float = 0.0  # this account's own poll interval (wall seconds); 0 = the jobs' one
    credentials_secret: str = ""  # the stored secret (Settings) merged into the credentials; "" = none
    prices_from_1c: PriceFrom1CSection | None = None  # the account's prices come from a 1C price type

    def poll_interval(self, jobs_poll_s: float) -> float:
        """Seconds between two new-order polls of this account: the configured one, never shorter than the
        marketplace's budget allows (its profile's min_poll_s, at the account's time scale)."""
        known = profiles().get(self.marketplace)
        floor = (known.min_poll_s if known else 1.0) / max(self.account.time_scale, 1e-9)
        return max(self.orders_poll_s or jobs_poll_s, floor)

    @property
    def stock_follows_orders(self) -> bool:
        """The marketplace moves the stock its cards show by itself when an order is placed or cancelled
        (its profile's `stock_follows_orders`)."""
        known = profiles().get(self.marketplace)
        return bool(known and known.stock_follows_orders)

    @property
    def name(self) -> str:
        return self.account.name

    @property
    def marketplace(self) -> str:
        return self.account.marketplace


@dataclass
class SiteConfig:
    id: str
    name: str = ""
    warehouses: list[str] = field(default_factory=list)


@dataclass
class CloudConfig:
    db_path: str = CloudSection.db_path
    host: str = CloudSection.host
    port: int = CloudSection.port
    accounts: dict[str, AccountSettings] = field(default_factory=dict)
    sites: dict[str, SiteConfig] = field(default_factory=dict)
    default_warehouse: str = CloudSection.default_warehouse
    status_map: dict[str, dict[str, str]] = field(default_factory=default_status_map)
    zero_guard_share: float = StockSection.zero_guard_share
    stale_after_s: float = StockSection.stale_after_s
    cancel_when_short: bool = CloudSection.cancel_when_short
    link: LinkSettings = field(default_factory=LinkSettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    time_scale: float = CloudSection.time_scale
    sync_on_start: bool = CloudSection.sync_on_start
    sync_wait_s: float = CloudSection.sync_wait_s
    public_url: str = CloudSection.public_url  # checked at load, without a trailing "/"; "": not set
    # the sections other rooms own, as written (None: the file has no such section)
    pricing: PricingSettings = field(default_factory=PricingSettings)
    alerts: AlertsConfig | None = None
    auth: AuthSettings = field(default_factory=AuthSettings)
    secrets: SecretsSettings = field(default_factory=SecretsSettings)
    onec: OnecSettings | None = None
    ui: UiSettings = field(default_factory=UiSettings)
    legal: LegalSettings = field(default_factory=LegalSettings)
    # several sellers on one installation (cloud_sync.tenants): the folder of [tenants] dir ("": no
    # [tenants], one seller), and which seller this config is ("": the installation's main one)
    tenants_dir: str = ""
    tenant: str = ""
    config_file: str = ""  # the file this config was read from ("": the defaults)

    def site_of_warehouse(self, warehouse: str) -> str | None:
        for site in self.sites.values():
            if warehouse in site.warehouses:
                return site.id
        return None

    def own_warehouses(self) -> list[str]:
        seen = [w for s in self.sites.values() for w in s.warehouses]
        if self.default_warehouse not in seen:
            seen.append(self.default_warehouse)
        return list(dict.fromkeys(seen))

    def unified_status(self, marketplace: str, native_status: str, native_substatus: str = "") -> str | None:
        """"STATUS/SUBSTATUS" wins; else, where the substatus is a status of its own in the map (WB's wbStatus
        beside the supplierStatus), the more telling of the two (cancelled/returned, else the later one)."""
        table = self.status_map.get(marketplace, {})
        if native_substatus and f"{native_status}/{native_substatus}" in table:
            return table[f"{native_status}/{native_substatus}"]
        main, sub = table.get(native_status), table.get(native_substatus) if native_substatus else None
        if main is None or sub is None:
            return main or sub
        for terminal in ("returned", "cancelled"):
            if terminal in (main, sub):
                return terminal
        order = UNIFIED_STATUSES
        return max(main, sub, key=order.index)


def _secret_file(path: str, where: Place) -> dict[str, str]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise where.error(f"{path!r} cannot be read: {exc.strerror}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError):
        raise where.error(f"{path!r} is neither valid TOML nor JSON") from None
    return {str(k): str(v) for k, v in data.items()}


def _credentials(section: dict[str, Any], env: dict[str, str], where: Place) -> dict[str, str]:
    creds: dict[str, str] = {str(k): str(v) for k, v in section.get("credentials", {}).items()}
    if "credentials_file" in section:
        creds.update(_secret_file(section["credentials_file"], where.at("credentials_file")))
    for key, var in section.get("credentials_env", {}).items():
        if var not in env:
            raise where.at("credentials_env").at(key).error(f"environment variable {var!r} is not set")
        creds[str(key)] = env[var]
    return creds


def _float(section: dict[str, Any], key: str, default: float, where: str) -> float:
    """A number of a table already checked by config_sections (the type is right when it is there)."""
    return float(section.get(key, default))


def _link_password(link: LinkSettings, env: dict[str, str], where: Place) -> str:
    password = link.password
    if link.password_env is not None:
        password = env.get(link.password_env, "")
    if link.password_file is not None:
        try:
            password = Path(link.password_file).read_text().strip()
        except OSError as exc:
            raise where.at("password_file").error(f"cannot be read: {exc.strerror}") from None
    return password


def _link_keys(link: LinkSettings, base_dir: Path, where: Place) -> str | None:
    """The envelope key file, relative to the config's folder, checked now (never showing a key)."""
    if not link.keys_file:
        return None
    path = Path(link.keys_file)
    path = path if path.is_absolute() else base_dir / path
    try:
        keys.read_keys(path)
    except keys.KeyFileError as exc:
        raise where.at("keys_file").error(str(exc)) from None
    return str(path)


def cfg_data_dir(db_path: str, base_dir: Path) -> str:
    """The folder of [cloud] db_path: where the cloud keeps its files (the key, uploads) on either engine."""
    path = Path(db_path)
    return str((path if path.is_absolute() else base_dir / path).parent)


def _db_url(db: DbSection, env: dict[str, str], where: Place) -> str:
    """[db] url with the password `password_env` / `password_file` names put in; checked now, and never shown
    (an error line shows the URL without its password)."""
    url = db.url
    password = None
    if db.password_env:
        password = env.get(db.password_env)
        if password is None:
            raise where.at("password_env").error(f"names {db.password_env}, which is not set")
    elif db.password_file:
        try:
            password = Path(db.password_file).read_text().strip()
        except OSError as exc:
            raise where.at("password_file").error(f"cannot be read: {exc.strerror}") from None
    parts = urlsplit(url)
    if not parts.path.strip("/") and "dbname=" not in parts.query:
        raise where.at("url").error(f"names no database: {pg_redact(url)}")
    if password is not None:
        user = unquote(parts.username or "")
        host = parts.netloc.rsplit("@", 1)[-1]
        url = urlunsplit(parts._replace(netloc=f"{quote(user, safe='')}:{quote(password, safe='')}@{host}"))
    return PgUrl(url)


def parse_config(data: dict[str, Any], *, base_dir: Path | None = None,
                 env: dict[str, str] | None = None, source: str = "cloud.toml") -> CloudConfig:
    """Build a CloudConfig from parsed TOML; every key optional, none unknown. `source` names the file in
    an error line."""
    env = dict(os.environ) if env is None else env
    base_dir = base_dir or Path.cwd()
    tables = read_tables(data, source)
    top = Place(source)
    cloud = tables.cloud
    cfg = CloudConfig(host=cloud.host, port=cloud.port, default_warehouse=cloud.default_warehouse,
                      time_scale=cloud.time_scale, cancel_when_short=cloud.cancel_when_short,
                      sync_on_start=cloud.sync_on_start, sync_wait_s=cloud.sync_wait_s,
                      public_url=cloud.public_url.rstrip("/"),
                      zero_guard_share=tables.stock.zero_guard_share, stale_after_s=tables.stock.stale_after_s,
                      jobs=tables.jobs, pricing=tables.pricing, alerts=tables.alerts, auth=tables.auth,
                      secrets=tables.secrets, onec=tables.onec, ui=tables.ui,
                      legal=tables.legal)
    db_path = Path(cloud.db_path)
    cfg.db_path = str(db_path if db_path.is_absolute() else (base_dir / db_path))
    if tables.db.url:  # PostgreSQL: db_path is the URL every connection opens (cloud_sync.db)
        cfg.db_path = _db_url(tables.db, env, top.at("db"))
        data_dir = Path(cfg_data_dir(cloud.db_path, base_dir))
        if not cfg.secrets.key_file:  # "beside the database" is the data folder [cloud] db_path names
            cfg.secrets.key_file = str(data_dir / "secret.key")
        if cfg.onec is not None and not cfg.onec.work_dir:
            cfg.onec.work_dir = str(data_dir / "onec-exchange")

    for site_id, s in tables.sites.items():
        cfg.sites[site_id] = SiteConfig(id=site_id, name=site_id if s.name is None else s.name,
                                        warehouses=[site_id] if s.warehouses is None else list(s.warehouses))

    cfg.link = tables.link
    cfg.link.password = _link_password(tables.link, env, top.at("link"))
    cfg.link.keys_file = _link_keys(tables.link, base_dir, top.at("link"))

    for mp, table in tables.status_map.items():
        cfg.status_map.setdefault(mp, {}).update(table)

    # `a`: the account's table as written, already checked (keys, types, ranges) as AccountSection above
    for name, a in data.get("accounts", {}).items():
        where = f"accounts.{name}"
        mp, known = a["marketplace"], profiles()
        if mp not in known:
            raise top.at("accounts").at(name).at("marketplace").error(
                f"must be one of {', '.join(known)}, got {shown(mp)}")
        alloc = tables.accounts[name].allocation
        allocation = Allocation(share=alloc.share, buffer=alloc.buffer, max_listed=alloc.max_listed)
        account = AccountConfig(
            name=name, marketplace=mp, base_url=a["base_url"],
            credentials=_credentials(a, env, top.at("accounts").at(name)), endpoints=dict(a.get("endpoints", {})),
            time_scale=_float(a, "time_scale", cfg.time_scale, where), options=dict(a.get("options", {})),
        )
        cfg.accounts[name] = AccountSettings(
            account=account,
            warehouses={str(k): str(v) for k, v in a.get("warehouses", {}).items()},
            default_warehouse=a.get("default_warehouse", cfg.default_warehouse),
            allocation=allocation, enabled=bool(a.get("enabled", True)),
            min_stock_interval_s=_float(a, "min_stock_interval_s", known[mp].min_stock_interval_s, where),
            label_after=a.get("label_after", known[mp].label_after),
            label_format=a.get("label_format", ""),
            orders_poll_s=_float(a, "orders_poll_s", 0.0, where),
            credentials_secret=a.get("credentials_secret", ""),
            prices_from_1c=tables.accounts[name].prices_from_1c,
        )
    if not cfg.sites:
        cfg.sites["site-1"] = SiteConfig(id="site-1", name="site-1", warehouses=[cfg.default_warehouse])
    if tables.tenants is not None:
        folder = Path(tables.tenants.dir)
        cfg.tenants_dir = str(folder if folder.is_absolute() else base_dir / folder)
    return cfg


CONFIG_ENV = "MARKETSYNC_CONFIG"
CONFIG_PLACES = ("config/cloud.toml", "/etc/marketsync/cloud.toml")  # relative: from the current folder


def find_config(given: str | Path | None, *, env: dict[str, str] | None = None,
                cwd: Path | None = None) -> Path | None:
    """The cloud.toml the service and every command read: the one given (--config), else the file
    $MARKETSYNC_CONFIG names, else ./config/cloud.toml, else /etc/marketsync/cloud.toml; None when there is
    none of them (the defaults apply). A file named but missing is returned as it is, so that reading it
    says so."""
    if given:
        return Path(given)
    env = dict(os.environ) if env is None else env
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    for place in CONFIG_PLACES:
        p = Path(place) if Path(place).is_absolute() else (cwd or Path.cwd()) / place
        if p.is_file():
            return p
    return None


def load_config(path: str | Path | None, *, env: dict[str, str] | None = None) -> CloudConfig:
    """Read a cloud.toml; None gives the defaults (no accounts, one site 'site-1' with warehouse 'main').
    A file that cannot be read, is not TOML or has an unknown key or a wrong value raises ConfigError
    with one line naming the file."""
    if path is None:
        return parse_config({}, env=env)
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except OSError as exc:
        raise ConfigError(f"config {str(p)!r} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {str(p)!r} is not valid TOML: {exc}") from None
    cfg = parse_config(data, base_dir=p.resolve().parent, env=env, source=str(p))
    cfg.config_file = str(p.resolve())
    return cfg
