"""Which own warehouse serves a marketplace warehouse: the one decision both the orders (where an order
is reserved and picked) and the push planner (where a warehouse's stock is published) take from here.

An account's marketplace warehouse is served by the own warehouse the account's config maps it to
(`[accounts.X] warehouses`), else by the one recorded when the account's warehouses were read
(`catalog.cards.record_warehouses`: an account that maps none has every FBS warehouse served by its
`default_warehouse`). A warehouse served by none is reported as such (None): an order from it is a
problem the manager sees, never a reservation in a warehouse whose stock is not published there.

Each own warehouse has a defect warehouse beside it, `<warehouse>:defect` (`defect_warehouse`): returned
units found defective are kept there, in the same ledger, and it serves no marketplace warehouse whatever
the config says, so its stock is never published.
"""

from __future__ import annotations

import sqlite3

from cloud_sync.catalog import cards as catalog
from cloud_sync.config import CloudConfig

DEFECT_SUFFIX = ":defect"


def defect_warehouse(warehouse: str) -> str:
    """Where the defective units of `warehouse` are kept (never published)."""
    return warehouse if is_defect(warehouse) else f"{warehouse}{DEFECT_SUFFIX}"


def is_defect(warehouse: str) -> bool:
    return warehouse.endswith(DEFECT_SUFFIX)


def account_warehouses(conn: sqlite3.Connection, cfg: CloudConfig, account: str) -> dict[str, str]:
    """The account's served marketplace warehouses -> own warehouse (config entries win over discovered)."""
    found = catalog.warehouse_map(conn, account)
    settings = cfg.accounts.get(account)
    if settings:
        found.update(settings.warehouses)
    return {mp: own for mp, own in found.items() if not is_defect(own)}  # a defect warehouse is never published


def serving_warehouse(conn: sqlite3.Connection, cfg: CloudConfig, account: str, mp_warehouse: str) -> str | None:
    """The own warehouse that serves `mp_warehouse` of the account, or None when none does. A marketplace
    warehouse the account has not been read yet (a new one, or before the first sync) counts as FBS:
    served by the account's default warehouse when the account maps none itself (an account the config does
not know, by the cloud's default warehouse)."""
    served = account_warehouses(conn, cfg, account)
    if mp_warehouse in served:
        return served[mp_warehouse]
    settings = cfg.accounts.get(account)
    if not mp_warehouse and len(set(served.values())) == 1:  # the marketplace did not say: the only one
        return next(iter(served.values()))
    known = conn.execute("SELECT kind FROM mp_warehouses WHERE account=? AND warehouse_id=?",
                         (account, mp_warehouse)).fetchone()
    if (settings and settings.warehouses) or known is not None:  # mapped by hand, or read and left unserved
        return None
    return settings.default_warehouse if settings else cfg.default_warehouse


def unserved_reason(account: str, mp_warehouse: str) -> str:
    """The problem an order from an unserved marketplace warehouse shows, in the seller's words."""
    return (f"marketplace warehouse {mp_warehouse or '(not given)'} of account {account} is not mapped to an own"
            f" warehouse: map it in cloud.toml [accounts.{account}] warehouses, then take the order into work")
