"""Declarative endpoint maps: `<marketplace>.toml` beside this file, loaded by `load_endpoint_map`.

Each map has four tables (see wildberries.toml for a documented example):

- `[families]`: API family -> production base URL (WB serves content, prices, marketplace, finance
  from different hosts; Ozon has one). `AccountConfig.base_url`, when set, replaces every family's
  URL (a sandbox serves all families on one port); `options["base_urls"] = {family: url}` replaces one.
- `[groups.<name>]`: a limit group, one token bucket per account: `rate` (requests per second),
  `burst` (bucket size), `error_cost` (tokens a 4xx reply costs: WB Marketplace counts 10), `doc`;
  with `window_s` a sliding window instead: at most `burst` requests in any `window_s` seconds
  (Ozon's "80 requests per minute", no burst documented); `urgent_window_s` on a bucket of burst 1 where
  the limit is documented as a count per window (Megamarket: "5 requests per second"): an urgent call
  (a zero) goes ahead of the pace while that window has room (see marketplaces.http.TokenBucket).
- `[account_limit]` (optional): one more bucket every request of the account passes (Ozon: 50 rps per
  Client-Id), same keys as a group.
- `[item_rules.<name>]` (optional): at most `max` sends of one item key per `window_s` seconds
  (Ozon: a product-warehouse stock once per 30 s; a product's price 10 per hour).
- `[endpoints.<name>]`: `method`, `path` (with `{placeholders}`), `family`, `group`, `batch` (items
  per request, 0 = not batched), `idempotent` (may be re-sent blindly after a timeout/5xx; default
  true for GET/PUT/DELETE, false otherwise), `item_rule`, `doc` (the documented limit, in words).

`AccountConfig.endpoints = {"orders_new": {"path": "/api/v4/orders/new"}}` overrides any key of one
entry without a code change. The same file also holds the marketplace's `[profile]` (what it is, not how
to call it), which `marketplaces/profiles.py` reads; this loader ignores it. Time-based numbers are in marketplace time; `time_scale` speeds them up.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class EndpointMapError(ValueError):
    """An endpoint map or an override is not usable (unknown name, missing key, bad value)."""


@dataclass(frozen=True)
class Limit:
    """A documented limit as a token bucket: `rate` requests per second refill a bucket of `burst`.
    With `window_s` > 0 it is a sliding window instead: at most `burst` requests in any `window_s`
    seconds (`rate` is then `burst / window_s`, the long-run ceiling)."""

    name: str
    rate: float
    burst: float
    error_cost: float = 1.0
    doc: str = ""
    window_s: float = 0.0
    # > 0 where the documented limit is a count per window ("<= 5 requests per second": `rate` × this many
    # seconds), paced as a bucket of burst 1: an urgent call (a zero) may go ahead of the pace while the
    # last `urgent_window_s` seconds hold fewer than that count (marketplaces.http.TokenBucket)
    urgent_window_s: float = 0.0


@dataclass(frozen=True)
class ItemRule:
    """At most `max` sends of one item key in any `window_s` seconds."""

    name: str
    window_s: float
    max: int
    doc: str = ""


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str
    family: str
    group: str
    batch: int = 0
    idempotent: bool = True
    item_rule: str = ""
    doc: str = ""

    def format_path(self, **params: Any) -> str:
        try:
            return self.path.format(**{k: v for k, v in params.items()})
        except KeyError as exc:
            raise EndpointMapError(f"endpoint {self.name}: path {self.path} needs {exc.args[0]}") from None


@dataclass
class EndpointMap:
    marketplace: str
    families: dict[str, str]
    groups: dict[str, Limit]
    endpoints: dict[str, Endpoint]
    account_limit: Limit | None = None
    item_rules: dict[str, ItemRule] = field(default_factory=dict)
    parallel: int = 0  # top-level `parallel = N`: at most N requests of the account in flight (YM: 4); 0 = no cap

    def __getitem__(self, name: str) -> Endpoint:
        try:
            return self.endpoints[name]
        except KeyError:
            raise EndpointMapError(f"{self.marketplace}: no endpoint named {name!r}") from None

    def limit_of(self, name: str) -> Limit:
        return self.groups[self[name].group]

    def base_url(self, family: str, base_url: str = "", overrides: dict[str, str] | None = None) -> str:
        if overrides and family in overrides:
            return overrides[family].rstrip("/")
        if base_url:
            return base_url.rstrip("/")
        try:
            return self.families[family].rstrip("/")
        except KeyError:
            raise EndpointMapError(f"{self.marketplace}: unknown API family {family!r}") from None


_ENDPOINT_KEYS = {"method", "path", "family", "group", "batch", "idempotent", "item_rule", "doc"}


def _limit(name: str, raw: dict[str, Any]) -> Limit:
    try:
        limit = Limit(name, float(raw["rate"]), float(raw["burst"]), float(raw.get("error_cost", 1)),
                      str(raw.get("doc", "")), float(raw.get("window_s", 0)), float(raw.get("urgent_window_s", 0)))
    except (KeyError, TypeError, ValueError) as exc:
        raise EndpointMapError(f"limit {name}: needs numeric rate and burst ({exc})") from None
    if limit.urgent_window_s and (limit.window_s or limit.burst != 1 or limit.rate * limit.urgent_window_s < 1):
        # only a bucket of burst 1 keeps every window to `rate × urgent_window_s` with calls ahead of its pace
        raise EndpointMapError(f"limit {name}: urgent_window_s needs a bucket of burst 1 (no window_s) and"
                               " room for one request in the window")
    return limit


def _endpoint(name: str, raw: dict[str, Any], groups: dict[str, Limit], rules: dict[str, ItemRule]) -> Endpoint:
    unknown = set(raw) - _ENDPOINT_KEYS
    if unknown:
        raise EndpointMapError(f"endpoint {name}: unknown keys {sorted(unknown)}")
    try:
        method = str(raw["method"]).upper()
        ep = Endpoint(
            name=name,
            method=method,
            path=str(raw["path"]),
            family=str(raw["family"]),
            group=str(raw["group"]),
            batch=int(raw.get("batch", 0)),
            idempotent=bool(raw.get("idempotent", method in ("GET", "PUT", "DELETE", "HEAD"))),
            item_rule=str(raw.get("item_rule", "")),
            doc=str(raw.get("doc", "")),
        )
    except KeyError as exc:
        raise EndpointMapError(f"endpoint {name}: missing {exc.args[0]}") from None
    if ep.group not in groups:
        raise EndpointMapError(f"endpoint {name}: unknown limit group {ep.group!r}")
    if ep.item_rule and ep.item_rule not in rules:
        raise EndpointMapError(f"endpoint {name}: unknown item rule {ep.item_rule!r}")
    if not ep.path.startswith("/"):
        raise EndpointMapError(f"endpoint {name}: path must start with / ({ep.path!r})")
    return ep


def parse_endpoint_map(marketplace: str, data: dict[str, Any],
                       overrides: dict[str, dict[str, Any]] | None = None) -> EndpointMap:
    groups = {n: _limit(n, g) for n, g in data.get("groups", {}).items()}
    rules = {
        n: ItemRule(n, float(r["window_s"]), int(r["max"]), str(r.get("doc", "")))
        for n, r in data.get("item_rules", {}).items()
    }
    raw_eps: dict[str, dict[str, Any]] = {n: dict(e) for n, e in data.get("endpoints", {}).items()}
    for name, change in (overrides or {}).items():
        if name not in raw_eps:
            raise EndpointMapError(f"{marketplace}: override of unknown endpoint {name!r}")
        raw_eps[name].update(change)
    acc = data.get("account_limit")
    return EndpointMap(
        marketplace=marketplace,
        families={k: str(v) for k, v in data.get("families", {}).items()},
        groups=groups,
        endpoints={n: _endpoint(n, e, groups, rules) for n, e in raw_eps.items()},
        account_limit=_limit("account", acc) if acc else None,
        item_rules=rules,
        parallel=int(data.get("parallel", 0)),
    )


def load_endpoint_map(marketplace: str, overrides: dict[str, dict[str, Any]] | None = None,
                      path: Path | None = None) -> EndpointMap:
    """The endpoint map of a marketplace (`<marketplace>.toml` here), with per-account overrides."""
    file = path or HERE / f"{marketplace}.toml"
    if not file.exists():
        raise EndpointMapError(f"no endpoint map for {marketplace!r} at {file}")
    with file.open("rb") as fh:
        data = tomllib.load(fh)
    return parse_endpoint_map(marketplace, data, overrides)


__all__ = ["Endpoint", "EndpointMap", "EndpointMapError", "ItemRule", "Limit", "load_endpoint_map",
           "parse_endpoint_map", "replace"]
