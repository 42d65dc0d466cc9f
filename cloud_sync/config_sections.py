"""cloud.toml as written: one dataclass per table, read strictly and once, at load (`read_tables`).

Owns the shape of every section, the ones the cloud's own wiring reads ([cloud], [stock], [jobs],
[link], [sites.*], [accounts.*], [status_map.*]) and the ones the rooms own ([pricing] for money,
[alerts] for alerts, [auth] and [ui] for web, [secrets] for access, [onec] and [onec.odata] for onec, [legal] for
the commission report's parties): their keys,
types and defaults. Nothing here reads the environment or a file: `cloud_sync.config` builds the running
`CloudConfig` from these (credentials, passwords, paths). An unknown key, a value of the wrong type or
out of range stops the load with one line (sitelink.config_file); config/cloud.toml documents every key.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, fields
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar, get_args, get_type_hints
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from marketplaces.base import UNIFIED_STATUSES, MarketplaceName, PriceTerms
from sitelink.config_file import Place, read, read_value, secret, shown

MARKETPLACES: tuple[str, ...] = get_args(MarketplaceName)


# The columns of 1C's commission report document a `[onec.odata] fields` table may rename.
ODATA_FIELDS = {"item": "Номенклатура_Key", "characteristic": "Характеристика_Key", "quantity": "Количество",
                "price": "Цена", "amount": "Сумма", "fee": "СуммаВознаграждения"}


def _one_of(place: Place, value: str, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise place.error(f"must be one of {', '.join(allowed)}, got {shown(value)}")


@dataclass
class CloudSection:
    """[cloud]: where the service keeps its data and answers."""

    db_path: str = "var/cloud/cloud.sqlite"  # relative: from the file's folder
    host: str = "127.0.0.1"
    port: int = 8080
    default_warehouse: str = "main"
    time_scale: float = 1.0
    cancel_when_short: bool = False
    sync_on_start: bool = True  # import warehouses and cards and plan every stock number at start
    sync_wait_s: float = 30.0  # how long the start waits for that sync before the jobs begin
    # the cloud's address as the marketplaces reach it ("https://seller.example.ru"): the push URLs the
    # seller enters in their cabinets start with it; "": none yet (host:port stands in, unreachable from outside)
    public_url: str = ""

    def check(self, place: Place) -> None:
        if self.public_url:
            problem = public_url_problem(self.public_url)
            if problem:
                raise place.at("public_url").error(f"{problem}, got {shown(self.public_url)}")


def public_url_problem(url: str) -> str:
    """What is wrong with a public address ("" when nothing): http(s), a host, no query or fragment."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - a port that is no number raises here
    except ValueError:
        return "must be an http:// or https:// address such as \"https://seller.example.ru\""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// address with a host, such as \"https://seller.example.ru\""
    if parts.query or parts.fragment or url.endswith(("?", "#")) or parts.username or parts.password:
        return "must be the address alone (no login, ?query or #fragment), such as \"https://seller.example.ru\""
    if any(c.isspace() for c in url):
        return "must not contain spaces"
    return ""


@dataclass
class StockSection:
    """[stock]: the zero guard and when a warehouse's numbers count as stale."""

    zero_guard_share: float = 0.2
    stale_after_s: float = 2 * 86400.0

    def check(self, place: Place) -> None:
        if not 0 <= self.zero_guard_share <= 1:
            raise place.at("zero_guard_share").error(f"must be between 0 and 1, got {shown(self.zero_guard_share)}")


