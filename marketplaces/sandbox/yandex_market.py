"""The Yandex.Market Partner API sandbox: its domain (cabinet, store, catalog, prices set and read back,
stocks, FBS orders, boxes, labels, shipments, order stats, the monthly realization report) and its
Notification API pushes.

Owns: the state of one seeded cabinet (`businessId`) with one FBS store (`campaignId`) and its
warehouse, answering the official Partner API paths in the official shapes (the spec in
`../shared/specs/yandex_market/` is the judge: the sandbox core validates requests and responses), the
FBS status machine PROCESSING/STARTED -> READY_TO_SHIP (after boxes, with marking codes where the item
needs them) -> SHIPPED (when the shipment is confirmed) and CANCELLED/SHOP_FAILED, items taken out of an
order by a box layout with `allowRemove` (never the only item, never growth; counted as "reduce" in
`order_calls`, what each order still holds in the state's `order_units`), PDF labels whose
barcode decodes to the order id, and delivering ORDER_CREATED / ORDER_STATUS_UPDATED / ORDER_CANCELLED
notifications to a configured URL (`POST /_sandbox/x/push {"url", "duplicates", "fail_first", "max_attempts"}`),
and ORDER_UPDATED/SHIPMENT_DATE_UPDATED when Market moves an order's shipment date (`POST
/_sandbox/x/shipment_date {"order_id", "shipment_date"}`: the order's `delivery.shipment.shipmentDate` as the
orders endpoints give it from then on, see `move_shipment_date`).

After the hand-over Market moves orders on by itself; here the controls `x/deliver`, `x/return`,
`x/lose` do (see `after_hand_over`), and the realization report (`goods-realization/generate` ->
`reports/info/{reportId}` -> a link to the file, served without the Api-Key at `FILES`) lists them in the
month they happened (`yandex_market_reports`).

Never imports the adapter. Limits: YM answers 420 for its resource limits and for more than 4
parallel requests per store/cabinet; the limit groups come from the same endpoint map the adapter
uses, so both follow the spec's `x-resource-limit-config`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from werkzeug.wrappers import Request, Response

from marketplaces.sandbox import yandex_market_reports, yandex_market_spec
from marketplaces.sandbox.core import ApiError, Route, SandboxApp, SandboxLimit, SandboxReply, SandboxRequest
from marketplaces.sandbox.labels import pdf_document, pdf_label
from marketplaces.sandbox.push_delivery import PushDelivery
from marketplaces.sandbox.seed import demo_fbo, demo_items
from marketplaces.spec import load_specs

MARKETPLACE = "yandex_market"
PARALLEL_LIMIT = 4  # requests in flight per store (/campaigns/...) or per cabinet (/businesses/...)
FILES = "/_storage/reports"  # where report files are downloaded from (Market hands out a link to its storage)
REPORT_READY_S = 2.0  # how long a report takes to generate (marketplace time)
LABEL_SIZES_MM = {"A7": (75.0, 120.0), "A9": (40.0, 58.0), "A9_HORIZONTALLY": (58.0, 40.0), "A4": (210.0, 297.0)}
_PERIOD_S = {"seconds": 1, "minutes": 60, "hours": 3600, "days": 86400}


def ok(body: Any | None = None) -> SandboxReply:
    return SandboxReply(200, body if body is not None else {"status": "OK"})


def _removing(req: SandboxRequest) -> list[str]:
    """The order a box layout takes items out of (allowRemove), for `order_calls`; none for a plain layout."""
    return [req.path_params["orderId"]] if json.loads(req.body or b"{}").get("allowRemove") else []


def _units(o: YmOrder) -> dict[str, int]:
    out: dict[str, int] = {}
    for li in o.items:
        out[li["offerId"]] = out.get(li["offerId"], 0) + int(li["count"])
    return out


def error(status: int, code: str, message: str) -> SandboxReply:
    return SandboxReply(status, {"status": "ERROR", "errors": [{"code": code, "message": message}]})


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _ddmmyyyy(ts: datetime) -> str:
    return ts.strftime("%d-%m-%Y %H:%M:%S")


def spec_limits() -> tuple[dict[str, SandboxLimit], dict[str, str]]:
    """Per-operation limits straight from the spec's `x-resource-limit-config` (tier "none"):
    ({operationId: limit}, {operationId: what a token counts: "" for requests or the item path})."""
    limits: dict[str, SandboxLimit] = {}
    counts: dict[str, str] = {}
    for op_id, info in yandex_market_spec.resource_limits().items():
        cfg = info["limit"].get("none") if info["limit"] else None
        if not cfg:
            continue
        period = _PERIOD_S[cfg["period"]] * int(cfg.get("period-duration", 1))
        amount = float(cfg["amount"])
        limits[op_id] = SandboxLimit(rate=amount / period, burst=amount)
        path = str(info["limit"].get("path", "resp"))
        counts[op_id] = path if path.startswith("req.") else ""
    return limits, counts


@dataclass
class YmOrder:
    order_id: int
    campaign_id: int
    items: list[dict[str, Any]]  # {"id", "offerId", "offerName", "count", "price", "marked"}
    created: datetime
    updated: datetime
    shipment_id: int
    shipment_date: date
    status: str = "PROCESSING"
    substatus: str = "STARTED"
    boxes: list[dict[str, Any]] = field(default_factory=list)
    external_id: str = ""
    moves: list[str] = field(default_factory=list)  # every status change, to prove none happens twice
    removed: list[str] = field(default_factory=list)  # "item id:units" taken out by the seller (allowRemove)
    # after the hand-over (Market moves the order on: x/deliver, x/return, x/lose): the days it happened
    shipped_on: date | None = None
    delivered_on: date | None = None
    returned_on: date | None = None
    returned: dict[int, int] = field(default_factory=dict)  # item id -> units returned
    lost_on: date | None = None


class YandexMarketSandbox(SandboxApp):
    """The Yandex.Market sandbox (one cabinet, one FBS store); see the module docstring."""

    marketplace = MARKETPLACE
    business_id = 7700001
    campaign_id = 21000001
    fby_campaign_id = 21000002  # the same cabinet's FBY store: its stock lies in Market's own warehouses
    fby_warehouses = [(145, "Софьино"), (172, "Томилино")]
    warehouse_id = 310001

    def __init__(self, **options: Any) -> None:
        yandex_market_spec.register()  # the bundled official spec, for the core's validation
        self.limits, self.item_counts = spec_limits()
        # an operation allowed more than 4 requests in flight says so (`parallel-limit-value`): path -> limit
        self.parallel_limits = {info["path"]: int(info["limit"]["parallel-limit-value"])
                                for info in yandex_market_spec.resource_limits().values()
                                if (info["limit"] or {}).get("parallel-limit-value")}
        self._inflight: dict[str, int] = {}
        self._inflight_lock = threading.Lock()
        self.parallel_refused = 0
        self._host = "127.0.0.1"  # the host the adapter calls, for the file links the sandbox hands out
        self.acts_given: list[int] = []  # the shipments whose acceptance act was downloaded
        super().__init__(**options)
        self.push = PushDelivery(lambda status, body: status == 200, time_scale=self.time_scale,
                                 user_agent="YandexMarket-Notifications-Sandbox")

    # ------------------------------------------------------------------ identity and limits

    def account_options(self) -> dict[str, Any]:
        """The AccountConfig.options an adapter of this sandbox needs (announced by `sandbox serve`)."""
        return {"business_id": self.business_id, "campaign_id": self.campaign_id,
                "fby_campaign_id": self.fby_campaign_id, "warehouse_id": str(self.warehouse_id), "push_sources": ["127.0.0.0/8"]}

    def _push(self, path: str, payload: dict[str, Any], key: str) -> None:
        """Queue a push, held to its spec first (yandex_market_notification): a violation is a sandbox bug."""
        if self.validate and self.push.target.url:
            body = json.dumps(payload, ensure_ascii=False).encode()
            for err in load_specs("yandex_market_notification").request_errors("POST", path, body=body):
                self.spec_violations.append(f"push {path}: {err}"[:1000])
        self.push.send(path, payload, key)

    def make_credentials(self) -> dict[str, str]:
        return {"Api-Key": f"ACMA:sandbox-ym-{self.rng_seed:04d}:{self.business_id}"}

    def check_auth(self, req: SandboxRequest) -> SandboxReply | None:
        key = req.headers.get("api-key")
        if not key:
            if req.headers.get("authorization"):
                return error(401, "UNAUTHORIZED", "OAuth tokens are not accepted by this sandbox; send Api-Key")
            return error(401, "UNAUTHORIZED", "Api-Key header is missing")
        if key != self.credentials["Api-Key"]:
            return error(401, "UNAUTHORIZED", "Api-Key is invalid")
        return None

    def error_reply(self, status: int, message: str, *, code: str = "", template: str = "") -> SandboxReply:
        codes = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
                 420: "HIT_RATE_LIMIT", 500: "INTERNAL_ERROR", 503: "INTERNAL_ERROR"}
        return error(status, codes.get(status, code or "ERROR"), message)

    def throttle_reply(self, retry_after_s: float, group: str) -> SandboxReply:
        """YM answers its resource limits with 420 and X-RateLimit-Resource-* headers."""
        until = datetime.now(UTC) + timedelta(seconds=max(1.0, retry_after_s))
        return SandboxReply(420, {"status": "ERROR", "errors": [
            {"code": "HIT_RATE_LIMIT", "message": f"Hit rate limit of resource {group or 'api'}"}]},
            headers={"X-RateLimit-Resource-Limit": str(int(self.limits[group].burst)) if group in self.limits
                     else "0", "X-RateLimit-Resource-Remaining": "0",
                     "X-RateLimit-Resource-Until": until.strftime("%a, %d %b %Y %H:%M:%S GMT")})

    def parallel_scope(self, path: str) -> str:
        """What YM counts parallel requests per: the store for /campaigns/..., the cabinet otherwise."""
        parts = path.strip("/").split("/")
        if len(parts) >= 3 and parts[1] in ("campaigns", "businesses"):
            return f"{parts[1]}:{parts[2]}"
        return "token"

    def dispatch(self, request: Request) -> Response:
        """The core's dispatch, refused with 420 when a 5th request of one store/cabinet (or of the token,
        for paths of neither, such as reports) is in flight — on every operation, the few the spec allows
        more (`parallel-limit-value`: the orders list 6, a store's price update 12...) at their own number."""
        if request.path.startswith(("/_sandbox/", FILES + "/")):
            return super().dispatch(request)  # a file link is not an API call: no parallel limit
        scope = self.parallel_scope(request.path)
        found = self._match(request.method, request.path)
        allowed = self.parallel_limits.get(found[0].template, PARALLEL_LIMIT) if found else PARALLEL_LIMIT
        with self._inflight_lock:
            if self._inflight.get(scope, 0) >= allowed:
                self.parallel_refused += 1
                self.throttled += 1
                refused = True
            else:
                self._inflight[scope] = self._inflight.get(scope, 0) + 1
                refused = False
        if refused:
            body = error(420, "HIT_RATE_LIMIT", f"Hit rate limit of {allowed} parallel requests").body()
            return Response(body, status=420, content_type="application/json")
        try:
            return super().dispatch(request)
        finally:
            with self._inflight_lock:
                self._inflight[scope] -= 1

    def _campaign(self, p: dict[str, str]) -> SandboxReply | None:
        if str(p.get("campaignId")) != str(self.campaign_id):
            return error(403, "FORBIDDEN", f"campaign {p.get('campaignId')} is not available to this token")
        return None

    def _business(self, p: dict[str, str]) -> SandboxReply | None:
        if str(p.get("businessId")) != str(self.business_id):
            return error(403, "FORBIDDEN", f"business {p.get('businessId')} is not available to this token")
        return None

    # ------------------------------------------------------------------ state

    def seed_catalog(self, n: int) -> None:
        self.items = {it.article: it for it in demo_items(n, self.rng_seed)} if n else {}
        self.cards: dict[str, dict[str, Any]] = {}
        for it in self.items.values():
            self.cards[it.article] = {
                "offerId": it.article, "name": it.name, "barcodes": [it.barcode], "vendor": "MarketSync Demo",
                "vendorCode": it.article, "marketCategoryId": 90000 + it.subject_id, "category": it.category,
                "marketSku": 100000000 + it.index, "marked": it.marked,
            }
        self.business_prices: dict[str, dict[str, Any]] = {
            a: {"value": float(it.price), "discountBase": float((it.price * Decimal("1.2")).quantize(Decimal("1")))}
            for a, it in self.items.items()
        }
        self.campaign_prices: dict[str, dict[str, Any]] = {}
        self.stocks: dict[str, int] = {a: it.stock for a, it in self.items.items()}
        # the FBY store's stock in Market's fulfilment warehouses: (warehouse id, offerId) -> units
        by_index = {it.index: a for a, it in self.items.items()}
        self.fby_stocks: dict[tuple[int, str], int] = {
            (self.fby_warehouses[slot][0], by_index[i]): qty for i, slot, qty in demo_fbo(n) if i in by_index}
        self.stock_writes = 0  # SKUs accepted by PUT offers/stocks, repeats included
        self.hidden: set[str] = set()
        self.orders: dict[int, YmOrder] = {}
        self.reports: dict[str, dict[str, Any]] = {}  # generated reports by reportId
        self._next_report = 1
        self._next_order = self.first_id(50000001, 10_000_000)
        self.returns: dict[int, dict[str, Any]] = {}  # getReturns: non-redemptions and returns (sandbox/fates.py)
        self._next_return = self.first_id(7000001, 1_000_000)
        self._next_box = 900001

    def make_orders(self, count: int) -> list[str]:
        return self.create_orders(count)

    def control(self, name: str, body: dict[str, Any]) -> Any:
        """`/_sandbox/x/push {"url", "duplicates", "fail_first", "max_attempts"}`: deliver notifications to `url`
        (+ "/notification"); `/_sandbox/x/cancel {"orders": [ids]}`: the buyer cancels;
        `/_sandbox/x/push_wait {"timeout"}`: wait until every queued notification is delivered;
        `/_sandbox/x/deliver`, `/_sandbox/x/return`, `/_sandbox/x/lose` `{"orders": [ids], "on": "YYYY-MM-DD"}`:
        Market moves handed-over orders on (see `after_hand_over`); `/_sandbox/x/shipment_date {"order_id",
        "shipment_date": "YYYY-MM-DD"}`: Market moves an order's shipment date (see `move_shipment_date`)."""
        if name == "push":
            t = self.push.configure(body)
            return {"url": t.url, "duplicates": t.duplicates, "fail_first": t.fail_first,
                    "max_attempts": t.max_attempts}
        if name == "cancel":
            return {"cancelled": self.cancel_by_buyer([str(x) for x in body.get("orders", [])])}
        if name == "push_wait":
            return {"idle": self.push.wait_idle(float(body.get("timeout", 10)))}
        if name in ("deliver", "return", "lose"):
            return self.after_hand_over(name, body)
        if name == "shipment_date":
            return self.move_shipment_date(body)
        if name == "ping":
            self._push("/notification", {"notificationType": "PING", "time": _iso(datetime.now(UTC))}, "ping")
            return {"queued": True}
        raise ApiError(404, f"no sandbox control {name!r}")

    # ------------------------------------------------------------------ routes

    def routes(self) -> list[Route]:
        table = [
            ("GET", "/v2/campaigns", self.get_campaigns, "getCampaigns"),
            ("POST", "/v2/businesses/{businessId}/warehouses", self.get_warehouses, "getPagedWarehouses"),
            ("POST", "/v2/businesses/{businessId}/offer-mappings", self.get_offer_mappings, "getOfferMappings"),
            ("POST", "/v2/businesses/{businessId}/offer-mappings/update", self.update_offer_mappings,
             "updateOfferMappings"),
            ("POST", "/v2/campaigns/{campaignId}/hidden-offers", self.add_hidden, "addHiddenOffers"),
            ("POST", "/v2/campaigns/{campaignId}/hidden-offers/delete", self.delete_hidden, "deleteHiddenOffers"),
            ("GET", "/v2/campaigns/{campaignId}/hidden-offers", self.get_hidden, "getHiddenOffers"),
            ("POST", "/v2/businesses/{businessId}/offer-prices/updates", self.update_business_prices,
             "updateBusinessPrices"),
            ("POST", "/v2/campaigns/{campaignId}/offer-prices/updates", self.update_campaign_prices, "updatePrices"),
            ("PUT", "/v2/campaigns/{campaignId}/offers/stocks", self.update_stocks, "updateStocks"),
            ("POST", "/v2/campaigns/{campaignId}/offers/stocks", self.get_stocks, "getStocks"),
            ("GET", "/v2/warehouses", self.get_fulfillment_warehouses, "getFulfillmentWarehouses"),
            ("POST", "/v2/tariffs/calculate", self.calculate_tariffs, "calculateTariffs"),
            ("POST", "/v1/businesses/{businessId}/orders", self.get_business_orders, "getBusinessOrders"),
            ("PUT", "/v2/campaigns/{campaignId}/orders/{orderId}/status", self.update_order_status,
             "updateOrderStatus"),
            ("PUT", "/v2/campaigns/{campaignId}/orders/{orderId}/boxes", self.set_boxes, "setOrderBoxLayout"),
            ("GET", "/v2/campaigns/{campaignId}/orders/{orderId}/delivery/labels", self.labels,
             "generateOrderLabels"),
            ("POST", "/v2/campaigns/{campaignId}/first-mile/shipments/{shipmentId}/confirm", self.confirm_shipment,
             "confirmShipment"),
            ("GET", "/v2/campaigns/{campaignId}/first-mile/shipments/{shipmentId}/act", self.shipment_act,
             "downloadShipmentAct"),
            ("POST", "/v2/campaigns/{campaignId}/stats/orders", self.stats_orders, "getOrdersStats"),
            ("GET", "/v2/campaigns/{campaignId}/returns", self.get_returns, "getReturns"),
            ("POST", "/v2/businesses/{businessId}/offer-prices", self.get_default_prices, "getDefaultPrices"),
            ("POST", "/v2/campaigns/{campaignId}/offer-prices", self.get_campaign_prices, "getPricesByOfferIds"),
            ("POST", "/v2/reports/goods-realization/generate", self.generate_realization,
             "generateGoodsRealizationReport"),
            ("GET", "/v2/reports/info/{reportId}", self.report_info, "getReportInfo"),
        ]
        routes = [Route(m, t, self._adapt(fn), group=op if op in self.limits else "", cost=self._item_cost(op),
                        # a box layout that takes items out of the order (allowRemove) is counted per order
                        action="reduce" if op == "setOrderBoxLayout" else "",
                        moves=_removing if op == "setOrderBoxLayout" else None)
                  for m, t, fn, op in table]
        # the link report_info hands out: a file on "storage", no Api-Key, no spec (see report_info)
        routes.append(Route("GET", FILES + "/{fileName}", self.report_file, auth=False, documented=False))
        return routes

    def _item_cost(self, op: str) -> Any:
        """Item-counted limits (`path: req.skus` in the spec) take one token per item of the request."""
        where = self.item_counts.get(op, "")
        if not where:
            return None
        key = where.split(".", 1)[1]

        def cost(req: SandboxRequest) -> float:
            return float(len(json.loads(req.body or b"{}").get(key) or []))

        return cost

    def _adapt(self, fn: Any) -> Any:
        def handler(req: SandboxRequest) -> SandboxReply:
            self._host = req.headers.get("host") or "127.0.0.1"  # for the links it hands out (under the lock)
            body = req.json() if req.body else None
            return fn(req.path_params, req.query, body)

        handler.__name__ = fn.__name__
        return handler

    # ------------------------------------------------------------------ catalog

    def get_campaigns(self, p: dict, q: dict, body: Any) -> SandboxReply:
        return ok({"campaigns": [{
            "domain": "marketsync-demo.example", "id": self.campaign_id,
            "business": {"id": self.business_id, "name": "MarketSync Demo"},
            "placementType": "FBS", "apiAvailability": "AVAILABLE"}, {
            "domain": "marketsync-demo.example", "id": self.fby_campaign_id,
            "business": {"id": self.business_id, "name": "MarketSync Demo"},
            "placementType": "FBY", "apiAvailability": "AVAILABLE"}],
            "pager": {"total": 2, "from": 1, "to": 2, "currentPage": 1, "pagesCount": 1, "pageSize": 2}})

    def get_fulfillment_warehouses(self, p: dict, q: dict, body: Any) -> SandboxReply:
        """Market's fulfilment warehouses (the FBY stores' stock lies there), by id and name."""
        return ok({"status": "OK", "result": {"warehouses": [
            {"id": wid, "name": name, "address": {"city": "Москва", "gps": {"latitude": 55.6, "longitude": 37.7}}}
            for wid, name in self.fby_warehouses]}})

    TARIFF_FEE = {192: Decimal(12), 1367: Decimal(9), 49: Decimal(11), 515: Decimal(10), 155: Decimal(12)}

    def calculate_tariffs(self, p: dict, q: dict, body: Any) -> SandboxReply:
        """What Market takes per offer at a price (the sandbox's own tariff): the placement fee (% by
        category), delivery to the buyer and sorting (FBS), and the payment transfer and agency commission."""
        params = body.get("parameters") or {}
        if ("campaignId" in params) == ("sellingProgram" in params):
            return error(400, "BAD_REQUEST", "give either campaignId or sellingProgram")
        if "campaignId" in params and int(params["campaignId"]) not in (self.campaign_id, self.fby_campaign_id):
            return error(403, "FORBIDDEN", f"campaign {params['campaignId']} is not available to this token")
        out = []
        for o in body["offers"]:
            price = Decimal(str(o["price"]))
            pct = self.TARIFF_FEE.get(int(o["categoryId"]) - 90000, Decimal(13))

            def tariff(kind: str, amount: Decimal, value: str, value_type: str) -> dict[str, Any]:
                return {"type": kind, "amount": float(amount.quantize(Decimal("0.01"))), "currency": "RUR",
                        "parameters": [{"name": "value", "value": value}, {"name": "valueType", "value": value_type}]}

            weight = Decimal(str(o["weight"]))
            out.append({"offer": o, "tariffs": [
                tariff("FEE", price * pct / 100, str(pct), "relative"),
                tariff("DELIVERY_TO_CUSTOMER", Decimal(60) + Decimal(20) * weight, "60", "absolute"),
                tariff("SORTING", Decimal(25), "25", "absolute"),
                tariff("PAYMENT_TRANSFER", price * Decimal("0.012"), "1.2", "relative"),
                tariff("AGENCY_COMMISSION", price * Decimal("0.003"), "0.3", "relative")]})
        return ok({"status": "OK", "result": {"offers": out}})

    def get_warehouses(self, p: dict, q: dict, body: Any) -> SandboxReply:
        if (r := self._business(p)) is not None:
            return r
        return ok({"status": "OK", "result": {"warehouses": [{
            "id": self.warehouse_id, "name": "Склад MarketSync (FBS)", "campaignId": self.campaign_id,
            "express": False,
            "address": {"city": "Москва", "street": "Складская", "number": "1",
                        "gps": {"latitude": 55.75, "longitude": 37.62}}}]}})

    def _mapping(self, card: dict[str, Any]) -> dict[str, Any]:
        offer_id = card["offerId"]
        price = self.business_prices.get(offer_id)
        status = "DISABLED_BY_PARTNER" if offer_id in self.hidden else (
            "PUBLISHED" if self.stocks.get(offer_id, 0) > 0 else "NO_STOCKS")
        offer: dict[str, Any] = {
            "offerId": offer_id, "name": card["name"], "marketCategoryId": card["marketCategoryId"],
            "vendor": card["vendor"], "barcodes": card["barcodes"], "vendorCode": card["vendorCode"],
            "cardStatus": "HAS_CARD_CAN_UPDATE", "archived": False,
            "weightDimensions": {"length": 20.0, "width": 15.0, "height": 5.0, "weight": 0.3},
            "campaigns": [{"campaignId": self.campaign_id, "status": status}],
            "sellingPrograms": [{"sellingProgram": "FBS", "status": "FINE"}],
        }
        if price:
            offer["basicPrice"] = {"value": price["value"], "currencyId": "RUR",
                                   "discountBase": price["discountBase"], "updatedAt": _iso(datetime.now(UTC))}
        return {"offer": offer, "mapping": {"marketSku": card["marketSku"], "marketSkuName": card["name"],
                                            "marketCategoryId": card["marketCategoryId"],
                                            "marketCategoryName": card["category"]}}

    def get_offer_mappings(self, p: dict, q: dict, body: Any) -> SandboxReply:
        if (r := self._business(p)) is not None:
            return r
        body = body or {}
        limit = int(q.get("limit") or 100)
        with self.lock:
            ids = body.get("offerIds")
            keys = [k for k in (ids or sorted(self.cards)) if k in self.cards]
            start = int(q.get("page_token") or q.get("pageToken") or 0) if not ids else 0
            page = keys[start:start + limit]
            result: dict[str, Any] = {"offerMappings": [self._mapping(self.cards[k]) for k in page]}
            if not ids and start + limit < len(keys):
                result["paging"] = {"nextPageToken": str(start + limit)}
        return ok({"status": "OK", "result": result})

    def update_offer_mappings(self, p: dict, q: dict, body: Any) -> SandboxReply:
        if (r := self._business(p)) is not None:
            return r
        with self.lock:
            for m in body["offerMappings"]:
                offer = m["offer"]
                card = self.cards.setdefault(offer["offerId"], {
                    "offerId": offer["offerId"], "name": offer["offerId"], "barcodes": [], "vendor": "",
                    "vendorCode": offer["offerId"], "marketCategoryId": 0, "category": "",
                    "marketSku": 200000000 + len(self.cards) + 1, "marked": False})
                for key in ("name", "barcodes", "vendor", "vendorCode", "marketCategoryId"):
                    if key in offer:
                        card[key] = offer[key]
                if "basicPrice" in offer:
                    self.business_prices[offer["offerId"]] = {
                        "value": offer["basicPrice"]["value"],
                        "discountBase": offer["basicPrice"].get("discountBase", offer["basicPrice"]["value"])}
        return ok({"status": "OK"})

    def add_hidden(self, p: dict, q: dict, body: Any) -> SandboxReply:
        if (r := self._campaign(p)) is not None:
            return r
        with self.lock:
            self.hidden.update(h["offerId"] for h in body["hiddenOffers"])
        return ok()

    def delete_hidden(self, p: dict, q: dict, body: Any) -> SandboxReply:
        if (r := self._campaign(p)) is not None:
            return r
        with self.lock:
            self.hidden.difference_update(h["offerId"] for h in body["hiddenOffers"])
        return ok()

    def get_hidden(self, p: dict, q: dict, body: Any) -> SandboxReply:
        if (r := self._campaign(p)) is not None:
            return r
        with self.lock:
            return ok({"status": "OK", "result": {"hiddenOffers": [{"offerId": o} for o in sorted(self.hidden)]}})

    # ------------------------------------------------------------------ prices and stocks

    def _check_discount(self, offers: list[dict[str, Any]]) -> SandboxReply | None:
        for o in offers:
            price = o.get("price") or {}
            base = price.get("discountBase")
            if base is not None and price.get("value") is not None and base <= price["value"]:
                return error(400, "INVALID_DISCOUNT",
                             f"offer {o.get('offerId')}: discountBase must be greater than value")
        return None

    def update_business_prices(self, p: dict, q: dict, body: Any) -> SandboxReply:
        if (r := self._business(p)) is not None or (r := self._check_discount(body["offers"])) is not None:
            return r
        with self.lock:
            for o in body["offers"]:
                self.business_prices[o["offerId"]] = {"value": o["price"]["value"],
                                                      "discountBase": o["price"].get("discountBase"),
                                                      "minimumForBestseller": o["price"].get("minimumForBestseller")}
        return ok()

    def update_campaign_prices(self, p: dict, q: dict, body: Any) -> SandboxReply:
        if (r := self._campaign(p)) is not None or (r := self._check_discount(body["offers"])) is not None:
            return r
        with self.lock:
            for o in body["offers"]:
                if "offerId" in o and "price" in o:
                    self.campaign_prices[o["offerId"]] = {"value": o["price"].get("value"),
                                                          "discountBase": o["price"].get("discountBase")}
        return ok()

    def update_stocks(self, p: dict, q: dict, body: Any) -> SandboxReply:
        if (r := self._campaign(p)) is not None:
            return r
        skus = [s["sku"] for s in body["skus"]]
        if len(set(skus)) != len(skus):
            return error(400, "DUPLICATE_SKU", "every sku must be unique within one request")
        with self.lock:
            for s in body["skus"]:
                self.note_stock_write(s["sku"], int(s["items"][0]["count"]), self.stocks.get(s["sku"]))
                self.stocks[s["sku"]] = int(s["items"][0]["count"])
            self.stock_writes += len(skus)
        return ok()

    def get_stocks(self, p: dict, q: dict, body: Any) -> SandboxReply:
        """getStocks: the store's offers, paged; with `offerIds` the named SKUs alone, answered whole (the
        spec: then pageToken, limit, archived and the warehouse filter are not to be filled — refused)."""
        body = body or {}
        ids = body.get("offerIds")
        if ids and ({"page_token", "pageToken", "limit"} & set(q) or {"archived", "stocksWarehouseId"} & set(body)):
            return error(400, "BAD_REQUEST", "offerIds is answered whole: do not fill pageToken, limit, archived"
                                             " or stocksWarehouseId with it")
        self.note_stock_read("getStocks", ids)
        if str(p.get("campaignId")) == str(self.fby_campaign_id):
            return self._fby_stocks(q, body)
        if (r := self._campaign(p)) is not None:
            return r
        limit = int(q.get("limit") or 200)
        with self.lock:
            keys = [k for k in (ids or sorted(self.stocks)) if k in self.stocks]
            start = int(q.get("page_token") or q.get("pageToken") or 0) if not ids else 0
            page = keys[start:start + limit] if not ids else keys
            offers = [{"offerId": k, "stocks": [{"type": "AVAILABLE", "count": self.stocks[k]},
                                                {"type": "FIT", "count": self.stocks[k]}]} for k in page]
            result: dict[str, Any] = {"warehouses": [{"warehouseId": self.warehouse_id, "offers": offers}]}
            if not ids and start + limit < len(keys):
                result["paging"] = {"nextPageToken": str(start + limit)}
        return ok({"status": "OK", "result": result})

    def _fby_stocks(self, q: dict, body: dict[str, Any]) -> SandboxReply:
        """The FBY store's stock: per Market warehouse, its offers (AVAILABLE and FIT), paged by offer."""
        limit = int(q.get("limit") or 200)
        with self.lock:
            ids = body.get("offerIds")
            offers = sorted({a for (_w, a) in self.fby_stocks} & (set(ids) if ids else set(self.cards)))
            start = int(q.get("page_token") or q.get("pageToken") or 0) if not ids else 0
            page = set(offers[start:start + limit] if not ids else offers)
            warehouses = []
            for wid, _name in self.fby_warehouses:
                rows = [{"offerId": a, "stocks": [{"type": "AVAILABLE", "count": n}, {"type": "FIT", "count": n}]}
                        for (w, a), n in sorted(self.fby_stocks.items()) if w == wid and a in page]
                if rows:
                    warehouses.append({"warehouseId": wid, "offers": rows})
            result: dict[str, Any] = {"warehouses": warehouses}
            if not ids and start + limit < len(offers):
                result["paging"] = {"nextPageToken": str(start + limit)}
        return ok({"status": "OK", "result": result})

    # ------------------------------------------------------------------ orders

    def create_orders(self, count: int) -> list[str]:
        """New FBS orders (PROCESSING/STARTED) for listed cards (not hidden) with published stock, never
        more units than that stock (each unit ordered comes off it); notifies ORDER_CREATED. A late buyer
        (fault `late_buyer_rate`) orders a listed card whatever its stock."""
        made: list[YmOrder] = []
        with self.lock:
            now = datetime.now(UTC)
            for _ in range(count):
                late = self.late_buyer()
                listed = [a for a in sorted(self.cards) if a not in self.hidden]
                in_stock = listed if late else [a for a in listed if self.stocks.get(a, 0) > 0]
                if not in_stock:
                    break
                oid = self._next_order
                self._next_order += 1
                lines = []
                for k in range(1 + (oid % 3 == 0)):
                    article = in_stock[(oid * 7 + k * 3) % len(in_stock)]
                    if any(li["offerId"] == article for li in lines):
                        continue
                    card = self.cards[article]
                    price = self.campaign_prices.get(article) or self.business_prices.get(article) or {"value": 990}
                    wanted = 1 + (oid % 4 == 0)
                    units = wanted if late else min(wanted, self.stocks.get(article, 0))
                    if units <= 0:
                        continue
                    self.stocks[article] = max(0, self.stocks.get(article, 0) - units)
                    lines.append({"id": oid * 10 + k + 1, "offerId": article, "offerName": card["name"],
                                  "count": units, "price": float(price["value"] or 990),
                                  "marked": bool(card.get("marked"))})
                ship_day = (now + timedelta(days=1)).date()
                order = YmOrder(oid, self.campaign_id, lines, now, now,
                                shipment_id=int(ship_day.strftime("%Y%m%d")) * 10 + 1, shipment_date=ship_day)
                # Market lays every new order out as one box, so its label exists at once; the seller
                # changes the layout (and adds marking codes) with PUT .../boxes until READY_TO_SHIP
                order.boxes = [{"items": [{"id": li["id"], "fullCount": li["count"]} for li in lines],
                                "boxId": self._next_box}]
                self._next_box += 1
                self.orders[oid] = order
                made.append(order)
        for order in made:
            self._push("/notification", {
                "notificationType": "ORDER_CREATED", "orderId": order.order_id, "campaignId": order.campaign_id,
                "items": [{"offerId": li["offerId"], "count": li["count"]} for li in order.items],
                "createdAt": _iso(order.created)}, f"created:{order.order_id}")
        return [str(o.order_id) for o in made]

    def cancel_by_buyer(self, order_ids: list[str]) -> list[str]:
        """The buyer cancels (control endpoint): CANCELLED/USER_CHANGED_MIND + ORDER_CANCELLED push."""
        done = []
        for raw in order_ids:
            with self.lock:
                order = self.orders.get(int(raw))
                if order is None or order.status != "PROCESSING" or order.substatus == "SHIPPED":
                    continue
                self._move(order, "CANCELLED", "USER_CHANGED_MIND")
            done.append(str(order.order_id))
            self._push("/notification", {
                "notificationType": "ORDER_CANCELLED", "orderId": order.order_id, "campaignId": order.campaign_id,
                "items": [{"offerId": li["offerId"], "count": li["count"]} for li in order.items],
                "cancelledAt": _iso(order.updated)}, f"cancelled:{order.order_id}")
        return done

    def _move(self, order: YmOrder, status: str, substatus: str, *, notify: bool = False) -> None:
        order.status, order.substatus = status, substatus
        order.updated = datetime.now(UTC)
        order.moves.append(f"{status}/{substatus}")
        if notify:
            self._push("/notification", {
                "notificationType": "ORDER_STATUS_UPDATED", "orderId": order.order_id,
                "campaignId": order.campaign_id, "status": status, "substatus": substatus,
                "updatedAt": _iso(order.updated)}, f"status:{order.order_id}:{status}/{substatus}")

    def _business_order(self, o: YmOrder) -> dict[str, Any]:
        items = []
        for li in o.items:
            item: dict[str, Any] = {"id": li["id"], "offerId": li["offerId"], "offerName": li["offerName"],
                                    "count": li["count"],
                                    "prices": {"payment": {"value": li["price"], "currencyId": "RUR"},
                                               "subsidy": {"value": 0, "currencyId": "RUR"}, "vat": "VAT_20"}}
            if li["marked"]:
                item["requiredInstanceTypes"] = ["CIS"]
            items.append(item)
        out: dict[str, Any] = {
            "orderId": o.order_id, "campaignId": o.campaign_id, "programType": "FBS",
            "status": o.status, "substatus": o.substatus, "creationDate": _iso(o.created),
            "updateDate": _iso(o.updated), "paymentType": "PREPAID", "paymentMethod": "YANDEX", "fake": False,
            "items": items,
            "delivery": {"type": "DELIVERY", "serviceName": "Доставка Маркета", "deliveryServiceId": 1006360,
                         "deliveryPartnerType": "YANDEX_MARKET", "warehouseId": str(self.warehouse_id),
                         "dates": {"fromDate": (o.shipment_date + timedelta(days=2)).isoformat()},
                         "shipment": {"id": o.shipment_id, "shipmentDate": o.shipment_date.isoformat()}},
        }
        if o.external_id:
            out["externalOrderId"] = o.external_id
        return out

    def get_business_orders(self, p: dict, q: dict, body: Any) -> SandboxReply:
        if (r := self._business(p)) is not None:
            return r
        body = body or {}
        limit = int(q.get("limit") or 50)
        with self.lock:
            rows = sorted(self.orders.values(), key=lambda o: o.order_id)
            if body.get("orderIds"):
                wanted = set(body["orderIds"])
                rows = [o for o in rows if o.order_id in wanted]
            if body.get("campaignIds"):
                rows = [o for o in rows if o.campaign_id in set(body["campaignIds"])]
            if body.get("statuses"):
                rows = [o for o in rows if o.status in set(body["statuses"])]
            if body.get("substatuses"):
                rows = [o for o in rows if o.substatus in set(body["substatuses"])]
            start = int(q.get("page_token") or q.get("pageToken") or 0)
            page = rows[start:start + limit]
            result: dict[str, Any] = {"orders": [self._business_order(o) for o in page]}
            if start + limit < len(rows):
                result["paging"] = {"nextPageToken": str(start + limit)}
        return ok(result)

    def _order_dto(self, o: YmOrder) -> dict[str, Any]:
        total = sum(li["price"] * li["count"] for li in o.items)
        return {
            "id": o.order_id, "status": o.status, "substatus": o.substatus,
            "creationDate": _ddmmyyyy(o.created), "updatedAt": _ddmmyyyy(o.updated), "currency": "RUR",
            "itemsTotal": total, "deliveryTotal": 0, "buyerItemsTotalBeforeDiscount": total,
            "paymentType": "PREPAID", "paymentMethod": "YANDEX", "fake": False,
            "items": [{"id": li["id"], "offerId": li["offerId"], "offerName": li["offerName"], "price": li["price"],
                       "buyerPrice": li["price"], "buyerPriceBeforeDiscount": li["price"], "count": li["count"],
                       "vat": "VAT_20"} for li in o.items],
            "delivery": {"type": "DELIVERY", "serviceName": "Доставка Маркета", "deliveryServiceId": 1006360,
                         "deliveryPartnerType": "YANDEX_MARKET",
                         "dates": {"fromDate": (o.shipment_date + timedelta(days=2)).strftime("%d-%m-%Y")},
                         "region": {"id": 213, "name": "Москва", "type": "CITY"}},
            "buyer": {"type": "PERSON"}, "taxSystem": "OSN",
        }

    def _order(self, p: dict) -> tuple[YmOrder | None, SandboxReply | None]:
        if (r := self._campaign(p)) is not None:
            return None, r
        try:
            order = self.orders.get(int(p["orderId"]))
        except ValueError:
            order = None
        if order is None:
            return None, error(404, "NOT_FOUND", f"order {p.get('orderId')} not found")
        return order, None

    def update_order_status(self, p: dict, q: dict, body: Any) -> SandboxReply:
        with self.lock:
            order, r = self._order(p)
            if r is not None:
                return r
            assert order is not None
            want = (body["order"]["status"], body["order"].get("substatus", ""))
            now = (order.status, order.substatus)
            if want == ("PROCESSING", "READY_TO_SHIP"):
                if now != ("PROCESSING", "STARTED"):
                    return error(400, "STATUS_NOT_ALLOWED", f"order {order.order_id} is {now[0]}/{now[1]}")
                missing = [li["offerId"] for li in order.items if li["marked"] and not self._has_codes(order, li)]
                if missing:
                    return error(400, "MARKING_CODES_REQUIRED", f"marking codes missing for {', '.join(missing)}")
            elif want == ("CANCELLED", "SHOP_FAILED"):
                if now not in (("PROCESSING", "STARTED"), ("PROCESSING", "READY_TO_SHIP")):
                    return error(400, "STATUS_NOT_ALLOWED", f"order {order.order_id} is {now[0]}/{now[1]}")
            else:
                return error(400, "STATUS_NOT_ALLOWED", f"{want[0]}/{want[1]} cannot be set by the seller for FBS")
            self._move(order, *want, notify=True)
            return ok({"order": self._order_dto(order)})

    def _has_codes(self, order: YmOrder, line: dict[str, Any]) -> bool:
        codes = [inst.get("cis") for box in order.boxes for it in box["items"] if it["id"] == line["id"]
                 for inst in (it.get("instances") or []) if inst.get("cis")]
        return len(codes) >= line["count"]

    def set_boxes(self, p: dict, q: dict, body: Any) -> SandboxReply:
        with self.lock:
            order, r = self._order(p)
            if r is not None:
                return r
            assert order is not None
            if (order.status, order.substatus) != ("PROCESSING", "STARTED"):
                return error(400, "STATUS_NOT_ALLOWED", "boxes can be changed only before READY_TO_SHIP")
            by_id = {li["id"]: li for li in order.items}
            placed: dict[int, int] = {}
            for box in body["boxes"]:
                for it in box["items"]:
                    if it["id"] not in by_id:
                        return error(400, "ITEM_NOT_FOUND", f"item {it['id']} is not in order {order.order_id}")
                    placed[it["id"]] = placed.get(it["id"], 0) + int(it.get("fullCount") or 0)
            short = [i for i, li in by_id.items() if placed.get(i, 0) != li["count"]]
            if short and not body.get("allowRemove"):
                return error(400, "ITEMS_COUNT_MISMATCH",
                             f"boxes hold a different count than ordered for items {short}; set allowRemove")
            more = [i for i, li in by_id.items() if placed.get(i, 0) > li["count"]]
            if more:
                return error(400, "ITEMS_ADDITION_NOT_SUPPORTED", f"items {more}: an order cannot grow")
            if short:
                # items taken out (setOrderBoxLayout, "Как удалить товар из заказа"): never the only item of the
                # order, never every item (cancel the order instead, SHOP_FAILED); irreversible
                if len(order.items) == 1 or not any(placed.values()):
                    return error(400, "CANNOT_REMOVE_LAST_ITEM",
                                 "the only item of an order cannot be removed or reduced: cancel the order")
                order.items = [dict(li, count=placed[li["id"]]) for li in order.items if placed.get(li["id"], 0) > 0]
                order.removed.extend(f"{i}:{by_id[i]['count'] - placed.get(i, 0)}" for i in short)
            boxes = []
            for box in body["boxes"]:
                boxes.append({"items": box["items"], "boxId": self._next_box})
                self._next_box += 1
            order.boxes = boxes
            return ok({"status": "OK", "result": {"boxes": boxes}})

    def labels(self, p: dict, q: dict, body: Any) -> SandboxReply:
        fmt = q.get("format") or "A7"
        if fmt not in LABEL_SIZES_MM:
            return error(400, "BAD_REQUEST", f"unknown label format {fmt}")
        order, r = self._order(p)
        if r is not None:
            return r
        assert order is not None
        if not order.boxes:
            return error(400, "BOXES_REQUIRED", "labels are available after the box layout is sent")
        caption = [f"Boxes: {len(order.boxes)} ({', '.join(str(b['boxId']) for b in order.boxes)})",
                   f"Shipment {order.shipment_id} {order.shipment_date.isoformat()}"]
        if order.external_id:
            caption.append(f"Ext {order.external_id}")
        width, height = LABEL_SIZES_MM[fmt]
        return SandboxReply(200, data=pdf_label(str(order.order_id), width, height, caption),
                            content_type="application/pdf")

    def confirm_shipment(self, p: dict, q: dict, body: Any) -> SandboxReply:
        if (r := self._campaign(p)) is not None:
            return r
        try:
            shipment_id = int(p["shipmentId"])
        except ValueError:
            return error(400, "BAD_REQUEST", "shipmentId must be a number")
        moved = []
        with self.lock:
            members = [o for o in self.orders.values() if o.shipment_id == shipment_id]
            if not members:
                return error(404, "NOT_FOUND", f"shipment {shipment_id} not found")
            for o in members:
                if (o.status, o.substatus) == ("PROCESSING", "READY_TO_SHIP"):
                    self._move(o, "PROCESSING", "SHIPPED", notify=True)
                    o.shipped_on = o.updated.date()
                    moved.append(o.order_id)
                    self.fates.handed_over(str(o.order_id))
        return ok()

    def shipment_act(self, p: dict, q: dict, body: Any) -> SandboxReply:
        """The acceptance act of a confirmed shipment (PDF): its orders handed over, one row each."""
        if (r := self._campaign(p)) is not None:
            return r
        try:
            shipment_id = int(p["shipmentId"])
        except ValueError:
            return error(400, "BAD_REQUEST", "shipmentId must be a number")
        with self.lock:
            members = [o for o in self.orders.values() if o.shipment_id == shipment_id]
            if not members:
                return error(404, "NOT_FOUND", f"shipment {shipment_id} not found")
            shipped = sorted((o for o in members if o.shipped_on is not None), key=lambda o: o.order_id)
            if not shipped:
                return error(400, "SHIPMENT_NOT_CONFIRMED", f"shipment {shipment_id} is not confirmed yet")
            rows = [[str(o.order_id), o.external_id or "", str(sum(li["count"] for li in o.items)),
                     str(len(o.boxes) or 1)] for o in shipped]
            self.acts_given.append(shipment_id)
        pdf = pdf_document(f"Yandex Market shipment {shipment_id}", str(shipment_id), rows,
                           ["Order", "External id", "Units", "Boxes"],
                           pages=[f"Acceptance act, shipment {shipment_id}"])
        return SandboxReply(200, data=pdf, content_type="application/pdf")

    # ------------------------------------------------------------------ finance

    def after_hand_over(self, what: str, body: dict[str, Any]) -> dict[str, Any]:
        """Market moves handed-over orders on (control): "deliver" — PROCESSING/SHIPPED -> DELIVERY ->
        DELIVERED; "return" — DELIVERED -> RETURNED, or PARTIALLY_RETURNED with `{"units": {offerId: n}}`
        (accepted back at Market's warehouse); "lose" — a handed-over order lost in delivery (CANCELLED/
        DELIVERY_SERVICE_LOST), compensated by Market. `orders` (default: every order that can), `on`: the
        day it happened (default today) — the realization report counts it in that month."""
        day = date.fromisoformat(body["on"]) if body.get("on") else datetime.now(UTC).date()
        wanted = {int(x) for x in body.get("orders") or []}
        done: list[str] = []
        with self.lock:
            for o in sorted(self.orders.values(), key=lambda o: o.order_id):
                if wanted and o.order_id not in wanted:
                    continue
                shipped = o.shipped_on is not None and o.lost_on is None
                if what == "deliver" and shipped and o.delivered_on is None:
                    self._move(o, "DELIVERY", "DELIVERY_SERVICE_RECEIVED", notify=True)
                    self._move(o, "DELIVERED", "DELIVERED_USER_RECEIVED", notify=True)
                    o.delivered_on = day
                elif what == "return" and o.delivered_on is not None and o.returned_on is None:
                    units = {str(k): int(v) for k, v in (body.get("units") or {}).items()}
                    o.returned = {li["id"]: min(li["count"], units.get(li["offerId"], li["count"]))
                                  for li in o.items if not units or li["offerId"] in units}
                    whole = all(o.returned.get(li["id"], 0) == li["count"] for li in o.items)
                    # the substatus is required (OrderSubstatusType): it stays the delivery's
                    self._move(o, "RETURNED" if whole else "PARTIALLY_RETURNED", o.substatus)
                    o.returned_on = day
                elif what == "lose" and shipped and o.delivered_on is None:
                    self._move(o, "CANCELLED", "DELIVERY_SERVICE_LOST", notify=True)
                    o.lost_on = day
                else:
                    continue
                done.append(str(o.order_id))
        return {what: done}

    def move_shipment_date(self, body: dict[str, Any]) -> dict[str, Any]:
        """Market moves an order's shipment date (control): `{"order_id": int (or its digits), "shipment_date":
        "YYYY-MM-DD"}`.
        The orders endpoints give the new `delivery.shipment.shipmentDate` from then on (the order joins the
        first-mile shipment of that day; its delivery date moves with it) and, when the date did change, an
        ORDER_UPDATED/SHIPMENT_DATE_UPDATED notification is queued (thin, as Market's: the date is read from
        the orders endpoint). Refused with 400 for a malformed request or an order past its hand-over or
        cancelled, 404 for an unknown order. Answers the order, its new and its old date, and whether a
        notification was queued."""
        raw_id, raw_date = body.get("order_id"), body.get("shipment_date")
        if isinstance(raw_id, bool) or not isinstance(raw_id, int | str) or not str(raw_id).isdigit():
            raise ApiError(400, f"order_id must be an order id (an integer), not {raw_id!r}")
        if not isinstance(raw_date, str) or len(raw_date) != 10 or raw_date[4] != "-" or raw_date[7] != "-":
            raise ApiError(400, f"shipment_date must be a date YYYY-MM-DD, not {raw_date!r}")
        try:
            new = date.fromisoformat(raw_date)
        except ValueError:
            raise ApiError(400, f"shipment_date must be a date YYYY-MM-DD, not {raw_date!r}") from None
        with self.lock:
            order = self.orders.get(int(raw_id))
            if order is None:
                raise ApiError(404, f"order {raw_id} not found")
            if order.status != "PROCESSING" or order.substatus == "SHIPPED":
                raise ApiError(400, f"order {order.order_id} is {order.status}/{order.substatus}: its shipment"
                                    " date no longer moves")
            old = order.shipment_date
            moved = new != old
            if moved:
                order.shipment_date = new
                order.shipment_id = int(new.strftime("%Y%m%d")) * 10 + 1  # that day's first-mile shipment
                order.updated = datetime.now(UTC)
        if moved:
            self._push("/notification", {
                "notificationType": "ORDER_UPDATED", "orderId": order.order_id, "campaignId": order.campaign_id,
                "updateType": "SHIPMENT_DATE_UPDATED",  # to the millisecond, as Market's example: one key a move
                "updatedAt": order.updated.isoformat(timespec="milliseconds").replace("+00:00", "Z")},
                f"shipment_date:{order.order_id}:{new.isoformat()}")
        return {"order_id": order.order_id, "shipment_date": new.isoformat(), "old_shipment_date": old.isoformat(),
                "pushed": moved and bool(self.push.target.url)}

    def apply_fate(self, oid: str, step: str) -> None:
        """delivered: DELIVERY -> DELIVERED; cancelled on its way: CANCELLED/USER_REFUSED_DELIVERY and a
        non-redemption (UNREDEEMED); not accepted: CANCELLED/DELIVERY_SERVICE_UNDELIVERED and a
        non-redemption; returned (after delivery): RETURNED and a buyer's RETURN."""
        o = self.orders.get(int(oid))
        if o is None or o.shipped_on is None or o.lost_on is not None:
            return
        if step == "delivered":
            self.after_hand_over("deliver", {"orders": [oid]})
        elif step in ("cancelled", "not_accepted") and o.delivered_on is None and o.status != "CANCELLED":
            sub = "USER_REFUSED_DELIVERY" if step == "cancelled" else "DELIVERY_SERVICE_UNDELIVERED"
            self._move(o, "CANCELLED", sub, notify=True)
            self._add_return(o, "UNREDEEMED")
        elif step == "returned" and o.delivered_on is not None and o.returned_on is None:
            self.after_hand_over("return", {"orders": [oid]})
            self._add_return(o, "RETURN")

    def _add_return(self, o: YmOrder, kind: str) -> None:
        rid = self._next_return
        self._next_return += 1
        now = datetime.now(UTC)
        self.returns[rid] = {"id": rid, "order": o.order_id, "type": kind, "created": now,
                             "items": {li["offerId"]: (o.returned.get(li["id"]) or li["count"]) if kind == "RETURN"
                                       else li["count"] for li in o.items}}

    def get_returns(self, p: dict, q: dict, body: Any) -> SandboxReply:
        if (r := self._campaign(p)) is not None:
            return r
        raw_ids = q.get("orderIds") or []
        ids = {int(x) for x in (raw_ids if isinstance(raw_ids, list) else [raw_ids])}
        start = date.fromisoformat(q["fromDate"]) if q.get("fromDate") else None
        end = date.fromisoformat(q["toDate"]) if q.get("toDate") else None
        limit = int(q.get("limit") or 100)
        with self.lock:
            rows = [r for rid, r in sorted(self.returns.items()) if (not ids or r["order"] in ids)
                    and (start is None or r["created"].date() >= start) and (end is None or r["created"].date() <= end)
                    and (not q.get("type") or r["type"] == q["type"])]
            first = int(q.get("page_token") or q.get("pageToken") or 0)
            page = rows[first:first + limit]
            result: dict[str, Any] = {"returns": [{
                "id": r["id"], "orderId": r["order"], "returnType": r["type"],
                "creationDate": _iso(r["created"]), "updateDate": _iso(r["created"]),
                "shipmentStatus": "IN_TRANSIT", "shipmentRecipientType": "SHOP",
                "items": [{"shopSku": offer, "count": n} for offer, n in r["items"].items()],
            } for r in page]}
            if first + limit < len(rows):
                result["paging"] = {"nextPageToken": str(first + limit)}
        return ok({"status": "OK", "result": result})

    def _commissions(self, o: YmOrder) -> list[dict[str, Any]]:
        """What Market charges for an order (the sandbox's tariff): its fee, the payment transfer, the
        last mile per box, sorting; a return adds its processing and storage."""
        total = sum(li["price"] * li["count"] for li in o.items)
        out = [{"type": "FEE", "actual": round(total * 0.12, 2)},
               {"type": "PAYMENT_TRANSFER", "actual": round(total * 0.01, 2)},
               {"type": "DELIVERY_TO_CUSTOMER", "actual": round(60.0 * len(o.boxes or [1]), 2)},
               {"type": "SORTING", "actual": 15.0}]
        if o.returned_on is not None:
            out += [{"type": "RETURN_PROCESSING", "actual": 50.0}, {"type": "RETURNED_ORDERS_STORAGE", "actual": 10.0}]
        return out

    def _stats_status(self, o: YmOrder) -> str:
        if o.lost_on is not None:
            return "LOST"
        if o.returned_on is not None:
            return o.status
        if o.delivered_on is not None:
            return "DELIVERED"
        return "DELIVERY"

    def stats_orders(self, p: dict, q: dict, body: Any) -> SandboxReply:
        """Orders handed over (and what became of them), with payments and every commission charged:
        filtered by `orders`, or by creation (`dateFrom`/`dateTo`) or change (`updateFrom`/`updateTo`) dates."""
        if (r := self._campaign(p)) is not None:
            return r
        body = body or {}
        d_from = date.fromisoformat(body["dateFrom"]) if body.get("dateFrom") else date.min
        d_to = date.fromisoformat(body["dateTo"]) if body.get("dateTo") else date.max
        u_from = date.fromisoformat(body["updateFrom"]) if body.get("updateFrom") else date.min
        u_to = date.fromisoformat(body["updateTo"]) if body.get("updateTo") else date.max
        ids = {int(x) for x in body.get("orders") or []}
        limit = int(q.get("limit") or 200)
        with self.lock:
            rows = [o for o in sorted(self.orders.values(), key=lambda o: o.order_id)
                    if o.shipped_on is not None and (not ids or o.order_id in ids)
                    and d_from <= o.created.date() <= d_to and u_from <= o.updated.date() <= u_to]
            start = int(q.get("page_token") or q.get("pageToken") or 0)
            page = rows[start:start + limit]
            out = []
            for o in page:
                total = sum(li["price"] * li["count"] for li in o.items)
                out.append({
                    "id": o.order_id, "creationDate": o.created.date().isoformat(),
                    "statusUpdateDate": _iso(o.updated), "status": self._stats_status(o), "paymentType": "PREPAID",
                    "fake": False, "partnerOrderId": o.external_id or str(o.order_id),
                    "items": [{"offerName": li["offerName"], "marketSku": self.cards[li["offerId"]]["marketSku"],
                               "shopSku": li["offerId"], "count": li["count"],
                               "prices": [{"type": "BUYER", "costPerItem": li["price"],
                                           "total": li["price"] * li["count"]}],
                               "warehouse": {"id": self.warehouse_id, "name": "Склад MarketSync (FBS)"}}
                              for li in o.items],
                    "payments": [{"id": f"P{o.order_id}", "date": o.updated.date().isoformat(), "type": "PAYMENT",
                                  "source": "BUYER", "total": total}],
                    "commissions": self._commissions(o),
                    "currency": "RUR"})
            result: dict[str, Any] = {"orders": out}
            if start + limit < len(rows):
                result["paging"] = {"nextPageToken": str(start + limit)}
        return ok({"status": "OK", "result": result})

    # ------------------------------------------------------------------ prices read back

    def _price_page(self, prices: dict[str, dict[str, Any]], q: dict, ids: list[str] | None,
                    dto: Any) -> dict[str, Any]:
        keys = [k for k in (ids or sorted(prices)) if k in prices]
        limit = int(q.get("limit") or 250)
        start = int(q.get("page_token") or q.get("pageToken") or 0) if not ids else 0
        page = keys[start:start + limit]
        result: dict[str, Any] = {"offers": [dto(k, prices[k]) for k in page]}
        if not ids and start + limit < len(keys):
            result["paging"] = {"nextPageToken": str(start + limit)}
        return result

    def get_default_prices(self, p: dict, q: dict, body: Any) -> SandboxReply:
        """The prices set for every store (getDefaultPrices), paged, or for `offerIds`."""
        if (r := self._business(p)) is not None:
            return r
        now = _iso(datetime.now(UTC))

        def dto(offer_id: str, v: dict[str, Any]) -> dict[str, Any]:
            price: dict[str, Any] = {"value": v["value"], "currencyId": "RUR", "updatedAt": now}
            if v.get("discountBase"):
                price["discountBase"] = v["discountBase"]
            if v.get("minimumForBestseller"):
                price["minimumForBestseller"] = v["minimumForBestseller"]
            return {"offerId": offer_id, "price": price}

        with self.lock:
            return ok({"status": "OK", "result": self._price_page(self.business_prices, q,
                                                                  (body or {}).get("offerIds"), dto)})

    def get_campaign_prices(self, p: dict, q: dict, body: Any) -> SandboxReply:
        """One store's own prices (getPricesByOfferIds), paged, or for `offerIds`."""
        if (r := self._campaign(p)) is not None:
            return r
        now = _iso(datetime.now(UTC))

        def dto(offer_id: str, v: dict[str, Any]) -> dict[str, Any]:
            price: dict[str, Any] = {"value": v["value"], "currencyId": "RUR"}
            if v.get("discountBase"):
                price["discountBase"] = v["discountBase"]
            return {"offerId": offer_id, "price": price, "updatedAt": now}

        with self.lock:
            return ok({"status": "OK", "result": self._price_page(self.campaign_prices, q,
                                                                  (body or {}).get("offerIds"), dto)})

    # ------------------------------------------------------------------ reports

    def generate_realization(self, p: dict, q: dict, body: Any) -> SandboxReply:
        """Starts the month's realization report of a store; ready after REPORT_READY_S."""
        if str(body["campaignId"]) != str(self.campaign_id):
            return error(403, "FORBIDDEN", f"campaign {body['campaignId']} is not available to this token")
        fmt = q.get("format") or "FILE"
        if fmt not in ("CSV", "JSON"):
            return error(400, "BAD_REQUEST", f"this sandbox builds the report as CSV or JSON, not {fmt} (XLSX)")
        with self.lock:
            report_id = f"goods-realization-{self._next_report:06d}"
            self._next_report += 1
            self.reports[report_id] = {"campaign": self.campaign_id, "year": int(body["year"]), "format": fmt,
                                       "month": int(body["month"]), "requested": datetime.now(UTC),
                                       "ready": time.monotonic() + REPORT_READY_S / self.time_scale}
        return ok({"status": "OK", "result": {"reportId": report_id,
                                              "estimatedGenerationTime": int(REPORT_READY_S * 1000)}})

    def _moves(self) -> list[yandex_market_reports.ItemMove]:
        return [yandex_market_reports.ItemMove(
            order_id=o.order_id, your_order_id=o.external_id, offer_id=li["offerId"], offer_name=li["offerName"],
            market_sku=int(self.cards[li["offerId"]]["marketSku"]), count=li["count"], price=float(li["price"]),
            created=o.created.date(), shipped=o.shipped_on, delivered=o.delivered_on, returned=o.returned_on,
            returned_count=o.returned.get(li["id"], 0), lost=o.lost_on)
            for o in sorted(self.orders.values(), key=lambda o: o.order_id) if o.shipped_on for li in o.items]

    def report_info(self, p: dict, q: dict, body: Any) -> SandboxReply:
        with self.lock:
            report = self.reports.get(p["reportId"])
            if report is None:
                return error(404, "NOT_FOUND", f"report {p['reportId']} not found")
            info: dict[str, Any] = {"generationRequestedAt": _iso(report["requested"])}
            if time.monotonic() < report["ready"]:
                info.update(status="PROCESSING", estimatedGenerationTime=int(REPORT_READY_S * 1000))
                return ok({"status": "OK", "result": info})
            if "file" not in report:
                pack = yandex_market_reports.json_zip if report["format"] == "JSON" else yandex_market_reports.csv_zip
                rows = yandex_market_reports.sheet_rows(self._moves(), report["year"], report["month"])
                report["file"] = pack(rows) if any(rows.values()) else None  # nothing that month: NO_DATA
                report["finished"] = datetime.now(UTC)
            info.update(status="DONE", generationFinishedAt=_iso(report["finished"]))
            if report["file"] is None:
                info["subStatus"] = "NO_DATA"
            else:
                info["file"] = f"http://{self._host}{FILES}/{p['reportId']}.zip"

        return ok({"status": "OK", "result": info})

    def report_file(self, req: SandboxRequest) -> SandboxReply:
        name = req.path_params["fileName"]
        report = self.reports.get(name.removesuffix(".zip"))
        if report is None or not report.get("file"):
            return SandboxReply(404, {"message": "no such file"})
        return SandboxReply(200, data=report["file"], content_type="application/zip")

    # ------------------------------------------------------------------ control

    def stocks_view(self) -> dict[str, Any]:
        return dict(self.stocks)

    def snapshot(self) -> dict[str, Any]:
        return {
            "stocks": self.stocks_view(),
            "prices": {k: v["value"] for k, v in self.business_prices.items()},
            "campaign_prices": {k: v["value"] for k, v in self.campaign_prices.items()},
            "business_price_details": {k: dict(v) for k, v in self.business_prices.items()},  # with discountBase
            "orders": {str(o.order_id): f"{o.status}/{o.substatus}" for o in self.orders.values()},
            "order_moves": {str(o.order_id): list(o.moves) for o in self.orders.values()},
            # what each order still holds per offer (items the seller removed are gone): what the buyer gets
            "order_units": {str(o.order_id): _units(o) for o in self.orders.values() if o.status != "CANCELLED"},
            "order_removed": {str(o.order_id): list(o.removed) for o in self.orders.values() if o.removed},
            "returns": {str(rid): {"order": str(r["order"]), "type": r["type"]} for rid, r in self.returns.items()},
            "hidden": sorted(self.hidden),
            "acts_given": list(self.acts_given),
            "stock_writes": self.stock_writes,
            "parallel_refused": self.parallel_refused,
            "pushes": self.push.summary(),
            "businessId": self.business_id, "campaignId": self.campaign_id, "warehouseId": self.warehouse_id,
        }
