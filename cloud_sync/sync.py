"""One-shot synchronisations with the marketplaces (what `marketsync sync ...` and the service's start run).

cards: every account's warehouses and cards are imported and linked (barcode, then article);
stocks: every linked card's number is recomputed and pushed (the zero guard applies), FBS numbers are
read back first where the marketplace allows, FBO stock is read back and kept apart;
orders: new orders are polled and ingested, due marketplace actions are made.
`progress(total)` returns a callable advancing a progress bar (tqdm in the CLI, nothing in the service).

`AccountAdapters` is the running service's one shared holder of the account adapters (the web app, the
stock pusher and the jobs all read it); `reopen(name, conn)` puts a token or endpoint override entered
in Settings to use at once.
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

from cloud_sync import catalog, nomenclature, orders, secrets, stock, stock_push
from cloud_sync.config import CloudConfig
from cloud_sync.db import transaction
from marketplaces import open_account
from marketplaces.base import AccountConfig, Marketplace, MarketplaceError, NotSupported

log = logging.getLogger("cloud_sync.sync")

Progress = Callable[[str, int | None], Callable[[int], None]]


def no_progress(_label: str, _total: int | None) -> Callable[[int], None]:
    return lambda _n: None


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
               f" {cfg.raw['accounts'][name]['credentials_secret']!r})")
        log.warning(msg)
        if report is not None:
            report.errors.append(msg)
    return open_adapters(cfg, report, skip=[*waiting, *(set(cfg.accounts) - wanted)]), waiting


def fresh_account_config(conn: sqlite3.Connection, cfg: CloudConfig, name: str) -> AccountConfig:
    """The account's config as it stands now: the running one, with the credentials stored in Settings
    (when the account says `credentials_secret`) and the endpoint overrides stored in Settings laid over
    it. A new object: the running adapter's own config is left as it is."""
    current = cfg.accounts[name].account
    credentials = dict(current.credentials)
    secret_name = cfg.raw.get("accounts", {}).get(name, {}).get("credentials_secret")
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
            _close(adapter)

    def close_all(self) -> None:
        """Close every adapter, current and retired (the service's stop)."""
        self._close_drained(everything=True)
        with self._lock:
            current = list(self._adapters.values())
        for adapter in current:
            _close(adapter)


def _close(adapter: Any) -> None:
    close = getattr(adapter, "close", None)
    if callable(close):
        try:
            close()
        except Exception:  # noqa: BLE001
            log.exception("closing an adapter")


def sync_warehouses(conn: sqlite3.Connection, cfg: CloudConfig, name: str, adapter: Marketplace) -> int:
    settings = cfg.accounts[name]
    whs = adapter.warehouses()
    rows = []
    for w in whs:
        own = settings.warehouses.get(w.native_id)
        if own is None and w.kind in ("fbs", "dbs") and not settings.warehouses:
            own = settings.default_warehouse
        rows.append((w.native_id, w.name, w.kind, own))
    with transaction(conn):
        catalog.record_warehouses(conn, name, rows)
    return len(rows)


def sync_cards(conn: sqlite3.Connection, cfg: CloudConfig, adapters: dict[str, Marketplace], *,
               progress: Progress = no_progress) -> SyncReport:
    report = SyncReport()
    for name, adapter in adapters.items():
        try:
            n_wh = sync_warehouses(conn, cfg, name, adapter)
            tick = progress(f"cards {name}", None)
            batch, new = [], 0
            for card in adapter.list_cards():
                batch.append(card)
                if len(batch) >= 500:
                    with transaction(conn):
                        new += catalog.import_cards(conn, name, adapter.name, batch)[0]
                    tick(len(batch))
                    batch = []
            with transaction(conn):
                new += catalog.import_cards(conn, name, adapter.name, batch)[0]
            tick(len(batch))
            report.add(f"{name}: {n_wh} warehouses, {new} new cards")
        except MarketplaceError as exc:
            report.errors.append(f"{name}: {exc}")
    with transaction(conn):
        links = catalog.auto_link(conn)
    report.add(f"linked by barcode {links.linked_by_barcode}, by article {links.linked_by_article},"
               f" already {links.already_linked}; ambiguous {len(links.ambiguous)}, unmatched {len(links.unmatched)}")
    return report