@dataclass
class JobSettings:
    """[jobs]: the intervals of the cloud's jobs (seconds) and the stock push batch."""

    orders_poll_s: float = 5.0
    status_refresh_s: float = 60.0
    actions_s: float = 0.5
    push_idle_s: float = 1.0  # the stock pusher wakes on every change; this is its idle tick
    fbo_read_s: float = 3600.0  # FBO stock read back from the marketplaces (kept apart from FBS)
    reconcile_s: float = 3600.0  # the three-way stock reconciliation (1C, ledger, marketplaces); 0: never
    prices_read_s: float = 3600.0  # every account's prices read back (besides after each push and on request)
    follow_first_s: float = 3600.0  # a parcel handed over is first looked up this long after (marketplace seconds)
    follow_max_s: float = 43200.0  # then ever less often, at most this far apart, until delivered or back
    push_batch: int = 1000
    retry_base_s: float = 2.0
    retry_max_s: float = 300.0


@dataclass
class LinkSettings:
    """[link]: the MQTT broker the sites talk through. `password` is the one in use: cloud_sync.config
    puts there what `password_env` or `password_file` name (read at load)."""

    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: str = secret("")  # local use only; else password_env or password_file
    tls_ca: str = ""
    enabled: bool = True
    password_env: str | None = None
    password_file: str | None = None
    # the envelope keys of every site (sitelink.keys; `marketsync link broker-config` writes
    # credentials/cloud.keys): what the cloud sends is signed, what a site sends is checked. None: unsigned
    keys_file: str | None = None
    # several cloud processes on one store: each receives the sites' messages as a member of this MQTT v5
    # shared subscription group ($share/<group>/ms/v1/+/up); "": one process (the `site-link` lease) does
    share_group: str = ""
    # the broker user of a member ("{instance}": `cloud serve --instance`); "": `username`. A broker that
    # binds client ids to users (use_username_as_clientid) needs one user per process: broker-config
    # --cloud-processes N makes cloud-1..cloud-N
    member_username: str = ""


@dataclass
class SiteSection:
    """[sites.<id>]: a warehouse site and the own warehouses it serves (default: one named like the site)."""

    name: str | None = None
    warehouses: list[str] | None = None


@dataclass
class AllocationSection:
    """[accounts.<name>] allocation: how much of the available stock the account publishes."""

    share: float = 1.0
    buffer: int = 0
    max_listed: int | None = None

    def check(self, place: Place) -> None:
        if not 0 <= self.share <= 1 or self.buffer < 0:
            raise place.error("share must be 0..1 and buffer >= 0")


PRICE_ROUNDINGS = ("0.01", "1", "10", "100", "9", "99")


@dataclass
class PriceFrom1CSection:
    """[accounts.<name>.prices_from_1c]: the account's prices come from a 1C price type («Установка цен
    номенклатуры»). price = 1C price (× `currency_rate` when the type is not in roubles) × (1 +
    markup_percent/100) + markup_amount, rounded (`rounding`: "0.01", "1", "10", "100" to that step; "9"
    and "99" up to the next price ending in 9 / 99), never below cost × (1 + min_margin_percent/100);
    crossed-out price: another price type (`crossed_out_price_type`) or price × (1 + crossed_out_percent/100).
    Every 1C price exchange recomputes the changed items through the price documents' guards: applied at
    once when none trips (`auto_apply`), held for a person's confirmation when one does."""

    price_type: str  # the 1C price type's id or name, e.g. "Розничная"
    markup_percent: Decimal = Decimal(0)
    markup_amount: Decimal = Decimal(0)
    rounding: str = "1"
    crossed_out_percent: Decimal | None = None
    crossed_out_price_type: str = ""
    min_margin_percent: Decimal | None = None
    currency_rate: Decimal | None = None  # roubles per unit of the price type's currency
    auto_apply: bool = True

    def check(self, place: Place) -> None:
        _one_of(place.at("rounding"), self.rounding, PRICE_ROUNDINGS)
        if self.markup_percent <= -100:
            raise place.at("markup_percent").error(f"must be more than -100, got {shown(self.markup_percent)}")
        if self.currency_rate is not None and self.currency_rate <= 0:
            raise place.at("currency_rate").error(f"must be more than 0, got {shown(self.currency_rate)}")
        if self.crossed_out_percent is not None and self.crossed_out_price_type:
            raise place.error("give crossed_out_percent or crossed_out_price_type, not both")


