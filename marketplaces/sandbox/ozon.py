"""The Ozon sandbox: the Seller API (one host) on one port.

Faithful to ../shared/specs/ozon (2026-04-30): `Client-Id` + `Api-Key` headers; current methods only
(`/v2/warehouse/list`, `/v3/product/*`, `/v4/posting/fbs/*`); stocks per product x warehouse with the
per-item rule "a pair at most once per 30 s" answered as `TOO_MANY_REQUESTS` inside HTTP 200; prices
at most 10 updates per product per hour (same shape); 80 stock requests per minute and 50 requests
per second per Client-Id answered with HTTP 429 `{"code": 8, "message": "You have reached request rate
limit per second"}`; FBS postings `awaiting_packaging -> awaiting_deliver` (ship) `-> delivering`
(carriage created and approved) or `cancelled`; the package label as a real PDF whose Code 128 decodes
to the posting number (only in `awaiting_deliver` and later); the monthly realization report built from
what this sandbox sold (a posting handed over counts as sold), and the finance transaction totals of
the same sales (each sale is one operation: the goods, the 15 % commission, a delivery charge shown in
`/v3/finance/transaction/list` as the posting's services: processing and last mile), plus
any operation injected with `POST /_sandbox/x/transaction` (a correction the realization report does
not hold, to show a discrepancy); prices read back with `/v5/product/info/prices` (price, old and minimum
price, the commissions, the price with the seller's promotions started by `POST /_sandbox/x/action`).

Push notifications (tags push_start, push_resending, push_types): `POST /_sandbox/x/push {"url",
"duplicates", "fail_first", "max_attempts", "check"}` is the seller entering the service URL in the
cabinet: Ozon checks it at once with a TYPE_PING to `url + "/notification"` (the seller's one URL) and
keeps it only when the answer is HTTP 200 JSON `{"version", "name", "time"}` (else 400 naming the
cabinet's error code, e.g. STATUS_CODE_NOT_OK; `"check": false` skips it); from then on a new posting
pushes TYPE_NEW_POSTING and every cancellation (the seller's, the buyer's `POST /_sandbox/x/cancel
{"postings": [...]}`, after shipping) TYPE_POSTING_CANCELLED, a shipping date moved by `POST
/_sandbox/x/cutoff {"posting_number", "new_cutoff_date"}` (the posting's shipment_date, as the posting
methods give it from then on) TYPE_CUTOFF_DATE_CHANGED, retried while the answer is not HTTP 200
— after 5 s, doubling up to 10 minutes, then 5 more tries 10 minutes apart (time-scaled).
Imports no adapter.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
from collections import deque
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from marketplaces.sandbox import labels
from marketplaces.sandbox import ozon_content as content
from marketplaces.sandbox.core import ApiError, Route, SandboxApp, SandboxLimit, SandboxReply, SandboxRequest
from marketplaces.sandbox.push_delivery import PushDelivery
from marketplaces.sandbox.seed import demo_fbo, demo_items

STOCK_PAIR_WINDOW_S = 30.0
# seller cancellation reasons Ozon lists as available (/v2/posting/fbs/cancel-reason/list's example: 352 out
# of stock, 402 other, seller's fault; 401 and 666 are listed as not available for cancellation)
SELLER_CANCEL_REASONS = {352, 402}
PRICE_WINDOW_S = 3600.0
PRICE_MAX_PER_WINDOW = 10
COMMISSION_RATIO = Decimal("0.15")
DELIVERY_CHARGE = Decimal("76.00")  # per posting sold: processing and last mile, as one figure
# ... which /v3/finance/transaction/list shows as Ozon's two services of the posting (they add up to it)
DELIVERY_SERVICES = (("MarketplaceServiceItemDropoffSC", Decimal("26.00")),
                     ("MarketplaceServiceItemDelivToCustomer", Decimal("50.00")))
# a field of the totals an injected operation carries -> the service the list names it by (the rest: amount only)
INJECTED_SERVICES = {"processing_and_delivery": "MarketplaceServiceItemDirectFlowLogistic",
                     "refunds_and_cancellations": "MarketplaceServiceItemReturnFlowLogistic"}
LIST_MAX_PAGE = 1000
LIST_MAX_DAYS = 32  # "the maximum period for which you can get information in one request is 1 month"
TOTALS_FIELDS = ("accruals_for_sale", "sale_commission", "processing_and_delivery", "refunds_and_cancellations",
                 "services_amount", "compensation_amount", "money_transfer", "others_amount")
TRANSACTION_TYPES = {"all", "orders", "returns", "services", "compensation", "transferDelivery", "other"}
PUSH_PATH = "/notification"  # appended to the registered URL: the cloud's one URL for Ozon's notifications
PUSH_FIRST_WAIT_S = 5.0  # push_resending: "after a few seconds", the wait growing ...
PUSH_MAX_WAIT_S = 600.0  # ... to 10 minutes, "then 5 more attempts every 10 minutes"
PUSH_ATTEMPTS = 1 + 7 + 5  # the first, the growing waits (5 s .. 320 s), five at 10 minutes
PING_TIMEOUT_S = 5.0  # an answer slower than 5 s suspends notifications (push_resending)


def push_retry_wait(failed: int) -> float:
    """Seconds before the next try after `failed` failed ones (Ozon's resending intervals)."""
    return min(PUSH_MAX_WAIT_S, PUSH_FIRST_WAIT_S * 2 ** (failed - 1))


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> datetime:
    return datetime.now(UTC)


def _parse(value: Any) -> datetime:
    try:
        dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(400, f"not a date-time: {value!r}", code="INVALID_ARGUMENT") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _cancel_reason(p: dict[str, Any]) -> str:
    if p.get("cancelled_after_ship"):
        return "Покупатель отказался"
    return "Отменено покупателем" if p.get("cancelled_by_buyer") else "Cancelled by seller"


def _commission(amount: Decimal) -> Decimal:
    return (amount * COMMISSION_RATIO).quantize(Decimal("0.01"))


class OzonSandbox(SandboxApp):
    marketplace = "ozon"
    account_limit = SandboxLimit(50.0, 50)
    limits = {"stocks": SandboxLimit(80 / 60, 80, window_s=60)}  # 80 requests in any minute

    def __init__(self, *, marking: bool = False, **options: Any) -> None:
        """`marking=True`: postings of marked demo goods list them in
        `requirements.products_requiring_mandatory_mark`, and `/v4/posting/fbs/ship` refuses such a
        posting until every unit has its code (`/v6/fbs/posting/product/exemplar/set`). Off by default,
        so that flows which never scan codes keep packing (also `POST /_sandbox/x/marking`)."""
        self.marking = marking
        super().__init__(**options)
        self.push = PushDelivery(lambda status, body: status == 200, time_scale=self.time_scale,
                                 user_agent="Ozon-Push-Sandbox", retry_wait=push_retry_wait,
                                 max_attempts=PUSH_ATTEMPTS)
        self.push_checks: list[dict[str, Any]] = []  # the cabinet's URL checks (TYPE_PING) and their outcome

    def account_options(self) -> dict[str, Any]:
        """The AccountConfig.options an adapter of this sandbox needs: it pushes from the loopback (and its
        seller_id is its Client-Id, which the adapter knows)."""
        return {"push_sources": ["127.0.0.0/8"]}

    @property
    def seller_id(self) -> int:
        return int(self.credentials["Client-Id"])

    def _push(self, payload: dict[str, Any], key: str) -> None:
        self.push.send(PUSH_PATH, payload, key)

    def _push_new(self, p: dict[str, Any]) -> None:
        prod = self.products[p["product_id"]]
        self._push({
            "message_type": "TYPE_NEW_POSTING", "posting_number": p["posting_number"],
            "products": [{"sku": prod["sku"], "offer_id": prod["offer_id"], "quantity": p["quantity"]}],
            "in_process_at": p["in_process_at"], "warehouse_id": p["warehouse_id"],
            "shipment_date": p["shipment_date"], "tpl_integration_type": "ozon", "is_express": False,
            "seller_id": self.seller_id}, f"new:{p['posting_number']}")

    def _push_cancelled(self, p: dict[str, Any], old_status: str) -> None:
        prod = self.products[p["product_id"]]
        old_state = {"awaiting_packaging": "posting_created", "awaiting_deliver": "posting_transferring_to_delivery",
                     "delivering": "posting_on_way_to_city", "driver_pickup": "posting_driver_pick_up"}
        self._push({
            "message_type": "TYPE_POSTING_CANCELLED", "posting_number": p["posting_number"],
            "products": [{"sku": prod["sku"], "quantity": p["quantity"]}],
            "old_state": old_state.get(old_status, "posting_created"), "new_state": "posting_canceled",
            "changed_state_date": _iso(_now()),
            "reason": {"id": int(p["cancel_reason_id"] or 0), "message": _cancel_reason(p)},
            "warehouse_id": p["warehouse_id"], "seller_id": self.seller_id}, f"cancelled:{p['posting_number']}")

    def _check_push_url(self, url: str) -> str:
        """The cabinet's «Проверить»: a TYPE_PING to the URL; "" when it answered as push_start asks, else
        the cabinet's error code (push_start, "Error codes when enabling push notifications")."""
        status, body, ctype = self.push.post_now(url + PUSH_PATH, {"message_type": "TYPE_PING", "time": _iso(_now())},
                                                 timeout_s=PING_TIMEOUT_S)
        problem = ""
        if status == 0:
            problem = "REQUEST_TIMEOUT" if b"timed out" in body or body.startswith(b"timeout") else "REQUEST_ERROR"
        elif status >= 500:
            problem = "SERVER_FAULT"
        elif status != 200:
            problem = "STATUS_CODE_NOT_OK"
        elif not body.strip():
            problem = "EMPTY_BODY"
        elif "application/json" not in ctype:
            problem = "INVALID_BODY"
        else:
            try:
                answer = json.loads(body)
            except ValueError:
                answer, problem = None, "INVALID_JSON"
            if not problem and (not isinstance(answer, dict) or not all(
                    isinstance(answer.get(k), str) for k in ("version", "name", "time"))):
                problem = "WRONG_RESULT_FIELD"
            if not problem:
                try:
                    _parse(answer["time"])
                except ApiError:
                    problem = "WRONG_RESULT_TIME_FIELD"
        self.push_checks.append({"url": url, "status": status, "result": problem or "OK"})
        del self.push_checks[:-50]
        return problem

    def make_credentials(self) -> dict[str, str]:
        return {"Client-Id": f"{100000 + self.rng_seed}", "Api-Key": f"ozon-sandbox-key-{self.rng_seed:04d}"}

    # ------------------------------------------------------------ seed and state

    def seed_catalog(self, n: int) -> None:
        self.warehouses = [
            {"warehouse_id": 22142605386000, "name": "FBS Москва Южный", "delivery_method_id": 1020000901},
            {"warehouse_id": 22142605386001, "name": "FBS Санкт-Петербург", "delivery_method_id": 1020000902},
            {"warehouse_id": 22142605386002, "name": "FBS Новосибирск", "delivery_method_id": 1020000903},
        ]
        self.products: dict[int, dict[str, Any]] = {}
        self.by_offer: dict[str, int] = {}
        self.stocks: dict[tuple[int, int], int] = {}
        self.reserved: dict[tuple[int, int], int] = {}
        self.stock_stamp: dict[tuple[int, int], float] = {}
        self.price_stamps: dict[int, deque[float]] = {}
        self.postings: dict[str, dict[str, Any]] = {}
        self.transitions: dict[str, list[str]] = {}
        self.carriages: dict[int, dict[str, Any]] = {}
        self.import_tasks: dict[int, list[dict[str, Any]]] = {}
        self.import_queue: list[tuple[float, int, int, dict[str, Any]]] = []  # (due, task, index, item)
        self.sales: list[dict[str, Any]] = []
        self.injected_operations: list[dict[str, Any]] = []  # finance operations outside the realization report
        self.promotions: dict[int, list[dict[str, Any]]] = {}  # the seller's promotions by product (x/action)
        self.stock_writes = 0
        self._next_order = self.first_id(40_000_001, 10_000_000)
        self.returns: dict[int, dict[str, Any]] = {}  # /v1/returns/list: parcels coming back (sandbox/fates.py)
        self._next_return = self.first_id(1_000_015_001, 10_000_000)
        self._next_carriage = 1
        self._next_task = self.first_id(7_000_001, 100_000)
        self._next_exemplar = self.first_id(8_000_000_001, 100_000_000)
        for item in demo_items(n):
            pid = 100_000_000 + item.index
            self.products[pid] = {
                "product_id": pid, "sku": 900_000_000 + item.index, "offer_id": item.article, "name": item.name,
                "barcodes": [item.barcode], "category": item.category, "description_category_id": 17028900 + item.subject_id,
                "type_id": 90000 + item.subject_id, "price": Decimal(item.price), "old_price": Decimal(0),
                "min_price": Decimal(0), "archived": False, "created_at": _iso(datetime(2026, 1, 10, tzinfo=UTC)),
                "marked": item.marked,
            }
            self.by_offer[item.article] = pid
            self.stocks[(pid, self.warehouses[0]["warehouse_id"])] = item.stock
        # stock in Ozon's own warehouses (FBO), by warehouse name: (product_id, name) -> valid units
        self.ozon_warehouses = ["ХОРУГВИНО_РФЦ", "САНКТ_ПЕТЕРБУРГ_РФЦ"]
        self.fbo: dict[tuple[int, str], int] = {
            (100_000_000 + i, self.ozon_warehouses[slot]): qty for i, slot, qty in demo_fbo(n)}

    def stocks_view(self) -> dict[str, Any]:
        return {f"{pid}@{wh}": n for (pid, wh), n in self.stocks.items()}  # present (reserved included)

    def snapshot(self) -> dict[str, Any]:
        return {
            "stocks": self.stocks_view(),
            "reserved": {f"{pid}@{wh}": n for (pid, wh), n in self.reserved.items() if n},
            "prices": {str(pid): {"price": str(p["price"]), "old_price": str(p["old_price"])}
                       for pid, p in self.products.items()},
            "orders": {num: p["status"] for num, p in self.postings.items()},
            "pushes": self.push.summary(), "push_checks": list(self.push_checks),
            "transitions": {num: list(t) for num, t in self.transitions.items()},
            # what each posting still holds per offer (units the seller cancelled are gone): what the buyer gets
            "order_units": {num: {self.products[p["product_id"]]["offer_id"]: p["quantity"]}
                            for num, p in self.postings.items() if p["status"] != "cancelled" or p.get("cancelled_after_ship")},
            "returns": {str(rid): {"posting_number": r["posting_number"], "type": r["type"]}
                        for rid, r in self.returns.items()},
            "archived": sorted(pid for pid, p in self.products.items() if p["archived"]),
            "stock_writes": self.stock_writes,
            "sold": len(self.sales),
            "marks_required": sorted(num for num, p in self.postings.items() if p["marks_required"]),
            "shippings": {str(cid): {"postings": list(c["postings"]), "status": c["status"],
                                     "documents": c.get("documents", 0)} for cid, c in self.carriages.items()},
            "exemplars": {num: {str(ex["exemplar_id"]): [m["mark"] for m in ex["marks"]] for ex in p["exemplars"]}
                          for num, p in self.postings.items() if p["exemplars"]},
        }

    def make_orders(self, count: int) -> list[str]:
        made: list[str] = []
        for _ in range(count):
            # listed (not archived) products with stock left after reservations; a late buyer (fault) whatever
            late = self.late_buyer()
            choices = [(pid, wh) for (pid, wh), n in sorted(self.stocks.items())
                       if (late or n - self.reserved.get((pid, wh), 0) > 0) and not self.products[pid]["archived"]]
            if not choices:
                break
            pid, wh = choices[self.rng.randrange(len(choices))]
            made.append(self._place(pid, wh, 1))
        return made

    def _place(self, pid: int, wh: int, quantity: int) -> str:
        """A new posting of `quantity` units of one product at one warehouse (reserved on its stock)."""
        self.reserved[(pid, wh)] = self.reserved.get((pid, wh), 0) + quantity
        order_id = self._next_order
        self._next_order += 1
        number = f"{order_id:08d}-0001-1"
        warehouse = next(w for w in self.warehouses if w["warehouse_id"] == wh)
        now = _now()
        self.postings[number] = {
            "posting_number": number, "order_id": order_id, "order_number": f"{order_id:08d}-0001",
            "status": "awaiting_packaging", "substatus": "posting_created", "product_id": pid, "quantity": quantity,
            "warehouse_id": wh, "warehouse_name": warehouse["name"], "delivery_method_id": warehouse["delivery_method_id"],
            "in_process_at": _iso(now), "shipment_date": _iso(now + timedelta(days=1)),
            "price": self.products[pid]["price"], "cancel_reason_id": None,
            "marks_required": self.marking and bool(self.products[pid].get("marked")), "exemplars": [],
            "products_cancelled": 0,
        }
        self.transitions[number] = ["awaiting_packaging"]
        self._push_new(self.postings[number])
        return number

    def _move(self, posting: dict[str, Any], status: str, substatus: str) -> None:
        posting["status"], posting["substatus"] = status, substatus
        self.transitions[posting["posting_number"]].append(status)

    def apply_fate(self, oid: str, step: str) -> None:
        """delivered: `delivered`; cancelled on its way: `cancelled` (cancelled_after_ship) and a FullReturn;
        not accepted at the sorting centre: `not_accepted` and a FullReturn; a buyer's return: the posting
        stays `delivered`, a ClientReturn is listed."""
        p = self.postings.get(oid)
        if p is None:
            return
        if step == "delivered" and p["status"] in ("delivering", "driver_pickup"):
            self._move(p, "delivered", "posting_delivered")
        elif step == "cancelled" and p["status"] in ("delivering", "driver_pickup"):
            p["cancelled_after_ship"] = True
            p["cancel_reason_id"] = 401
            was = p["status"]
            self._move(p, "cancelled", "posting_canceled")
            self._push_cancelled(p, was)
            self._add_return(p, "FullReturn", "Покупатель отказался от товара")
        elif step == "not_accepted" and p["status"] in ("delivering", "driver_pickup"):
            self._move(p, "not_accepted", "posting_not_accepted")
            self._add_return(p, "FullReturn", "Не принят на сортировочном центре")
        elif step == "returned" and p["status"] == "delivered":
            self._add_return(p, "ClientReturn", "Товар не подошёл")

    def _add_return(self, p: dict[str, Any], kind: str, reason: str) -> None:
        rid = self._next_return
        self._next_return += 1
        self.returns[rid] = {"id": rid, "posting_number": p["posting_number"], "type": kind, "reason": reason,
                             "at": _now()}

    def control(self, name: str, body: dict[str, Any]) -> Any:
        if name == "fbo":  # set a stock in an Ozon warehouse: {"offer_id", "warehouse_name", "quantity"}
            pid = self.by_offer[str(body["offer_id"])]
            self.fbo[(pid, str(body["warehouse_name"]))] = int(body["quantity"])
            return {"product_id": pid, "quantity": int(body["quantity"])}
        if name == "order":  # a buyer orders several units of one product: {"offer_id", "quantity"}
            pid = self.by_offer.get(str(body.get("offer_id")))
            if pid is None:
                raise ApiError(404, f"no product {body.get('offer_id')!r}")
            wh = next(w for (p_, w) in sorted(self.stocks) if p_ == pid)
            return {"posting_number": self._place(pid, wh, max(int(body.get("quantity", 1)), 1))}
        if name == "push":  # the seller enters the service URL in the cabinet (checked by a TYPE_PING)
            url = str(body.get("url") or "").rstrip("/")
            if url and body.get("check", True):
                problem = self._check_push_url(url)
                if problem:
                    raise ApiError(400, f"{problem}: the URL did not pass Ozon's check")
            t = self.push.configure(body)
            return {"url": t.url, "duplicates": t.duplicates, "fail_first": t.fail_first,
                    "max_attempts": t.max_attempts, "check": "OK" if url and body.get("check", True) else "skipped"}
        if name == "push_wait":
            return {"idle": self.push.wait_idle(float(body.get("timeout", 10)))}
        if name == "ping":  # Ozon's periodic check of a registered URL, through the delivery queue
            self._push({"message_type": "TYPE_PING", "time": _iso(_now())}, "ping")
            return {"queued": True}
        if name == "cutoff":  # Ozon moves a posting's shipping date: {"posting_number", "new_cutoff_date"}
            p = self._posting(str(body.get("posting_number") or ""))
            new = _iso(_parse(body.get("new_cutoff_date")))
            old, p["shipment_date"] = p["shipment_date"], new  # what /v3/posting/fbs/get and the lists give now
            if new != old:
                self._push({"message_type": "TYPE_CUTOFF_DATE_CHANGED", "posting_number": p["posting_number"],
                            "new_cutoff_date": new, "old_cutoff_date": old, "warehouse_id": p["warehouse_id"],
                            "seller_id": self.seller_id}, f"cutoff:{p['posting_number']}:{new}")
            return {"posting_number": p["posting_number"], "shipment_date": new, "old_shipment_date": old}
        if name == "cancel":  # the buyer cancels postings not packed yet: {"postings": [posting numbers]}
            done = []
            for number in [str(x) for x in body.get("postings", body.get("orders", []))]:
                p = self.postings.get(number)
                if p is None or p["status"] != "awaiting_packaging":
                    continue
                self.reserved[(p["product_id"], p["warehouse_id"])] -= p["quantity"]
                p["cancelled_by_buyer"] = True
                self._move(p, "cancelled", "posting_canceled")
                self._push_cancelled(p, "awaiting_packaging")
                done.append(number)
            return {"cancelled": done}
        if name == "marking":  # postings made from now on: marked goods need their codes (or not)
            self.marking = bool(body.get("mandatory_mark", True))
            return {"mandatory_mark": self.marking}
        if name == "action":  # the seller's promotion on a product: {"offer_id", "title", "value" (%), "days"}
            pid = self.by_offer.get(str(body.get("offer_id")))
            if pid is None:
                raise ApiError(404, f"no product {body.get('offer_id')!r}")
            start = _now() - timedelta(minutes=1)
            action = {"title": str(body.get("title") or "Акция продавца"), "value": int(body.get("value", 10)),
                      "date_from": start, "date_to": start + timedelta(days=float(body.get("days", 7)))}
            self.promotions.setdefault(pid, []).append(action)
            return {"product_id": pid, "actions": len(self.promotions[pid])}
        if name == "import_delay":  # how long an imported product takes to be processed (marketplace seconds)
            self.import_delay_s = float(body.get("seconds", self.import_delay_s))
            return {"seconds": self.import_delay_s}
        if name == "deliver":  # the buyer received everything handed over
            done = []
            for p in self.postings.values():
                if p["status"] == "delivering":
                    self._move(p, "delivered", "posting_delivered")
                    done.append(p["posting_number"])
            return {"delivered": done}
        if name == "transaction":  # one more finance operation, e.g. a correction: {field: amount, "type"}
            op = {"at": _now(), "posting_number": str(body.get("posting_number") or ""),
                  "type": str(body.get("type") or "other")}
            op.update({f: Decimal(str(body.get(f, 0))) for f in TOTALS_FIELDS})
            self.injected_operations.append(op)
            return {f: str(op[f]) for f in TOTALS_FIELDS}
        return super().control(name, body)

    # ------------------------------------------------------------ shapes

    def error_reply(self, status: int, message: str, *, code: str = "", template: str = "") -> SandboxReply:
        numeric = {400: 3, 403: 7, 404: 5, 409: 6, 500: 13, 503: 14}.get(status, 2)
        return SandboxReply(status, {"code": numeric, "message": f"{code}: {message}" if code else message,
                                     "details": []})

    def throttle_reply(self, retry_after_s: float, group: str) -> SandboxReply:
        wait = max(1, int(retry_after_s + 0.999))
        return SandboxReply(429, {"code": 8, "message": "You have reached request rate limit per second",
                                  "details": []}, headers={"Retry-After": str(wait), "ratelimit-remaining": "0"})

    def check_auth(self, req: SandboxRequest) -> SandboxReply | None:
        if req.headers.get("client-id") != self.credentials["Client-Id"] or \
                req.headers.get("api-key") != self.credentials["Api-Key"]:
            return self.error_reply(403, "Invalid Api-Key, please contact support", code="PERMISSION_DENIED")
        return None

    # ------------------------------------------------------------ routes

    def routes(self) -> list[Route]:
        r = Route
        return [
            r("POST", "/v2/warehouse/list", self.warehouse_list),
            r("POST", "/v3/product/list", self.product_list),
            r("POST", "/v3/product/info/list", self.product_info),
            r("POST", "/v3/product/import", self.product_import),
            r("POST", "/v1/product/import/info", self.product_import_info),
            r("POST", "/v1/description-category/tree", self.category_tree),
            r("POST", "/v1/description-category/attribute", self.category_attributes),
            r("POST", "/v1/description-category/attribute/values", self.attribute_values),
            r("POST", "/v1/description-category/attribute/values/search", self.attribute_values_search),
            r("POST", "/v1/product/pictures/import", self.pictures_import),
            r("POST", "/v1/product/archive", self.product_archive),
            r("POST", "/v1/product/unarchive", self.product_unarchive),
            r("POST", "/v1/product/import/prices", self.import_prices),
            r("POST", "/v5/product/info/prices", self.info_prices),
            r("POST", "/v2/products/stocks", self.update_stocks, "stocks"),
            r("POST", "/v4/product/info/stocks", self.info_stocks),
            r("POST", "/v1/analytics/manage/stocks", self.manage_stocks),
            r("POST", "/v1/product/info/stocks-by-warehouse/fbs", self.stocks_by_warehouse),
            r("POST", "/v4/posting/fbs/unfulfilled/list", self.unfulfilled),
            r("POST", "/v4/posting/fbs/list", self.posting_list),
            r("POST", "/v3/posting/fbs/get", self.posting_get),
            r("POST", "/v4/posting/fbs/ship", self.posting_ship),
            r("POST", "/v6/fbs/posting/product/exemplar/create-or-get", self.exemplar_create_or_get),
            r("POST", "/v6/fbs/posting/product/exemplar/set", self.exemplar_set),
            r("POST", "/v5/fbs/posting/product/exemplar/status", self.exemplar_status),
            r("POST", "/v2/posting/fbs/cancel", self.posting_cancel),
            r("POST", "/v2/posting/fbs/product/cancel", self.posting_product_cancel, action="reduce",
              moves=lambda req: [str(req.json()["posting_number"])]),
            r("POST", "/v1/carriage/create", self.carriage_create),
            r("POST", "/v1/carriage/approve", self.carriage_approve),
            r("POST", "/v2/carriage/delivery/list", self.carriages_list),
            r("POST", "/v2/posting/fbs/package-label", self.package_label),
            r("POST", "/v1/returns/list", self.returns_list),
            r("POST", "/v2/posting/fbs/act/create", self.act_create),
            r("POST", "/v2/posting/fbs/act/check-status", self.act_check_status),
            r("POST", "/v2/posting/fbs/act/get-postings", self.act_get_postings),
            r("POST", "/v2/posting/fbs/act/get-pdf", self.act_get_pdf),
            r("POST", "/v2/finance/realization", self.realization),
            r("POST", "/v3/finance/transaction/totals", self.transaction_totals),
            r("POST", "/v3/finance/transaction/list", self.transaction_list),
        ]

    # -- warehouses and products

    def warehouse_list(self, req: SandboxRequest) -> SandboxReply:
        body = req.json()
        limit = int(body.get("limit") or 200)
        start = int(body.get("cursor") or 0)
        page = self.warehouses[start: start + limit]
        nxt = start + len(page)
        return SandboxReply(200, {"warehouses": [{
            "warehouse_id": w["warehouse_id"], "name": w["name"], "status": "created", "is_rfbs": False,
            "is_kgt": False, "carriage_label_type": "BIG", "is_express": False, "has_postings_limit": False,
            "working_days": ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"],
            "first_mile": {"type": "DROP_OFF", "first_mile_is_changing": False}} for w in page],
            "cursor": str(nxt) if nxt < len(self.warehouses) else "", "has_next": nxt < len(self.warehouses)})

    def _visible(self, p: dict[str, Any], visibility: str) -> bool:
        if visibility in ("ARCHIVED", "MANUAL_ARCHIVED"):
            return p["archived"]
        if visibility == "ALL":
            return True
        return not p["archived"]

    def product_list(self, req: SandboxRequest) -> SandboxReply:
        self._settle_imports()
        body = req.json()
        flt = body.get("filter") or {}
        visibility = flt.get("visibility") or "ALL"
        limit = min(int(body.get("limit") or 100), 1000)
        after = int(body.get("last_id") or 0)
        ids = [pid for pid in sorted(self.products) if pid > after and self._visible(self.products[pid], visibility)]
        page = ids[:limit]
        items = [{"product_id": pid, "offer_id": self.products[pid]["offer_id"], "archived": self.products[pid]["archived"],
                  "has_fbo_stocks": False, "has_fbs_stocks": any(self.stocks.get((pid, w["warehouse_id"]), 0) > 0
                                                                 for w in self.warehouses),
                  "is_discounted": False, "quants": []} for pid in page]
        total = len([p for p in self.products.values() if self._visible(p, visibility)])
        return SandboxReply(200, {"result": {"items": items, "last_id": str(page[-1]) if len(ids) > limit else "",
                                             "total": total}})

    def product_info(self, req: SandboxRequest) -> SandboxReply:
        self._settle_imports()
        body = req.json()
        wanted = {int(x) for x in body.get("product_id") or []}
        wanted |= {self.by_offer[o] for o in body.get("offer_id") or [] if o in self.by_offer}
        wanted |= {pid for pid, p in self.products.items() if str(p["sku"]) in {str(s) for s in body.get("sku") or []}}
        if len(wanted) > 1000:
            raise ApiError(400, "at most 1000 identifiers", code="INVALID_ARGUMENT")
        items = []
        for pid in sorted(wanted):
            p = self.products.get(pid)
            if p is None:
                continue
            items.append({
                "id": pid, "offer_id": p["offer_id"], "name": p["name"], "barcodes": p["barcodes"], "sku": p["sku"],
                "description_category_id": p["description_category_id"], "type_id": p["type_id"],
                "currency_code": "RUB", "price": f"{p['price']:.2f}", "old_price": f"{p['old_price']:.2f}",
                "min_price": f"{p['min_price']:.2f}", "is_archived": p["archived"], "is_autoarchived": False,
                "created_at": p["created_at"], "updated_at": p["created_at"], "images": list(p.get("images", [])),
                "primary_image": list(p.get("images", []))[:1],
                "statuses": {"is_created": True, "moderate_status": "approved",
                             "status": "price_sent" if not p["archived"] else "archived",
                             "status_name": "Продаётся" if not p["archived"] else "В архиве",
                             "status_description": "", "status_failed": "", "status_tooltip": "",
                             "status_updated_at": p["created_at"]},
                "sources": [{"sku": p["sku"], "source": "sds", "created_at": p["created_at"],
                             "shipment_type": "SHIPMENT_TYPE_GENERAL", "quant_code": ""}],
            })
        return SandboxReply(200, {"items": items})

    # -- product import (issue 18.3): categories, their attributes, the import task followed to its end

    import_delay_s = 2.0  # how long Ozon takes to process an imported item (marketplace seconds)

    def product_import(self, req: SandboxRequest) -> SandboxReply:
        """Queue the items: each is processed `import_delay_s` later (pending until then) and checked as Ozon
        checks it (the category's mandatory characteristics, dictionary values, real dimensions, images)."""
        items = req.json().get("items") or []
        if not 1 <= len(items) <= 100:
            raise ApiError(400, "1..100 items per request", code="INVALID_ARGUMENT")
        task = self._next_task
        self._next_task += 1
        due = time.monotonic() + self.import_delay_s / self.time_scale
        self.import_tasks[task] = [{"offer_id": it.get("offer_id") or "", "product_id": 0, "status": "pending",
                                    "errors": []} for it in items]
        self.import_queue += [(due, task, n, it) for n, it in enumerate(items)]
        return SandboxReply(200, {"result": {"task_id": task}})

    def _settle_imports(self) -> None:
        now = time.monotonic()
        ready = [q for q in self.import_queue if q[0] <= now]
        self.import_queue = [q for q in self.import_queue if q[0] > now]
        for _, task, n, it in ready:
            self.import_tasks[task][n] = self._import_one(it)

    def _import_one(self, it: dict[str, Any]) -> dict[str, Any]:
        offer = it.get("offer_id") or ""
        if not offer:
            return {"offer_id": "", "product_id": 0, "status": "failed", "errors": [
                {"code": "OFFER_ID_REQUIRED", "message": "Не указан артикул (offer_id)", "level": "error",
                 "state": "imported", "field": "offer_id", "attribute_id": 0, "attribute_name": ""}]}
        pid = self.by_offer.get(offer)
        if pid is not None:  # an update of a product we have: its name and price
            self.products[pid].update(name=it.get("name", self.products[pid]["name"]), price=Decimal(it["price"]))
            return {"offer_id": offer, "product_id": pid, "status": "imported", "errors": []}
        subject = content.subject_of(int(it["description_category_id"]), int(it["type_id"]))
        errors = content.problems(subject, it) if subject is not None else [
            {"code": "CATEGORY_NOT_FOUND", "message": "Нет такой категории и типа товара", "level": "error",
             "state": "imported", "field": "type_id", "attribute_id": 0, "attribute_name": ""}]
        if errors:
            return {"offer_id": offer, "product_id": 0, "status": "failed", "errors": errors}
        pid = max(self.products) + 1
        self.products[pid] = {"product_id": pid, "sku": 900_000_000 + (pid - 100_000_000), "offer_id": offer,
                              "name": it.get("name", ""), "barcodes": [it["barcode"]] if it.get("barcode") else [],
                              "category": dict(content.CATEGORIES_BY_SUBJECT).get(subject, ""),
                              "description_category_id": it["description_category_id"], "type_id": it["type_id"],
                              "price": Decimal(it["price"]), "old_price": Decimal(it.get("old_price") or 0),
                              "min_price": Decimal(0), "archived": False, "created_at": _iso(_now()),
                              "images": list(it.get("images") or []), "attributes": list(it.get("attributes") or []),
                              "dimensions": {k: it.get(k) for k in ("depth", "width", "height", "dimension_unit",
                                                                     "weight", "weight_unit")}}
        self.by_offer[offer] = pid
        return {"offer_id": offer, "product_id": pid, "status": "imported", "errors": []}

    def product_import_info(self, req: SandboxRequest) -> SandboxReply:
        self._settle_imports()
        task = int(req.json()["task_id"])
        if task not in self.import_tasks:
            raise ApiError(404, f"task {task} not found", code="NOT_FOUND")
        items = self.import_tasks[task]
        return SandboxReply(200, {"result": {"items": items, "total": len(items)}})

    def category_tree(self, req: SandboxRequest) -> SandboxReply:
        return SandboxReply(200, {"result": content.tree()})

    def _subject(self, body: dict[str, Any]) -> int:
        subject = content.subject_of(int(body["description_category_id"]), int(body["type_id"]))
        if subject is None:
            raise ApiError(404, "description category or type not found", code="NOT_FOUND")
        return subject

    def category_attributes(self, req: SandboxRequest) -> SandboxReply:
        return SandboxReply(200, {"result": content.attributes(self._subject(req.json()))})

    def _dictionary(self, body: dict[str, Any]) -> dict[int, str]:
        attr = next((a for a in content.attributes(self._subject(body)) if a["id"] == int(body["attribute_id"])), None)
        if attr is None or not attr["dictionary_id"]:
            raise ApiError(400, "the attribute has no dictionary", code="INVALID_ARGUMENT")
        return content.DICTIONARIES[attr["dictionary_id"]]

    def attribute_values(self, req: SandboxRequest) -> SandboxReply:
        body = req.json()
        values = sorted(self._dictionary(body).items())
        after = int(body.get("last_value_id") or 0)
        limit = max(1, min(int(body["limit"]), 5000))
        rest = [(i, v) for i, v in values if i > after]
        return SandboxReply(200, {"result": [{"id": i, "value": v, "info": "", "picture": ""} for i, v in rest[:limit]],
                                  "has_next": len(rest) > limit})

    def attribute_values_search(self, req: SandboxRequest) -> SandboxReply:
        body = req.json()
        want = str(body["value"]).casefold().replace("ё", "е")
        if len(want) < 2:
            raise ApiError(400, "value must hold at least 2 characters", code="INVALID_ARGUMENT")
        found = [(i, v) for i, v in sorted(self._dictionary(body).items()) if want in v.casefold().replace("ё", "е")]
        limit = max(1, min(int(body["limit"]), 100))
        return SandboxReply(200, {"result": [{"id": i, "value": v, "info": "", "picture": ""}
                                             for i, v in found[:limit]]})

    def pictures_import(self, req: SandboxRequest) -> SandboxReply:
        self._settle_imports()
        body = req.json()
        pid = int(body["product_id"])
        if pid not in self.products:
            raise ApiError(404, f"product {pid} not found", code="NOT_FOUND")
        images = [str(u) for u in body.get("images") or []]
        if len(images) > 30:
            raise ApiError(400, "at most 30 images", code="INVALID_ARGUMENT")
        self.products[pid]["images"] = images
        return SandboxReply(200, {"result": {"pictures": [
            {"is_360": False, "is_color": False, "is_primary": n == 0, "product_id": pid, "state": "imported", "url": u}
            for n, u in enumerate(images)]}})

    # -- end of product import

    def _set_archived(self, req: SandboxRequest, flag: bool) -> SandboxReply:
        ids = [int(x) for x in req.json()["product_id"]]
        if len(ids) > 100:
            raise ApiError(400, "at most 100 product_id", code="INVALID_ARGUMENT")
        missing = [i for i in ids if i not in self.products]
        if missing:
            raise ApiError(404, f"product {missing[0]} not found", code="NOT_FOUND")
        for i in ids:
            self.products[i]["archived"] = flag
        return SandboxReply(200, {"result": True})

    def product_archive(self, req: SandboxRequest) -> SandboxReply:
        return self._set_archived(req, True)

    def product_unarchive(self, req: SandboxRequest) -> SandboxReply:
        return self._set_archived(req, False)

    # -- prices and stocks

    def _pid_of(self, item: dict[str, Any]) -> int | None:
        if item.get("offer_id") and item["offer_id"] in self.by_offer:
            return self.by_offer[item["offer_id"]]  # offer_id wins when both are given
        pid = item.get("product_id")
        return int(pid) if pid and int(pid) in self.products else None

    def import_prices(self, req: SandboxRequest) -> SandboxReply:
        prices = req.json().get("prices") or []
        if len(prices) > 1000:
            raise ApiError(400, "at most 1000 prices per request", code="INVALID_ARGUMENT")
        now = time.monotonic()
        window = PRICE_WINDOW_S / self.time_scale
        out = []
        for it in prices:
            pid = self._pid_of(it)
            result = {"offer_id": it.get("offer_id", ""), "product_id": pid or int(it.get("product_id") or 0),
                      "updated": False, "errors": []}
            if pid is None:
                result["errors"].append({"code": "NOT_FOUND", "message": "product not found"})
                out.append(result)
                continue
            stamps = self.price_stamps.setdefault(pid, deque())
            while stamps and stamps[0] <= now - window:
                stamps.popleft()
            try:
                price = Decimal(str(it.get("price")))
                old = Decimal(str(it.get("old_price") or "0"))
                min_price = Decimal(str(it.get("min_price") or "0"))
            except ArithmeticError:
                result["errors"].append({"code": "INVALID_PRICE", "message": "price is not a number"})
                out.append(result)
                continue
            if len(stamps) >= PRICE_MAX_PER_WINDOW:
                self.count_item_throttle()
                result["errors"].append({"code": "TOO_MANY_REQUESTS",
                                         "message": "error limiting: acquire limit per item exceeded"})
            elif price <= 0:
                result["errors"].append({"code": "INVALID_PRICE", "message": "price must be positive"})
            elif old and old <= price:
                result["errors"].append({"code": "INVALID_OLD_PRICE", "message": "old_price must exceed price"})
            elif old and (old - price) / old >= Decimal("0.9"):
                result["errors"].append({"code": "discount_too_big", "message": "discount of 90% or more"})
            else:
                p = self.products[pid]
                p["price"], p["old_price"], p["min_price"] = price, old, min_price
                stamps.append(now)
                result["updated"] = True
            out.append(result)
        return SandboxReply(200, {"result": out})

    def info_prices(self, req: SandboxRequest) -> SandboxReply:
        """`/v5/product/info/prices`: each product's prices, the commissions Ozon takes on it (FBS and
        FBO, the sandbox's 15 % and its delivery charge), and the price with the seller's promotions
        (`POST /_sandbox/x/action` starts one). Filter by offer_id / product_id / visibility, cursor paging."""
        body = req.json()
        flt = body.get("filter") or {}
        limit = int(body["limit"])
        offers = set(flt.get("offer_id") or [])
        pids = {int(x) for x in flt.get("product_id") or []}
        if len(offers) > 1000 or len(pids) > 1000:
            raise ApiError(400, "at most 1000 offer_id / product_id values", code="INVALID_ARGUMENT")
        visibility = flt.get("visibility") or "ALL"
        try:
            start = int(body.get("cursor") or 0)
        except ValueError:
            raise ApiError(400, "cursor is not valid", code="INVALID_ARGUMENT") from None
        keys = [pid for pid in sorted(self.products) if self._visible(self.products[pid], visibility)
                and (not offers or self.products[pid]["offer_id"] in offers) and (not pids or pid in pids)]
        page = keys[start:start + limit]
        now = _now()
        items = []
        for pid in page:
            p = self.products[pid]
            actions = [a for a in self.promotions.get(pid, []) if a["date_from"] <= now <= a["date_to"]]
            best = max((a["value"] for a in actions), default=0)
            marketing = (p["price"] * (100 - best) / 100).quantize(Decimal("0.01"))
            price: dict[str, Any] = {
                "price": float(p["price"]), "old_price": float(p["old_price"]), "min_price": float(p["min_price"]),
                "marketing_seller_price": float(marketing), "currency_code": "RUB", "vat": 0.2,
                "net_price": float((p["price"] * Decimal("0.45")).quantize(Decimal("0.01"))),
                "auto_action_enabled": False, "auto_add_to_ozon_actions_list_enabled": False}
            marketing_actions: dict[str, Any] = {"ozon_actions_exist": False}
            if actions:
                marketing_actions.update(
                    current_period_from=_iso(min(a["date_from"] for a in actions)),
                    current_period_to=_iso(max(a["date_to"] for a in actions)),
                    actions=[{"title": a["title"], "value": a["value"], "date_from": _iso(a["date_from"]),
                              "date_to": _iso(a["date_to"])} for a in actions])
            items.append({
                "product_id": pid, "offer_id": p["offer_id"], "price": price,
                "commissions": {"sales_percent_fbs": float(COMMISSION_RATIO * 100),
                                "sales_percent_fbo": float(COMMISSION_RATIO * 100),
                                "fbs_deliv_to_customer_amount": float(DELIVERY_CHARGE),
                                "fbo_deliv_to_customer_amount": float(DELIVERY_CHARGE),
                                "fbs_return_flow_amount": float(DELIVERY_CHARGE),
                                "fbo_return_flow_amount": float(DELIVERY_CHARGE)},
                "marketing_actions": marketing_actions,
                "price_indexes": {"color_index": "WITHOUT_INDEX"},
                "acquiring": float((p["price"] * Decimal("0.015")).quantize(Decimal("0.01"))),
                "volume_weight": 0.5})
        nxt = start + len(page)
        return SandboxReply(200, {"items": items, "cursor": str(nxt) if nxt < len(keys) else "",
                                  "total": len(keys)})

    def update_stocks(self, req: SandboxRequest) -> SandboxReply:
        stocks = req.json()["stocks"]
        if len(stocks) > 100:
            raise ApiError(400, "at most 100 product-warehouse pairs per request", code="INVALID_ARGUMENT")
        now = time.monotonic()
        window = STOCK_PAIR_WINDOW_S / self.time_scale
        known_wh = {w["warehouse_id"] for w in self.warehouses}
        out = []
        for it in stocks:
            pid = self._pid_of(it)
            wh = int(it["warehouse_id"])
            result = {"warehouse_id": wh, "product_id": pid or int(it.get("product_id") or 0),
                      "offer_id": it.get("offer_id") or (self.products[pid]["offer_id"] if pid else ""),
                      "updated": False, "errors": []}
            if pid is None:
                result["errors"].append({"code": "PRODUCT_NOT_FOUND", "message": "product not found"})
            elif wh not in known_wh:
                result["errors"].append({"code": "WAREHOUSE_NOT_FOUND", "message": "warehouse not found"})
            elif int(it["stock"]) < 0:
                result["errors"].append({"code": "INVALID_STOCK", "message": "stock must not be negative"})
            elif self.products[pid]["archived"]:
                result["errors"].append({"code": "PRODUCT_IS_ARCHIVED", "message": "product is archived"})
            elif now - self.stock_stamp.get((pid, wh), -1e18) < window:
                self.count_item_throttle()
                result["errors"].append({"code": "TOO_MANY_REQUESTS", "message": "Stock is updated too frequently"})
            else:
                shown = self.stocks.get((pid, wh), 0) - self.reserved.get((pid, wh), 0)
                self.stocks[(pid, wh)] = int(it["stock"]) + self.reserved.get((pid, wh), 0)
                self.stock_stamp[(pid, wh)] = now
                self.stock_writes += 1
                self.note_stock_write((pid, wh), int(it["stock"]), shown)
                result["updated"] = True
            out.append(result)
        return SandboxReply(200, {"result": out})

    def info_stocks(self, req: SandboxRequest) -> SandboxReply:
        body = req.json()
        limit = min(int(body["limit"]), 1000)
        after = int(body.get("cursor") or 0)
        flt = body.get("filter") or {}
        wanted = {int(x) for x in flt.get("product_id") or []} | {self.by_offer[o] for o in flt.get("offer_id") or []
                                                                   if o in self.by_offer}
        named = [*(flt.get("product_id") or []), *(flt.get("offer_id") or [])]
        self.note_stock_read(req.template, named or None)
        ids = [pid for pid in sorted(self.products) if pid > after and (not wanted or pid in wanted)]
        page = ids[:limit]
        items = []
        for pid in page:
            p = self.products[pid]
            present = sum(self.stocks.get((pid, w["warehouse_id"]), 0) for w in self.warehouses)
            reserved = sum(self.reserved.get((pid, w["warehouse_id"]), 0) for w in self.warehouses)
            items.append({"product_id": pid, "offer_id": p["offer_id"], "stocks": [
                {"type": "fbs", "present": present, "reserved": reserved, "sku": p["sku"],
                 "shipment_type": "SHIPMENT_TYPE_GENERAL",
                 "warehouse_ids": [w["warehouse_id"] for w in self.warehouses
                                   if self.stocks.get((pid, w["warehouse_id"]), 0)]}]})
        return SandboxReply(200, {"items": items, "cursor": str(page[-1]) if len(ids) > limit else "",
                                  "total": len(items)})

    def manage_stocks(self, req: SandboxRequest) -> SandboxReply:
        """`/v1/analytics/manage/stocks`: stock in Ozon's warehouses per product and warehouse (valid,
        and zero defective / expiring / waiting for documents in the sandbox); `filter.skus` narrows,
        limit/offset pages."""
        body = req.json()
        limit, offset = int(body["limit"]), int(body.get("offset") or 0)
        if not 1 <= limit <= 1000 or offset < 0:
            raise ApiError(400, "limit must be 1..1000", code="INVALID_ARGUMENT")
        skus = {int(x) for x in (body.get("filter") or {}).get("skus") or []}
        rows = []
        for (pid, wh), qty in sorted(self.fbo.items()):
            p = self.products.get(pid)
            if p is None or (skus and p["sku"] not in skus):
                continue
            rows.append({"sku": p["sku"], "offer_id": p["offer_id"], "name": p["name"], "warehouse_name": wh,
                         "valid_stock_count": qty, "defect_stock_count": 0, "expiring_stock_count": 0,
                         "waitingdocs_stock_count": 0})
        return SandboxReply(200, {"items": rows[offset: offset + limit]})

    def stocks_by_warehouse(self, req: SandboxRequest) -> SandboxReply:
        """FBS stock per product and warehouse; `sku` wins over `offer_id` when both are given."""
        body = req.json()
        by_sku = {p["sku"]: pid for pid, p in self.products.items()}
        if body.get("sku"):
            pids = [by_sku[int(s)] for s in body["sku"] if int(s) in by_sku]
            self.note_stock_read(req.template, body["sku"])
        else:
            pids = [self.by_offer[o] for o in body.get("offer_id") or [] if o in self.by_offer]
            self.note_stock_read(req.template, body.get("offer_id") or [])
        result = []
        for pid in pids:
            p = self.products[pid]
            for w in self.warehouses:
                key = (pid, w["warehouse_id"])
                if key in self.stocks:
                    result.append({"sku": p["sku"], "offer_id": p["offer_id"], "product_id": pid,
                                   "present": self.stocks[key], "reserved": self.reserved.get(key, 0),
                                   "warehouse_id": w["warehouse_id"], "warehouse_name": w["name"]})
        return SandboxReply(200, {"result": result})

    # -- postings

    def _posting_out(self, p: dict[str, Any], detailed: bool = False) -> dict[str, Any]:
        prod = self.products[p["product_id"]]
        actions = {"awaiting_packaging": ["ship", "cancel"], "awaiting_deliver": ["label_download", "cancel"]}
        out = {
            "posting_number": p["posting_number"], "order_id": p["order_id"], "order_number": p["order_number"],
            "status": p["status"], "substatus": p["substatus"], "in_process_at": p["in_process_at"],
            "shipment_date": p["shipment_date"], "delivering_date": p["shipment_date"],
            "delivery_method": {"id": p["delivery_method_id"], "name": "Ozon Логистика", "warehouse_id": p["warehouse_id"],
                                "warehouse": p["warehouse_name"], "tpl_provider": "Ozon Delivery", "tpl_provider_id": 24},
            "products": [{"sku": prod["sku"], "offer_id": prod["offer_id"], "name": prod["name"],
                          "quantity": p["quantity"]}],
            "available_actions": actions.get(p["status"], []),
            "barcodes": {"upper_barcode": f"%{p['order_id']}%", "lower_barcode": p["posting_number"]},
            "is_express": False, "is_multibox": False, "multi_box_qty": 1,
            "requirements": {"products_requiring_mandatory_mark": [str(prod["sku"])] if p["marks_required"] else []},
        }
        price = f"{p['price']:.4f}"
        if detailed:
            out["products"][0].update(price=price, currency_code="RUB")
        else:
            out["products"][0]["price"] = {"amount": price, "currency": "RUB"}
        if p["status"] == "cancelled":
            after = bool(p.get("cancelled_after_ship"))
            client = after or bool(p.get("cancelled_by_buyer"))
            out["cancellation"] = {"cancel_reason_id": p["cancel_reason_id"] or 0,
                                   "cancel_reason": _cancel_reason(p),
                                   "cancellation_type": "client" if client else "seller",
                                   "cancellation_initiator": "Покупатель" if client else "Продавец",
                                   "cancelled_after_ship": after, "affect_cancellation_rating": not client}
        return out

    def _posting(self, number: str) -> dict[str, Any]:
        try:
            return self.postings[number]
        except KeyError:
            raise ApiError(404, f"posting {number} not found", code="POSTING_NOT_FOUND") from None

    def _page_postings(self, req: SandboxRequest, statuses: set[str] | None) -> SandboxReply:
        body = req.json()
        flt = body.get("filter") or {}
        wanted = set(flt.get("statuses") or []) or statuses
        whs = {int(w) for w in flt.get("warehouse_ids") or []}
        limit = min(int(body.get("limit") or 100), 100)
        start = int(body.get("cursor") or 0)
        numbers = [n for n, p in self.postings.items()
                   if (not wanted or p["status"] in wanted) and (not whs or p["warehouse_id"] in whs)]
        page = numbers[start: start + limit]
        nxt = start + len(page)
        return SandboxReply(200, {"postings": [self._posting_out(self.postings[n]) for n in page],
                                  "cursor": str(nxt) if nxt < len(numbers) else "", "has_next": nxt < len(numbers),
                                  "count": len(numbers)})

    def unfulfilled(self, req: SandboxRequest) -> SandboxReply:
        return self._page_postings(req, {"awaiting_packaging", "awaiting_deliver"})

    def posting_list(self, req: SandboxRequest) -> SandboxReply:
        return self._page_postings(req, None)

    def posting_get(self, req: SandboxRequest) -> SandboxReply:
        return SandboxReply(200, {"result": self._posting_out(self._posting(req.json()["posting_number"]), detailed=True)})

    def posting_ship(self, req: SandboxRequest) -> SandboxReply:
        body = req.json()
        p = self._posting(body["posting_number"])
        if p["status"] != "awaiting_packaging":
            code = "POSTING_ALREADY_SHIPPED" if p["status"] in ("awaiting_deliver", "delivering", "delivered") \
                else "HAS_INCORRECT_STATUS"
            raise ApiError(400, f"posting is {p['status']}", code=code)
        sku = self.products[p["product_id"]]["sku"]
        if self._unmarked(p):
            raise ApiError(400, f"sku {sku} needs a Честный знак code for each of its {p['quantity']} item(s): "
                                "set them with /v6/fbs/posting/product/exemplar/set", code="INVALID_ARGUMENT")
        shipped = sum(int(pr["quantity"]) for pkg in body["packages"] for pr in pkg["products"]
                      if int(pr["product_id"]) == sku)
        if shipped != p["quantity"]:
            raise ApiError(400, f"packages hold {shipped} of sku {sku}, the posting has {p['quantity']}",
                           code="INVALID_ARGUMENT")
        self._move(p, "awaiting_deliver", "posting_not_in_carriage")
        key = (p["product_id"], p["warehouse_id"])
        self.reserved[key] -= p["quantity"]
        self.stocks[key] -= p["quantity"]
        return SandboxReply(200, {"result": [p["posting_number"]],
                                  "additional_data": [{"posting_number": p["posting_number"], "products": []}]})

    # -- product items (exemplars) and their Честный знак codes

    def _unmarked(self, p: dict[str, Any]) -> bool:
        """A posting whose marked product still lacks a code on some unit."""
        if not p["marks_required"]:
            return False
        marked = [ex for ex in p["exemplars"] if any(m["mark_type"] == "mandatory_mark" for m in ex["marks"])]
        return len(marked) < p["quantity"]

    def _exemplars_of(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        while len(p["exemplars"]) < p["quantity"]:
            p["exemplars"].append({"exemplar_id": self._next_exemplar, "marks": []})
            self._next_exemplar += 1
        return p["exemplars"]

    def exemplar_create_or_get(self, req: SandboxRequest) -> SandboxReply:
        p = self._posting(req.json()["posting_number"])
        prod = self.products[p["product_id"]]
        items = [{"exemplar_id": ex["exemplar_id"], "marks": [dict(m) for m in ex["marks"]], "gtd": "",
                  "is_gtd_absent": True, "rnpt": "", "is_rnpt_absent": True} for ex in self._exemplars_of(p)]
        return SandboxReply(200, {"posting_number": p["posting_number"], "multi_box_qty": 1, "products": [{
            "product_id": prod["sku"], "quantity": p["quantity"], "exemplars": items,
            "is_mandatory_mark_needed": p["marks_required"], "is_mandatory_mark_possible": bool(prod.get("marked")),
            "is_gtd_needed": False, "is_rnpt_needed": False, "is_jw_uin_needed": False, "has_imei": False,
            "is_weight_needed": False, "weight_min": 0, "weight_max": 0}]})

    def exemplar_set(self, req: SandboxRequest) -> SandboxReply:
        """The complete set of the posting's items: each item's marks replace what it had."""
        body = req.json()
        p = self._posting(body["posting_number"])
        if p["status"] != "awaiting_packaging":
            raise ApiError(400, f"posting is {p['status']}", code="HAS_INCORRECT_STATUS")
        sku = self.products[p["product_id"]]["sku"]
        known = {ex["exemplar_id"]: ex for ex in self._exemplars_of(p)}
        updates: dict[int, list[dict[str, str]]] = {}
        for pr in body["products"]:
            if int(pr["product_id"]) != sku:
                raise ApiError(400, f"sku {pr['product_id']} is not in posting {p['posting_number']}",
                               code="UNKNOWN_PRODUCT_DEFINED")
            for ex in pr["exemplars"]:
                if int(ex["exemplar_id"]) not in known:
                    raise ApiError(400, f"unknown exemplar_id {ex['exemplar_id']}", code="INVALID_ARGUMENT")
                marks = [{"mark": str(m.get("mark") or ""), "mark_type": str(m.get("mark_type") or "")}
                         for m in ex.get("marks") or []]
                if any(not m["mark"] or m["mark_type"] not in ("mandatory_mark", "jw_uin", "imei") for m in marks):
                    raise ApiError(400, "a mark needs its value and a mark_type", code="INVALID_ARGUMENT")
                updates[int(ex["exemplar_id"])] = marks
        for eid, marks in updates.items():
            known[eid]["marks"] = marks
        return SandboxReply(200)

    def exemplar_status(self, req: SandboxRequest) -> SandboxReply:
        p = self._posting(req.json()["posting_number"])
        sku = self.products[p["product_id"]]["sku"]
        items = [{"exemplar_id": ex["exemplar_id"], "gtd": "", "is_gtd_absent": True, "rnpt": "", "is_rnpt_absent": True,
                  "marks": [dict(m, check_status="passed", error_codes=[]) for m in ex["marks"]]}
                 for ex in p["exemplars"]]
        if p["status"] != "awaiting_packaging":
            status = "update_not_available"
        else:
            status = "ship_not_available" if self._unmarked(p) else "ship_available"
        return SandboxReply(200, {"posting_number": p["posting_number"], "status": status,
                                  "products": [{"product_id": sku, "exemplars": items}] if items else []})

    def posting_cancel(self, req: SandboxRequest) -> SandboxReply:
        body = req.json()
        p = self._posting(body["posting_number"])
        if p["status"] == "cancelled":
            raise ApiError(400, "posting is already cancelled", code="POSTING_ALREADY_CANCELLED")
        if p["status"] not in ("awaiting_packaging", "awaiting_deliver"):
            raise ApiError(400, f"posting is {p['status']}", code="HAS_INCORRECT_STATUS")
        key = (p["product_id"], p["warehouse_id"])
        if p["status"] == "awaiting_packaging":
            self.reserved[key] -= p["quantity"]
        else:
            self.stocks[key] += p["quantity"]
        p["cancel_reason_id"] = int(body["cancel_reason_id"])
        was = p["status"]
        self._move(p, "cancelled", "posting_canceled")
        self._push_cancelled(p, was)
        return SandboxReply(200, {"result": True})

    def posting_product_cancel(self, req: SandboxRequest) -> SandboxReply:
        """Some units of a posting are not sent (PostingAPI_CancelFbsPostingProduct): before packaging only,
        with a reason the seller may cancel for, each sku in the posting and no more units than it has;
        the posting's quantity goes down and the units go back to the stock; none left: it is cancelled."""
        body = req.json()
        p = self._posting(body["posting_number"])
        if p["status"] != "awaiting_packaging":
            raise ApiError(400, f"posting is {p['status']}: products can be cancelled only before packaging",
                           code="HAS_INCORRECT_STATUS")
        if int(body["cancel_reason_id"]) not in SELLER_CANCEL_REASONS:
            raise ApiError(400, f"cancel_reason_id {body['cancel_reason_id']} is not a reason the seller may cancel for",
                           code="INVALID_ARGUMENT")
        sku = self.products[p["product_id"]]["sku"]
        n = 0
        for it in body["items"]:
            if int(it["sku"]) != sku:
                raise ApiError(400, f"sku {it['sku']} is not in posting {p['posting_number']}", code="INVALID_ARGUMENT")
            if int(it["quantity"]) <= 0:
                raise ApiError(400, "quantity must be positive", code="INVALID_ARGUMENT")
            n += int(it["quantity"])
        if n > p["quantity"]:
            raise ApiError(400, f"posting {p['posting_number']} has {p['quantity']} of sku {sku}, not {n}",
                           code="INVALID_ARGUMENT")
        self.reserved[(p["product_id"], p["warehouse_id"])] -= n
        p["quantity"] -= n
        p["products_cancelled"] = p.get("products_cancelled", 0) + n
        if p["quantity"] == 0:
            p["quantity"] = n  # the posting keeps what it was ordered with, cancelled whole
            p["cancel_reason_id"] = int(body["cancel_reason_id"])
            self._move(p, "cancelled", "posting_canceled")
            self._push_cancelled(p, "awaiting_packaging")
        p["exemplars"] = p["exemplars"][: p["quantity"]]
        return SandboxReply(200, {"result": p["posting_number"]})

    def carriage_create(self, req: SandboxRequest) -> SandboxReply:
        body = req.json()
        method = int(body.get("delivery_method_id") or 0)
        # postings packed for this method and in no approved carriage (a carriage left unapproved loses them)
        postings = [n for n, p in self.postings.items()
                    if p["delivery_method_id"] == method and p["status"] == "awaiting_deliver"
                    and (not p.get("carriage") or self.carriages[p["carriage"]]["status"] == "NEW")]
        if not postings:
            raise ApiError(400, "no postings awaiting delivery for this delivery method", code="EMPTY_CARRIAGE")
        cid = self._next_carriage
        self._next_carriage += 1
        for n in postings:
            old = self.postings[n].get("carriage")
            if old:
                self.carriages[old]["postings"].remove(n)
            self.postings[n]["carriage"] = cid
            self.postings[n]["substatus"] = "posting_in_carriage"
        self.carriages[cid] = {"postings": postings, "status": "NEW", "method": method}
        return SandboxReply(200, {"carriage_id": cid})

    def carriages_list(self, req: SandboxRequest) -> SandboxReply:
        body = req.json()
        wanted = int((body.get("filter") or {}).get("delivery_method_id") or 0)
        methods = []
        for w in self.warehouses:
            method = w["delivery_method_id"]
            if wanted and method != wanted:
                continue
            carriages = [{"id": cid, "status": c["status"], "postings_count": len(c["postings"]),
                          "available_actions": ["approve"] if c["status"] == "NEW" else []}
                         for cid, c in self.carriages.items() if c.get("method") == method]
            methods.append({"delivery_method_id": method, "delivery_method_name": "Ozon Логистика",
                            "warehouse_id": w["warehouse_id"], "warehouse_name": w["name"], "carriages": carriages,
                            "carriage_postings_count": sum(c["postings_count"] for c in carriages)})
        return SandboxReply(200, {"methods": methods, "has_next": False, "cursor": ""})

    def carriage_approve(self, req: SandboxRequest) -> SandboxReply:
        cid = int(req.json().get("carriage_id") or 0)
        carriage = self.carriages.get(cid)
        if carriage is None:
            raise ApiError(404, f"carriage {cid} not found", code="NOT_FOUND")
        if carriage["status"] != "NEW":
            raise ApiError(400, "carriage is already approved", code="CARRIAGE_ALREADY_APPROVED")
        carriage["status"] = "FORMED"
        for n in carriage["postings"]:
            p = self.postings[n]
            if p["status"] == "awaiting_deliver":
                self._move(p, "delivering", "posting_transferring_to_delivery")
                self.sales.append({"posting": p, "at": _now()})
                self.fates.handed_over(n)
        return SandboxReply(200, {})

    # -- hand-over documents: the acceptance act and the waybill of a shipping (carriage)

    def act_create(self, req: SandboxRequest) -> SandboxReply:
        """The legacy way to form a shipping: the delivery method's postings awaiting delivery in one
        carriage, approved at once; its documents are made next (check-status, then get-pdf)."""
        created = self.carriage_create(_inner(req, "/v1/carriage/create",
                                              {"delivery_method_id": req.json().get("delivery_method_id")}))
        cid = int(created.json["carriage_id"])
        self.carriage_approve(_inner(req, "/v1/carriage/approve", {"carriage_id": cid}))
        return SandboxReply(200, {"result": {"id": cid}})

    def _shipping(self, req: SandboxRequest) -> tuple[int, dict[str, Any]]:
        cid = int(req.json().get("id") or 0)
        carriage = self.carriages.get(cid)
        if carriage is None:
            raise ApiError(404, f"shipping {cid} not found", code="NOT_FOUND")
        return cid, carriage

    def act_check_status(self, req: SandboxRequest) -> SandboxReply:
        """`in_process` at the first check of an approved shipping, `ready` from the next (Ozon makes the
        documents in the background); a shipping not approved has none to make."""
        cid, carriage = self._shipping(req)
        if carriage["status"] == "NEW":
            raise ApiError(400, "shipping is not approved yet", code="CARRIAGE_NOT_APPROVED")
        carriage["checks"] = carriage.get("checks", 0) + 1
        status = "ready" if carriage["checks"] > 1 else "in_process"
        return SandboxReply(200, {"result": {"act_type": "act_of_acceptance", "added_to_act": list(carriage["postings"]),
                                             "removed_from_act": [], "status": status, "is_partial": False,
                                             "has_postings_for_next_carriage": False, "partial_num": 0}})

    def act_get_postings(self, req: SandboxRequest) -> SandboxReply:
        cid, carriage = self._shipping(req)
        out = []
        for n in carriage["postings"]:
            p = self.postings[n]
            prod = self.products[p["product_id"]]
            out.append({"id": cid, "posting_number": n, "status": p["status"], "multi_box_qty": 1, "seller_error": "",
                        "created_at": p["in_process_at"], "updated_at": p["in_process_at"],
                        "products": [{"name": prod["name"], "offer_id": prod["offer_id"],
                                      "price": str(p.get("price", "0")), "quantity": p["quantity"], "sku": prod["sku"]}]})
        return SandboxReply(200, {"result": out})

    def act_get_pdf(self, req: SandboxRequest) -> SandboxReply:
        """The acceptance act and the waybill of the shipping in one PDF (two pages), once check-status
        said ready."""
        cid, carriage = self._shipping(req)
        if carriage.get("checks", 0) < 2:
            raise ApiError(400, "documents are not ready yet: check the status first", code="ACT_NOT_READY")
        rows = [[n, self.products[self.postings[n]["product_id"]]["offer_id"], str(self.postings[n]["quantity"]), "1"]
                for n in carriage["postings"]]
        pdf = labels.pdf_document(f"Ozon shipping {cid}", str(cid), rows, ["Posting", "Offer", "Units", "Boxes"],
                                  pages=[f"Acceptance act, shipping {cid}", f"Waybill, shipping {cid}"])
        carriage["documents"] = carriage.get("documents", 0) + 1
        return SandboxReply(200, data=pdf, content_type="application/pdf",
                            headers={"Content-Disposition": f'attachment; filename="act-{cid}.pdf"'})

    def package_label(self, req: SandboxRequest) -> SandboxReply:
        numbers = req.json()["posting_number"]
        if not 1 <= len(numbers) <= 20:
            raise ApiError(400, "1..20 postings per request", code="INVALID_ARGUMENT")
        ready = ("awaiting_deliver", "delivering", "delivered")
        if any(self._posting(n)["status"] not in ready for n in numbers):
            raise ApiError(400, "The next postings aren't ready", code="POSTINGS_NOT_READY")
        n = numbers[0]
        p = self.postings[n]
        caption = [self.products[p["product_id"]]["offer_id"], p["warehouse_name"]]
        # one posting per page; several postings -> the first here, the rest concatenated as pages
        pdf = labels.pdf_label(n, 75, 120, caption)
        if len(numbers) > 1:
            pdf = _merge_pdfs([labels.pdf_label(x, 75, 120, [self.products[self.postings[x]["product_id"]]["offer_id"]])
                               for x in numbers])
        return SandboxReply(200, data=pdf, content_type="application/pdf",
                            headers={"Content-Disposition": f'attachment; filename="ticket-{n}.pdf"'})

    def returns_list(self, req: SandboxRequest) -> SandboxReply:
        """FBS returns by posting numbers or by the moment their status changed, `last_id` paging."""
        body = req.json()
        flt = body.get("filter") or {}
        limit = int(body.get("limit") or 0)
        if not 1 <= limit <= 500:
            raise ApiError(400, "limit must be 1..500", code="INVALID_ARGUMENT")
        numbers = set(flt.get("posting_numbers") or [])
        if len(numbers) > 50:
            raise ApiError(400, "no more than 50 posting_numbers", code="INVALID_ARGUMENT")
        moment = flt.get("visual_status_change_moment") or {}
        start = _parse(moment.get("time_from")) if moment.get("time_from") else None
        end = _parse(moment.get("time_to")) if moment.get("time_to") else None
        if flt.get("return_schema") not in (None, "", "FBS"):
            chosen: list[dict[str, Any]] = []
        else:
            chosen = [r for rid, r in sorted(self.returns.items()) if rid > int(body.get("last_id") or 0)
                      and (not numbers or r["posting_number"] in numbers)
                      and (start is None or r["at"] >= start) and (end is None or r["at"] <= end)]
        page = chosen[:limit]
        return SandboxReply(200, {"returns": [self._return_out(r) for r in page], "has_next": len(chosen) > limit})

    def _return_out(self, r: dict[str, Any]) -> dict[str, Any]:
        p = self.postings[r["posting_number"]]
        prod = self.products[p["product_id"]]
        price = {"currency_code": "RUB", "price": float(p["price"])}
        client = r["type"] == "ClientReturn"
        return {
            "id": r["id"], "company_id": 3058, "return_reason_name": r["reason"], "type": r["type"], "schema": "FBS",
            "order_id": p["order_id"], "order_number": p["order_number"], "posting_number": p["posting_number"],
            "product": {"sku": prod["sku"], "offer_id": prod["offer_id"], "name": prod["name"], "price": price,
                        "price_without_commission": price, "commission_percent": float(COMMISSION_RATIO * 100),
                        "commission": {"currency_code": "RUB", "price": float(_commission(p["price"]))},
                        "quantity": p["quantity"]},
            "visual": {"status": {"id": 3 if client else 2,
                                  "display_name": "В пути к продавцу",
                                  "sys_name": "MovingToSeller"},
                       "change_moment": _iso(r["at"])},
            "logistic": {"return_date": _iso(r["at"]), "barcode": f"ii{r['id']}"},
            "exemplars": [{"id": r["id"] * 10 + 1}],
            "additional_info": {"is_opened": client, "is_super_econom": False},
        }

    def realization(self, req: SandboxRequest) -> SandboxReply:
        body = req.json()
        month, year = int(body["month"]), int(body["year"])
        if not 1 <= month <= 12:
            raise ApiError(400, "month must be 1..12", code="INVALID_ARGUMENT")
        rows = []
        for i, sale in enumerate(s for s in self.sales if s["at"].month == month and s["at"].year == year):
            p = sale["posting"]
            prod = self.products[p["product_id"]]
            price = float(p["price"])
            ratio = float(COMMISSION_RATIO)
            commission = float(_commission(p["price"] * p["quantity"]))
            rows.append({
                "rowNumber": i + 1, "commission_ratio": ratio, "seller_price_per_instance": price,
                "item": {"offer_id": prod["offer_id"], "sku": prod["sku"], "barcode": prod["barcodes"][0] if prod["barcodes"] else "",
                         "name": prod["name"]},
                "delivery_commission": {"quantity": p["quantity"], "price_per_instance": price, "amount": price * p["quantity"],
                                        "commission": commission, "standard_fee": commission, "bonus": 0.0,
                                        "compensation": 0.0, "bank_coinvestment": 0.0, "stars": 0.0,
                                        "total": round(price * p["quantity"] - commission, 2)},
                "return_commission": None,
            })
            rows[-1].pop("return_commission")
        first = datetime(year, month, 1)
        last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
        return SandboxReply(200, {"result": {"header": {
            "number": f"R-{year}{month:02d}", "doc_date": last.date().isoformat(), "start_date": first.date().isoformat(),
            "stop_date": last.date().isoformat(), "contract_number": "ИР-000001", "contract_date": "2025-01-01",
            "currency_sys_name": "RUB", "payer_name": "ООО Интернет Решения", "payer_inn": "7704217370",
            "payer_kpp": "997750001", "receiver_name": "ИП Демо", "receiver_inn": "770000000000", "receiver_kpp": ""},
            "rows": rows}})

    # -- finance transactions

    def _operations(self) -> list[dict[str, Any]]:
        """Every finance operation: one per sale (goods, commission and delivery charged together, as
        Ozon's delivered-to-customer operation), then the injected ones."""
        ops = []
        for sale in self.sales:
            p = sale["posting"]
            amount = p["price"] * p["quantity"]
            op = {f: Decimal(0) for f in TOTALS_FIELDS}
            op.update(at=sale["at"], posting_number=p["posting_number"], type="orders", accruals_for_sale=amount,
                      sale_commission=-_commission(amount), processing_and_delivery=-DELIVERY_CHARGE,
                      posting=p)
            ops.append(op)
        return ops + self.injected_operations

    def _period(self, period: dict[str, Any]) -> tuple[datetime, datetime]:
        try:
            start = datetime.fromisoformat(str(period["from"]).replace("Z", "+00:00"))
            end = datetime.fromisoformat(str(period["to"]).replace("Z", "+00:00"))
        except (KeyError, ValueError):
            raise ApiError(400, "date.from and date.to are required", code="INVALID_ARGUMENT") from None
        start, end = (d if d.tzinfo else d.replace(tzinfo=UTC) for d in (start, end))
        if start > end:
            raise ApiError(400, "date.from is after date.to", code="INVALID_ARGUMENT")
        return start, end

    def _operation_shape(self, number: int, op: dict[str, Any]) -> dict[str, Any]:
        """One operation as /v3/finance/transaction/list shows it: the goods, the commission, the
        services charged (Ozon's names and negative prices) and the amount that is their sum."""
        p = op.get("posting")
        amount = sum((op[f] for f in TOTALS_FIELDS), Decimal(0))
        items: list[dict[str, Any]] = []
        services: list[dict[str, Any]] = []
        posting = {"delivery_schema": "", "order_date": "", "posting_number": op["posting_number"], "warehouse_id": 0}
        if p is not None:
            prod = self.products[p["product_id"]]
            items = [{"name": prod["name"], "sku": prod["sku"]} for _ in range(int(p["quantity"]))]
            services = [{"name": n, "price": float(-price)} for n, price in DELIVERY_SERVICES]
            posting.update(delivery_schema="FBS", order_date=p["in_process_at"].replace("T", " ").rstrip("Z"),
                           warehouse_id=p["warehouse_id"])
            kind, kind_name = "OperationAgentDeliveredToCustomer", "Доставка покупателю"
        else:
            services = [{"name": name, "price": float(op[f])} for f, name in INJECTED_SERVICES.items() if op[f]]
            kind, kind_name = "OperationCorrectionSeller", "Инвентаризация взаиморасчетов"
        return {"operation_id": 1_000_000 + number, "operation_type": kind, "operation_type_name": kind_name,
                "operation_date": op["at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
                "delivery_charge": 0.0, "return_delivery_charge": 0.0,
                "accruals_for_sale": float(op["accruals_for_sale"]), "sale_commission": float(op["sale_commission"]),
                "amount": float(amount), "type": op["type"], "posting": posting, "items": items,
                "services": services}

    def transaction_list(self, req: SandboxRequest) -> SandboxReply:
        """The operations of a period (at most a month) or of one posting, page by page."""
        body = req.json()
        flt = body.get("filter") or {}
        page, size = int(body.get("page") or 0), int(body.get("page_size") or 0)
        if page < 1 or not 1 <= size <= LIST_MAX_PAGE:
            raise ApiError(400, f"page must be >= 1 and page_size 1..{LIST_MAX_PAGE}", code="INVALID_ARGUMENT")
        kind = flt.get("transaction_type") or "all"
        if kind not in TRANSACTION_TYPES:
            raise ApiError(400, f"unknown transaction_type {kind!r}", code="INVALID_ARGUMENT")
        numbered = list(enumerate(self._operations()))
        number = flt.get("posting_number") or ""
        if number:
            chosen = [(i, op) for i, op in numbered if op["posting_number"] == number]
        else:
            start, end = self._period(flt.get("date") or {})
            if end - start > timedelta(days=LIST_MAX_DAYS):
                raise ApiError(400, "the period is longer than one month", code="INVALID_ARGUMENT")
            chosen = [(i, op) for i, op in numbered if start <= op["at"] <= end]
        shapes = [self._operation_shape(i, op) for i, op in chosen if kind == "all" or op["type"] == kind]
        wanted = set(flt.get("operation_type") or ())
        if wanted:
            shapes = [s for s in shapes if s["operation_type"] in wanted]
        pages = (len(shapes) + size - 1) // size
        return SandboxReply(200, {"result": {"operations": shapes[(page - 1) * size:page * size],
                                             "page_count": pages, "row_count": len(shapes)}})

    def transaction_totals(self, req: SandboxRequest) -> SandboxReply:
        """The sums of the operations of a period (`date.from..to`, UTC) or of one posting."""
        body = req.json()
        kind = body.get("transaction_type") or "all"
        if kind not in TRANSACTION_TYPES:
            raise ApiError(400, f"unknown transaction_type {kind!r}", code="INVALID_ARGUMENT")
        number = body.get("posting_number") or ""
        if number:
            chosen = [op for op in self._operations() if op["posting_number"] == number]
        else:
            start, end = self._period(body.get("date") or {})
            chosen = [op for op in self._operations() if start <= op["at"] <= end]
        chosen = [op for op in chosen if kind == "all" or op["type"] == kind]
        return SandboxReply(200, {"result": {f: float(sum((op[f] for op in chosen), Decimal(0)))
                                             for f in TOTALS_FIELDS}})


def _inner(req: SandboxRequest, path: str, body: dict[str, Any]) -> SandboxRequest:
    """The request one handler makes of another inside the sandbox (act/create forms and approves a carriage)."""
    return dataclasses.replace(req, path=path, template=path, spec_path=path, body=json.dumps(body).encode())


def _merge_pdfs(parts: list[bytes]) -> bytes:
    """Several one-page PDFs as one document (pypdfium2 when present, else the first page only)."""
    try:
        import pypdfium2 as pdfium  # lazy: optional (the [edge] extra); without it the first page only
    except ImportError:
        return parts[0]
    out = pdfium.PdfDocument.new()
    for part in parts:
        src = pdfium.PdfDocument(part)
        out.import_pages(src)
    buf = io.BytesIO()
    out.save(buf)
    return buf.getvalue()
