"""Unit economics of a card: what one unit sold at a price leaves the seller — price − the marketplace's
commission − logistics − acquiring − the 1C cost — as profit and margin %, each part marked where it is
the seller's configured estimate rather than the marketplace's own figure.

Owns `sale_fees` (per account and card: the fees the marketplace's API stated — `Marketplace.sale_fees`
— and the price they were stated for) and `Estimates` (the [pricing] `estimate_*` settings used where
the marketplace's API tells nothing). Knows no marketplace by name: what a marketplace's API gives is
its adapter's business.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from cloud_sync.config_sections import PricingSettings
from cloud_sync.db import transaction
from marketplaces.base import FeeAsk, Marketplace, NotSupported, SaleFees
from sitelink.sqlite import need

HUNDRED = Decimal(100)
CENT = Decimal("0.01")

MIGRATIONS = [
    """
    CREATE TABLE sale_fees (
        account TEXT NOT NULL,
        card_id TEXT NOT NULL,
        commission_percent TEXT,          -- Decimal as text; NULL: the marketplace did not say
        logistics TEXT,                   -- per unit, roubles
        acquiring_percent TEXT,
        acquiring TEXT,                   -- an amount, for the price below
        price TEXT NOT NULL,              -- the price the fees were stated for
        source TEXT NOT NULL DEFAULT '',
        read_ts REAL NOT NULL,
        PRIMARY KEY (account, card_id)
    ) WITHOUT ROWID;
    """,
]

PARTS = ("commission", "logistics", "acquiring")


@dataclass(frozen=True)
class Estimates:
    """What the seller assumes where a marketplace's API gives no figure ([pricing] estimate_*)."""

    commission_percent: Decimal = Decimal(20)
    logistics: Decimal = Decimal(100)
    acquiring_percent: Decimal = Decimal("1.5")

    @classmethod
    def from_settings(cls, settings: PricingSettings) -> Estimates:
        return cls(settings.estimate_commission_percent, settings.estimate_logistics,
                   settings.estimate_acquiring_percent)

    def sql_args(self) -> dict[str, float]:
        """The named parameters `profit_sql` reads."""
        return {"est_commission": float(self.commission_percent), "est_logistics": float(self.logistics),
                "est_acquiring": float(self.acquiring_percent)}


@dataclass
class UnitEconomics:
    """One unit sold at `price`: every deduction in roubles, the profit, the margin (% of the price), and
    which parts are estimates (`estimated`: names from PARTS)."""

    price: Decimal
    commission: Decimal
    logistics: Decimal
    acquiring: Decimal
    cost: Decimal | None
    estimated: list[str] = field(default_factory=list)

    @property
    def fees(self) -> Decimal:
        return self.commission + self.logistics + self.acquiring

    @property
    def profit(self) -> Decimal | None:
        return None if self.cost is None else (self.price - self.fees - self.cost).quantize(CENT)

    @property
    def margin_percent(self) -> Decimal | None:
        p = self.profit
        return None if p is None or not self.price else (p / self.price * HUNDRED).quantize(Decimal("0.1"))

    def as_dict(self) -> dict[str, str | list[str] | None]:
        return {"commission": str(self.commission), "logistics": str(self.logistics),
                "acquiring": str(self.acquiring), "fees": str(self.fees),
                "profit": None if self.profit is None else str(self.profit),
                "profit_percent": None if self.margin_percent is None else str(self.margin_percent),
                "estimated": list(self.estimated)}


def compute(price: Decimal, cost: Decimal | None, fees: SaleFees | None, estimates: Estimates,
            fees_price: Decimal | None = None) -> UnitEconomics:
    """The unit economics at `price` (`cost`: the card's 1C cost, None unknown). A percentage applies to
    `price`; an acquiring stated as an amount for `fees_price` scales with the price; a part the
    marketplace did not state comes from `estimates` and is named in `estimated`."""
    estimated: list[str] = []
    pct = fees.commission_percent if fees else None
    if pct is None:
        pct = estimates.commission_percent
        estimated.append("commission")
    logistics = fees.logistics if fees else None
    if logistics is None:
        logistics = estimates.logistics
        estimated.append("logistics")
    acq_pct = fees.acquiring_percent if fees else None
    if acq_pct is None and fees is not None and fees.acquiring is not None and fees_price:
        acq_pct = fees.acquiring / fees_price * HUNDRED
    if acq_pct is None:
        acq_pct = estimates.acquiring_percent
        estimated.append("acquiring")
    return UnitEconomics(price=price, commission=(price * pct / HUNDRED).quantize(CENT),
                         logistics=Decimal(logistics).quantize(CENT), acquiring=(price * acq_pct / HUNDRED).quantize(CENT),
                         cost=cost, estimated=estimated)


