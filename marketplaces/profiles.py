"""Each marketplace's profile as it declares it: the `[profile]` table of `endpoints/<name>.toml`, read into
`marketplaces.base.MarketplaceProfile` and checked as it loads (a profile that could mislead the cloud
does not load). `marketplaces.profile(name)` is the way in; this module only reads files.

The table (see endpoints/wildberries.toml for a documented example):

    [profile]            title, colour, label_after, min_poll_s, poll_reason, poll_endpoint,
                         min_stock_interval_s, stock_interval_reason, ships (the last three
                         optional; ships = "per_order" (default) | "per_batch": see MarketplaceProfile)
    [profile.can]        hide_cards, create_cards, read_fbo_stock, realization_report, read_prices,
                         receive_pushes, handover_documents, reduce_order (each true or false; a
                         missing one is false)
    [profile.statuses]   native status (or "STATUS/SUBSTATUS") = unified status
    [profile.push]       only where it pushes: paths, sources, noun, accepted, refused, ping (the
                         answer to a connection check where it differs from accepted),
                         refusal_kinds ({"400" = "..."}), other_refusal, appends (true: the seller
                         enters one URL and the marketplace appends each path to it itself),
                         cabinet (where in the seller's cabinet the URL(s) go: English text,
                         translated where it is shown)
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from dataclasses import fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from marketplaces.base import SHIP_MODELS, UNIFIED_STATUSES, Capabilities, MarketplaceProfile, PushTerms
from marketplaces.endpoints import HERE

_REQUIRED = ("title", "colour", "label_after", "min_poll_s", "poll_reason", "poll_endpoint")
_OPTIONAL = ("min_stock_interval_s", "stock_interval_reason", "stock_follows_orders", "ships")
_TABLES = ("can", "statuses", "push")
_PUSH_KEYS = {"paths", "sources", "noun", "accepted", "refused", "ping", "refusal_kinds", "other_refusal",
              "appends", "cabinet"}
_COLOUR = re.compile(r"#[0-9a-fA-F]{6}")


class ProfileError(ValueError):
    """A marketplace's profile is missing, incomplete or inconsistent; the message names the key."""


def load_profile(name: str, path: Path | None = None) -> MarketplaceProfile:
    """The profile `name` declares in `endpoints/<name>.toml` (or in `path`)."""
    file = path or HERE / f"{name}.toml"
    try:
        with file.open("rb") as fh:
            table = tomllib.load(fh).get("profile")
    except OSError as exc:
        raise ProfileError(f"{name}: no profile at {file} ({exc.strerror})") from None
    if not isinstance(table, dict):
        raise ProfileError(f"{name}: {file} has no [profile] table")
    return parse_profile(name, table)


def parse_profile(name: str, table: dict[str, Any]) -> MarketplaceProfile:
    """A `[profile]` table as a MarketplaceProfile; raises ProfileError naming what is wrong."""
    where = f"{name}: profile"
    unknown = set(table) - set(_REQUIRED) - set(_OPTIONAL) - set(_TABLES)
    if unknown:
        raise ProfileError(f"{where}: unknown keys {sorted(unknown)}")
    missing = [k for k in _REQUIRED if k not in table]
    if missing:
        raise ProfileError(f"{where}: missing {', '.join(missing)}")
    if not _COLOUR.fullmatch(str(table["colour"])):
        raise ProfileError(f"{where}.colour must be #rrggbb, got {table['colour']!r}")
    if table["label_after"] not in ("confirm", "assemble"):
        raise ProfileError(f"{where}.label_after must be 'confirm' or 'assemble', got {table['label_after']!r}")
    ships = table.get("ships", "per_order")
    if ships not in SHIP_MODELS:
        raise ProfileError(f"{where}.ships must be one of {', '.join(SHIP_MODELS)}, got {ships!r}")
    min_poll_s = _seconds(table["min_poll_s"], f"{where}.min_poll_s", positive=True)
    min_stock = _seconds(table.get("min_stock_interval_s", 0.0), f"{where}.min_stock_interval_s", positive=False)
    can = _capabilities(table.get("can", {}), f"{where}.can")
    statuses = _statuses(table.get("statuses", {}), f"{where}.statuses")
    push = _push(table["push"], f"{where}.push") if "push" in table else None
    follows = table.get("stock_follows_orders", False)
    if not isinstance(follows, bool):
        raise ProfileError(f"{where}.stock_follows_orders must be true or false, got {follows!r}")
    if can.receive_pushes != (push is not None):
        raise ProfileError(f"{where}: can.receive_pushes is {str(can.receive_pushes).lower()} but [profile.push] is"
                           f" {'present' if push else 'missing'}")
    return MarketplaceProfile(
        name=name, title=str(table["title"]), colour=str(table["colour"]), statuses=statuses,
        min_poll_s=min_poll_s, poll_reason=str(table["poll_reason"]), poll_endpoint=str(table["poll_endpoint"]),
        label_after=table["label_after"], can=can, min_stock_interval_s=min_stock,
        stock_interval_reason=str(table.get("stock_interval_reason", "")), push=push, ships=ships,
        stock_follows_orders=follows,
    )