@dataclass
class AccountSection:
    """[accounts.<name>]: one seller account. A key left out takes the marketplace's or [cloud]'s value."""

    marketplace: str
    base_url: str
    credentials: dict[str, str] = field(default_factory=dict, repr=False,
                                        metadata={"secret": True, "also": (int,)})  # local sandboxes only
    credentials_file: str | None = None
    credentials_env: dict[str, str] = field(default_factory=dict)
    credentials_secret: str = ""  # the secret entered in Settings, e.g. "account/wb-main"
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    time_scale: float | None = None
    warehouses: dict[str, str] = field(default_factory=dict, metadata={"also": (int,)})
    default_warehouse: str | None = None
    allocation: AllocationSection = field(default_factory=AllocationSection)
    enabled: bool = True
    min_stock_interval_s: float | None = None
    label_after: str | None = None
    label_format: str = ""
    orders_poll_s: float = 0.0
    prices_from_1c: PriceFrom1CSection | None = None

    def check(self, place: Place) -> None:
        if self.label_after is not None:
            _one_of(place.at("label_after"), self.label_after, ("confirm", "assemble"))


@dataclass(frozen=True)
class PricingSettings:
    """[pricing]: `large_drop_percent` asks for confirmation of any drop at least this large;
    `large_rise_percent` of any rise at least this large (an extra zero typed: +900%; 0 switches it off);
    `warn_below_cost` asks for confirmation of a price under cost; `rules` overrides the marketplace's
    price terms (marketplaces.base.PriceTerms) per marketplace; `rules_tick_s` is how often the
    scheduled price rules are looked at; `draft_ttl_days`: a price document held for a confirmation
    expires (is never sent) after this many days."""

    large_drop_percent: Decimal = Decimal(30)
    warn_below_cost: bool = True
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    large_rise_percent: Decimal = Decimal(100)
    rules_tick_s: float = 30.0
    draft_ttl_days: float = 7.0
    # unit economics (cloud_sync/money/economics.py): what is assumed where a marketplace's API states no
    # figure of its own — shown as an estimate on the prices page and the preview
    estimate_commission_percent: Decimal = Decimal(20)
    estimate_logistics: Decimal = Decimal(100)
    estimate_acquiring_percent: Decimal = Decimal("1.5")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, place: Place | None = None) -> PricingSettings:
        """A [pricing] table read strictly (a bad one raises sitelink.config_file.ConfigError)."""
        return read(cls, d or {}, place or Place("cloud.toml", "pricing"))

    def check(self, place: Place) -> None:
        terms = {f.name: f for f in fields(PriceTerms) if f.name != "marketplace"}
        hints = get_type_hints(PriceTerms)
        for mp, table in self.rules.items():
            where = place.at("rules").at(mp)
            _one_of(where, mp, MARKETPLACES)
            for key, value in table.items():
                if key not in terms:
                    raise where.at(key).error(f"unknown key (allowed: {', '.join(sorted(terms))})")
                read_value(hints[key], value, where.at(key))


@dataclass
class AlertsConfig:
    """[alerts]: Telegram alerts, off until both a chat and a token are set. The token is read when used
    (cloud_sync.alerts.outbox.AlertSettings): from the environment variable `token_env` names, or from
    `token_file`; never from this file."""

    refused: ClassVar[dict[str, str]] = {
        "token": "put the bot token in token_env or token_file, not in the config"}

    base_url: str = "https://api.telegram.org"
    chat_id: str = field(default="", metadata={"also": (int,)})
    token_env: str | None = None
    token_file: str | None = None
    min_interval_s: float = 1.0  # Telegram: about one message a second per chat (a group: 20/min, use 3)
    dedup_window_s: float = 6 * 3600.0
    deadline_warning_s: float = 2 * 3600.0
    max_attempts: int = 20
    timeout_s: float = 10.0
    tick_s: float = 5.0
    fbo_min_quantity: int = 3  # stock in a marketplace's warehouse (FBO) at or below this alerts
    fbo_cover_days: float = 7.0  # ... or lasting fewer days than this at the card's recent sales


