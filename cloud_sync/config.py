"""The cloud's configuration: one TOML file (config/cloud.toml) with working defaults.

Owns: the seller accounts (which marketplace, where, credentials from the environment or a secrets
file), the sites and their own warehouses, the mapping of each account's marketplace warehouses to own
warehouses, the allocation rules per account (share of available, safety buffer, maximum listed), the
unified order-status map (each marketplace's defaults from its profile, overridable per marketplace), the zero
guard, the site link and the job intervals. Sections other parts own ([pricing], [alerts], [onec]...)
are kept whole in `CloudConfig.raw` for them to read.

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

from marketplaces import profiles
from marketplaces.base import UNIFIED_STATUSES, AccountConfig


def default_status_map() -> dict[str, dict[str, str]]:
    """Native status (or "STATUS/SUBSTATUS", which wins over the bare status) -> unified status, per
    marketplace: each marketplace profile's defaults (`marketplaces.profile(name).statuses`), to override."""
    return {name: dict(p.statuses) for name, p in profiles().items()}


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key (never a secret's value)."""


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

    def poll_interval(self, jobs_poll_s: float) -> float:
        """Seconds between two new-order polls of this account: the configured one, never shorter than the
        marketplace's budget allows (its profile's min_poll_s, at the account's time scale)."""
        known = profiles().get(self.marketplace)
        floor = (known.min_poll_s if known else 1.0) / max(self.account.time_scale, 1e-9)
        return max(self.orders_poll_s or jobs_poll_s, floor)

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
class LinkSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = field(default="", repr=False)
    tls_ca: str = ""
    enabled: bool = True


@dataclass
class JobSettings:
    orders_poll_s: float = 5.0
    status_refresh_s: float = 60.0
    actions_s: float = 0.5
    push_idle_s: float = 1.0  # the stock pusher wakes on every change; this is its idle tick
    fbo_read_s: float = 3600.0  # FBO stock read back from the marketplaces (kept apart from FBS)
    push_batch: int = 1000
    retry_base_s: float = 2.0
    retry_max_s: float = 300.0


@dataclass
class CloudConfig:
    db_path: str = "var/cloud/cloud.sqlite"
    host: str = "127.0.0.1"
    port: int = 8080
    accounts: dict[str, AccountSettings] = field(default_factory=dict)
    sites: dict[str, SiteConfig] = field(default_factory=dict)
    default_warehouse: str = "main"
    status_map: dict[str, dict[str, str]] = field(default_factory=default_status_map)
    zero_guard_share: float = 0.2
    stale_after_s: float = 2 * 86400.0
    cancel_when_short: bool = False
    link: LinkSettings = field(default_factory=LinkSettings)
    jobs: JobSettings = field(default_factory=JobSettings)
    time_scale: float = 1.0
    raw: dict[str, Any] = field(default_factory=dict)

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


def _secret_file(path: str) -> dict[str, str]:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"credentials_file {path!r} cannot be read: {exc.strerror}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError):
        raise ConfigError(f"credentials_file {path!r} is neither valid TOML nor JSON") from None
    return {str(k): str(v) for k, v in data.items()}


def _credentials(name: str, section: dict[str, Any], env: dict[str, str]) -> dict[str, str]:
    creds: dict[str, str] = {str(k): str(v) for k, v in section.get("credentials", {}).items()}
    if "credentials_file" in section:
        creds.update(_secret_file(section["credentials_file"]))
    for key, var in section.get("credentials_env", {}).items():
        if var not in env:
            raise ConfigError(f"account {name!r}: environment variable {var!r} (for {key}) is not set")
        creds[str(key)] = env[var]
    return creds


def _float(section: dict[str, Any], key: str, default: float, where: str) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}.{key} must be a number, got {value!r}")
    return float(value)


