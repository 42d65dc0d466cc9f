"""The marketplace accounts as the running cloud holds them: an adapter per enabled account, opened with
what was entered in Settings (credentials, endpoint overrides; an account still waiting for its token is
named, not opened), and `AccountAdapters`, the running service's one shared holder of the adapters (the
web app, the stock pusher and the jobs all read it); `reopen(name, conn)` puts a token or endpoint override
entered in Settings to use at once.
"""

from __future__ import annotations

import dataclasses
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from cloud_sync.access import secrets
from cloud_sync.config import CloudConfig
from marketplaces import open_account
from marketplaces.base import AccountConfig, Marketplace, MarketplaceError

log = logging.getLogger("cloud_sync.service.accounts")


@dataclass
class SyncReport:
    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.lines.append(text)
        log.info(text)


def open_adapters(cfg: CloudConfig, report: SyncReport | None = None, *,
                  skip: Iterable[str] = ()) -> dict[str, Marketplace]:
    """An adapter per enabled account but those in `skip` (waiting for their credentials); a marketplace
    whose adapter is not built yet is skipped and said."""
    out: dict[str, Marketplace] = {}
    skip = set(skip)
    for name, settings in cfg.accounts.items():
        if not settings.enabled or name in skip:
            continue
        try:
            out[name] = open_account(settings.account)
        except (ImportError, AttributeError) as exc:
            msg = f"account {name}: the {settings.marketplace} adapter is not available ({exc.__class__.__name__})"
            log.warning(msg)
            if report:
                report.errors.append(msg)
        except (MarketplaceError, ValueError) as exc:  # e.g. a required option missing: the others still run
            msg = f"account {name} cannot be opened: {exc}"
            log.warning(msg)
            if report:
                report.errors.append(msg)
    return out


def open_with_settings(conn: sqlite3.Connection, cfg: CloudConfig, report: SyncReport | None = None, *,
                       only: Iterable[str] | None = None) -> tuple[dict[str, Marketplace], list[str]]:
    """The accounts (all, or `only` these) opened with what was entered in Settings laid over the config
    (stored credentials, endpoint overrides, the status map, the bot token): what the running service
    and every one-shot command use. Returns (adapters, accounts waiting for their credentials); each
    waiting account is said in the log and in `report`'s errors. Raises secrets.SecretError when the
    stored secrets cannot be read (the key file)."""
    waiting: list[str] = []
    secrets.apply_to_config(conn, cfg, waiting=waiting)
    wanted = set(cfg.accounts if only is None else only)
    waiting = [name for name in waiting if name in wanted]
    for name in waiting:
        msg = (f"account {name} waits for its credentials: enter them on the Settings page (stored secret"
               f" {cfg.accounts[name].credentials_secret!r})")
        log.warning(msg)
        if report is not None:
            report.errors.append(msg)
    return open_adapters(cfg, report, skip=[*waiting, *(set(cfg.accounts) - wanted)]), waiting


def follow_stored(conn: sqlite3.Connection, cfg: CloudConfig, adapters: AccountAdapters,
                  seen: dict[str, float]) -> dict[str, float]:
    """Put in use what was stored in Settings since `seen` (`secrets.stamps`), through this or another
    cloud process on the same store: the settings laid over the config again, each account whose stored
    credentials or endpoint overrides changed reopened (one waiting for its credentials opens, and its
    jobs start here too), a new bot token handed to the alerts. Returns the stamps now."""
    now = secrets.stamps(conn)
    changed = {key for key in set(now) | set(seen) if now.get(key) != seen.get(key)}
    if not changed:
        return now
    reopen = []
    for name, settings in cfg.accounts.items():
        secret_changed = bool(settings.credentials_secret) and f"secret:{settings.credentials_secret}" in changed
        if not settings.enabled or not (secret_changed or f"endpoint:{name}" in changed):
            continue
        try:
            fresh = fresh_account_config(conn, cfg, name)
        except secrets.SecretError:
            continue  # still nothing stored to open it with
        in_use = settings.account
        if (name not in adapters or fresh.credentials != in_use.credentials
                or fresh.endpoints != in_use.endpoints):  # not when this process put it in use itself
            reopen.append(name)
    secrets.apply_to_config(conn, cfg, waiting=[])
    if f"secret:{secrets.BOT_TOKEN}" in changed:
        secrets.use_stored_bot_token(conn, cfg)
    for name in reopen:
        try:
            adapters.reopen(name, conn)
        except Exception as exc:  # noqa: BLE001 - the running adapter stays; said without the secret
            log.warning("account %s not reopened with the settings stored meanwhile: %s", name,
                        exc.__class__.__name__)
    return now