@dataclass
class AuthSettings:
    """[auth]: the manager's web UI behind a TLS proxy (`secure_cookies`) and our own reverse proxies
    whose X-Forwarded-For names the client (`trusted_proxies`, networks)."""

    secure_cookies: bool = False
    trusted_proxies: list[str] = field(default_factory=list)

    def check(self, place: Place) -> None:
        for n, network in enumerate(self.trusted_proxies, 1):
            try:
                ipaddress.ip_network(network, strict=False)
            except ValueError:
                raise place.at("trusted_proxies").item(n).error(
                    f"must be a network such as \"127.0.0.1/32\", got {shown(network)}") from None


@dataclass
class UiSettings:
    """[ui]: the language of the pages, messages, CLI and alerts for anyone who has not chosen one
    (each user may choose their own on the page), and the time zone dates and times are shown in."""

    LANGUAGES: ClassVar[tuple[str, ...]] = ("ru", "en")
    language: str = "ru"
    timezone: str = "Europe/Moscow"

    def check(self, place: Place) -> None:
        _one_of(place.at("language"), self.language, self.LANGUAGES)
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise place.at("timezone").error(f"must be a time zone such as \"Europe/Moscow\", got {shown(self.timezone)}") from None


@dataclass
class DbSection:
    """[db]: the cloud's store. No `url`: the SQLite file of [cloud] db_path (the default, one box). A
    `postgresql://user@host:port/dbname` URL: PostgreSQL (several cloud processes on one store). Its password
    comes from `password_env` or `password_file` (a password written into the URL works but is never shown
    either); cloud_sync.config builds the URL in use at load."""

    url: str = secret("")
    password_env: str = ""
    password_file: str = ""

    def check(self, place: Place) -> None:
        if self.url and not self.url.startswith(("postgresql://", "postgres://")):
            raise place.at("url").error("must be a postgresql:// URL (or absent for the SQLite file)")


@dataclass
class SecretsSettings:
    """[secrets]: the key file that encrypts what is entered in Settings ("": secret.key beside the database)."""

    key_file: str = ""


@dataclass
class ODataAccount:
    """[onec.odata.accounts.<account>]: that account's counterparty and contract in 1C (None: the section's)."""

    counterparty_key: str | None = None
    contract_key: str | None = None


@dataclass
class ODataSection:
    """[onec.odata]: the commission report created in 1C through its standard OData interface."""

    base_url: str  # the published infobase, e.g. http://1c.local/trade
    login: str = ""
    password: str = secret("")  # local use only; else password_env or password_file
    password_env: str = ""
    password_file: str = ""
    document: str = "Document_ОтчетКомиссионера"
    table: str = "Товары"
    organization_key: str = ""
    counterparty_key: str = ""  # the marketplace as a counterparty in 1C
    contract_key: str = ""
    post: bool = False  # проводить документ after creating it
    timeout_s: float = 30.0
    fields: dict[str, str] = field(default_factory=dict)  # renames of ODATA_FIELDS' columns
    accounts: dict[str, ODataAccount] = field(default_factory=dict)
    # cards into 1C: items created in 1C's catalog from marketplace cards that match no 1C item
    items_catalog: str = "Catalog_Номенклатура"
    barcodes_register: str = "InformationRegister_ШтрихкодыНоменклатуры"  # "": barcodes are not written
    items_parent_key: str = ""  # the folder (Parent_Key) new items go into; "": the catalog's root
    item_kind_key: str = ""  # ВидНоменклатуры_Key of new items
    unit_key: str = ""  # ЕдиницаИзмерения_Key of new items (шт)
    kg_key: str = ""  # the unit «кг» in 1C: weights are written with it ("": not written)
    cm_key: str = ""  # the unit «см» in 1C: length, width, height are written with it ("": not written)
    photos_field: str = "Описание"  # the text attribute the photo URLs go into ("": not written)

    def check(self, place: Place) -> None:
        for key in self.fields:
            if key not in ODATA_FIELDS:
                raise place.at("fields").at(key).error(f"unknown key (allowed: {', '.join(sorted(ODATA_FIELDS))})")


