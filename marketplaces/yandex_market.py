"""The Yandex.Market adapter: the common marketplace calls as Partner API requests, and its pushes.

Owns: turning `Marketplace` calls into the current versioned Partner API paths of
`endpoints/yandex_market.toml` (cabinet-level catalog, prices, orders and warehouses by `businessId`;
store-level stocks, hidden offers, order actions and labels by `campaignId`), and the answers back
into the common types with the native ids and statuses beside them; parsing Notification API pushes
(`parse_push`) into `OrderEvent`s.

Account options (`AccountConfig.options`):
  business_id   the cabinet (required)
  campaign_id   the FBS store (required); its warehouse is the account's default warehouse
  campaigns     {warehouse_id: campaign_id} when the cabinet has several FBS stores (one warehouse each)
  price_level   "business" (default: one price in every store) or "campaign" (this store only)
  fby_campaign_id  the cabinet's FBY store, whose stock lies in Market's own warehouses (FBO, read only);
                none: the account has no FBO stock to read
  report_polls  how often a realization report's status is asked before giving up (default 60, each
                after the generation time Market estimates, 0.5..30 s)
Credentials: {"Api-Key": token} (OAuth is deprecated and not supported).

The FBS flow: orders arrive PROCESSING/STARTED (YM has no separate confirmation: "confirm" checks the
order and sends nothing); "assemble" sends the box layout with marking codes (`PUT .../boxes`) then
PROCESSING/READY_TO_SHIP; "ship" confirms the order's first-mile shipment (Market then shows
PROCESSING/SHIPPED); "cancel" sets CANCELLED/SHOP_FAILED. Every move reads the order first and is not
sent when the order is already there; a move that timed out is read back before it is sent again.

Prices read back (`read_prices`) come from the account's price level (`offer-prices` of the cabinet or
of the store); the realization report is Market's monthly goods-realization report (generate -> status
-> the file's link, fetched without the Api-Key), read by `yandex_market_realization`, with the fees
of its orders from `stats/orders`.
"""

from __future__ import annotations

import json
import time as time_mod
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from marketplaces import yandex_market_realization as realization
from marketplaces.base import (
    AccountConfig,
    AuthError,
    BadResponse,
    Card,
    CardCreation,
    FeeAsk,
    HandoverDocument,
    ItemResult,
    Label,
    LabelFormat,
    MarketplaceError,
    NewCard,
    NotSupported,
    Order,
    OrderAction,
    OrderEvent,
    OrderLine,
    OrderReturn,
    PriceChange,
    PriceModel,
    PriceTerms,
    RealizationReport,
    ReportLine,
    ReportProgress,
    ReturnLine,
    SaleFees,
    StatusChange,
    StockKey,
    StockLevel,
    Uncertain,
    Warehouse,
    only_keys,
)
from marketplaces.endpoints import load_endpoint_map
from marketplaces.http import HttpClient, Reply, batches, field_of, in_parallel

NAME = "yandex_market"
LABEL_FORMATS = {"": "A7", "A7": "A7", "75x120": "A7", "A9": "A9", "40x58": "A9",
                 "A9_HORIZONTALLY": "A9_HORIZONTALLY", "58x40": "A9_HORIZONTALLY", "A4": "A4"}
LABEL_SIZES_MM = {"A7": (75.0, 120.0), "A9": (40.0, 58.0), "A9_HORIZONTALLY": (58.0, 40.0), "A4": (210.0, 297.0)}
ORDER_STATUSES = {"PLACING", "RESERVED", "UNPAID", "PROCESSING", "DELIVERY", "PICKUP", "DELIVERED", "CANCELLED",
                  "PENDING", "PARTIALLY_RETURNED", "RETURNED", "UNKNOWN"}
SHIPPED_OR_LATER = {"DELIVERY", "PICKUP", "DELIVERED", "PARTIALLY_RETURNED", "RETURNED"}
PUSH_KINDS = {"ORDER_CREATED": "created", "ORDER_CANCELLED": "cancelled", "ORDER_STATUS_UPDATED": "status",
              "ORDER_UPDATED": "updated", "PING": "ping"}


def _decimal(value: Any, what: str, ep: str, account: str) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise BadResponse(f"{what} is not a number: {value!r}", account=account, endpoint=ep) from None


def _when(value: Any, what: str, ep: str, account: str) -> datetime:
    if not isinstance(value, str) or not value:
        raise BadResponse(f"{what} is missing", account=account, endpoint=ep)
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            ts = datetime.strptime(value, "%d-%m-%Y %H:%M:%S")
        except ValueError:
            raise BadResponse(f"{what} is not a date-time: {value!r}", account=account, endpoint=ep) from None
    return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)


