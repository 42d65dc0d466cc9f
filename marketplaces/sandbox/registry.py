"""Which sandbox serves which marketplace: a pluggable registry of `module:Class` by name.

`register_sandbox("yandex_market", "marketplaces.sandbox.yandex_market:YandexMarketSandbox")` adds one;
`create_sandbox(name, seed=..., time_scale=...)` builds it; `start_sandbox(...)` also serves it on
127.0.0.1 in a thread (a `RunningSandbox`: `.url`, `.credentials`, `.app`, `.stop()`).
"""

from __future__ import annotations

import importlib
from typing import Any

from marketplaces.sandbox.core import RunningSandbox, SandboxApp, serve_in_thread

SANDBOXES: dict[str, str] = {
    "wildberries": "marketplaces.sandbox.wildberries:WildberriesSandbox",
    "ozon": "marketplaces.sandbox.ozon:OzonSandbox",
    "yandex_market": "marketplaces.sandbox.yandex_market:YandexMarketSandbox",
    "megamarket": "marketplaces.sandbox.megamarket:MegamarketSandbox",
    # not a marketplace: the marking register the packing check asks (issue 18.5)
    "chestny_znak": "marketplaces.sandbox.chestny_znak:ChestnyZnakSandbox",
}


def register_sandbox(name: str, target: str) -> None:
    SANDBOXES[name] = target


def create_sandbox(name: str, **options: Any) -> SandboxApp:
    """The sandbox app of marketplace `name` (options: seed, time_scale, validate, rng_seed)."""
    try:
        target = SANDBOXES[name]
    except KeyError:
        raise ValueError(f"no sandbox for {name!r}; known: {', '.join(SANDBOXES)}") from None
    module_name, class_name = target.split(":")
    return getattr(importlib.import_module(module_name), class_name)(**options)


def start_sandbox(name: str, port: int = 0, **options: Any) -> RunningSandbox:
    return serve_in_thread(create_sandbox(name, **options), port)
