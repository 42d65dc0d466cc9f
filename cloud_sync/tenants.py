"""Several sellers (tenants) on one installation: the registry of sellers, each seller's config and store,
and adding one. Knows no domain module: what a seller's data is belongs to the rest of the cloud.

The installation's main cloud.toml names a folder (`[tenants] dir`); each seller is a sub-folder
`<dir>/<id>/` holding its own `cloud.toml` with the seller's sections only (accounts, sites, stock,
status_map, pricing, alerts, onec, legal, ui, secrets, jobs, link credentials...). The installation's
settings (`INSTALLATION`: where the web server listens, the store's engine, the broker's address, TLS and
share group, the web's [auth], the registry itself) come from the main file; a seller's file that sets one
is refused with one line naming the file and the key.

A seller's id is a lowercase slug (`ID`, never `cloud`: the link's own name). Its store: the SQLite file
`<dir>/<id>/cloud.sqlite` on the embedded default, or the schema `t_<id>` (`-` as `_`) of the main
`[db] url`'s database on PostgreSQL; its data folder `<dir>/<id>/` holds its secret key, its 1C uploads
and its broker credentials (`broker/`, sitelink.broker_config.write_tenant_broker). Its site link uses
the topic root `ms/t/<id>/v1` (sitelink.link.topic_root).

`add(main, id, ...)` makes a seller: the folder and a commented cloud.toml, the broker namespace (users
`<id>.cloud`, `<id>.<site>`, their ACL block and password lines), the store (migrated) and the first
owner with a generated password, returned once and written nowhere.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from cloud_sync import pg
from cloud_sync.access import users
from cloud_sync.config import CloudConfig, ConfigError, parse_config
from cloud_sync.db import is_postgres
from cloud_sync.schema import open_db
from sitelink.broker_config import CLOUD_USER, BrokerError, write_tenant_broker
from sitelink.link import CLOUD, TENANT_ID

ID = TENANT_ID  # [a-z0-9][a-z0-9-]{1,30}
CONFIG = "cloud.toml"
STORE = "cloud.sqlite"
BROKER = "broker"
# table -> the keys of it that are the installation's (None: the whole table)
INSTALLATION: dict[str, tuple[str, ...] | None] = {
    "cloud": ("host", "port", "db_path", "public_url"),
    "db": None,
    "link": ("host", "port", "tls_ca", "share_group"),
    "auth": None,
    "tenants": None,
}


class TenantError(ValueError):
    """A seller cannot be added or found: the message says why, in English; `msgid` and `values` let the
    CLI say it in the reader's language."""

    def __init__(self, msgid: str, **values: Any) -> None:
        super().__init__(msgid % values if values else msgid)
        self.msgid, self.values = msgid, values


@dataclass
class Tenant:
    """One seller of the registry."""

    id: str
    folder: Path
    name: str = ""
    sites: list[str] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)

    @property
    def config_file(self) -> Path:
        return self.folder / CONFIG


def check_id(tenant: str) -> None:
    """A seller's id: a lowercase slug of 2 to 31 characters (a-z, 0-9, -), never `cloud`."""
    if not ID.fullmatch(tenant or "") or tenant == CLOUD:
        raise TenantError("bad seller id %(id)s: 2 to 31 characters a-z, 0-9 and -, starting with a letter or"
                          " a digit, and not %(cloud)s", id=repr(tenant), cloud=repr(CLOUD))


def schema_of(tenant: str) -> str:
    """The PostgreSQL schema of a seller's store (ids have no `_`, so `-` as `_` is one-to-one)."""
    return "t_" + tenant.replace("-", "_")


def _folder(main: CloudConfig) -> Path:
    if not main.tenants_dir:
        raise TenantError("%(file)s has no [tenants] section: add one ([tenants] dir = \"tenants\") to host"
                          " several sellers", file=main.config_file or "cloud.toml")
    return Path(main.tenants_dir)


def ids(main: CloudConfig) -> list[str]:
    """The sellers of the registry: every sub-folder of [tenants] dir with a cloud.toml and a good id."""
    if not main.tenants_dir or not Path(main.tenants_dir).is_dir():
        return []
    return sorted(p.name for p in Path(main.tenants_dir).iterdir()
                  if ID.fullmatch(p.name) and p.name != CLOUD and (p / CONFIG).is_file())


