"""Fixtures of the cloud core's tests: a real SQLite tenant database (WAL file in tmp), a config with one
account per marketplace, the demo catalog loaded as the 1C nomenclature and as cards on every account.

`ShopWindow` is an in-process stand-in for a marketplace ADAPTER (the common interface of
marketplaces/base.py): it records what the cloud asks and answers per item like the real ones do. It is
used by the unit tests of the ledger, planner and order flow; the end-to-end test runs the real
sandboxes over HTTP instead.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from cloud_sync.catalog import cards as catalog
from cloud_sync.catalog import nomenclature
from cloud_sync.config import CloudConfig, parse_config
from cloud_sync.db import transaction
from cloud_sync.pg_cluster import Cluster, available
from cloud_sync.schema import open_db
from cloud_sync.stock import ledger
from marketplaces.base import (
    Card,
    ItemResult,
    Label,
    MarketplaceError,
    Order,
    OrderLine,
    StatusChange,
    StockKey,
    StockLevel,
    Warehouse,
    only_keys,
)
from marketplaces.sandbox.seed import demo_items

ACCOUNTS = {"wb": ("wildberries", "10"), "oz": ("ozon", "20"), "ym": ("yandex_market", "30"),
            "mm": ("megamarket", "40")}


class ShopWindow:
    """Records pushes and status moves; `fail_items` makes chosen stock keys fail (retryable or not)."""

    def __init__(self, account: str, marketplace: str, warehouse: str) -> None:
        self.account, self.name, self.warehouse = account, marketplace, warehouse
        self.pushes: list[list[StockLevel]] = []
        self.shown: dict[str, int] = {}
        self.moves: list[tuple[str, str, dict]] = []
        self.fail_items: dict[str, bool] = {}  # key -> retryable
        self.orders: list[Order] = []
        self.lock = threading.Lock()

    def warehouses(self) -> list[Warehouse]:
        return [Warehouse(self.warehouse, f"{self.name} FBS"), Warehouse("fbo-1", "their warehouse", "fbo")]

    def list_cards(self):
        return []

    def push_stocks(self, levels: Sequence[StockLevel]) -> list[ItemResult]:
        out = []
        with self.lock:
            self.pushes.append(list(levels))
            for lv in levels:
                key = f"{lv.card_id}@{lv.warehouse_id}"
                if key in self.fail_items:
                    out.append(ItemResult(key, False, "refused", retryable=self.fail_items[key]))
                    continue
                self.shown[key] = lv.quantity
                out.append(ItemResult(key, True))
        return out

    def read_stocks(self, kind: str = "fbs", cards: Sequence[StockKey] | None = None) -> list[StockLevel]:
        """What the window shows (FBS), as the marketplace's stock read answers it (`cards`: theirs alone)."""
        if kind != "fbs":
            return []
        out = []
        for key, qty in self.shown.items():
            card, _, wh = key.partition("@")
            out.append(StockLevel(card, card, wh, qty))
        return out if cards is None else only_keys(out, cards)

    def set_visibility(self, card_ids: Sequence[str], visible: bool) -> list[ItemResult]:
        return [ItemResult(c, True) for c in card_ids]

    def new_orders(self) -> list[Order]:
        return [o for o in self.orders if o.native_status in ("new", "awaiting_packaging", "NEW", "PROCESSING")]

    def get_order(self, native_id: str) -> Order:
        for o in self.orders:
            if o.native_id == native_id:
                return o
        raise MarketplaceError("not found", account=self.account, status=404)

    def set_order_status(self, native_id: str, action: str, **details: Any) -> StatusChange:
        self.moves.append((native_id, action, details))
        batch = (details.get("batch_id") or "WB-GI-1") if self.name == "wildberries" else ""
        return StatusChange(native_id, action, True, batch_id=batch)  # type: ignore[arg-type]

    def get_label(self, native_id: str, *, fmt: str | None = None, size: str = "") -> Label:
        return Label(native_id, b"<svg/>", "svg", 58, 40)


def order(account: str, native_id: str, card_id: str, qty: int = 1, *, status: str = "new",
          ship_in_h: float | None = 24, offer_id: str = "") -> Order:
    mp, wh = ACCOUNTS[account]
    return Order(native_id=native_id, marketplace=mp, account=account, native_status=status,
                 created_at=datetime.now(UTC),
                 lines=[OrderLine(card_id=card_id, offer_id=offer_id, quantity=qty, price=Decimal("100"))],
                 warehouse_id=wh, ship_by=datetime.now(UTC) + timedelta(hours=ship_in_h) if ship_in_h else None)


def make_config(**stock_section: Any) -> CloudConfig:
    accounts = {name: {"marketplace": mp, "base_url": "http://127.0.0.1:9", "warehouses": {wh: "main"}}
                for name, (mp, wh) in ACCOUNTS.items()}
    accounts["oz"]["min_stock_interval_s"] = 0
    return parse_config({"accounts": accounts, "stock": stock_section,
                         "sites": {"site-1": {"warehouses": ["main"]}}}, env={})


def card_id(account: str, index: int) -> str:
    return f"{account}-{index}"


def seed(conn, n: int = 10, *, balances: bool = True) -> list:
    """The demo catalog as 1C items, a card per item on every account, and 1C balances at 'main'."""
    items = demo_items(n)
    with transaction(conn):
        nomenclature.upsert_items(conn, [nomenclature.Item(id=i.item_id, name=i.name, article=i.article,
                                                           barcodes=[i.barcode]) for i in items])
        for name, (mp, _) in ACCOUNTS.items():
            catalog.import_cards(conn, name, mp, [Card(native_id=card_id(name, i.index), offer_id=i.article,
                                                       barcodes=[i.barcode], category=i.category, title=i.name)
                                                  for i in items])
        catalog.auto_link(conn)
        if balances:
            ledger.set_balances(conn, "main", {i.item_id: i.stock for i in items})
    return items


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "cloud.sqlite")


@pytest.fixture
def conn(db_path: str):
    c = open_db(db_path)
    yield c
    c.close()


@pytest.fixture
def cfg() -> CloudConfig:
    return make_config()


@pytest.fixture
def windows() -> dict[str, ShopWindow]:
    return {name: ShopWindow(name, mp, wh) for name, (mp, wh) in ACCOUNTS.items()}


def wait_for(what: str, check, timeout: float = 60.0, every: float = 0.2):
    """Poll `check` until it returns something true; fail naming `what` and the last value seen."""
    import time

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A throwaway PostgreSQL cluster of the module's own (the layer's tests; cloud_sync.pg_cluster)."""
    if not available():
        pytest.fail("PostgreSQL server binaries not installed: make install provides it")
    with Cluster() as c:
        yield c