def fresh_account_config(conn: sqlite3.Connection, cfg: CloudConfig, name: str) -> AccountConfig:
    """The account's config as it stands now: the running one, with the credentials stored in Settings
    (when the account says `credentials_secret`) and the endpoint overrides stored in Settings laid over
    it. A new object: the running adapter's own config is left as it is."""
    current = cfg.accounts[name].account
    credentials = dict(current.credentials)
    secret_name = cfg.accounts[name].credentials_secret
    if secret_name:
        stored = secrets.SecretStore(secrets.key_file_for(cfg)).get(conn, str(secret_name))
        if stored is None:
            raise secrets.SecretError(f"accounts.{name}.credentials_secret: no stored secret {secret_name!r}"
                                      " (enter it in Settings)")
        credentials.update(stored)
    endpoints = {k: dict(v) if isinstance(v, dict) else v for k, v in current.endpoints.items()}
    for r in secrets.settings(conn, "endpoint"):
        if r["scope"] == name:
            old = endpoints.get(r["key"])
            endpoints[r["key"]] = {**(old if isinstance(old, dict) else {}), "path": r["value"]}
    return dataclasses.replace(current, credentials=credentials, endpoints=endpoints, options=dict(current.options))


class AccountAdapters(Mapping[str, Marketplace]):
    """The running adapters by account, shared by the web app, the stock pusher and the jobs (thread-safe).

    Read it like a dict (`adapters[name]`, `.get`, `.items()`), looking the adapter up per request, per
    round or per job run, or hold one for a round with `lease(name)`. `reopen(name, conn)` opens a fresh
    adapter from `fresh_account_config` and swaps it in; when the opening fails nothing changes. The old
    adapter is closed only once no lease holds it and `drain_s` has passed since the swap (closing its
    HTTP client earlier would turn the calls of a round still using it into non-retryable failures);
    unleased users (a web request) are bounded by the adapter's own timeouts, well inside `drain_s`.
    An account that was not open (it waited for its credentials, or failed at start) and is opened by
    `reopen` is announced to whoever asked with `when_added(fn)`: the service starts its jobs and its
    stock sender then.
    """

    def __init__(self, cfg: CloudConfig, adapters: Mapping[str, Marketplace] | None = None, *,
                 drain_s: float = 120.0) -> None:
        self.cfg = cfg
        self.drain_s = drain_s
        self._lock = threading.Lock()
        self._adapters: dict[str, Marketplace] = dict(adapters or {})
        self._leases: dict[int, int] = {}  # id(adapter) -> leases held
        self._retired: list[tuple[Marketplace, float]] = []  # (old adapter, when it was swapped out)
        self._added: list[Callable[[str], None]] = []

    def __getitem__(self, name: str) -> Marketplace:
        with self._lock:
            return self._adapters[name]

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._adapters))

    def __len__(self) -> int:
        with self._lock:
            return len(self._adapters)

    def __repr__(self) -> str:
        return f"AccountAdapters({sorted(self)})"

    def when_added(self, fn: Callable[[str], None]) -> None:
        """Call `fn(name)` after `reopen` opened an account that was not open before."""
        self._added.append(fn)

    @contextmanager
    def lease(self, name: str) -> Iterator[Marketplace]:
        """The account's current adapter, kept open until the block ends even if it is swapped meanwhile."""
        with self._lock:
            adapter = self._adapters[name]
            self._leases[id(adapter)] = self._leases.get(id(adapter), 0) + 1
        try:
            yield adapter
        finally:
            with self._lock:
                left = self._leases.pop(id(adapter)) - 1
                if left:
                    self._leases[id(adapter)] = left
            self._close_drained()

    def reopen(self, name: str, conn: sqlite3.Connection) -> Marketplace:
        """Open the account afresh (stored credentials, endpoint overrides) and use the new adapter from
        now on. Raises (MarketplaceError, ValueError, ImportError...) when it cannot be opened; the running
        adapter then stays in use. An account not open yet (it waited for its credentials, or failed at
        start) is added and announced to the `when_added` callbacks."""
        settings = self.cfg.accounts[name]
        if not settings.enabled:
            raise ValueError(f"account {name} is disabled in the config (enabled = false)")
        account = fresh_account_config(conn, self.cfg, name)
        adapter = open_account(account)
        with self._lock:
            old = self._adapters.get(name)
            self._adapters[name] = adapter
            settings.account = account  # what the pages and the next reopen see
            if old is not None:
                self._retired.append((old, time.monotonic()))
        if old is not None:
            timer = threading.Timer(self.drain_s, self._close_drained)
            timer.daemon = True
            timer.start()
            log.info("account %s reopened with its current settings", name)
            return adapter
        log.info("account %s opened with its current settings", name)
        for fn in list(self._added):
            try:
                fn(name)
            except Exception:  # noqa: BLE001 - the account is open; what failed to start is logged
                log.exception("starting the work of account %s", name)
        return adapter

    def _close_drained(self, *, everything: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            due = [a for a, ts in self._retired
                   if everything or (now - ts >= self.drain_s and id(a) not in self._leases)]
            self._retired = [(a, ts) for a, ts in self._retired if all(a is not d for d in due)]
        for adapter in due:
            close_adapter(adapter)

    def close_all(self) -> None:
        """Close every adapter, current and retired (the service's stop)."""
        self._close_drained(everything=True)
        with self._lock:
            current = list(self._adapters.values())
        for adapter in current:
            close_adapter(adapter)


def close_adapter(adapter: Any) -> None:
    close = getattr(adapter, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001
            log.exception("closing an adapter")