def _toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"config {str(path)!r} cannot be read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config {str(path)!r} is not valid TOML: {exc}") from None


def _refuse_installation_keys(data: dict[str, Any], source: str, main_file: str) -> None:
    for table, keys in INSTALLATION.items():
        given = data.get(table)
        if given is None:
            continue
        named = [k for k in given if keys is None or k in keys] if isinstance(given, dict) else [table]
        if named:
            where = f"{table}.{named[0]}" if isinstance(given, dict) else table
            raise ConfigError(f"{source}: {where}: is the installation's setting, not a seller's: set it in "
                              f"{main_file or 'the main cloud.toml'}")


def schema_url(url: str, schema: str) -> pg.Url:
    """The PostgreSQL URL whose connections work in `schema` (libpq's `options=-csearch_path=...`)."""
    parts = urlsplit(pg.reveal(url))
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    kept = [o for o in query.get("options", "").split() if not o.startswith(("-csearch_path=", "search_path="))]
    query["options"] = " ".join([*kept, f"-csearch_path={schema}"])  # the installation's own search_path, replaced
    return pg.Url(urlunsplit(parts._replace(query=urlencode(query, quote_via=quote))))


def load(main: CloudConfig, tenant: str, *, env: dict[str, str] | None = None,
         path: Path | None = None) -> CloudConfig:
    """A seller's running config: its own cloud.toml (or the file `path` while it is being added), the
    installation's settings from the main one, its store in its folder (or its schema), `tenant` set (its
    link's topic root follows from it)."""
    check_id(tenant)
    folder = _folder(main) / tenant
    path = path or folder / CONFIG
    if not path.is_file():
        raise TenantError("no seller %(id)s (no %(path)s)", id=repr(tenant), path=str(path))
    data = _toml(path)
    _refuse_installation_keys(data, str(path), main.config_file)
    installation = _toml(Path(main.config_file)) if main.config_file else {}
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()}
    for table, keys in INSTALLATION.items():
        if table == "tenants" or table not in installation:
            continue
        if keys is None:
            merged[table] = installation[table]
        else:
            merged.setdefault(table, {}).update({k: v for k, v in installation[table].items() if k in keys})
    merged.setdefault("cloud", {})["db_path"] = STORE
    cfg = parse_config(merged, base_dir=folder, env=env, source=str(path))
    cfg.tenant, cfg.tenants_dir, cfg.config_file = tenant, "", str(path.resolve())
    for settings in cfg.accounts.values():
        # the rate-limit buckets of one process are keyed by the marketplace's own account id, else by the
        # account's name: two sellers' `wb-main` are two marketplace accounts with limits of their own
        options = settings.account.options
        if not options.get("limit_key") and not options.get("client_id"):
            options["limit_key"] = f"{tenant}/{settings.name}"
    if pg.is_url(cfg.db_path):  # PostgreSQL: the seller's schema of the installation's database
        cfg.db_path = schema_url(cfg.db_path, schema_of(tenant))
    return cfg


def prepare_store(cfg: CloudConfig) -> None:
    """The seller's store made ready: on PostgreSQL its schema created (SQLite makes its file itself), then
    migrated."""
    if cfg.tenant and pg.is_url(cfg.db_path):
        base = urlsplit(pg.reveal(cfg.db_path))
        query = [(k, v) for k, v in parse_qsl(base.query, keep_blank_values=True) if k != "options"]
        pg.connect(urlunsplit(base._replace(query=urlencode(query))), schema=schema_of(cfg.tenant)).close()
    open_db(cfg.db_path).close()


def store_label(cfg: CloudConfig) -> str:
    """Where a seller's data is, in words a person can check (never a password)."""
    return f"PostgreSQL {schema_of(cfg.tenant)}" if is_postgres(cfg.db_path) and pg.is_url(cfg.db_path) \
        else str(cfg.db_path)


@dataclass
class Added:
    """What `add` made: the seller, its first owner and that owner's password (shown once, kept nowhere),
    and the broker files the operator installs."""

    tenant: Tenant
    admin: str
    password: str
    broker_dir: Path
    broker_users: dict[str, str]  # role ("cloud", "cloud-N", site id) -> broker user
    store: str