@dataclass
class OnecSettings:
    """[onec]: 1C's exchange with the cloud (CommerceML), served once a password is set."""

    login: str = "1c"
    password: str = secret("")  # local sandboxes and the demo only; else password_env or password_file
    password_env: str = ""
    password_file: str = ""
    work_dir: str = ""  # "": onec-exchange beside the database
    file_limit: int = 50 * 1024 * 1024  # bytes per request, told to 1C at init
    zip: bool = True
    max_file_bytes: int = 1024 * 1024 * 1024  # one uploaded or unpacked file, all chunks together
    max_unpacked_bytes: int = 2 * 1024 * 1024 * 1024  # one archive, all members together
    max_session_bytes: int = 2 * 1024 * 1024 * 1024  # everything one 1C session keeps on disk (uploaded + unpacked)
    max_total_bytes: int = 4 * 1024 * 1024 * 1024  # the whole exchange folder, every session together
    abandoned_upload_s: int = 3600  # uploads of a session untouched this long (no import running) are removed
    max_zip_members: int = 20000
    max_zip_ratio: int = 200  # uncompressed / compressed, per member
    encoding: str = "windows-1251"  # of the orders XML answered to mode=query ("utf-8" too)
    cookie_name: str = "marketsync_1c"
    session_ttl_s: int = 6 * 3600
    cost_price_types: list[str] = field(default_factory=list)
    cancel_on_marketplace: bool = False  # an order cancelled in 1C is also cancelled on the marketplace
    timezone: str = "Europe/Moscow"  # 1C's local time: how its package dates (ДатаФормирования) are read
    # a stock move 1C never says it booked stops being kept on top of 1C's balances after this many hours
    in_flight_horizon_h: float = 24.0
    odata: ODataSection | None = None

    def check(self, place: Place) -> None:
        for key in ("file_limit", "max_file_bytes", "max_session_bytes", "max_total_bytes", "abandoned_upload_s"):
            if getattr(self, key) <= 0:
                raise place.at(key).error(f"must be a positive number, got {getattr(self, key)}")
        if self.max_session_bytes > self.max_total_bytes:
            raise place.at("max_session_bytes").error(
                f"must not exceed max_total_bytes ({self.max_total_bytes}), got {self.max_session_bytes}")
        if self.encoding.lower() not in ("windows-1251", "cp1251", "utf-8"):
            raise place.at("encoding").error(f"must be windows-1251 or utf-8, got {shown(self.encoding)}")
        if not self.in_flight_horizon_h > 0:
            raise place.at("in_flight_horizon_h").error(f"must be more than 0 hours, got {shown(self.in_flight_horizon_h)}")
        try:
            ZoneInfo(self.timezone)
        except (ValueError, ZoneInfoNotFoundError):
            raise place.at("timezone").error(f"must be a time zone such as Europe/Moscow, got {shown(self.timezone)}"
                                             ) from None


def legal_problems(values: dict[str, str]) -> dict[str, str]:
    """What is wrong with legal details (field -> what it must be, in English); {} when nothing. The one
    check of both homes of these details: [legal] in cloud.toml and the Settings page."""
    problems: dict[str, str] = {}
    inn, kpp = values.get("inn", ""), values.get("kpp", "")
    if inn and not (inn.isdigit() and len(inn) in (10, 12)):
        problems["inn"] = "10 digits for a company or 12 for a sole trader"
    if kpp and not (kpp.isdigit() and len(kpp) == 9):
        problems["kpp"] = "9 digits"
    if values.get("contract_date"):
        try:
            date.fromisoformat(values["contract_date"])
        except ValueError:
            problems["contract_date"] = "a date like 2026-01-31"
    return problems


