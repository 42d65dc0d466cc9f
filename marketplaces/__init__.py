"""Talks to the marketplaces; knows nothing of the ledger.

The registry of the marketplaces: `ADAPTERS` names each one's adapter class, in the order the seller
sees them. `profile(name)` / `profiles()` tell what the rest of the system knows of a marketplace
without opening an account (base.MarketplaceProfile, declared in endpoints/<name>.toml);
`open_account(config)` returns the adapter of one account (see base.Marketplace); `price_model(name)`
how the marketplace states a price. Adapter modules are imported lazily: only the marketplaces in use
are loaded.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from marketplaces.base import AccountConfig, Marketplace, MarketplaceProfile, PriceModel, PriceTerms
from marketplaces.profiles import load_profile

ADAPTERS: dict[str, str] = {
    "wildberries": "marketplaces.wildberries:WildberriesAdapter",
    "ozon": "marketplaces.ozon:OzonAdapter",
    "yandex_market": "marketplaces.yandex_market:YandexMarketAdapter",
    "megamarket": "marketplaces.megamarket:MegamarketAdapter",
}

# The profiles loaded so far, by name (`profile` fills it on first use; a test may put its own in).
PROFILES: dict[str, MarketplaceProfile] = {}


def _unknown(name: str) -> ValueError:
    return ValueError(f"unknown marketplace {name!r}; known: {', '.join(ADAPTERS)}")


def profile(name: str) -> MarketplaceProfile:
    """The profile of a registered marketplace; raises ValueError for an unknown one."""
    if name not in ADAPTERS:
        raise _unknown(name)
    found = PROFILES.get(name)
    if found is None:
        found = PROFILES[name] = load_profile(name)
    return found


def profiles() -> dict[str, MarketplaceProfile]:
    """Every registered marketplace's profile by name, in the registry's order."""
    return {name: profile(name) for name in ADAPTERS}


def adapter_module(name: str) -> ModuleType:
    """The module of a registered marketplace's adapter (imported on first use)."""
    try:
        target = ADAPTERS[name]
    except KeyError:
        raise _unknown(name) from None
    return importlib.import_module(target.split(":")[0])


def open_account(config: AccountConfig) -> Marketplace:
    """The adapter for one account; raises ValueError for an unknown marketplace."""
    module = adapter_module(config.marketplace)
    return getattr(module, ADAPTERS[config.marketplace].split(":")[1])(config)


def price_model(marketplace: str) -> PriceModel:
    """The price model of a marketplace: its adapter module's `PRICE_MODEL` (every adapter has one); the
    pass-through model for a marketplace not registered here."""
    if marketplace not in ADAPTERS:
        return PriceModel(PriceTerms(marketplace))
    return adapter_module(marketplace).PRICE_MODEL
