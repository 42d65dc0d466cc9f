"""The Wildberries sandbox: content, prices, marketplace (FBS) and finance families on one port.

Faithful to ../shared/specs/wildberries (2026-07): `Authorization` token; stocks keyed by chrtId per
seller warehouse; FBS orders `new -> confirm` (added to a supply) `-> complete` (supply delivered)
or `cancel`; stickers in svg/png/zplv/zplh at 58x40 or 40x30 whose Code 128 decodes to the order id;
prices as upload tasks (a duplicate upload answers 208 alreadyExists); the finance `sales-reports`
realization report built from the orders this sandbox sold (a delivered supply counts as sold).
Limits from NOTES-wildberries-ozon.md §1.2 with the documented 429 body and `X-Ratelimit-*` headers;
a 4xx in the Marketplace family costs 10 requests. Imports no adapter.
"""

from __future__ import annotations

import base64
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from marketplaces.sandbox import labels
from marketplaces.sandbox import wildberries_content as content
from marketplaces.sandbox.core import ApiError, Route, SandboxApp, SandboxLimit, SandboxReply, SandboxRequest
from marketplaces.sandbox.seed import demo_fbo, demo_items

MSK = timedelta(hours=3)
# the realization report's deductions besides the commission and logistics, so a report shows them
ACQUIRING_PCT = Decimal("1.5")  # of the sale, the payment processing
STORAGE_PER_SALE = Decimal("4.20")  # storage of the card sold, one row per sale
PENALTY = Decimal("150.00")  # every third sale
DEDUCTION = Decimal("30.00")  # one account deduction per report with sales
DEDUCTION_RRD = 10**9  # its row id: after every sale's rows


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class WildberriesSandbox(SandboxApp):
    marketplace = "wildberries"
    limits = {
        "content": SandboxLimit(100 / 60, 5),
        "content_upload": SandboxLimit(10 / 60, 5),
        "content_recover": SandboxLimit(3 / 60, 5),
        "media": SandboxLimit(100 / 60, 5),
        "prices": SandboxLimit(10 / 6, 5),
        "stocks": SandboxLimit(300 / 60, 20, error_cost=10),
        "marketplace": SandboxLimit(300 / 60, 20, error_cost=10),
        "order_cancel": SandboxLimit(100 / 60, 20, error_cost=10),
        "meta_set": SandboxLimit(1000 / 60, 20, error_cost=10),
        "meta_read": SandboxLimit(300 / 60, 20, error_cost=10),
        "finance": SandboxLimit(1 / 60, 1),
        "finance_list": SandboxLimit(1 / 60, 1),  # each finance method has its own 1 req/min
        "analytics_stocks": SandboxLimit(3 / 60, 1),  # stocks-report/wb-warehouses: 3 a minute, burst 1
        "tariffs_commission": SandboxLimit(1 / 60, 2),  # tariffs/commission: 1 a minute, burst 2
        "tariffs_box": SandboxLimit(60 / 60, 5),  # tariffs/box: 60 a minute, burst 5
    }

    card_delay_s = 2.0  # how long WB takes to process an uploaded card (marketplace seconds)

    def __init__(self, *, marking: bool = False, **options: Any) -> None:
        """`marking=True`: orders of marked demo goods require a Честный знак code (`requiredMeta:
        ["sgtin"]`), and a supply holding one without its code is not delivered. Off by default, so
        that flows which never scan codes keep delivering (also `POST /_sandbox/x/marking`)."""
        self.marking = marking
        super().__init__(**options)

    def make_credentials(self) -> dict[str, str]:
        return {"Authorization": f"wb-sandbox-token-{self.rng_seed:04d}"}

    # ------------------------------------------------------------ seed and state

    def seed_catalog(self, n: int) -> None:
        self.warehouses = [
            {"id": 700001, "name": "Склад продавца Москва", "officeId": 15, "cargoType": 1, "deliveryType": 1},
            {"id": 700002, "name": "Склад продавца Казань", "officeId": 27, "cargoType": 1, "deliveryType": 1},
            {"id": 700003, "name": "Склад продавца Екатеринбург", "officeId": 41, "cargoType": 1,
             "deliveryType": 1},
        ]
        self.cards: dict[int, dict[str, Any]] = {}  # nmID -> card
        self.chrt_to_nm: dict[int, int] = {}
        self.stocks: dict[tuple[int, int], int] = {}  # (warehouseId, chrtId) -> amount
        self.prices: dict[int, dict[str, int]] = {}  # nmID -> {price, discount}
        self.orders: dict[int, dict[str, Any]] = {}
        self.supplies: dict[str, dict[str, Any]] = {}
        self.documents_given: list[tuple[str, str]] = []  # (kind, supply id) of each hand-over document served
        self.price_tasks: dict[int, dict[str, Any]] = {}
        self.card_errors: list[dict[str, Any]] = []
        # cards uploaded and not yet processed: (due, monotonic marketplace seconds; subjectID; variant; batch)
        self.card_queue: list[tuple[float, int, dict[str, Any], str]] = []
        self.sales: list[dict[str, Any]] = []
        self.transitions: dict[str, list[str]] = {}
        self.stock_writes = 0
        # every amount written, per "chrtId@warehouseId": [[unix ts, amount, the amount before], ...] (an
        # amount written again over itself, nothing changed since the last write, tells a push sent twice)
        self.stock_sets: dict[str, list[list[float]]] = {}
        self._next_order = self.first_id(5_000_000_001, 100_000_000)
        self._next_supply = self.first_id(1, 1_000_000)
        self._next_task = self.first_id(1, 1_000_000)
        self._next_rrd = 1
        self.marked_nm: set[int] = set()  # cards of goods under Честный знак marking
        base = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
        for item in demo_items(n):
            nm = 200_000_000 + item.index
            if item.marked:
                self.marked_nm.add(nm)
            chrt = 400_000_000 + item.index
            self._add_card(nm, 300_000_000 + item.index, chrt, item.article, item.name, item.subject_id,
                           item.category, item.size, [item.barcode], _iso(base + timedelta(minutes=item.index)))
            self.stocks[(self.warehouses[0]["id"], chrt)] = item.stock
            self.prices[nm] = {"price": int(item.price), "discount": 0}
        # stock in WB's own warehouses (FBO), read by stocks-report/wb-warehouses: (warehouseId, chrtId) -> qty
        self.wb_warehouses = [(507, "Коледино", "Центральный"), (120762, "Электросталь", "Центральный")]
        self.fbo: dict[tuple[int, int], int] = {
            (self.wb_warehouses[slot][0], 400_000_000 + i): qty for i, slot, qty in demo_fbo(n)}

    def _add_card(self, nm: int, imt: int, chrt: int, vendor: str, title: str, subject_id: int, subject: str,
                  size: str, skus: list[str], updated: str) -> None:
        self.cards[nm] = {
            "nmID": nm, "imtID": imt, "nmUUID": str(uuid.UUID(int=nm)), "subjectID": subject_id,
            "subjectName": subject, "vendorCode": vendor, "brand": "MarketSync Demo", "title": title[:60],
            "needKiz": False, "kizMarked": False, "photos": [],
            "dimensions": {"length": 20, "width": 15, "height": 5, "weightBrutto": 0.3, "isValid": True},
            "characteristics": [], "tags": [],
            "sizes": [{"chrtID": chrt, "techSize": size, "wbSize": "" if size == "0" else size, "skus": skus}],
            "createdAt": updated, "updatedAt": updated, "_trashed": None,
        }
        self.chrt_to_nm[chrt] = nm

    def stocks_view(self) -> dict[str, Any]:
        return {f"{chrt}@{wh}": n for (wh, chrt), n in self.stocks.items()}

    def snapshot(self) -> dict[str, Any]:
        return {
            "stocks": self.stocks_view(),
            "prices": {str(nm): dict(p) for nm, p in self.prices.items()},
            "orders": {str(oid): o["supplierStatus"] for oid, o in self.orders.items()},
            "wb_status": {str(oid): o["wbStatus"] for oid, o in self.orders.items()},
            # what each assembly task holds (one unit of one article), as the other sandboxes say it
            "order_units": {str(oid): {o["article"]: 1} for oid, o in self.orders.items()
                            if o["supplierStatus"] != "cancel"},
            "transitions": {k: list(v) for k, v in self.transitions.items()},
            "supplies": {sid: {"orders": list(s["orders"]), "done": s["done"]} for sid, s in self.supplies.items()},
            "documents_given": [list(d) for d in self.documents_given],
            "trashed": sorted(nm for nm, c in self.cards.items() if c["_trashed"]),
            "stock_writes": self.stock_writes,
            "stock_sets": {k: [list(x) for x in v] for k, v in self.stock_sets.items()},
            "sold": len(self.sales),
            "sgtins": {str(oid): list(o["meta"]["sgtin"]) for oid, o in self.orders.items() if o["meta"].get("sgtin")},
            "required_meta": {str(oid): list(o["requiredMeta"]) for oid, o in self.orders.items() if o["requiredMeta"]},
        }

    def make_orders(self, count: int) -> list[int]:
        made: list[int] = []
        for _ in range(count):
            # listed cards (not in the trash) with published stock; a late buyer (fault) whatever the stock
            late = self.late_buyer()
            choices = [(wh, chrt) for (wh, chrt), n in sorted(self.stocks.items())
                       if (late or n > 0) and not self.cards[self.chrt_to_nm[chrt]]["_trashed"]]
            if not choices:
                break
            wh, chrt = choices[self.rng.randrange(len(choices))]
            self.stocks[(wh, chrt)] = max(0, self.stocks[(wh, chrt)] - 1)
            card = self.cards[self.chrt_to_nm[chrt]]
            price = self.prices[card["nmID"]]
            final = int(Decimal(price["price"]) * (100 - price["discount"]) / 100)
            oid = self._next_order
            self._next_order += 1
            office = next(w["officeId"] for w in self.warehouses if w["id"] == wh)
            self.orders[oid] = {
                "id": oid, "rid": f"{oid:x}.{self.rng.randrange(10**8):08d}.0", "orderUid": f"{oid}_{uuid.uuid4().hex[:12]}",
                "createdAt": _iso(_now()), "warehouseId": wh, "officeId": office, "offices": ["Москва"],
                "nmId": card["nmID"], "chrtId": chrt, "article": card["vendorCode"], "colorCode": "",
                "skus": list(card["sizes"][0]["skus"]), "price": final * 100, "finalPrice": final * 100,
                "salePrice": price["price"] * 100, "convertedPrice": final * 100, "convertedFinalPrice": final * 100,
                "currencyCode": 643, "convertedCurrencyCode": 643, "cargoType": 1, "crossBorderType": 0,
                "deliveryType": "fbs", "requiredMeta": ["sgtin"] if self.marking and card["nmID"] in self.marked_nm else [],
                "optionalMeta": [], "isZeroOrder": False,
                "isPickupPointShipmentAllowed": False, "options": {"isB2B": False}, "comment": "",
                "ddate": (_now() + timedelta(days=2)).strftime("%d.%m.%Y"),
                "address": None, "scanPrice": None, "sellerDate": None,
                "supplierStatus": "new", "wbStatus": "waiting", "supplyId": None, "meta": {},
            }
            self.transitions[str(oid)] = ["new"]
            made.append(oid)
        return made

    def _move(self, o: dict[str, Any], status: str, wb_status: str | None = None) -> None:
        o["supplierStatus"] = status
        if wb_status:
            o["wbStatus"] = wb_status
        self.transitions[str(o["id"])].append(status)

    def control(self, name: str, body: dict[str, Any]) -> Any:
        if name == "stock":  # read one stock as the marketplace holds it
            return {"amount": self.stocks.get((int(body["warehouseId"]), int(body["chrtId"])), 0)}
        if name == "card_delay":  # how long an uploaded card takes to be processed (marketplace seconds)
            self.card_delay_s = float(body.get("seconds", self.card_delay_s))
            return {"seconds": self.card_delay_s}
        if name == "fbo":  # set a stock in a WB warehouse: {"warehouseId", "chrtId", "quantity"}
            self.fbo[(int(body["warehouseId"]), int(body["chrtId"]))] = int(body["quantity"])
            return {"quantity": int(body["quantity"])}
        if name == "marking":  # orders made from now on: marked goods require sgtin (or not)
            self.marking = bool(body.get("sgtin", True))
            return {"sgtin": self.marking}
        return super().control(name, body)

    # ------------------------------------------------------------ error shapes

    def _family(self, template: str) -> str:
        if template.startswith("/content/") or template.startswith("/api/v2/"):
            return "content"
        if template.startswith("/api/finance/"):
            return "finance"
        return "marketplace"

    def error_reply(self, status: int, message: str, *, code: str = "", template: str = "") -> SandboxReply:
        if status in (401, 429):
            return SandboxReply(status, self._problem(status, message, code))
        family = self._family(template)
        if family == "content":
            return SandboxReply(status, {"data": None, "error": True, "errorText": message, "additionalErrors": None})
        if family == "finance":
            return SandboxReply(status, {"status": status, "title": code or "error", "detail": message,
                                         "requestId": uuid.uuid4().hex, "origin": "finance-api"},
                                content_type="application/problem+json")
        return SandboxReply(status, {"code": code or "Error", "message": message, "data": None})

    def _problem(self, status: int, detail: str, code: str = "") -> dict[str, Any]:
        return {"title": "too many requests" if status == 429 else "unauthorized", "detail": detail,
                "code": code or ("429" if status == 429 else "401"), "requestId": uuid.uuid4().hex,
                "origin": "s2s-api-auth-sandbox", "status": status,
                "statusText": "Too Many Requests" if status == 429 else "Unauthorized",
                "timestamp": _iso(_now())}

    def throttle_reply(self, retry_after_s: float, group: str) -> SandboxReply:
        wait = max(1, int(retry_after_s + 0.999))
        limit = self.limits.get(group)
        return SandboxReply(429, self._problem(429, "Limited by global limiter"), headers={
            "X-Ratelimit-Retry": str(wait), "X-Ratelimit-Reset": str(wait), "X-Ratelimit-Remaining": "0",
            "X-Ratelimit-Limit": str(int(limit.burst) if limit else 1)})

    def check_auth(self, req: SandboxRequest) -> SandboxReply | None:
        token = req.headers.get("authorization", "")
        if token.removeprefix("Bearer ").strip() != self.credentials["Authorization"]:
            return SandboxReply(401, self._problem(401, "token is missing or invalid", "401"))
        return None

    # ------------------------------------------------------------ routes

    def routes(self) -> list[Route]:
        r = Route
        return [
            r("GET", "/api/v3/warehouses", self.get_warehouses, "marketplace"),
            r("PUT", "/api/v3/stocks/{warehouseId}", self.put_stocks, "stocks"),
            r("POST", "/api/v3/stocks/{warehouseId}", self.read_stocks, "stocks"),
            r("GET", "/api/v3/orders/new", self.orders_new, "marketplace"),
            r("GET", "/api/v3/orders", self.orders_list, "marketplace"),
            r("POST", "/api/v3/orders/status", self.orders_status, "marketplace"),
            r("PUT", "/api/v3/orders/{orderId}/meta/sgtin", self.order_sgtin, "meta_set"),
            r("POST", "/api/marketplace/v3/orders/meta", self.orders_meta, "meta_read"),
            r("PATCH", "/api/v3/orders/{orderId}/cancel", self.order_cancel, "order_cancel", action="cancel",
              moves=lambda req: [req.path_params["orderId"]]),
            r("POST", "/api/v3/supplies", self.supply_create, "marketplace"),
            r("GET", "/api/v3/supplies/{supplyId}", self.supply_get, "marketplace"),
            r("GET", "/api/v3/supplies", self.supplies_list, "marketplace"),
            r("GET", "/api/marketplace/v3/supplies/{supplyId}/order-ids", self.supply_order_ids, "marketplace"),
            r("PATCH", "/api/marketplace/v3/supplies/{supplyId}/orders", self.supply_add, "marketplace",
              action="confirm", moves=self._new_in_supply),
            r("PATCH", "/api/v3/supplies/{supplyId}/deliver", self.supply_deliver, "marketplace", action="ship",
              moves=self._delivered_by),
            r("POST", "/api/v3/orders/stickers", self.stickers, "marketplace"),
            r("GET", "/api/v3/supplies/{supplyId}/barcode", self.supply_barcode, "marketplace"),
            r("POST", "/content/v2/get/cards/list", self.cards_list, "content"),
            r("POST", "/content/v2/get/cards/trash", self.cards_trash_list, "content"),
            r("POST", "/content/v2/cards/upload", self.cards_upload, "content_upload"),
            r("POST", "/content/v2/cards/error/list", self.cards_error_list, "content_upload"),
            r("POST", "/content/v2/cards/delete/trash", self.cards_to_trash, "content"),
            r("POST", "/content/v2/cards/recover", self.cards_recover, "content_recover"),
            r("GET", "/content/v2/object/all", self.subjects, "content"),
            r("GET", "/content/v2/object/charcs/{subjectId}", self.subject_charcs, "content"),
            r("POST", "/content/v3/media/save", self.media_save, "media"),
            r("POST", "/api/v2/upload/task", self.prices_upload, "prices"),
            r("GET", "/api/v2/history/tasks", self.price_task, "prices"),
            r("GET", "/api/v2/list/goods/filter", self.prices_list, "prices"),
            r("POST", "/api/finance/v1/sales-reports/list", self.sales_reports_list, "finance_list"),
            r("POST", "/api/finance/v1/sales-reports/detailed", self.sales_report, "finance"),
            r("POST", "/api/analytics/v1/stocks-report/wb-warehouses", self.fbo_stocks, "analytics_stocks"),
            r("GET", "/api/v1/tariffs/commission", self.commission, "tariffs_commission"),
            r("GET", "/api/v1/tariffs/box", self.box_tariffs, "tariffs_box"),
        ]

    def _err(self, req: SandboxRequest, status: int, message: str, code: str = "") -> SandboxReply:
        return self.error_reply(status, message, code=code, template=req.template)

    # -- warehouses and stocks

    def get_warehouses(self, req: SandboxRequest) -> SandboxReply:
        return SandboxReply(200, [dict(w, isDeleting=False, isProcessing=False) for w in self.warehouses])

    def _warehouse(self, req: SandboxRequest) -> int:
        wh = int(req.path_params["warehouseId"])
        if all(w["id"] != wh for w in self.warehouses):
            raise ApiError(404, "Not found: warehouse", code="NotFound")
        return wh

    def put_stocks(self, req: SandboxRequest) -> SandboxReply:
        wh = self._warehouse(req)
        stocks = req.json()["stocks"]
        unknown = [s.get("chrtId") for s in stocks if s.get("chrtId") not in self.chrt_to_nm]
        if unknown:
            return SandboxReply(409, [{"code": "NotFound", "message": "Not found",
                                       "data": [{"chrtId": c} for c in unknown[:100]]}])
        for s in stocks:
            if "amount" in s:  # WB: a misspelled field is not an error, and nothing changes
                before = self.stocks.get((wh, int(s["chrtId"])), 0)
                self.stocks[(wh, int(s["chrtId"]))] = int(s["amount"])
                self.stock_writes += 1
                self.note_stock_write((wh, int(s["chrtId"])), int(s["amount"]), before)
                self.stock_sets.setdefault(f"{s['chrtId']}@{wh}", []).append([time.time(), int(s["amount"]), before])
        return SandboxReply(204)

    def read_stocks(self, req: SandboxRequest) -> SandboxReply:
        wh = self._warehouse(req)
        ids = req.json()["chrtIds"]
        self.note_stock_read(req.template, ids)
        return SandboxReply(200, {"stocks": [{"chrtId": c, "amount": self.stocks.get((wh, c), 0)}
                                             for c in ids if c in self.chrt_to_nm]})

    # -- orders

    @staticmethod
    def _public(order: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in order.items() if k not in ("supplierStatus", "wbStatus", "supplyId", "meta")}
        return {k: v for k, v in out.items() if v is not None or k in ("address", "scanPrice", "sellerDate")}

    def orders_new(self, req: SandboxRequest) -> SandboxReply:
        return SandboxReply(200, {"orders": [self._public(o) for o in self.orders.values()
                                             if o["supplierStatus"] == "new"]})

    def orders_list(self, req: SandboxRequest) -> SandboxReply:
        limit = int(req.query.get("limit", 1000))
        nxt = int(req.query.get("next", 0))
        ids = sorted(i for i in self.orders if i > nxt)[:limit]
        orders = []
        for i in ids:
            o = self._public(self.orders[i])
            for k in ("address", "scanPrice", "sellerDate", "ddate", "isZeroOrder", "optionalMeta", "comment",
                      "convertedFinalPrice", "finalPrice", "salePrice", "isPickupPointShipmentAllowed",
                      "requiredMeta", "options", "deliveryType", "currencyCode", "convertedCurrencyCode",
                      "offices", "colorCode", "crossBorderType"):
                o.pop(k, None)
            o["supplyId"] = self.orders[i]["supplyId"] or ""
            orders.append(o)
        return SandboxReply(200, {"next": ids[-1] if ids else nxt, "orders": orders})

    def _order(self, oid: Any) -> dict[str, Any]:
        try:
            return self.orders[int(oid)]
        except (KeyError, ValueError, TypeError):
            raise ApiError(404, f"order {oid} not found", code="NotFound") from None

    def orders_status(self, req: SandboxRequest) -> SandboxReply:
        out = []
        for oid in req.json()["orders"]:
            o = self.orders.get(oid)
            if o is None:
                continue
            out.append({"id": oid, "supplierStatus": o["supplierStatus"], "wbStatus": o["wbStatus"],
                        "isCancellable": o["supplierStatus"] in ("new", "confirm")})
        return SandboxReply(200, {"orders": out})

    # -- marking identifiers (Честный знак)

    def order_sgtin(self, req: SandboxRequest) -> SandboxReply:
        """PUT meta/sgtin: only for an order in `confirm` whose marking identifiers include sgtin; the
        order's codes are replaced by the ones sent."""
        o = self._order(req.path_params["orderId"])
        sgtins = (req.json() or {}).get("sgtins")
        if not isinstance(sgtins, list) or not all(isinstance(c, str) and 16 <= len(c) <= 135 for c in sgtins):
            raise ApiError(400, "Некорректное тело запроса", code="IncorrectRequestBody")
        if "sgtin" not in (o["requiredMeta"] or []) + (o["optionalMeta"] or []):
            raise ApiError(409, "Order doesn't require ID", code="MetaKeyNotRequired")
        if o["supplierStatus"] != "confirm":
            raise ApiError(409, "Failed to update the label identifiers of the assembly order. Make sure the "
                                "assembly order meets all the necessary requirements.", code="FailedToUpdateMeta")
        o["meta"]["sgtin"] = list(sgtins)
        return SandboxReply(204)

    def _meta_details(self, o: dict[str, Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for key in list(o["requiredMeta"] or []) + [k for k in o["optionalMeta"] or [] if k not in o["requiredMeta"]]:
            values = o["meta"].get(key) or []
            if values:
                out += [{"key": key, "value": v, "decision": "filled"} for v in values]
            else:
                out.append({"key": key, "value": None,
                            "decision": "required" if key in o["requiredMeta"] else "optional"})
        return out

    def orders_meta(self, req: SandboxRequest) -> SandboxReply:
        found = [self.orders[i] for i in req.json()["orders"] if i in self.orders]
        return SandboxReply(200, {"orders": [{"id": o["id"], "metaDetails": self._meta_details(o)} for o in found]})

    def _missing_meta(self, o: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"key": k, "value": "null", "decision": "required"} for k in o["requiredMeta"] or []
                if not o["meta"].get(k)]

    def order_cancel(self, req: SandboxRequest) -> SandboxReply:
        o = self._order(req.path_params["orderId"])
        if o["supplierStatus"] not in ("new", "confirm"):
            raise ApiError(409, f"order status {o['supplierStatus']} cannot be cancelled", code="StatusMismatch")
        self._move(o, "cancel", "canceled")
        key = (o["warehouseId"], o["chrtId"])
        self.stocks[key] = self.stocks.get(key, 0) + 1
        return SandboxReply(204)

    # -- supplies

    def supply_create(self, req: SandboxRequest) -> SandboxReply:
        name = req.json().get("name") or "Поставка"
        sid = f"WB-GI-{self._next_supply:07d}"
        self._next_supply += 1
        self.supplies[sid] = {"id": sid, "name": name, "orders": [], "done": False, "createdAt": _iso(_now()),
                              "closedAt": None, "cargoType": 0, "warehouseId": None}
        return SandboxReply(201, {"id": sid})

    def _supply(self, sid: str) -> dict[str, Any]:
        try:
            return self.supplies[sid]
        except KeyError:
            raise ApiError(404, f"supply {sid} not found", code="NotFound") from None

    def supply_get(self, req: SandboxRequest) -> SandboxReply:
        s = self._supply(req.path_params["supplyId"])
        return SandboxReply(200, {"id": s["id"], "name": s["name"], "done": s["done"], "createdAt": s["createdAt"],
                                  "closedAt": s["closedAt"], "scanDt": None, "cargoType": s["cargoType"],
                                  "isB2b": False, "isPickupPointShipmentAllowed": False, "crossBorderType": 0})

    def supplies_list(self, req: SandboxRequest) -> SandboxReply:
        limit, nxt = int(req.query["limit"]), int(req.query.get("next") or 0)
        ids = sorted(self.supplies)[nxt: nxt + limit]
        out = []
        for sid in ids:
            s = self.supplies[sid]
            out.append({"id": sid, "name": s["name"], "done": s["done"], "createdAt": s["createdAt"],
                        "closedAt": s["closedAt"], "scanDt": None, "cargoType": s["cargoType"], "isB2b": False,
                        "isPickupPointShipmentAllowed": False, "crossBorderType": 0})
        return SandboxReply(200, {"next": nxt + len(ids), "supplies": out})

    def _new_in_supply(self, req: SandboxRequest) -> list[str]:
        """The orders a supply_add request confirms: every one it names, except those it moves from another
        supply (counted as a "move" by `supply_add`) — a second add of an order is a second confirm."""
        sid = req.path_params["supplyId"]
        return [str(i) for i in req.json()["orders"]
                if self.orders.get(i, {}).get("supplyId") in (None, sid)]

    def _delivered_by(self, req: SandboxRequest) -> list[str]:
        s = self.supplies.get(req.path_params["supplyId"])
        return [] if s is None or s["done"] else [str(i) for i in s["orders"]
                                                  if self.orders[i]["supplierStatus"] == "confirm"]

    def supply_order_ids(self, req: SandboxRequest) -> SandboxReply:
        return SandboxReply(200, {"orderIds": list(self._supply(req.path_params["supplyId"])["orders"])})

    def supply_add(self, req: SandboxRequest) -> SandboxReply:
        """Adds `new` orders (moving them to `confirm`) or moves `confirm` orders from another open supply, as
        WB does (03-orders-fbs.yaml); a delivered supply takes none (409 FailedToAddSupplyOrder)."""
        s = self._supply(req.path_params["supplyId"])
        refused = ("Не удалось закрепить сборочное задание за поставкой. Убедитесь, что сборочное задание и"
                   " поставка удовлетворяют всем необходимым требованиям.")
        if s["done"]:
            raise ApiError(409, refused, code="FailedToAddSupplyOrder")
        ids = req.json()["orders"]
        orders = [self._order(i) for i in ids]
        for o in orders:  # all or nothing
            moving = o["supplierStatus"] == "confirm" and o["supplyId"] and not self.supplies[o["supplyId"]]["done"]
            if o["supplierStatus"] != "new" and not moving:
                raise ApiError(409, refused, code="FailedToAddSupplyOrder")
            if s["warehouseId"] not in (None, o["warehouseId"]) or s["cargoType"] not in (0, o["cargoType"]):
                raise ApiError(409, refused, code="FailedToAddSupplyOrder")  # one warehouse, one cargo type
        for o in orders:
            s["warehouseId"] = o["warehouseId"]
            s["cargoType"] = s["cargoType"] or o["cargoType"]
            if o["supplierStatus"] == "new":
                self._move(o, "confirm")
            elif o["supplyId"] != s["id"]:
                self.supplies[o["supplyId"]]["orders"].remove(o["id"])
                moved = self.order_calls.setdefault(str(o["id"]), {}).setdefault("move", [0, 0])
                moved[0], moved[1] = moved[0] + 1, moved[1] + 1
            if o["id"] not in s["orders"]:
                s["orders"].append(o["id"])
            o["supplyId"] = s["id"]
        return SandboxReply(204)

    def supply_deliver(self, req: SandboxRequest) -> SandboxReply:
        s = self._supply(req.path_params["supplyId"])
        if s["done"]:
            raise ApiError(409, "supply is already delivered", code="SupplyDone")
        live = [self.orders[i] for i in s["orders"] if self.orders[i]["supplierStatus"] == "confirm"]
        if not live:  # cancelled orders do not count
            raise ApiError(409, "Не удалось обработать поставку. Убедитесь, что за ней закреплён хотя бы одно"
                                " сборочное задание.", code="SupplyHasZeroOrders")
        unmarked = [{"id": o["id"], "metaDetails": self._missing_meta(o)} for o in live if self._missing_meta(o)]
        if unmarked:  # every order's mandatory marking must be there first
            raise ApiError(409, "Fix them to dispatch items", code="MetaValidationFail",
                           body={"code": "MetaValidationFail", "message": "Fix them to dispatch items",
                                 "data": {"orders": unmarked}})
        s["done"], s["closedAt"] = True, _iso(_now())
        for o in live:  # on its way to the buyer: what becomes of it is its fate (sandbox/fates.py)
            self._move(o, "complete", "sorted")
            self._record_sale(o)
            self.fates.handed_over(str(o["id"]))
        return SandboxReply(204)

    def apply_fate(self, oid: str, step: str) -> None:
        """The wbStatus of a handed-over order moves on (supplierStatus stays `complete`): delivered `sold`;
        cancelled on its way `canceled`; not accepted `defect`; a buyer's refusal at pick-up (fate
        "returned": never `sold`) `canceled_by_client`."""
        o = self.orders.get(int(oid))
        if o is None or o["supplierStatus"] != "complete" or o["wbStatus"] != "sorted":
            return
        fate = self.fates.drawn.get(oid, "")
        wb = {"delivered": "sold", "cancelled": "canceled", "not_accepted": "defect",
              "returned": "canceled_by_client"}.get(step)
        if wb is None or (step == "delivered" and fate == "returned"):
            return
        o["wbStatus"] = wb
        self.transitions[str(o["id"])].append(wb)

    def _record_sale(self, o: dict[str, Any]) -> None:
        card = self.cards[o["nmId"]]
        amount = Decimal(o["finalPrice"]) / 100
        commission_pct = Decimal("17.5")
        fee = (amount * commission_pct / 100).quantize(Decimal("0.01"))
        logistics = Decimal("55.00")
        acquiring = (amount * ACQUIRING_PCT / 100).quantize(Decimal("0.01"))
        # every third sale of the sandbox draws a penalty (a late assembly, say), as real accounts see some
        penalty = PENALTY if len(self.sales) % 3 == 2 else Decimal(0)
        self.sales.append({"order": o, "card": card, "amount": amount, "fee": fee, "logistics": logistics,
                           "acquiring": acquiring, "storage": STORAGE_PER_SALE, "penalty": penalty,
                           "pct": commission_pct, "at": _now()})

    # -- stickers

    def supply_barcode(self, req: SandboxRequest) -> SandboxReply:
        """The supply's QR sticker (580x400 px), only once the supply was delivered (409 SupplyNotClosed)."""
        s = self._supply(req.path_params["supplyId"])
        kind = req.query.get("type", "")
        if kind not in ("svg", "zplv", "zplh", "png"):
            raise ApiError(400, "Некорректный параметр type", code="IncorrectParameter")
        if not s["done"]:
            raise ApiError(409, "Поставка не передана в доставку", code="SupplyNotClosed")
        caption = [f"{len(s['orders'])} orders"]
        if kind == "png":
            data = labels.qr_png(s["id"], 58, 40, caption)
        elif kind == "svg":
            data = labels.svg_label(s["id"], 58, 40, caption)
        else:
            data = labels.zpl_label(s["id"], 58, 40, rotated=kind == "zplv", caption=caption)
        self.documents_given.append(("supply_qr", s["id"]))
        return SandboxReply(200, {"barcode": s["id"], "file": base64.b64encode(data).decode("ascii")})

    def stickers(self, req: SandboxRequest) -> SandboxReply:
        kind, width, height = req.query["type"], int(req.query["width"]), int(req.query["height"])
        if (width, height) not in ((58, 40), (40, 30)):
            raise ApiError(400, "sticker size must be 58x40 or 40x30", code="IncorrectParameter")
        out = []
        for oid in req.json()["orders"]:
            o = self.orders.get(oid)
            if o is None or o["supplierStatus"] not in ("confirm", "complete"):
                continue  # WB gives stickers only for orders on assembly or in delivery
            text = str(oid)
            caption = [o["article"], f"{text[:-4]} {text[-4:]}"]
            if kind == "png":
                data = labels.png_label(text, width, height, caption)
            elif kind == "svg":
                data = labels.svg_label(text, width, height, caption)
            else:
                data = labels.zpl_label(text, width, height, rotated=kind == "zplv", caption=caption)
            out.append({"orderId": oid, "partA": text[:-4], "partB": text[-4:], "barcode": text,
                        "file": base64.b64encode(data).decode("ascii")})
        return SandboxReply(200, {"stickers": out})

    # -- cards

    def _card_out(self, c: dict[str, Any], trash: bool = False) -> dict[str, Any]:
        out = {k: v for k, v in c.items() if not k.startswith("_")}
        if trash:
            for k in ("imtID", "nmUUID", "brand", "title", "needKiz", "tags", "updatedAt"):
                out.pop(k, None)
            out["trashedAt"] = c["_trashed"]
        return out

    def _page(self, cards: list[dict[str, Any]], cursor: dict[str, Any], key: str) -> tuple[list[dict], dict]:
        limit = int(cursor.get("limit") or 10)
        after = (cursor.get(key) or "", int(cursor.get("nmID") or 0))
        ordered = sorted(cards, key=lambda c: (c[key], c["nmID"]))
        if after[0]:
            ordered = [c for c in ordered if (c[key], c["nmID"]) > after]
        page = ordered[:limit]
        last = page[-1] if page else None
        return page, {key: last[key] if last else after[0], "nmID": last["nmID"] if last else after[1],
                      "total": len(page)}

    def cards_list(self, req: SandboxRequest) -> SandboxReply:
        self._settle_cards()
        settings = (req.json() or {}).get("settings") or {}
        live = [c for c in self.cards.values() if not c["_trashed"]]
        page, cursor = self._page(live, settings.get("cursor") or {}, "updatedAt")
        return SandboxReply(200, {"cards": [self._card_out(c) for c in page], "cursor": cursor})

    def cards_trash_list(self, req: SandboxRequest) -> SandboxReply:
        settings = (req.json() or {}).get("settings") or {}
        trashed = [dict(c, trashedAt=c["_trashed"]) for c in self.cards.values() if c["_trashed"]]
        page, cursor = self._page(trashed, settings.get("cursor") or {}, "trashedAt")
        return SandboxReply(200, {"cards": [self._card_out(self.cards[c["nmID"]], trash=True) for c in page],
                                  "cursor": cursor})

    def cards_to_trash(self, req: SandboxRequest) -> SandboxReply:
        for nm in req.json().get("nmIDs") or []:
            if nm in self.cards and not self.cards[nm]["_trashed"]:
                self.cards[nm]["_trashed"] = _iso(_now())
        return SandboxReply(200, {"data": None, "error": False, "errorText": "", "additionalErrors": None})

    def cards_recover(self, req: SandboxRequest) -> SandboxReply:
        for nm in req.json().get("nmIDs") or []:
            if nm in self.cards:
                self.cards[nm]["_trashed"] = None
                self.cards[nm]["updatedAt"] = _iso(_now())
        return SandboxReply(200, {"data": None, "error": False, "errorText": "", "additionalErrors": None})

    def cards_upload(self, req: SandboxRequest) -> SandboxReply:
        """Refuse at once what WB refuses at once (an unknown subject, a missing required characteristic);
        queue the rest: WB creates a card asynchronously (`card_delay_s`, marketplace time), and what its
        moderation finds wrong appears in the error list."""
        batch = req.json()
        missing: dict[str, str] = {}
        for group in batch:
            if content.subject(group["subjectID"]) is None:
                raise ApiError(400, "This category does not exist", body={
                    "data": None, "error": True, "errorText": "This category does not exist",
                    "additionalErrors": {"id": str(group["subjectID"])}})
            for v in group["variants"]:
                ids = content.missing_required(group["subjectID"], v)
                if ids:
                    missing[v["vendorCode"]] = "missing required characteristics with ids: " + ", ".join(
                        f"{{{i}}}" for i in ids)
        if missing:
            raise ApiError(400, "some items lacks required characteristics", body={
                "data": None, "error": True,
                "errorText": "some items lacks required characteristics. please fill them and try again.",
                "additionalErrors": missing})
        batch_id = str(uuid.uuid4())
        due = time.monotonic() + self.card_delay_s / self.time_scale
        for group in batch:
            for v in group["variants"]:
                self.card_queue.append((due, group["subjectID"], v, batch_id))
        return SandboxReply(200, {"data": None, "error": False, "errorText": "", "additionalErrors": {}})

    def _settle_cards(self) -> None:
        """Create (or refuse into the error list) every uploaded card whose processing time has come."""
        now = time.monotonic()
        ready = [q for q in self.card_queue if q[0] <= now]
        self.card_queue = [q for q in self.card_queue if q[0] > now]
        existing = {c["vendorCode"] for c in self.cards.values()}
        for _, subject_id, v, batch_id in ready:
            vendor = v["vendorCode"]
            problems = content.problems(subject_id, v)
            if vendor in existing:
                problems.insert(0, "Артикул продавца уже существует")
            if not v.get("title"):
                problems.append("Не заполнено наименование")
            if problems:
                name = content.SUBJECTS[subject_id][0]
                self.card_errors.append({"batchUUID": batch_id, "subjects": {vendor: {"id": subject_id, "name": name}},
                                         "brands": {vendor: v["brand"]} if v.get("brand") else {},
                                         "vendorCodes": [vendor], "errors": {vendor: problems},
                                         "updatedAt": _iso(_now())})
                continue
            idx = len(self.cards) + 100_000
            size = (v.get("sizes") or [{}])[0]
            skus = list(size.get("skus") or [f"20{idx:011d}"])
            nm = 200_000_000 + idx
            self._add_card(nm, 300_000_000 + idx, 400_000_000 + idx, vendor, v.get("title", ""),
                           subject_id, content.SUBJECTS[subject_id][0], size.get("techSize", "0"), skus, _iso(_now()))
            card = self.cards[nm]
            card["brand"] = v.get("brand", "")
            card["description"] = v.get("description", "")
            card["needKiz"] = subject_id in content.MARKED_SUBJECTS
            card["kizMarked"] = bool(v.get("kizMarked"))
            card["characteristics"] = [dict(c, name=next((x["name"] for x in content.charcs(subject_id)
                                                          if x["charcID"] == c["id"]), "")) for c in v.get("characteristics") or []]
            dims = v.get("dimensions")
            card["dimensions"] = (dict(dims, isValid=True) if dims else
                                  {"length": 0, "width": 0, "height": 0, "weightBrutto": 0, "isValid": False})
            self.prices[nm] = {"price": int(size.get("price") or 0), "discount": 0}
            existing.add(vendor)
            # a re-sent card that is now right leaves the error list (as the spec says)
            self.card_errors = [e for e in self.card_errors if vendor not in e["vendorCodes"]]

    def cards_error_list(self, req: SandboxRequest) -> SandboxReply:
        """Paged by `cursor.limit`, continued from the `updatedAt` + `batchUUID` of the last page."""
        self._settle_cards()
        cursor = req.json().get("cursor") or {}
        limit = int(cursor.get("limit") or 100)
        items = list(self.card_errors)
        if cursor.get("batchUUID"):
            ids = [e["batchUUID"] for e in items]
            after = ids.index(cursor["batchUUID"]) + 1 if cursor["batchUUID"] in ids else 0
            items = items[after:]
        page, more = items[:limit], len(items) > limit
        last = page[-1] if page else None
        out = {"next": more, "updatedAt": last["updatedAt"] if last else _iso(_now()),
               "batchUUID": last["batchUUID"] if last else str(uuid.UUID(int=0))}
        return SandboxReply(200, {"data": {"items": page, "cursor": out}, "error": False, "errorText": "",
                                  "additionalErrors": None})

    def subjects(self, req: SandboxRequest) -> SandboxReply:
        parent = req.query.get("parentID")
        found = content.subjects(req.query.get("name", ""), int(parent) if parent else None)
        offset, limit = int(req.query.get("offset") or 0), int(req.query.get("limit") or 30)
        if limit > 1000:
            raise ApiError(400, "limit must be at most 1000")
        return SandboxReply(200, {"data": found[offset: offset + limit], "error": False, "errorText": "",
                                  "additionalErrors": None})

    def subject_charcs(self, req: SandboxRequest) -> SandboxReply:
        try:
            subject_id = int(req.path_params["subjectId"])
        except ValueError:
            raise ApiError(400, "subjectId must be an integer") from None
        if content.subject(subject_id) is None:
            raise ApiError(400, "This category does not exist")
        return SandboxReply(200, {"data": content.charcs(subject_id), "error": False, "errorText": "",
                                  "additionalErrors": None})

    def media_save(self, req: SandboxRequest) -> SandboxReply:
        """Photos by URL: the list replaces the card's photos; at most 30, each a direct http(s) link."""
        self._settle_cards()
        body = req.json()
        nm, urls = body.get("nmId"), body.get("data") or []
        if not nm:
            raise ApiError(422, "nmId is missing", body={"data": None, "error": True,
                                                          "errorText": "Отсутствует параметр nmId", "additionalErrors": None})
        card = self.cards.get(nm)
        if card is None:
            raise ApiError(400, "card not found", body={"data": None, "error": True,
                                                         "errorText": f"Карточка товара {nm} не найдена",
                                                         "additionalErrors": None})
        bad = [u for u in urls if not (u.startswith("http://") or u.startswith("https://"))
               or u.rsplit(".", 1)[-1].lower() not in ("jpg", "jpeg", "png", "bmp", "gif", "webp", "mov", "mp4")]
        if len(urls) > 30 or bad:
            raise ApiError(400, "bad links", body={"data": None, "error": True,
                                                    "errorText": "Некорректные ссылки на медиафайлы" if bad
                                                    else "Не больше 30 изображений в карточке",
                                                    "additionalErrors": {"links": bad} if bad else None})
        card["photos"] = [{"big": u, "c246x328": u, "c516x688": u, "square": u, "tm": u} for u in urls]
        card["updatedAt"] = _iso(_now())
        return SandboxReply(200, {"data": {}, "error": False, "errorText": "", "additionalErrors": None})

    # -- prices

    def prices_upload(self, req: SandboxRequest) -> SandboxReply:
        data = req.json()["data"]
        if not data or len(data) > 1000:
            raise ApiError(400, "data must hold 1..1000 items", code="BadRequest")
        unknown = [d["nmID"] for d in data if d["nmID"] not in self.cards]
        if unknown:
            raise ApiError(400, f"unknown nmID {unknown[0]}", code="BadRequest")
        for d in data:
            if "discount" in d and not 0 <= int(d["discount"]) < 100:
                raise ApiError(400, f"discount of {d['nmID']} must be 0..99", code="BadRequest")
        signature = repr(sorted((d["nmID"], d.get("price"), d.get("discount")) for d in data))
        for tid, task in self.price_tasks.items():
            if task["signature"] == signature and task["pending"]:
                return SandboxReply(208, {"data": {"id": tid, "alreadyExists": True}, "error": False,
                                          "errorText": "The task already exists"})
        tid = self._next_task
        self._next_task += 1
        for d in data:
            p = self.prices[d["nmID"]]
            if "price" in d:
                p["price"] = int(d["price"])
            if "discount" in d:
                p["discount"] = int(d["discount"])
        self.price_tasks[tid] = {"signature": signature, "count": len(data), "pending": False, "at": _iso(_now())}
        return SandboxReply(200, {"data": {"id": tid, "alreadyExists": False}, "error": False, "errorText": ""})

    def price_task(self, req: SandboxRequest) -> SandboxReply:
        tid = int(req.query["uploadID"])
        task = self.price_tasks.get(tid)
        if task is None:
            raise ApiError(400, "upload not found", code="BadRequest")
        return SandboxReply(200, {"data": {"uploadID": tid, "status": 3, "uploadDate": task["at"],
                                           "activationDate": task["at"], "overAllGoodsNumber": task["count"],
                                           "successGoodsNumber": task["count"]}, "error": False, "errorText": ""})

    def prices_list(self, req: SandboxRequest) -> SandboxReply:
        """The prices this sandbox holds (what the uploads set), by nmID, `limit` 1..1000 from `offset`;
        `filterNmID` one product. Past the end: an empty `listGoods`. Bad parameters: the spec's 400
        `{"data": null, "error": true, "errorText": "Invalid request parameters"}`."""
        try:
            limit, offset = int(req.query["limit"]), int(req.query.get("offset", 0))
            only = int(req.query["filterNmID"]) if "filterNmID" in req.query else None
        except (KeyError, ValueError):
            raise ApiError(400, "Invalid request parameters") from None
        if not 1 <= limit <= 1000 or offset < 0:
            raise ApiError(400, "Invalid request parameters")
        listed = sorted(self.prices) if only is None else [nm for nm in (only,) if nm in self.prices]
        goods = []
        for nm in listed[offset: offset + limit]:
            p, c = self.prices[nm], self.cards[nm]
            disc = round(p["price"] * (100 - p["discount"]) / 100, 2)
            goods.append({"nmID": nm, "vendorCode": c["vendorCode"], "currencyIsoCode4217": "RUB",
                          "discount": p["discount"], "clubDiscount": 0, "editableSizePrice": False,
                          "isBadTurnover": False,
                          "sizes": [{"sizeID": c["sizes"][0]["chrtID"], "price": p["price"], "discountedPrice": disc,
                                     "clubDiscountedPrice": disc, "techSizeName": c["sizes"][0]["techSize"]}]})
        return SandboxReply(200, {"data": {"listGoods": goods}, "error": False, "errorText": ""})

    # -- stock in WB's warehouses, commissions

    def fbo_stocks(self, req: SandboxRequest) -> SandboxReply:
        """Current stock per size and WB warehouse (one row each), `nmIds` narrowing, limit/offset paging."""
        body = req.json()
        limit, offset = int(body.get("limit", 250000)), int(body.get("offset", 0))
        only = {int(n) for n in body.get("nmIds") or []}
        names = {w: (name, region) for w, name, region in self.wb_warehouses}
        rows = []
        for (wh, chrt), qty in sorted(self.fbo.items()):
            nm = self.chrt_to_nm.get(chrt)
            if nm is None or (only and nm not in only):
                continue
            name, region = names.get(wh, (str(wh), ""))
            rows.append({"nmId": nm, "chrtId": chrt, "warehouseId": wh, "warehouseName": name, "regionName": region,
                         "quantity": qty, "inWayToClient": 0, "inWayFromClient": 0})
        return SandboxReply(200, {"data": {"items": rows[offset: offset + limit]}})

    COMMISSION_FBS = {192: 24.5, 1367: 19.5, 49: 21.0, 515: 23.0, 155: 24.0}  # the sandbox's tariff, %

    def commission(self, req: SandboxRequest) -> SandboxReply:
        """WB's commission per subject and sales model (the sandbox's own figures for the demo subjects)."""
        if req.query.get("locale", "ru") not in ("ru", "en", "zh"):
            raise ApiError(400, 'parameter "locale" in query has an error')
        subjects = {c["subjectID"]: c["subjectName"] for c in self.cards.values()}
        report = [{"kgvpBooking": pct, "kgvpMarketplace": pct, "kgvpPickup": pct, "kgvpSupplier": pct - 3,
                   "kgvpSupplierExpress": pct - 3, "paidStorageKgvp": pct - 2.5, "parentID": 1000 + sid,
                   "parentName": name, "subjectID": sid, "subjectName": name}
                  for sid, name in sorted(subjects.items()) for pct in [self.COMMISSION_FBS.get(sid, 25.0)]]
        return SandboxReply(200, {"report": report})

    def box_tariffs(self, req: SandboxRequest) -> SandboxReply:
        """Box tariffs per WB warehouse for a date (figures as WB writes them: text, decimal comma; «-»
        where a warehouse takes no FBS parcels)."""
        try:
            datetime.strptime(req.query["date"], "%Y-%m-%d")
        except (KeyError, ValueError):
            return SandboxReply(400, {"title": "Bad Request", "detail": "Invalid date param", "origin": "tariffs",
                                      "requestId": uuid.uuid4().hex}, content_type="application/problem+json")
        rows = [
            {"warehouseName": "Коледино", "geoName": "Центральный федеральный округ", "boxDeliveryBase": "48",
             "boxDeliveryLiter": "11,2", "boxDeliveryCoefExpr": "160", "boxDeliveryMarketplaceBase": "40",
             "boxDeliveryMarketplaceLiter": "11", "boxDeliveryMarketplaceCoefExpr": "125", "boxStorageBase": "0,14",
             "boxStorageLiter": "0,07", "boxStorageCoefExpr": "115"},
            {"warehouseName": "Электросталь", "geoName": "Центральный федеральный округ", "boxDeliveryBase": "46",
             "boxDeliveryLiter": "10,5", "boxDeliveryCoefExpr": "150", "boxDeliveryMarketplaceBase": "46",
             "boxDeliveryMarketplaceLiter": "12,5", "boxDeliveryMarketplaceCoefExpr": "140",
             "boxStorageBase": "0,1", "boxStorageLiter": "0,05", "boxStorageCoefExpr": "100"},
            {"warehouseName": "Шушары", "geoName": "Северо-Западный федеральный округ", "boxDeliveryBase": "52",
             "boxDeliveryLiter": "12", "boxDeliveryCoefExpr": "170", "boxDeliveryMarketplaceBase": "-",
             "boxDeliveryMarketplaceLiter": "-", "boxDeliveryMarketplaceCoefExpr": "-", "boxStorageBase": "0,2",
             "boxStorageLiter": "0,1", "boxStorageCoefExpr": "120"},
        ]
        return SandboxReply(200, {"response": {"data": {"currency": "RUB", "dtNextBox": "", "dtTillMax": req.query["date"],
                                                        "warehouseList": rows}}})

    # -- finance

    @staticmethod
    def _report_period(body: dict[str, Any]) -> tuple[datetime, datetime]:
        """dateFrom..dateTo of a finance request as UTC instants (WB reads them as Moscow time)."""
        try:
            start = datetime.fromisoformat(body["dateFrom"])
            end = datetime.fromisoformat(body["dateTo"])
        except ValueError:
            raise ApiError(400, "dateFrom/dateTo must be RFC3339", code="BadRequest") from None
        if len(body["dateTo"]) <= 10:  # a date: the whole day
            end += timedelta(days=1)
        if start.tzinfo is None:  # WB reads report dates as Moscow time
            start = start.replace(tzinfo=UTC) - MSK
        if end.tzinfo is None:
            end = end.replace(tzinfo=UTC) - MSK
        return start, end

    def sales_reports_list(self, req: SandboxRequest) -> SandboxReply:
        """The realization reports of the period with WB's own sums of their rows: this sandbox keeps
        one report (the one every detailed row names), listed when it has rows in the period."""
        body = req.json()
        start, end = self._report_period(body)
        offset = int(body.get("offset") or 0)
        sold = [s for s in self.sales if start <= s["at"] <= end]
        if not sold or offset > 0:
            return SandboxReply(204)
        money = self._money

        def total(key: str) -> Decimal:
            return sum((s[key] for s in sold), Decimal(0))
        amount, fee, acquiring = total("amount"), total("fee"), total("acquiring")
        logistics, storage, penalty = total("logistics"), total("storage"), total("penalty")
        for_pay = amount - fee - acquiring
        zero = "0"
        return SandboxReply(200, [{
            "reportId": 90000001, "sellerFinanceName": "ИП Демо", "dateFrom": (start + MSK).date().isoformat(),
            "dateTo": (end + MSK).date().isoformat(), "createDate": (_now() + MSK).date().isoformat(),
            "currency": "RUB", "reportType": 1, "retailAmountSum": money(amount), "forPaySum": money(for_pay),
            "avgSalePercent": 0, "deliveryServiceSum": money(logistics), "paidStorageSum": money(storage),
            "paidAcceptanceSum": zero, "deductionSum": money(DEDUCTION), "penaltySum": money(penalty),
            "additionalPaymentSum": zero, "cashbackAmountSum": zero, "cashbackDiscountSum": zero,
            "cashbackCommissionChangeSum": zero, "paymentSchedule": zero,
            "bankPaymentSum": money(for_pay - logistics - storage - penalty - DEDUCTION)}])

    def sales_report(self, req: SandboxRequest) -> SandboxReply:
        body = req.json()
        start, end = self._report_period(body)
        rrd_after, limit = int(body.get("rrdId") or 0), int(body.get("limit") or 100000)
        rows: list[dict[str, Any]] = []
        for n, sale in enumerate(self.sales):
            if not start <= sale["at"] <= end:
                continue
            for i, kind in enumerate(("sale", "logistics", "storage", "penalty"), 1):
                rrd = 4 * n + i
                if rrd > rrd_after and (kind != "penalty" or sale["penalty"]):
                    rows.append(self._report_row(sale, kind, rrd, start, end))
        sold = [sale for sale in self.sales if start <= sale["at"] <= end]
        if sold and rrd_after < DEDUCTION_RRD:  # the account's own deduction of the report: no goods
            row = self._report_row(sold[-1], "deduction", DEDUCTION_RRD, start, end)
            row.update(nmId=0, vendorCode="", sku="", title="", subjectName="", brandName="", techSize="",
                       orderId=0, srid="", orderUid="", stickerId="", shkId=0)
            rows.append(row)
        rows = rows[:limit]
        if not rows:
            return SandboxReply(204)
        return SandboxReply(200, rows)

    @staticmethod
    def _money(d: Decimal) -> str:
        return f"{d:.2f}"

    def _report_row(self, sale: dict[str, Any], kind: str, rrd: int, start: datetime, end: datetime) -> dict[str, Any]:
        o, c = sale["order"], sale["card"]
        is_sale = kind == "sale"
        money = self._money
        zero = "0.00"
        oper = {"sale": "Продажа", "logistics": "Логистика", "storage": "Хранение", "penalty": "Штраф",
                "deduction": "Удержание"}[kind]

        def only(what: str, value: Decimal) -> str:
            return money(value) if kind == what else zero
        sale_day = (sale["at"] + MSK).date().isoformat()
        return {
            "reportId": 90000001, "dateFrom": (start + MSK).date().isoformat(), "dateTo": (end + MSK).date().isoformat(),
            "createDate": sale_day, "currency": "RUB", "reportType": 1, "rrdId": rrd, "giId": 0, "dlvPrc": 1.0,
            "fixTariffDateFrom": sale_day, "fixTariffDateTo": sale_day, "subjectName": c["subjectName"],
            "nmId": c["nmID"], "brandName": c["brand"], "vendorCode": c["vendorCode"], "title": c["title"],
            "techSize": c["sizes"][0]["techSize"], "sku": o["skus"][0] if o["skus"] else "",
            "docTypeName": "Продажа" if is_sale else "", "quantity": 1 if is_sale else 0,
            "retailPrice": money(sale["amount"]) if is_sale else zero,
            "retailAmount": money(sale["amount"]) if is_sale else zero, "salePercent": 0,
            "commissionPercent": float(sale["pct"]) if is_sale else 0.0, "officeName": "Москва",
            "sellerOperName": oper, "orderDt": o["createdAt"],
            "saleDt": _iso(sale["at"]), "rrDate": sale_day, "shkId": o["id"] % 10**9,
            "retailPriceWithDisc": money(sale["amount"]) if is_sale else zero,
            "deliveryAmount": 1 if kind == "logistics" else 0, "returnAmount": 0,
            "deliveryService": only("logistics", sale["logistics"]), "giBoxTypeName": "",
            "productDiscountForReport": 0.0, "sellerPromo": "", "spp": 0.0, "kvwBase": float(sale["pct"]),
            "kvw": float(sale["pct"]), "supRatingUp": 0.0, "isKgvpV2": 0.0,
            "ppvzSalesCommission": money(sale["fee"]) if is_sale else zero,
            "forPay": money(sale["amount"] - sale["fee"] - sale["acquiring"]) if is_sale else zero, "ppvzReward": zero,
            "acquiringFee": only("sale", sale["acquiring"]), "acquiringPercent": float(ACQUIRING_PCT) if is_sale else 0.0, "paymentProcessing": "", "acquiringBank": "",
            "vw": money(sale["fee"]) if is_sale else zero, "vwNds": zero, "ppvzOfficeName": "", "ppvzOfficeId": 0,
            "ppvzSupplierName": "ИП Демо", "ppvzSupplierInn": "7700000000", "declarationNumber": "",
            "bonusTypeName": "К клиенту при продаже" if kind == "logistics" else "", "stickerId": str(o["id"]),
            "country": "Россия", "srvDbs": False, "penalty": only("penalty", sale["penalty"]), "additionalPayment": zero,
            "rebillLogisticCost": zero, "paidStorage": only("storage", sale["storage"]), "deduction": only("deduction", DEDUCTION), "paidAcceptance": zero,
            "orderId": o["id"], "isB2b": False, "trbxId": "", "installmentCofinancingAmount": zero,
            "wibesDiscountPercent": 0.0, "cashbackAmount": zero, "cashbackDiscount": zero,
            "cashbackCommissionChange": zero, "paymentSchedule": "", "deliveryMethod": "FBS",
            "sellerPromoId": 0, "sellerPromoDiscount": 0.0, "loyaltyId": 0, "loyaltyDiscount": 0.0,
            "uuidPromocode": "", "salePricePromocodeDiscountPrc": 0.0, "articleSubstitution": "",
            "salePriceAffiliatedDiscountPrc": 0.0, "salePriceWholesaleDiscountPrc": 0.0, "b2bCustomerTin": "",
            "orderUid": o["orderUid"], "srid": o["rid"],
        }