def sync_stocks(conn: sqlite3.Connection, cfg: CloudConfig, adapters: dict[str, Marketplace], *,
                progress: Progress = no_progress, read_back: bool = True, max_wait_s: float = 60.0) -> SyncReport:
    report = SyncReport()
    for name, adapter in adapters.items():
        if not read_back:
            break
        for kind in ("fbs", "fbo"):
            try:
                levels = adapter.read_stocks(kind)  # type: ignore[arg-type]
            except NotSupported:
                continue
            except MarketplaceError as exc:
                report.errors.append(f"{name} read {kind}: {exc}")
                continue
            if kind == "fbs":
                stock_push.record_read_back(conn, name, levels)
            else:
                with transaction(conn):
                    stock.record_fbo(conn, name, [(lv.card_id, lv.warehouse_id, lv.quantity) for lv in levels])
            report.add(f"{name}: read back {len(levels)} {kind.upper()} stock levels")
    planned = stock_push.plan_all(conn, cfg)
    report.add(f"planned {planned.queued} pushes ({planned.unchanged} unchanged) for {planned.items} items")
    for name, adapter in adapters.items():
        total = stock_push.pending(conn, name).get("pending", 0)
        tick = progress(f"stocks {name}", total)
        sent = ok = failed = 0
        give_up = time.time() + max_wait_s
        while True:
            res = stock_push.send_account(conn, cfg, name, adapter)
            if res.sent == 0:
                # pushes not due yet (a marketplace's per-card interval, a retry): wait for them, a while
                due = conn.execute("SELECT MIN(next_try) FROM stock_push_queue WHERE account=? AND"
                                   " state='pending'", (name,)).fetchone()[0]
                if due is None or due > give_up:
                    if due is not None:
                        report.add(f"{name}: {stock_push.pending(conn, name).get('pending', 0)} pushes wait for"
                                   " the marketplace's interval; the running service sends them")
                    break
                time.sleep(max(0.0, due - time.time()) + 0.01)
                continue
            sent, ok, failed = sent + res.sent, ok + res.ok, failed + res.failed
            report.errors += res.errors
            tick(res.ok + res.failed)
        held = stock_push.holds(conn, name)
        report.add(f"{name}: pushed {ok}, failed {failed}" + (f"; HELD by the zero guard: {held[0]['reason']}"
                                                              f" (confirm hold {held[0]['id']})" if held else ""))
    return report


def sync_orders(conn: sqlite3.Connection, cfg: CloudConfig, adapters: dict[str, Marketplace], *,
                progress: Progress = no_progress, link: Any = None) -> SyncReport:
    report = SyncReport()
    tick = progress("orders", len(adapters))
    for name, adapter in adapters.items():
        try:
            res = orders.poll(conn, cfg, adapter, link=link)
            report.add(f"{name}: {res.new} new orders ({res.reserved} reserved, {res.short} short,"
                       f" {res.problems} with problems), {res.known} known")
        except MarketplaceError as exc:
            report.errors.append(f"{name}: {exc}")
        tick(1)
    done = orders.run_actions(conn, cfg, adapters, link=link)
    report.add(f"{done} marketplace actions made")
    return report


def seed_demo(conn: sqlite3.Connection, cfg: CloudConfig, n: int, seed: int = 7) -> int:
    """Load the demo catalog as the 1C nomenclature and its stock as 1C balances (only where the ledger is
    empty): what the demo's 1C would send."""
    from marketplaces.sandbox.seed import demo_items

    items = demo_items(n, seed)
    with transaction(conn):
        nomenclature.upsert_items(conn, [nomenclature.Item(id=i.item_id, name=i.name, article=i.article,
                                                           barcodes=[i.barcode], marked=i.marked) for i in items])
        if conn.execute("SELECT 1 FROM stock_levels LIMIT 1").fetchone() is None:
            stock.set_balances(conn, cfg.default_warehouse, {i.item_id: i.stock for i in items}, source="1c")
    return len(items)
