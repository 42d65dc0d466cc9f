"""One-shot synchronisations with the marketplaces (what `marketsync sync ...` and the service's start run).

cards: every account's warehouses and cards are imported and linked (barcode, then article);
stocks: every linked card's number is recomputed and pushed (the zero guard applies), FBS numbers are
read back first where the marketplace allows, FBO stock is read back and kept apart;
orders: new orders are polled and ingested, due marketplace actions are made;
reconcile: 1C, the ledger and what every marketplace shows (FBS read back) compared and kept
(cloud_sync/stock/reconcile.py); unexplained differences alert.
`progress(total)` returns a callable advancing a progress bar (tqdm in the CLI, nothing in the service).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from typing import Any

from cloud_sync.alerts import outbox
from cloud_sync.catalog import cards as catalog
from cloud_sync.config import CloudConfig
from cloud_sync.config_sections import OnecSettings
from cloud_sync.db import transaction
from cloud_sync.orders import handover_documents, intake, mp_actions
from cloud_sync.service.accounts import SyncReport
from cloud_sync.stock import fbo, reconcile
from cloud_sync.stock import push as stock_push
from marketplaces.base import Marketplace, MarketplaceError, NotSupported

Progress = Callable[[str, int | None], Callable[[int], None]]


def no_progress(_label: str, _total: int | None) -> Callable[[int], None]:
    return lambda _n: None


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
                    fbo.record(conn, name, levels)
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
            res = intake.poll(conn, cfg, adapter, link=link)
            report.add(f"{name}: {res.new} new orders ({res.reserved} reserved, {res.short} short,"
                       f" {res.problems} with problems), {res.known} known")
        except MarketplaceError as exc:
            report.errors.append(f"{name}: {exc}")
        tick(1)
    done = mp_actions.run_actions(conn, cfg, adapters, link=link)
    report.add(f"{done} marketplace actions made")
    docs = handover_documents.fetch_due(conn, cfg, adapters, link=link)
    if docs:
        report.add(f"documents of {docs} hand-over(s) sent to the sites")
    return report


def read_shown(adapters: dict[str, Marketplace]) -> dict[str, reconcile.Shown]:
    """What each account's marketplace shows (FBS, per card and marketplace warehouse), or why it cannot
    be read."""
    out: dict[str, reconcile.Shown] = {}
    for name, adapter in adapters.items():
        try:
            levels = adapter.read_stocks("fbs")
        except NotSupported:
            out[name] = "API площадки не отдаёт остатки FBS: сверено только то, что отправлено"
            continue
        except MarketplaceError as exc:
            out[name] = f"остатки не прочитаны: {exc}"
            continue
        out[name] = {(lv.card_id, lv.warehouse_id): lv.quantity for lv in levels if lv.kind == "fbs"}
    return out


def reconcile_stock(conn: sqlite3.Connection, cfg: CloudConfig, adapters: dict[str, Marketplace], *,
                    read_back: bool = True, alert: bool = False, now: float | None = None) -> reconcile.Reconciliation:
    """Run the three-way reconciliation and keep it; with `alert`, unexplained differences go to Telegram
    (once a day while they last)."""
    shown = read_shown(adapters) if read_back else {}
    if read_back:
        for name in cfg.accounts:
            shown.setdefault(name, "кабинет не открыт (ключи не введены или не подошли): остатки площадки не прочитаны")
    horizon = (cfg.onec.in_flight_horizon_h if cfg.onec else OnecSettings.in_flight_horizon_h) * 3600
    result = reconcile.reconcile(conn, cfg, shown, now=now, horizon_s=horizon)
    reconcile.record(conn, result)
    bad = result.unexplained
    if alert and bad:
        sample = "; ".join(f"{d.article or d.item_id} ({d.where}): {d.why}" for d in bad[:3])
        outbox.enqueue(conn, "reconcile", f"reconcile:{time.strftime('%Y-%m-%d')}",
                       f"⚖️ Сверка остатков: {len(bad)} расхождений без объяснения. {sample}", now=now)
    return result
