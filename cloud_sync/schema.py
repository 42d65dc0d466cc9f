"""The cloud's schema: which modules keep tables, in the order their migrations run, and `open_db`.

Each module that keeps tables declares them itself as `MIGRATIONS: list[str]` (each entry one SQL script,
applied once, in order, never edited after it has shipped; add a new entry to change a table). A module
joins the schema by being listed in `PARTS` under its key: the name its migrations are recorded under in
`schema_migrations`. Keys are the modules' historic names and never change, or an existing database would
run its scripts again.

On PostgreSQL (`[db] url`) the scripts are translated from SQLite's dialect statement by statement
(`cloud_sync.pg`); what cannot be (a trigger) is given in PostgreSQL's own SQL in the module's optional
`MIGRATIONS_PG = {index: script}`: it runs in place of that script's CREATE TRIGGER statements, after its
other statements, recorded under the same index — one append-only list, two engines.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import ModuleType

from cloud_sync import db, leases, pg
from cloud_sync.access import secrets, users
from cloud_sync.alerts import outbox as alerts
from cloud_sync.catalog import card_fill, cards, nomenclature
from cloud_sync.money import economics, price_list, price_reads, price_rules, price_sources, reports
from cloud_sync.onec import store as onec_store
from cloud_sync.orders import after_handover, handover_documents, mp_actions, pushes
from cloud_sync.orders import records as orders
from cloud_sync.stock import fbo, ledger, reconcile
from sitelink import store as link_store

PARTS: list[tuple[str, ModuleType]] = [
    ("cloud_sync.nomenclature", nomenclature),
    ("cloud_sync.catalog", cards),
    ("cloud_sync.stock", ledger),
    ("cloud_sync.orders", orders),
    ("cloud_sync.pricing", price_list),
    ("cloud_sync.price_rules", price_rules),
    ("cloud_sync.reports", reports),
    ("cloud_sync.alerts", alerts),
    ("cloud_sync.webhooks", pushes),
    ("cloud_sync.onec.store", onec_store),
    ("cloud_sync.users", users),
    ("cloud_sync.secrets", secrets),
    ("sitelink.store", link_store),
    # parts added since: appended, never inserted
    ("cloud_sync.stock.reconcile", reconcile),
    ("cloud_sync.money.price_sources", price_sources),
    ("cloud_sync.money.price_reads", price_reads),
    ("cloud_sync.card_fill", card_fill),
    ("cloud_sync.orders.after_handover", after_handover),
    ("cloud_sync.orders.handover_documents", handover_documents),
    ("cloud_sync.stock.fbo", fbo),
    ("cloud_sync.money.economics", economics),
    ("cloud_sync.orders.mp_actions", mp_actions),
    ("cloud_sync.leases", leases),
]


def scripts(module: ModuleType, *, postgres: bool) -> list[str]:
    """A part's migration scripts for one engine (PostgreSQL: with its `MIGRATIONS_PG` in place)."""
    own: dict[int, str] = getattr(module, "MIGRATIONS_PG", {}) if postgres else {}
    return [pg.Native.completing(script, own[idx]) if idx in own else script
            for idx, script in enumerate(module.MIGRATIONS)]


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply every pending migration of every part; the names applied ("key#index")."""
    postgres = db.is_postgres(conn)
    return db.migrate(conn, [(key, scripts(module, postgres=postgres)) for key, module in PARTS])


def open_db(path: str | Path) -> sqlite3.Connection:
    """Open (creating if needed) the tenant database and bring its schema up to date. `path` is the SQLite
    file, or the `postgresql://` URL of `[db] url`."""
    if not db.is_postgres(path):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = db.connect(path)
    migrate(conn)
    return conn
