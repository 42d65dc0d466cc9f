"""Talks to the marketplaces; knows nothing of the ledger.

`open_account(config)` returns the adapter of the account's marketplace (see base.Marketplace).
Adapters are imported lazily: only the marketplaces in use are loaded.
"""

from __future__ import annotations

import importlib

from marketplaces.base import AccountConfig, Marketplace

ADAPTERS: dict[str, str] = {
    "wildberries": "marketplaces.wildberries:WildberriesAdapter",
    "ozon": "marketplaces.ozon:OzonAdapter",
    "yandex_market": "marketplaces.yandex_market:YandexMarketAdapter",
    "megamarket": "marketplaces.megamarket:MegamarketAdapter",
}


def open_account(config: AccountConfig) -> Marketplace:
    """The adapter for one account; raises ValueError for an unknown marketplace."""
    try:
        target = ADAPTERS[config.marketplace]
    except KeyError:
        raise ValueError(f"unknown marketplace {config.marketplace!r}; known: {', '.join(ADAPTERS)}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)(config)