def parse_config(data: dict[str, Any], *, base_dir: Path | None = None,
                 env: dict[str, str] | None = None) -> CloudConfig:
    """Build a CloudConfig from parsed TOML; every key optional."""
    env = dict(os.environ) if env is None else env
    base_dir = base_dir or Path.cwd()
    cloud = data.get("cloud", {})
    cfg = CloudConfig(raw=data)
    db_path = cloud.get("db_path", cfg.db_path)
    cfg.db_path = str(db_path if Path(db_path).is_absolute() else (base_dir / db_path))
    cfg.host = cloud.get("host", cfg.host)
    cfg.port = int(cloud.get("port", cfg.port))
    cfg.default_warehouse = cloud.get("default_warehouse", cfg.default_warehouse)
    cfg.time_scale = _float(cloud, "time_scale", 1.0, "cloud")
    cfg.cancel_when_short = bool(cloud.get("cancel_when_short", False))

    stock = data.get("stock", {})
    cfg.zero_guard_share = _float(stock, "zero_guard_share", cfg.zero_guard_share, "stock")
    if not 0 <= cfg.zero_guard_share <= 1:
        raise ConfigError("stock.zero_guard_share must be between 0 and 1")
    cfg.stale_after_s = _float(stock, "stale_after_s", cfg.stale_after_s, "stock")

    for site_id, s in data.get("sites", {}).items():
        cfg.sites[site_id] = SiteConfig(id=site_id, name=s.get("name", site_id),
                                        warehouses=list(s.get("warehouses", [site_id])))

    link = data.get("link", {})
    password = link.get("password", "")
    if "password_env" in link:
        password = env.get(link["password_env"], "")
    if "password_file" in link:
        try:
            password = Path(link["password_file"]).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"link.password_file cannot be read: {exc.strerror}") from None
    cfg.link = LinkSettings(host=link.get("host", "127.0.0.1"), port=int(link.get("port", 1883)),
                            username=link.get("username", ""), password=password,
                            tls_ca=link.get("tls_ca", ""), enabled=bool(link.get("enabled", True)))

    jobs = data.get("jobs", {})
    cfg.jobs = JobSettings(**{k: type(getattr(JobSettings(), k))(v) for k, v in jobs.items()
                              if hasattr(JobSettings(), k)})

    for mp, table in data.get("status_map", {}).items():
        for native, unified in table.items():
            if unified not in UNIFIED_STATUSES:
                raise ConfigError(f"status_map.{mp}.{native}: {unified!r} is not one of {UNIFIED_STATUSES}")
        cfg.status_map.setdefault(mp, {}).update(table)

    for name, a in data.get("accounts", {}).items():
        where = f"accounts.{name}"
        for required in ("marketplace", "base_url"):
            if required not in a:
                raise ConfigError(f"{where}.{required} is required")
        mp, known = a["marketplace"], profiles()
        if mp not in known:
            raise ConfigError(f"{where}.marketplace {mp!r} is not one of {', '.join(known)}")
        alloc = a.get("allocation", {})
        max_listed = alloc.get("max_listed")
        allocation = Allocation(share=_float(alloc, "share", 1.0, f"{where}.allocation"),
                                buffer=int(alloc.get("buffer", 0)),
                                max_listed=int(max_listed) if max_listed is not None else None)
        if not 0 <= allocation.share <= 1 or allocation.buffer < 0:
            raise ConfigError(f"{where}.allocation: share must be 0..1 and buffer >= 0")
        account = AccountConfig(
            name=name, marketplace=mp, base_url=a["base_url"],
            credentials=_credentials(name, a, env), endpoints=dict(a.get("endpoints", {})),
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
        )
    if not cfg.sites:
        cfg.sites["site-1"] = SiteConfig(id="site-1", name="site-1", warehouses=[cfg.default_warehouse])
    return cfg


def load_config(path: str | Path | None, *, env: dict[str, str] | None = None) -> CloudConfig:
    """Read a cloud.toml; None gives the defaults (no accounts, one site 'site-1' with warehouse 'main')."""
    if path is None:
        return parse_config({}, env=env)
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except OSError as exc:
        raise ConfigError(f"config {str(p)!r} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {str(p)!r} is not valid TOML: {exc}") from None
    return parse_config(data, base_dir=p.resolve().parent, env=env)