def config_text(tenant: str, name: str, sites: list[str], folder: Path, cloud_user: str, members: int = 0) -> str:
    """The commented cloud.toml of a new seller: only the seller's sections (config/cloud.toml documents
    every key)."""
    creds = folder / BROKER / "credentials"
    site_tables = "".join(f'\n[sites.{s}]\nname = "{s}"\nwarehouses = ["{s}"]\n' for s in sites)
    return f'''# marketsync: the seller {tenant!r} on this installation (written by `marketsync tenant add`).
# Only the seller's own sections belong here: accounts, sites, stock, status_map, pricing, alerts, onec,
# legal, ui, secrets, jobs and the link's credentials. The installation's settings ([cloud] host/port/public_url,
# [db], [link] host/port/tls_ca/share_group, [auth], [tenants]) come from the main cloud.toml; setting one
# here stops the start. Every key is documented in config/cloud.toml. The store is cloud.sqlite in this
# folder (on PostgreSQL: the schema {schema_of(tenant)}); secret.key and the 1C uploads are kept here too.

[legal.seller]
name = {_quoted(name or tenant)}   # how the seller is named (tenant list, the commission report)

[link]                      # the seller's own namespace on the broker: topics ms/t/{tenant}/v1/...
username = "{cloud_user}"
password_file = "{creds / (cloud_user + '.password')}"
keys_file = "{creds / (cloud_user + '.keys')}"
{'' if members else '# '}member_username = "{cloud_user}-{{instance}}"   # with [link] share_group in the main file

[cloud]
default_warehouse = "{sites[0] if sites else 'main'}"
# cancel_when_short = false
{site_tables}
# Accounts of this seller (see config/cloud.toml for every key), e.g.:
# [accounts.wb-main]
# marketplace = "wildberries"
# base_url = "https://marketplace-api.wildberries.ru"
# credentials_secret = "account/wb-main"   # the token entered in Settings under /t/{tenant}/

[ui]
language = "ru"
timezone = "Europe/Moscow"
'''


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def add(main: CloudConfig, tenant: str, *, name: str = "", admin: str = "admin", sites: list[str] | None = None,
        cloud_processes: int = 0, env: dict[str, str] | None = None) -> Added:
    """Make a seller (see the module docstring); nothing is left half made when a step fails."""
    check_id(tenant)
    root = _folder(main)
    folder = root / tenant
    if folder.exists():
        raise TenantError("seller %(id)s exists already (%(path)s)", id=repr(tenant), path=str(folder))
    sites = list(sites or ["site-1"])
    root.mkdir(parents=True, exist_ok=True)
    folder.mkdir(mode=0o700)
    try:
        folder = folder.resolve()
        try:
            broker_passwords = write_tenant_broker(folder / BROKER, tenant, sites, cloud_processes=cloud_processes)
        except BrokerError as exc:
            raise TenantError("%(error)s", error=str(exc)) from None
        cloud_user = f"{tenant}.{CLOUD_USER}"
        # written under another name until the seller is whole: a running `cloud serve` looking at the
        # registry meanwhile sees no seller until then (`ids` needs its cloud.toml)
        staged = folder / (CONFIG + ".new")
        staged.write_text(config_text(tenant, name, sites, folder, cloud_user, cloud_processes), encoding="utf-8")
        cfg = load(main, tenant, env=env, path=staged)
        prepare_store(cfg)
        password = secrets.token_urlsafe(15)
        conn = open_db(cfg.db_path)
        try:
            users.add_user(conn, admin, password, "owner")
        finally:
            conn.close()
        staged.replace(folder / CONFIG)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    roles = {"cloud": cloud_user, **{f"cloud-{n}": f"{cloud_user}-{n}" for n in range(1, cloud_processes + 1)},
             **{s: f"{tenant}.{s}" for s in sites}}
    assert set(roles.values()) == set(broker_passwords)
    os.chmod(folder, 0o700)
    return Added(tenant=Tenant(id=tenant, folder=folder, name=name or tenant, sites=sites), admin=admin,
                 password=password, broker_dir=folder / BROKER, broker_users=roles, store=store_label(cfg))


__all__ = ["ID", "INSTALLATION", "Added", "Tenant", "TenantError", "add", "check_id", "ids", "load",
           "prepare_store", "schema_of", "schema_url", "store_label"]