def _seconds(value: Any, where: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0 or (positive and value == 0):
        raise ProfileError(f"{where} must be a number of seconds {'above' if positive else 'of at least'} 0,"
                           f" got {value!r}")
    return float(value)


def _capabilities(table: Any, where: str) -> Capabilities:
    names = {f.name for f in fields(Capabilities)}
    if not isinstance(table, dict) or set(table) - names:
        raise ProfileError(f"{where}: known capabilities are {', '.join(sorted(names))}")
    if not all(isinstance(v, bool) for v in table.values()):
        raise ProfileError(f"{where}: each capability is true or false")
    return Capabilities(**table)


def _statuses(table: Any, where: str) -> MappingProxyType[str, str]:
    if not isinstance(table, dict) or not table:
        raise ProfileError(f"{where}: the native statuses and their unified status are required")
    for native, unified in table.items():
        if unified not in UNIFIED_STATUSES:
            raise ProfileError(f"{where}.{native}: {unified!r} is not one of {UNIFIED_STATUSES}")
    return MappingProxyType(dict(table))


def _push(table: Any, where: str) -> PushTerms:
    if not isinstance(table, dict) or set(table) - _PUSH_KEYS:
        raise ProfileError(f"{where}: known keys are {', '.join(sorted(_PUSH_KEYS))}")
    paths = table.get("paths")
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p and not p.startswith("/")
                                                           for p in paths):
        raise ProfileError(f"{where}.paths: the path suffixes it posts to, e.g. [\"notification\"]")
    sources = table.get("sources", [])
    for cidr in sources:
        try:
            ipaddress.ip_network(cidr, strict=False)
        except (TypeError, ValueError):
            raise ProfileError(f"{where}.sources: {cidr!r} is not a network") from None
    for key in ("accepted", "refused"):
        if not isinstance(table.get(key), dict):
            raise ProfileError(f"{where}.{key}: the answer body (a table) is required")
    if "ping" in table and not isinstance(table["ping"], dict):
        raise ProfileError(f"{where}.ping: the answer body to a connection check (a table)")
    if not isinstance(table.get("appends", False), bool):
        raise ProfileError(f"{where}.appends: true or false (the marketplace appends the paths to the URL entered)")
    cabinet = table.get("cabinet", "")
    if not isinstance(cabinet, str) or cabinet != cabinet.strip() or "\n" in cabinet or "%" in cabinet:
        # shown through gettext, whose "%" formats (a page's `_`): one line of plain text
        raise ProfileError(f"{where}.cabinet: where in the seller's cabinet the URL(s) go, one line of text"
                           " without %")
    try:
        kinds = {int(status): str(kind) for status, kind in table.get("refusal_kinds", {}).items()}
    except ValueError:
        raise ProfileError(f"{where}.refusal_kinds: keys are HTTP statuses") from None
    return PushTerms(paths=tuple(paths), accepted=MappingProxyType(table["accepted"]),
                     refused=MappingProxyType(table["refused"]), sources=tuple(str(s) for s in sources),
                     refusal_kinds=MappingProxyType(kinds), other_refusal=str(table.get("other_refusal", "")),
                     noun=str(table.get("noun", "push")), appends=bool(table.get("appends", False)),
                     ping=MappingProxyType(table["ping"]) if "ping" in table else None, cabinet=cabinet)