def _text(v: Decimal | None) -> str | None:
    return None if v is None else str(v)


def _dec(v: str | None) -> Decimal | None:
    return None if v is None else Decimal(v)


def fees_key(account: str) -> str:
    """The key (`sitelink.sqlite.transaction`'s `keys`) of an account's `sale_fees` rows."""
    return f"fees:{account}"


def record(conn: sqlite3.Connection, account: str, fees: Iterable[SaleFees], prices: dict[str, Decimal],
           now: float | None = None) -> int:
    """Store the fees a marketplace stated, with the price each was stated for; replaces the account's (a
    keyed transaction of the account's fee rows, `fees_key`: nothing else writes them)."""
    now = time.time() if now is None else now
    rows = [(account, f.card_id, _text(f.commission_percent), _text(f.logistics), _text(f.acquiring_percent),
             _text(f.acquiring), str(prices.get(f.card_id, Decimal(0))), f.source, now) for f in fees]
    with transaction(conn, keys=(fees_key(account),)):
        need(conn, fees_key(account))
        conn.execute("DELETE FROM sale_fees WHERE account=?", (account,))
        conn.executemany("INSERT OR REPLACE INTO sale_fees(account, card_id, commission_percent, logistics,"
                         " acquiring_percent, acquiring, price, source, read_ts) VALUES (?,?,?,?,?,?,?,?,?)", rows)
    return len(rows)


def stored(conn: sqlite3.Connection, account: str,
           card_ids: list[str] | None = None) -> dict[str, tuple[SaleFees, Decimal]]:
    """card_id -> (the fees last stated, the price they were stated for), of every card of the account or
    of these cards only (a page of a list)."""
    sql, args = "SELECT * FROM sale_fees WHERE account=?", [account]
    if card_ids is not None:
        sql += f" AND card_id IN ({','.join('?' * len(card_ids))})"
        args += card_ids
    return {r["card_id"]: (SaleFees(r["card_id"], _dec(r["commission_percent"]), _dec(r["logistics"]),
                                    _dec(r["acquiring_percent"]), _dec(r["acquiring"]), r["source"]),
                           Decimal(r["price"]))
            for r in conn.execute(sql, args)}


def read_fees(conn: sqlite3.Connection, account: str, market: Marketplace, asks: list[FeeAsk],
              now: float | None = None) -> int:
    """Ask the marketplace for its fees on these cards (at their current prices) and store them; a
    marketplace whose API states none (NotSupported) leaves every part to the estimates."""
    if not asks:
        return 0
    try:
        fees = market.sale_fees(asks)
    except NotSupported:
        return 0
    return record(conn, account, fees, {a.card_id: a.price for a in asks}, now=now)


def profit_sql(price: str, cost: str, fees: str) -> str:
    """The SQL twin of `compute(...).profit` for ordering a list by it in SQLite (floats: the order, not
    the figure shown): `price` and `cost` are SQL expressions, `fees` the alias of a `sale_fees` row (LEFT
    JOINed); the estimates are the named parameters :est_commission, :est_logistics, :est_acquiring
    (`Estimates.sql_args`). NULL where the cost or the price is unknown, as `profit` is None."""
    pct = f"COALESCE(CAST({fees}.commission_percent AS REAL), :est_commission)"
    logistics = f"COALESCE(CAST({fees}.logistics AS REAL), :est_logistics)"
    acq = (f"COALESCE(CAST({fees}.acquiring_percent AS REAL),"
           f" CAST({fees}.acquiring AS REAL) * 100 / NULLIF(CAST({fees}.price AS REAL), 0), :est_acquiring)")
    return f"(({price}) - ({price}) * {pct} / 100 - {logistics} - ({price}) * {acq} / 100 - ({cost}))"


def economics_of(card_id: str, price: Decimal, cost: Decimal | None, known: dict[str, tuple[SaleFees, Decimal]],
                 estimates: Estimates) -> UnitEconomics:
    """One card's unit economics at `price` from the account's stored fees (`stored`) and the estimates."""
    fees, at = known.get(card_id, (None, None))
    return compute(price, cost, fees, estimates, at)