class YandexMarketAdapter:
    """One Yandex.Market cabinet/store of the seller; see the module docstring."""

    name: Literal["yandex_market"] = "yandex_market"

    def __init__(self, config: AccountConfig) -> None:
        self.config = config
        self.account = config.name
        opts = config.options
        try:
            self.business_id = int(opts["business_id"])
            self.campaign_id = int(opts["campaign_id"])
        except (KeyError, TypeError, ValueError):
            raise MarketplaceError("options business_id and campaign_id (numbers) are required",
                                   account=config.name) from None
        self.campaigns: dict[str, int] = {str(k): int(v) for k, v in (opts.get("campaigns") or {}).items()}
        self.price_level = str(opts.get("price_level", "business"))
        try:
            self.fby_campaign_id = int(opts["fby_campaign_id"]) if opts.get("fby_campaign_id") else None
        except (TypeError, ValueError):
            raise MarketplaceError("option fby_campaign_id must be a number", account=config.name) from None
        if self.price_level not in ("business", "campaign"):
            raise MarketplaceError("option price_level must be 'business' or 'campaign'", account=config.name)
        self.map = load_endpoint_map(NAME, config.endpoints)
        self.client = HttpClient(config, self.map, auth=self._auth)
        self.parallel = max(1, self.map.parallel or 4)
        self._default_warehouse = str(opts.get("warehouse_id", ""))

    def _auth(self, headers: dict[str, str]) -> None:
        key = self.config.credentials.get("Api-Key")
        if not key:
            raise AuthError("credentials need an Api-Key", account=self.account, endpoint="auth")
        headers["Api-Key"] = key

    def _bad(self, message: str, ep: str) -> BadResponse:
        return BadResponse(message, account=self.account, endpoint=ep)

    def _json(self, reply: Reply) -> dict[str, Any]:
        data = reply.json_object()
        if data.get("status") == "ERROR":
            raise MarketplaceError(f"answered ERROR: {json.dumps(data.get('errors'), ensure_ascii=False)[:300]}",
                                   account=self.account, endpoint=reply.endpoint, status=reply.status, native=data)
        return data

    def _call(self, name: str, *, path: dict[str, Any] | None = None, params: dict[str, Any] | None = None,
              body: Any = None, cost: float = 1.0) -> dict[str, Any]:
        return self._json(self.client.call(name, path_params=path, params=params, json=body, cost=cost))

    def _pages(self, name: str, path: dict[str, Any], body: Any, limit: int,
               key: Iterable[str], cost: float = 1.0) -> Iterator[dict[str, Any]]:
        """Each page of a `page_token` listing; stops when a token repeats (a known YM paging loop)."""
        token: str | None = None
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {"limit": limit}
            if token:
                params["page_token"] = token
            data = self._call(name, path=path, params=params, body=body, cost=cost)
            yield data
            container = data
            for k in key:
                container = container.get(k) or {}
            token = (container.get("paging") or {}).get("nextPageToken") if isinstance(container, dict) else None
            if not token or token in seen:
                return
            seen.add(token)

    # ------------------------------------------------------------------ warehouses and stores

    def _campaign_of(self, warehouse_id: str) -> int:
        if warehouse_id in self.campaigns:
            return self.campaigns[warehouse_id]
        if not warehouse_id or warehouse_id == self._default_warehouse or not self.campaigns:
            return self.campaign_id
        raise MarketplaceError(f"warehouse {warehouse_id} is not one of this account's stores",
                               account=self.account, endpoint="stocks_update")

    def warehouses(self) -> list[Warehouse]:
        out: list[Warehouse] = []
        ids = sorted({self.campaign_id, *self.campaigns.values()})
        for page in self._pages("warehouses", {"businessId": self.business_id},
                                {"campaignIds": ids[:25]}, 30, ["result"]):
            for w in field_of(page, "result", "warehouses", endpoint="warehouses", account=self.account):
                out.append(Warehouse(native_id=str(w["id"]), name=str(w.get("name", "")), kind="fbs", native=w))
        if out and not self._default_warehouse:
            own = [w for w in out if w.native.get("campaignId") == self.campaign_id]
            self._default_warehouse = own[0].native_id if own else out[0].native_id
        return out

    # ------------------------------------------------------------------ catalog

    def _card(self, m: dict[str, Any]) -> Card:
        offer = field_of(m, "offer", endpoint="offer_mappings", account=self.account)
        mapping = m.get("mapping") or {}
        offer_id = field_of(offer, "offerId", endpoint="offer_mappings", account=self.account)
        status = ""
        for c in offer.get("campaigns") or []:
            if c.get("campaignId") == self.campaign_id:
                status = str(c.get("status", ""))
        price = (offer.get("basicPrice") or {}).get("value")
        return Card(
            native_id=str(offer_id), offer_id=str(offer_id), title=str(offer.get("name", "")),
            barcodes=[str(b) for b in offer.get("barcodes") or []],
            category=str(mapping.get("marketCategoryName", "")),
            category_id=str(mapping.get("marketCategoryId") or offer.get("marketCategoryId") or ""),
            brand=str(offer.get("vendor", "")), group_id=str(mapping.get("marketSku", "") or ""),
            visible=status != "DISABLED_BY_PARTNER",
            price=_decimal(price, "basicPrice.value", "offer_mappings", self.account) if price is not None else None,
            native_status=status or str(offer.get("cardStatus", "")), native=m)

    def list_cards(self) -> Iterator[Card]:
        for page in self._pages("offer_mappings", {"businessId": self.business_id}, {}, 100, ["result"]):
            for m in field_of(page, "result", "offerMappings", endpoint="offer_mappings", account=self.account):
                yield self._card(m)

    def create_card(self, card: NewCard) -> CardCreation:
        barcodes = [str(s) for size in card.sizes for s in size.get("skus", [])]
        offer: dict[str, Any] = {"offerId": card.offer_id, "name": card.title, "marketCategoryId": card.subject_id}
        if card.brand:
            offer["vendor"] = card.brand
        if card.description:
            offer["description"] = card.description
        if barcodes:
            offer["barcodes"] = barcodes
        self._call("offer_mappings_update", path={"businessId": self.business_id},
                   body={"offerMappings": [{"offer": offer}]}, cost=1)
        return CardCreation(card.offer_id, "pending")

    def card_creation_status(self, offer_id: str) -> CardCreation:
        data = self._call("offer_mappings", path={"businessId": self.business_id}, params={"limit": 1},
                          body={"offerIds": [offer_id]})
        found = field_of(data, "result", "offerMappings", endpoint="offer_mappings", account=self.account)
        if not found:
            return CardCreation(offer_id, "pending")
        card = self._card(found[0])
        status = str(found[0]["offer"].get("cardStatus", ""))
        if status.startswith("HAS_CARD"):
            return CardCreation(offer_id, "created", card=card)
        if status.endswith("ERRORS") or status.startswith("REJECTED"):
            return CardCreation(offer_id, "failed", errors=[status], card=card)
        return CardCreation(offer_id, "pending", card=card)

    def set_visibility(self, card_ids: Sequence[str], visible: bool) -> list[ItemResult]:
        name = "unhide" if visible else "hide"
        results: list[ItemResult] = []
        for chunk in batches(list(dict.fromkeys(card_ids)), self.map[name].batch):
            try:
                self._call(name, path={"campaignId": self.campaign_id},
                           body={"hiddenOffers": [{"offerId": c} for c in chunk]}, cost=len(chunk))
                results += [ItemResult(c, True) for c in chunk]
            except MarketplaceError as exc:
                results += [ItemResult(c, False, str(exc), exc.retryable) for c in chunk]
        return results

    # ------------------------------------------------------------------ prices and stocks

    def push_prices(self, changes: Sequence[PriceChange]) -> list[ItemResult]:
        """Business-level prices (every store) unless the account's price_level is "campaign"."""
        name = "prices_campaign" if self.price_level == "campaign" else "prices_business"
        path = {"campaignId": self.campaign_id} if name == "prices_campaign" else {"businessId": self.business_id}
        results: list[ItemResult] = []
        offers: list[tuple[str, dict[str, Any]]] = []
        for ch in changes:
            if ch.price <= 0:
                results.append(ItemResult(ch.card_id, False, "price must be positive"))
                continue
            price: dict[str, Any] = {"value": float(ch.price), "currencyId": "RUR"}
            if ch.old_price is not None:
                if ch.old_price <= ch.price:
                    results.append(ItemResult(ch.card_id, False, "old price must be above the price (discountBase)"))
                    continue
                discount = (ch.old_price - ch.price) / ch.old_price * 100
                if not 5 <= discount <= 99:
                    results.append(ItemResult(ch.card_id, False,
                                              f"YM shows a crossed-out price only for a 5-99% discount ({discount:.1f}%)"))
                    continue
                price["discountBase"] = float(ch.old_price)
            if ch.min_price is not None and name == "prices_business":
                price["minimumForBestseller"] = float(ch.min_price)
            offers.append((ch.card_id, {"offerId": ch.offer_id or ch.card_id, "price": price}))
        for chunk in batches(offers, self.map[name].batch):
            try:
                self._call(name, path=path, body={"offers": [o for _, o in chunk]}, cost=len(chunk))
                results += [ItemResult(k, True) for k, _ in chunk]
            except MarketplaceError as exc:
                results += [ItemResult(k, False, str(exc), exc.retryable) for k, _ in chunk]
        return results

    def read_prices(self) -> list[PriceChange]:
        """The prices Market holds now, at the account's price level: the business's prices for every
        store (`POST /v2/businesses/{businessId}/offer-prices`), or with `price_level = "campaign"` the
        store's own (`POST /v2/campaigns/{campaignId}/offer-prices`). `old_price` is the crossed-out
        `discountBase`, `min_price` the business price's `minimumForBestseller`; `native` keeps the level
        and the update time."""
        if self.price_level == "campaign":
            name, path, key = "prices_campaign_read", {"campaignId": self.campaign_id}, "campaign"
        else:
            name, path, key = "prices_business_read", {"businessId": self.business_id}, "business"
        limit = self.map[name].batch or 500
        out: list[PriceChange] = []
        # the limit counts the offers answered: each page is charged as a full one
        for page in self._pages(name, path, {}, limit, ["result"], cost=limit):
            for o in field_of(page, "result", "offers", endpoint=name, account=self.account):
                offer_id = str(field_of(o, "offerId", endpoint=name, account=self.account))
                price = o.get("price") or {}
                if price.get("value") is None:
                    continue  # an offer without a price set at this level
                base, minimum = price.get("discountBase"), price.get("minimumForBestseller")
                out.append(PriceChange(
                    card_id=offer_id, offer_id=offer_id, price=_decimal(price["value"], "price.value", name, self.account),
                    old_price=_decimal(base, "price.discountBase", name, self.account) if base else None,
                    min_price=_decimal(minimum, "price.minimumForBestseller", name, self.account) if minimum else None,
                    native={"level": key, "currency": price.get("currencyId", ""),
                            "updatedAt": price.get("updatedAt") or o.get("updatedAt") or ""}))
        return out

    def push_stocks(self, levels: Sequence[StockLevel]) -> list[ItemResult]:
        """Absolute available counts per store, <= 2000 SKUs a request and at most half the SKUs-per-minute
        bucket (`HttpClient.item_batch`), each SKU once (the last level of a SKU wins), up to `parallel`
        requests in flight."""
        results: list[ItemResult] = []
        per_campaign: dict[int, dict[str, StockLevel]] = {}
        campaign_of: dict[str, int | MarketplaceError] = {}
        for lv in levels:
            if lv.kind != "fbs":
                results.append(ItemResult(f"{lv.card_id}@{lv.warehouse_id}", False, "FBY stock is Market's own"))
                continue
            if lv.quantity < 0 or lv.quantity > 2_000_000_000:
                results.append(ItemResult(f"{lv.card_id}@{lv.warehouse_id}", False,
                                          f"count {lv.quantity} is outside 0..2000000000"))
                continue
            campaign = campaign_of.get(lv.warehouse_id)
            if campaign is None:
                try:
                    campaign = campaign_of[lv.warehouse_id] = self._campaign_of(lv.warehouse_id)
                except MarketplaceError as exc:
                    campaign = campaign_of[lv.warehouse_id] = exc
            if isinstance(campaign, MarketplaceError):
                results.append(ItemResult(f"{lv.card_id}@{lv.warehouse_id}", False, str(campaign)))
                continue
            per_campaign.setdefault(campaign, {})[lv.offer_id or lv.card_id] = lv
        jobs = [(campaign, chunk) for campaign, by_sku in per_campaign.items()
                for chunk in batches(list(by_sku.values()), self.client.item_batch("stocks_update"))]

        def send(job: tuple[int, list[StockLevel]]) -> list[ItemResult]:
            campaign, chunk = job
            body = {"skus": [{"sku": lv.offer_id or lv.card_id, "items": [{"count": int(lv.quantity)}]}
                             for lv in chunk]}
            keys = [f"{lv.card_id}@{lv.warehouse_id}" for lv in chunk]
            try:
                self._call("stocks_update", path={"campaignId": campaign}, body=body, cost=len(chunk))
                return [ItemResult(k, True) for k in keys]
            except MarketplaceError as exc:
                return [ItemResult(k, False, str(exc), exc.retryable) for k in keys]

        for part in in_parallel(send, jobs, self.parallel):
            results += part
        return results

    def read_stocks(self, kind: Literal["fbs", "fbo"] = "fbs",
                    cards: Sequence[StockKey] | None = None) -> list[StockLevel]:
        """FBS: every FBS store's warehouse (getStocks, AVAILABLE; with `cards`, only the stores of their
        warehouses, asked for their SKUs by `offerIds` — a list answered whole, so without paging); FBO: the
        FBY store's stock per Market fulfilment warehouse (getStocks of `fby_campaign_id`, named by
        getFulfillmentWarehouses; `cards` filters it here)."""
        if kind == "fbo":
            levels = self._read_fby_stocks()
            return levels if cards is None else only_keys(levels, cards)
        out: list[StockLevel] = []
        if cards is not None:
            stores: dict[int, set[str]] = {}
            for k in cards:
                sku = k.offer_id or k.card_id
                for campaign in ({self._campaign_of(k.warehouse_id)} if k.warehouse_id
                                 else {self.campaign_id, *self.campaigns.values()}):
                    stores.setdefault(campaign, set()).add(sku)
            size = min(500, self.client.item_batch("stocks_read"))  # offerIds: at most 500 a request
            for campaign, skus in sorted(stores.items()):
                for chunk in batches(sorted(skus), size):
                    page = self._call("stocks_read", path={"campaignId": campaign}, body={"offerIds": chunk},
                                      cost=len(chunk))
                    out += self._fbs_levels(page)
            return only_keys(out, cards)
        for campaign in sorted({self.campaign_id, *self.campaigns.values()}):
            for page in self._pages("stocks_read", {"campaignId": campaign}, {}, 200, ["result"]):
                out += self._fbs_levels(page)
        return out

    def _fbs_levels(self, page: dict[str, Any]) -> list[StockLevel]:
        out: list[StockLevel] = []
        for wh in field_of(page, "result", "warehouses", endpoint="stocks_read", account=self.account):
            for offer in wh.get("offers") or []:
                counts = {s.get("type"): int(s.get("count", 0)) for s in offer.get("stocks") or []}
                qty = counts.get("AVAILABLE", counts.get("FIT", 0))
                out.append(StockLevel(str(offer["offerId"]), str(offer["offerId"]), str(wh["warehouseId"]), qty, "fbs"))
        return out

    def _read_fby_stocks(self) -> list[StockLevel]:
        if self.fby_campaign_id is None:
            raise NotSupported(NAME, "read_stocks(fbo) without an FBY store", account=self.account,
                               seller_text="У этого кабинета не указан FBY-магазин (fby_campaign_id): остатков на "
                                           "складах Маркета читать неоткуда.")
        names: dict[str, str] = {}
        data = self._call("fulfillment_warehouses")
        for w in field_of(data, "result", "warehouses", endpoint="fulfillment_warehouses", account=self.account):
            names[str(w.get("id"))] = str(w.get("name") or "")
        out: list[StockLevel] = []
        for page in self._pages("stocks_read", {"campaignId": self.fby_campaign_id}, {}, 200, ["result"]):
            for wh in field_of(page, "result", "warehouses", endpoint="stocks_read", account=self.account):
                for offer in wh.get("offers") or []:
                    try:
                        counts = {s["type"]: int(s["count"]) for s in offer.get("stocks") or []}
                        wid, sku = str(wh["warehouseId"]), str(offer["offerId"])
                    except (KeyError, TypeError, ValueError) as exc:
                        raise self._bad(f"an FBY stock cannot be read ({exc})", "stocks_read") from None
                    if "AVAILABLE" not in counts and "FIT" not in counts:
                        raise self._bad(f"no AVAILABLE or FIT count for {sku} at warehouse {wid}", "stocks_read")
                    out.append(StockLevel(sku, sku, wid, counts.get("AVAILABLE", counts.get("FIT", 0)), "fbo",
                                          warehouse_name=names.get(wid, "")))
        return out

    LOGISTICS = ("DELIVERY_TO_CUSTOMER", "CROSSREGIONAL_DELIVERY", "EXPRESS_DELIVERY", "SORTING", "MIDDLE_MILE")
    ACQUIRING = ("PAYMENT_TRANSFER", "AGENCY_COMMISSION")

    def sale_fees(self, cards: Sequence[FeeAsk]) -> list[SaleFees]:
        """Market's services for one unit at the card's price (tariffs/calculate for the FBS store, 200
        offers a request): the placement fee (FEE) as a percent of the price, delivery, sorting and middle
        mile as logistics, payment transfer and agency commission as acquiring. It needs the offer's
        category and packed size: a card without them (from the offer mappings) is left to estimates."""
        known = {c.native_id: c for c in self.list_cards()}
        asks, out = [], []
        for a in cards:
            card = known.get(a.card_id)
            dims = dict(a.dimensions) or dict(((card.native.get("offer") or {}).get("weightDimensions") or {})
                                              if card else {})
            category = a.category_id or (card.category_id if card else "")
            if a.price > 0 and category.isdigit() and int(category) > 0 \
                    and all(float(dims.get(k) or 0) > 0 for k in ("length", "width", "height", "weight")):
                asks.append((a, int(category), dims))
            else:
                out.append(SaleFees(a.card_id, source="tariffs/calculate: no category or size"))
        for chunk in batches(asks, self.map["tariffs_calculate"].batch or 200):
            body = {"parameters": {"campaignId": self.campaign_id},
                    "offers": [{"categoryId": cat, "price": float(a.price), "length": float(d["length"]),
                                "width": float(d["width"]), "height": float(d["height"]),
                                "weight": float(d["weight"]), "quantity": 1} for a, cat, d in chunk]}
            data = self._call("tariffs_calculate", body=body)
            answered = field_of(data, "result", "offers", endpoint="tariffs_calculate", account=self.account)
            if len(answered) != len(chunk):
                raise self._bad(f"{len(answered)} offers answered for {len(chunk)} asked", "tariffs_calculate")
            for (a, _cat, _d), got in zip(chunk, answered, strict=True):  # the answer keeps the order asked
                sums = {"fee": Decimal(0), "logistics": Decimal(0), "acquiring": Decimal(0)}
                for t in got.get("tariffs") or []:
                    kind = t.get("type")
                    amount = _decimal(t.get("amount", 0), "tariffs.amount", "tariffs_calculate", self.account)
                    if kind == "FEE":
                        sums["fee"] += amount
                    elif kind in self.LOGISTICS:
                        sums["logistics"] += amount
                    elif kind in self.ACQUIRING:
                        sums["acquiring"] += amount
                out.append(SaleFees(a.card_id, commission_percent=(sums["fee"] / a.price * 100).quantize(Decimal("0.01")),
                                    logistics=sums["logistics"], acquiring=sums["acquiring"],
                                    source="tariffs/calculate"))
        return out

    # ------------------------------------------------------------------ orders

    def _order(self, o: dict[str, Any]) -> Order:
        ep = "orders"
        status = field_of(o, "status", endpoint=ep, account=self.account)
        if status not in ORDER_STATUSES:
            raise self._bad(f"order {o.get('orderId')}: unknown status {status!r}", ep)
        lines = []
        for it in field_of(o, "items", endpoint=ep, account=self.account):
            payment = ((it.get("prices") or {}).get("payment") or {}).get("value", 0)
            lines.append(OrderLine(
                card_id=str(field_of(it, "offerId", endpoint=ep, account=self.account)), offer_id=str(it["offerId"]),
                quantity=int(field_of(it, "count", endpoint=ep, account=self.account)),
                price=_decimal(payment, "items.prices.payment.value", ep, self.account),
                title=str(it.get("offerName", "")), native_id=str(field_of(it, "id", endpoint=ep, account=self.account)),
                marking_required=bool({"CIS", "UIN"} & set(it.get("requiredInstanceTypes") or [])), native=it))
        delivery = o.get("delivery") or {}
        shipment = delivery.get("shipment") or {}
        ship_by = None
        if shipment.get("shipmentDate"):
            try:
                ship_by = datetime.combine(date.fromisoformat(shipment["shipmentDate"]), time(0), UTC)
            except ValueError:
                raise self._bad(f"order {o.get('orderId')}: bad shipmentDate", ep) from None
        order_id = str(field_of(o, "orderId", endpoint=ep, account=self.account))
        return Order(
            native_id=order_id, marketplace="yandex_market", account=self.account, native_status=str(status),
            created_at=_when(o.get("creationDate"), "creationDate", ep, self.account), lines=lines,
            warehouse_id=str(delivery.get("warehouseId") or self._default_warehouse), ship_by=ship_by,
            number=order_id, native_substatus=str(o.get("substatus", "")), native=o)

    def _orders(self, body: dict[str, Any]) -> Iterator[Order]:
        for page in self._pages("orders", {"businessId": self.business_id}, body, 50, []):
            for o in field_of(page, "orders", endpoint="orders", account=self.account):
                yield self._order(o)

    def new_orders(self) -> list[Order]:
        campaigns = sorted({self.campaign_id, *self.campaigns.values()})
        return list(self._orders({"programTypes": ["FBS"], "statuses": ["PROCESSING"], "substatuses": ["STARTED"],
                                  "campaignIds": campaigns}))

    def get_order(self, native_id: str) -> Order:
        try:
            wanted = int(native_id)
        except ValueError:
            raise MarketplaceError(f"order id {native_id!r} is not a number", account=self.account,
                                   endpoint="orders") from None
        found = list(self._orders({"orderIds": [wanted]}))
        if not found:
            raise MarketplaceError(f"order {native_id} not found", account=self.account, endpoint="orders",
                                   status=404)
        return found[0]

    def order_statuses(self, native_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(status, substatus) of each order, 50 per request of the business orders list; an order Market
        does not list is left out."""
        ids = []
        for n in native_ids:
            try:
                ids.append(int(n))
            except ValueError:
                continue
        out: dict[str, tuple[str, str]] = {}
        for chunk in batches(ids, 50):
            for o in self._orders({"orderIds": chunk}):
                out[o.native_id] = (o.native_status, o.native_substatus)
        return out

    def returns(self, since: datetime, order_ids: Sequence[str] = ()) -> list[OrderReturn]:
        """Non-redemptions and returns of the store (`GET /v2/campaigns/{id}/returns`) updated since
        `since` (by day, as Market filters), or of the given orders (50 per request)."""
        out: list[OrderReturn] = []
        ids = [int(n) for n in order_ids if str(n).isdigit()]
        queries: list[dict[str, Any]] = [{"orderIds": chunk} for chunk in batches(ids, 50)] \
            if order_ids else [{"fromDate": since.astimezone(UTC).date().isoformat(),
                                "toDate": datetime.now(UTC).date().isoformat()}]
        for campaign in sorted({self.campaign_id, *self.campaigns.values()}):
            for query in queries:
                token: str | None = None
                seen: set[str] = set()
                while True:
                    params: dict[str, Any] = {"limit": 100, **query}
                    if token:
                        params["page_token"] = token
                    data = self._call("returns", path={"campaignId": campaign}, params=params)
                    result = field_of(data, "result", endpoint="returns", account=self.account)
                    for r in field_of(result, "returns", endpoint="returns", account=self.account):
                        out.append(self._return(r))
                    token = (result.get("paging") or {}).get("nextPageToken")
                    if not token or token in seen:
                        break
                    seen.add(token)
        return out

    def _return(self, r: dict[str, Any]) -> OrderReturn:
        try:
            lines = [ReturnLine(card_id=str(it["shopSku"]), offer_id=str(it["shopSku"]), quantity=int(it["count"]),
                                native=it) for it in r["items"]]
            kind = "return" if r["returnType"] == "RETURN" else "unredeemed"
            created = r.get("creationDate")
            return OrderReturn(return_id=str(r["id"]), order_native_id=str(r["orderId"]), kind=kind, lines=lines,
                               native_status=str(r.get("shipmentStatus", "")),
                               created_at=_when(created, "creationDate", "returns", self.account) if created else None,
                               native=r)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._bad(f"a return is missing or garbles a field ({exc})", "returns") from None

    def _campaign_of_order(self, order: Order) -> int:
        return int(order.native.get("campaignId") or self.campaign_id)

    def set_order_status(self, native_id: str, action: OrderAction, **details: Any) -> StatusChange:
        """Move one order one step (see the module docstring). `details` for "assemble":
        `marking_codes={line native id or offer id: [cis, ...]}`, `boxes=N` (default 1);
        for "cancel": nothing (YM's seller cancel reason is SHOP_FAILED); for "reduce":
        `lines=[{"card_id", "offer_id", "keep"}]` — an FBS order's items are taken out with
        setOrderBoxLayout and `allowRemove: true` (updateOrderItems is DBS's), before READY_TO_SHIP."""
        if action == "reduce":
            return self._reduce(native_id, details)
        order = self.get_order(native_id)
        now = (order.native_status, order.native_substatus)
        if action == "confirm":
            if now == ("PROCESSING", "STARTED"):
                return StatusChange(native_id, action, True, "PROCESSING/STARTED", already=True,
                                    native={"note": "Yandex.Market FBS orders arrive confirmed"})
            return self._already_or_refused(order, action, ok=now[0] == "PROCESSING" or now[0] in SHIPPED_OR_LATER)
        if action == "assemble":
            if now == ("PROCESSING", "STARTED"):
                self._send_boxes(order, details)
                return self._move(order, action, ("PROCESSING", "READY_TO_SHIP"))
            return self._already_or_refused(order, action, ok=now[1] in ("READY_TO_SHIP", "SHIPPED")
                                            or now[0] in SHIPPED_OR_LATER)
        if action == "ship":
            if now == ("PROCESSING", "READY_TO_SHIP"):
                return self._ship(order)
            return self._already_or_refused(order, action, ok=now[1] == "SHIPPED" or now[0] in SHIPPED_OR_LATER)
        if action == "cancel":
            if now in (("PROCESSING", "STARTED"), ("PROCESSING", "READY_TO_SHIP")):
                return self._move(order, action, ("CANCELLED", "SHOP_FAILED"))
            return self._already_or_refused(order, action, ok=now[0] == "CANCELLED")
        raise MarketplaceError(f"unknown action {action!r}", account=self.account, endpoint="order_status")

    def _reduce(self, native_id: str, details: dict[str, Any]) -> StatusChange:
        """Lay the order out again without the units the parcel lacks (read back first: a repeat changes
        nothing). Market refuses to reduce the only item of an order: the answer says so."""
        for _ in range(self.client.retry.attempts):
            order = self.get_order(native_id)
            status = f"{order.native_status}/{order.native_substatus}"
            counts = {ln.native_id: ln.quantity for ln in order.lines}
            for want in details.get("lines") or []:
                names = {str(want.get("offer_id") or ""), str(want.get("card_id") or "")} - {""}
                for ln in order.lines:
                    if names & {ln.offer_id, ln.card_id}:
                        counts[ln.native_id] = min(counts[ln.native_id], max(int(want.get("keep", 0)), 0))
                        break
            if all(counts[ln.native_id] == ln.quantity for ln in order.lines):
                return StatusChange(native_id, "reduce", True, status, already=True)
            if (order.native_status, order.native_substatus) != ("PROCESSING", "STARTED"):
                return StatusChange(native_id, "reduce", False, status, error=f"order is {status}: cannot reduce")
            items = [{"id": int(i), "fullCount": n} for i, n in counts.items() if n > 0]
            if not items:
                return StatusChange(native_id, "reduce", False, status,
                                    error="every item would go: cancel the order instead")
            try:
                self._call("order_boxes", path={"campaignId": self._campaign_of_order(order), "orderId": native_id},
                           body={"boxes": [{"items": items}], "allowRemove": True})
            except Uncertain:
                continue  # read the order back before sending anything again
            except MarketplaceError as exc:
                return StatusChange(native_id, "reduce", False, status, error=str(exc), native={"native": exc.native})
            return StatusChange(native_id, "reduce", True, status, native={"items": items})
        return StatusChange(native_id, "reduce", False, error="reduce not confirmed after every attempt the retry policy allows")

    def _already_or_refused(self, order: Order, action: OrderAction, *, ok: bool) -> StatusChange:
        status = f"{order.native_status}/{order.native_substatus}"
        if ok:
            return StatusChange(order.native_id, action, True, status, already=True)
        return StatusChange(order.native_id, action, False, status, error=f"order is {status}: cannot {action}")

    def _send_boxes(self, order: Order, details: dict[str, Any]) -> None:
        codes: dict[str, list[str]] = {str(k): list(v) for k, v in (details.get("marking_codes") or {}).items()}
        items = []
        for line in order.lines:
            item: dict[str, Any] = {"id": int(line.native_id), "fullCount": line.quantity}
            mine = codes.get(line.native_id) or codes.get(line.offer_id) or []
            if line.marking_required:
                if len(mine) < line.quantity:
                    raise MarketplaceError(f"order {order.native_id}: {line.offer_id} needs {line.quantity} marking "
                                           f"code(s), got {len(mine)}", account=self.account, endpoint="order_boxes")
                item["instances"] = [{"cis": c} for c in mine[: line.quantity]]
            items.append(item)
        self._call("order_boxes", path={"campaignId": self._campaign_of_order(order), "orderId": order.native_id},
                   body={"boxes": [{"items": items}]})

    def _move(self, order: Order, action: OrderAction, target: tuple[str, str]) -> StatusChange:
        path = {"campaignId": self._campaign_of_order(order), "orderId": order.native_id}
        body = {"order": {"status": target[0], "substatus": target[1]}}
        for _ in range(self.client.retry.attempts):
            try:
                self._call("order_status", path=path, body=body)
                return StatusChange(order.native_id, action, True, "/".join(target))
            except Uncertain:
                fresh = self.get_order(order.native_id)  # did it land? never send a move twice
                if (fresh.native_status, fresh.native_substatus) == target:
                    return StatusChange(order.native_id, action, True, "/".join(target))
            except MarketplaceError as exc:
                return StatusChange(order.native_id, action, False, f"{order.native_status}/{order.native_substatus}",
                                    error=str(exc), native={"native": exc.native})
        return StatusChange(order.native_id, action, False, error="status change not confirmed after every attempt the retry policy allows")

    def _ship(self, order: Order) -> StatusChange:
        shipment = ((order.native.get("delivery") or {}).get("shipment") or {}).get("id")
        if not shipment:
            return StatusChange(order.native_id, "ship", False, error="the order has no first-mile shipment yet")
        path = {"campaignId": self._campaign_of_order(order), "shipmentId": shipment}
        for _ in range(self.client.retry.attempts):
            try:
                self._call("shipment_confirm", path=path, body={})
            except Uncertain:
                pass
            except MarketplaceError as exc:
                return StatusChange(order.native_id, "ship", False, error=str(exc), native={"native": exc.native})
            fresh = self.get_order(order.native_id)
            state = f"{fresh.native_status}/{fresh.native_substatus}"
            if fresh.native_substatus == "SHIPPED" or fresh.native_status in SHIPPED_OR_LATER:
                return StatusChange(order.native_id, "ship", True, state, native={"shipmentId": shipment})
        return StatusChange(order.native_id, "ship", False, error="shipment confirmation not seen after every attempt the retry policy allows")

    # ------------------------------------------------------------------ labels and reports

    def get_label(self, native_id: str, *, fmt: LabelFormat | None = None, size: str = "") -> Label:
        if fmt not in (None, "pdf"):
            raise NotSupported(NAME, f"labels as {fmt} (Yandex.Market gives PDF)", account=self.account)
        paper = LABEL_FORMATS.get(size.strip())
        if paper is None:
            raise MarketplaceError(f"label size {size!r}: use one of {', '.join(k for k in LABEL_FORMATS if k)}",
                                   account=self.account, endpoint="labels")
        # one store: its campaign; several: the order says which (one read more)
        campaign = self._campaign_of_order(self.get_order(native_id)) if self.campaigns else self.campaign_id
        reply = self.client.call("labels", path_params={"campaignId": campaign, "orderId": native_id},
                                 params={"format": paper})
        if reply.content_type != "application/pdf" or not reply.content.startswith(b"%PDF"):
            self._json(reply)  # an error envelope raises here
            raise self._bad(f"expected a PDF label, got {reply.content_type or 'no content type'}", "labels")
        width, height = LABEL_SIZES_MM[paper]
        return Label(native_id, reply.content, "pdf", width, height, barcode_text=native_id)

    def handover_documents(self, native_ids: Sequence[str], *, batch_id: str = "") -> list[HandoverDocument]:
        """The acceptance act of each confirmed first-mile shipment these orders left with (PDF,
        `downloadShipmentAct`; Market gives it only once the shipment is confirmed — the ship did that)."""
        shipments: dict[int, int] = {}  # shipment -> campaign
        for native_id in native_ids:
            order = self.get_order(str(native_id))
            shipment = ((order.native.get("delivery") or {}).get("shipment") or {}).get("id")
            if not shipment:
                raise MarketplaceError(f"order {native_id} has no first-mile shipment", account=self.account,
                                       endpoint="shipment_act")
            shipments.setdefault(int(shipment), self._campaign_of_order(order))
        out = []
        for shipment, campaign in sorted(shipments.items()):
            reply = self.client.call("shipment_act", path_params={"campaignId": campaign, "shipmentId": shipment})
            if reply.content_type != "application/pdf" or not reply.content.startswith(b"%PDF"):
                self._json(reply)  # an error envelope raises here
                raise self._bad(f"expected a PDF act, got {reply.content_type or 'no content type'}", "shipment_act")
            out.append(HandoverDocument("act", "pdf", reply.content, f"Акт приёма-передачи Маркета, отгрузка {shipment}",
                                        210.0, 297.0, ref=str(shipment)))
        return out

    def realization_report(self, period_from: date, period_to: date, *,
                           progress: ReportProgress | None = None) -> RealizationReport:
        """Market's realization report for the period: each month's goods-realization report (generate
        -> status -> the file, see `_realization_file`) for every store of the account, its sales,
        returns and compensations within the period (`yandex_market_realization`), and every fee Market
        charged for those orders from their stats (`stats/orders`). `native_totals` are the file's own
        figures (units sold and returned, revenue)."""
        lines: list[ReportLine] = []
        totals: dict[str, Decimal] = {}
        report_ids: list[str] = []
        tell = progress or (lambda done, steps: None)
        campaigns = sorted({self.campaign_id, *self.campaigns.values()})
        steps, done = len(campaigns) * len(_months(period_from, period_to)), 0
        tell(done, steps)
        for campaign in campaigns:
            for year, month in _months(period_from, period_to):
                report_id, data = self._realization_file(campaign, year, month)
                report_ids.append(report_id)
                try:
                    sheets = realization.read_sheets(data) if data else {}  # NO_DATA: nothing that month
                    found, _ = realization.report_lines(sheets, {}, period_from, period_to)
                    fees = self._order_fees(campaign, realization.order_ids(found))
                    month_lines, month_totals = realization.report_lines(sheets, fees, period_from, period_to)
                except realization.ReportFileError as exc:
                    raise self._bad(f"realization report {report_id}: {exc}", "report_file") from None
                lines += month_lines
                done += 1
                tell(done, steps)
                for k, v in month_totals.items():
                    totals[k] = totals.get(k, Decimal(0)) + v
        return RealizationReport(self.account, period_from, period_to, lines, native_totals=totals,
                                 counts=frozenset(realization.COUNT_TOTALS),
                                 report_id=",".join(report_ids), notes=dict(realization.NOTES))

    def _realization_file(self, campaign: int, year: int, month: int) -> tuple[str, bytes]:
        """Generate one month's report as CSV, wait for it (the time Market estimates, polled at most
        `report_polls` times), then fetch the file by the link Market gives (without the Api-Key)."""
        data = self._call("realization_generate", params={"format": "CSV"},
                          body={"campaignId": campaign, "year": year, "month": month})
        result = field_of(data, "result", endpoint="realization_generate", account=self.account)
        report_id = str(field_of(result, "reportId", endpoint="realization_generate", account=self.account))
        wait_s = float(result.get("estimatedGenerationTime") or 1000) / 1000
        for _ in range(int(self.config.options.get("report_polls", 60))):
            time_mod.sleep(min(max(wait_s, 0.5), 30.0) / self.client.time_scale)
            info = field_of(self._call("report_info", path={"reportId": report_id}), "result",
                            endpoint="report_info", account=self.account)
            status = info.get("status")
            if status == "DONE":
                if info.get("subStatus") == "NO_DATA" or not info.get("file"):
                    return report_id, b""
                reply = self.client.call("report_file", url=str(info["file"]))
                return report_id, reply.content
            if status == "FAILED":
                raise MarketplaceError(f"realization report {report_id} failed ({info.get('subStatus') or 'no reason'})",
                                       account=self.account, endpoint="report_info", native=info)
            wait_s = float(info.get("estimatedGenerationTime") or 1000) / 1000
        raise MarketplaceError(f"realization report {report_id} not ready after every poll allowed",
                               account=self.account, endpoint="report_info", retryable=True)

    def _order_fees(self, campaign: int, ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """order id -> the commissions Market charged for it (`stats/orders`, 200 orders a request)."""
        out: dict[str, list[dict[str, Any]]] = {}
        ep = "stats_orders"
        for chunk in batches([int(i) for i in ids], self.map[ep].batch or 200):
            for page in self._pages(ep, {"campaignId": campaign}, {"orders": chunk}, 200, ["result"]):
                for o in field_of(page, "result", "orders", endpoint=ep, account=self.account):
                    out[str(o.get("id", ""))] = [c for c in o.get("commissions") or [] if isinstance(c, dict)]
        return out

    # ------------------------------------------------------------------ pushes

    def parse_push(self, headers: dict[str, str], body: bytes) -> list[OrderEvent]:
        """A Notification API request (`POST /notification`) as events: PING a ping; ORDER_CREATED "created",
        ORDER_CANCELLED "cancelled", ORDER_STATUS_UPDATED "status" (its status/substatus); ORDER_UPDATED with
        `updateType` SHIPMENT_DATE_UPDATED "ship_by" — the order's shipment date (`Order.ship_by`, read from
        `delivery.shipment.shipmentDate`) moved. The notification is thin (no date in it: "use
        POST v1/businesses/{businessId}/orders with orderIds"), so the event carries no `ship_by` and the
        intake re-reads the order (`get_order`); keyed by `updatedAt`, so a resend of the same change is one
        event. ORDER_UPDATED's DELIVERY_DATE_UPDATED (the order model has no delivery date), UNKNOWN and any
        other `updateType` are [] (acknowledged, nothing to do), as are the types the product does not use
        (chats, feedback...). Raises `BadResponse` for a malformed notification and `AuthError` for one
        about a store that is not this account's."""
        ep = "notification"
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise self._bad("notification body is not valid JSON", ep) from None
        if not isinstance(data, dict) or not isinstance(data.get("notificationType"), str):
            raise self._bad("notificationType is missing", ep)
        kind_name = data["notificationType"]
        if kind_name == "PING":
            return [OrderEvent("ping", dedup_key="", native=data)]
        kind = PUSH_KINDS.get(kind_name)
        if kind is None:
            return []
        required = {"created": ("orderId", "campaignId", "items", "createdAt"),
                    "cancelled": ("orderId", "campaignId", "items", "cancelledAt"),
                    "status": ("orderId", "campaignId", "status", "substatus", "updatedAt"),
                    "updated": ("orderId", "campaignId", "updateType", "updatedAt")}[kind]
        missing = [k for k in required if k not in data]
        if missing:
            raise self._bad(f"{kind_name}: missing {', '.join(missing)}", ep)
        if not isinstance(data["orderId"], int) or not isinstance(data["campaignId"], int):
            raise self._bad(f"{kind_name}: orderId and campaignId must be integers", ep)
        for stamp in ("createdAt", "cancelledAt", "updatedAt"):
            if stamp in data:
                _when(data[stamp], stamp, ep, self.account)
        if "updateType" in data and not isinstance(data["updateType"], str):
            raise self._bad(f"{kind_name}: updateType must be a string", ep)
        if "items" in data and (not isinstance(data["items"], list) or any(
                not isinstance(i, dict) or "offerId" not in i or not isinstance(i.get("count"), int)
                for i in data["items"])):
            raise self._bad(f"{kind_name}: items must be [{{offerId, count}}]", ep)
        if data["campaignId"] not in {self.campaign_id, *self.campaigns.values()}:
            raise AuthError(f"notification for store {data['campaignId']}, not this account's", account=self.account,
                            endpoint=ep)
        order_id = str(data["orderId"])
        prefix = f"ym:{data['campaignId']}:{order_id}"
        if kind == "created":
            return [OrderEvent("created", order_id, "PROCESSING", dedup_key=f"{prefix}:created", native=data)]
        if kind == "cancelled":
            return [OrderEvent("cancelled", order_id, "CANCELLED", dedup_key=f"{prefix}:cancelled", native=data)]
        if kind == "updated":
            if data["updateType"] != "SHIPMENT_DATE_UPDATED":  # DELIVERY_DATE_UPDATED, UNKNOWN: nothing to do
                return []
            return [OrderEvent("ship_by", order_id, dedup_key=f"{prefix}:shipment_date:{data['updatedAt']}",
                               native=data)]
        if data["status"] not in ORDER_STATUSES:
            raise self._bad(f"ORDER_STATUS_UPDATED: unknown status {data['status']!r}", ep)
        return [OrderEvent("status", order_id, str(data["status"]),
                           dedup_key=f"{prefix}:status:{data['status']}/{data['substatus']}", native=data)]


def _months(period_from: date, period_to: date) -> list[tuple[int, int]]:
    """(year, month) of every month the period touches (the realization report is monthly)."""
    out, (y, m) = [], (period_from.year, period_from.month)
    while (y, m) <= (period_to.year, period_to.month):
        out.append((y, m))
        y, m = (y + 1, 1) if m == 12 else (y, m + 1)
    return out


# ---------------------------------------------------------------- prices in Yandex.Market's terms

# a crossed-out price needs a discount of at least 5%; a drop to half or less of the old price is held in
# the price quarantine (the threshold is the seller's cabinet setting: the account config may override it)
PRICE_MODEL = PriceModel(PriceTerms("yandex_market", min_discount_percent=Decimal(5), quarantine_ratio=Decimal(2)))