@dataclass
class LegalSeller:
    """[legal.seller]: the seller (комитент) as 1C's commission report names it."""

    name: str = ""
    inn: str = ""
    kpp: str = ""

    def check(self, place: Place) -> None:
        for key, problem in legal_problems(self.values()).items():
            raise place.at(key).error(f"must be {problem}, got {shown(getattr(self, key))}")

    def values(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in ("name", "inn", "kpp", "contract_number", "contract_date")
                if hasattr(self, k)}


@dataclass
class LegalAgent(LegalSeller):
    """[legal.accounts.<account>]: that account's marketplace (комиссионер) and the contract with it."""

    contract_number: str = ""
    contract_date: str = ""  # 2026-01-31


@dataclass
class LegalSettings:
    """[legal]: the parties the commission agent report names (the seller; each account's marketplace and
    contract). What the owner enters in Settings overrides them field by field."""

    seller: LegalSeller = field(default_factory=LegalSeller)
    accounts: dict[str, LegalAgent] = field(default_factory=dict)


@dataclass
class TenantsSection:
    """[tenants]: several sellers on one installation. Each is a folder `<dir>/<id>/` (relative: from the
    file's folder) with its own cloud.toml holding the seller's sections only (cloud_sync.tenants);
    `marketsync tenant add ID` makes one, `cloud serve` serves it at /t/<id>/. Absent: one seller."""

    dir: str = "tenants"


@dataclass
class CloudFile:
    """Every table cloud.toml may have."""

    cloud: CloudSection = field(default_factory=CloudSection)
    stock: StockSection = field(default_factory=StockSection)
    jobs: JobSettings = field(default_factory=JobSettings)
    link: LinkSettings = field(default_factory=LinkSettings)
    sites: dict[str, SiteSection] = field(default_factory=dict)
    status_map: dict[str, dict[str, str]] = field(default_factory=dict)
    accounts: dict[str, AccountSection] = field(default_factory=dict)
    pricing: PricingSettings = field(default_factory=PricingSettings)
    alerts: AlertsConfig | None = None
    auth: AuthSettings = field(default_factory=AuthSettings)
    secrets: SecretsSettings = field(default_factory=SecretsSettings)
    onec: OnecSettings | None = None
    ui: UiSettings = field(default_factory=UiSettings)
    legal: LegalSettings = field(default_factory=LegalSettings)
    db: DbSection = field(default_factory=DbSection)
    tenants: TenantsSection | None = None

    def check(self, place: Place) -> None:
        for name in self.legal.accounts:
            if name not in self.accounts:
                raise place.at("legal").at("accounts").at(name).error(
                    f"names no account of [accounts] ({', '.join(sorted(self.accounts)) or 'none'})")
        for mp, table in self.status_map.items():
            where = place.at("status_map").at(mp)
            _one_of(where, mp, MARKETPLACES)
            for native, unified in table.items():
                _one_of(where.at(native), unified, UNIFIED_STATUSES)


def read_tables(data: dict[str, Any], source: str = "cloud.toml") -> CloudFile:
    """The parsed TOML of a cloud.toml checked and typed; `source` names the file in an error line."""
    return read(CloudFile, data, Place(source))


def section_password(section: OnecSettings | ODataSection) -> str:
    """A section's password: `password_env` (an environment variable), `password_file` (a file readable
    by the service alone), or an inline `password` (local sandboxes and the demo only)."""
    if section.password_env:
        return os.environ.get(section.password_env, "")
    if section.password_file:
        return Path(section.password_file).read_text("utf-8").strip()
    return section.password
