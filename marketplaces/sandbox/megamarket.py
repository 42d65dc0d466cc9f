"""The Megamarket merchant API sandbox: offers (stocks, manual prices), cards, FBS shipments lot by lot,
packing with box codes, PDF stickers, shipping, and the order/new and order/cancel pushes.

Owns: the state of one seeded merchant (one store = one warehouse / shipping point) answering the
v1 orderService/offerService paths in the envelope Megamarket uses (`{"meta":{},"data":{"token":…}}`
in, `{"success":1|0,"meta":{},"data":{},"error":[…]}` out, HTTP 200 even when the operation failed),
the per-lot status machine NEW -> CONFIRMED -> PACKED -> SHIPPED (rejections MERCHANT_CANCELED with
CONFIRMATION_REJECT / LATE_REJECT — some lots of a shipment or all, a shipment with every lot cancelled
is cancelled; buyer cancels CUSTOMER_CANCELED; each shipment's live lots per offer in the state's
`order_units`, the lot-moving calls per shipment in `order_calls`), box codes
`merchantId*shipmentId*boxIndex`, Честный ЗНАК `digitalMark` where a lot needs it, the 5 requests/s
limit, the bot User-Agent block, and pushing order/new and order/cancel to a configured URL
(`POST /_sandbox/x/push {"url", "duplicates", "fail_first", "max_attempts"}`), retried while the answer is not
`success: 1`.

Megamarket publishes no spec: requests and responses are held to marketsync's own OpenAPI document
written from ../shared/specs/megamarket/README.md (`megamarket_schemas/merchant-api.yaml`). Never
imports the adapter.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from marketplaces import spec
from marketplaces.sandbox.core import ApiError, Route, SandboxApp, SandboxLimit, SandboxReply, SandboxRequest
from marketplaces.sandbox.labels import pdf_label
from marketplaces.sandbox.push_delivery import PushDelivery
from marketplaces.sandbox.seed import demo_items

MARKETPLACE = "megamarket"
SCHEMAS = Path(__file__).resolve().parent / "megamarket_schemas"
ORDERS = "/api/market/v1/orderService"
OFFERS = "/api/merchantIntegration/v1/offerService"
CARDS = "/api/merchantIntegration/assortment/v1"
# User-Agents Megamarket treats as bots (README 3: "python-requests/x.y" is the example given)
BOT_AGENTS = re.compile(r"^(python-requests|python-httpx|python-urllib|aiohttp|go-http-client|okhttp|java/|"
                        r"curl|wget|guzzlehttp|axios|node-fetch|libwww-perl)", re.IGNORECASE)
STICKER_MM = (100.0, 70.0)  # landscape: the box code (~220 modules) stays printable at 203 dpi


def register_schemas() -> None:
    """Make `marketplaces.spec.load_specs("megamarket")` (and "megamarket_push") use our documents."""
    for name, file in (("megamarket", "merchant-api.yaml"), ("megamarket_push", "push-api.yaml")):
        path = str(SCHEMAS / file)
        if spec.SPEC_FILES.get(name) != [path]:
            spec.register_spec_files(name, [path])


def envelope(data: dict[str, Any] | None = None) -> SandboxReply:
    return SandboxReply(200, {"success": 1, "meta": {}, "data": data if data is not None else {}})


def failure(code: str, message: str, *, status: int = 200, **where: Any) -> SandboxReply:
    """Megamarket's failure: HTTP 200 (usually) with success 0 and the error list."""
    return SandboxReply(status, {"success": 0, "meta": {}, "data": {},
                                 "error": [{"code": code, "message": message, **where}]})


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="seconds")


@dataclass
class Lot:
    item_index: int
    offer_id: str
    goods_id: str
    name: str
    category: str
    price: int
    marked: bool
    status: str = "NEW"
    sub_status: str | None = None
    box_index: int | None = None
    box_code: str = ""
    digital_mark: str = ""
    events: list[dict[str, str]] = field(default_factory=list)


@dataclass
class MmShipment:
    shipment_id: str
    created: datetime
    lots: list[Lot]
    order_code: str = ""
    moves: list[str] = field(default_factory=list)  # "itemIndex:STATUS" for every lot move


class MegamarketSandbox(SandboxApp):
    """The Megamarket sandbox; see the module docstring."""

    marketplace = MARKETPLACE
    merchant_id = 5001234
    shipping_point = 1001
    account_limit = SandboxLimit(rate=5.0, burst=5.0)  # <= 5 requests/s per seller (README 3)

    def __init__(self, **options: Any) -> None:
        register_schemas()
        super().__init__(**options)
        self.push = PushDelivery(_push_accepted, time_scale=self.time_scale, user_agent="Megamarket-Push-Sandbox")

    # ------------------------------------------------------------------ identity

    def account_options(self) -> dict[str, Any]:
        """The AccountConfig.options an adapter of this sandbox needs (announced by `sandbox serve`)."""
        return {"merchant_id": self.merchant_id, "shipping_point": self.shipping_point}

    def _push(self, path: str, payload: dict[str, Any], key: str) -> None:
        """Queue a push, held to its spec first (megamarket_push): a violation is a sandbox bug."""
        if self.validate and self.push.target.url:
            body = json.dumps(payload, ensure_ascii=False).encode()
            for err in spec.load_specs("megamarket_push").request_errors("POST", path, body=body):
                self.spec_violations.append(f"push {path}: {err}"[:1000])
        self.push.send(path, payload, key)

    def make_credentials(self) -> dict[str, str]:
        # Megamarket's token travels in the body (`data.token`); the adapter also needs the merchant id
        return {"token": f"mm-sandbox-{self.rng_seed:04d}-7c1e2f80-4d2b-4a7e-9d55-0a1b2c3d4e5f"}

    def check_auth(self, req: SandboxRequest) -> SandboxReply | None:
        agent = req.headers.get("user-agent", "")
        if not agent or BOT_AGENTS.match(agent):
            return failure("ACCESS_DENIED", "request blocked: automated User-Agent", status=403)
        try:
            token = (json.loads(req.body or b"{}").get("data") or {}).get("token")
        except (ValueError, AttributeError):
            return None  # malformed bodies are refused by validation
        if not token:
            return failure("AUTH_ERROR", "data.token is missing")
        if token != self.credentials["token"]:
            return failure("AUTH_ERROR", "token is invalid")
        return None

    def error_reply(self, status: int, message: str, *, code: str = "", template: str = "") -> SandboxReply:
        if status == 400:
            return failure("VALIDATION_ERROR", message)  # Megamarket: HTTP 200, success 0
        if status == 404:
            return failure("NOT_FOUND", message, status=404)
        return failure(code or f"HTTP_{status}", message, status=status)

    def throttle_reply(self, retry_after_s: float, group: str) -> SandboxReply:
        wait = max(1, int(retry_after_s + 0.999))
        reply = failure("TOO_MANY_REQUESTS", "more than 5 requests per second", status=429)
        reply.headers["Retry-After"] = str(wait)
        return reply

    def own_representation(self, req: SandboxRequest) -> bytes:
        """A lot's `itemIndex` echoed the way `order/get` and the order/new push give it (a string of
        digits) is taken as the number the confirm/reject/packing examples document: Megamarket accepts
        its own representation back. Anything else is left for validation to judge."""
        if not req.template.endswith(("/order/confirm", "/order/reject", "/order/packing")) or not req.body:
            return req.body
        try:
            payload = json.loads(req.body)
            changed = False
            for shipment in payload["data"]["shipments"]:
                for item in shipment["items"]:
                    index = item.get("itemIndex")
                    if isinstance(index, str) and index.isascii() and index.isdigit():
                        item["itemIndex"] = int(index)
                        changed = True
        except (ValueError, KeyError, TypeError, AttributeError):
            return req.body  # malformed: validation says why
        return json.dumps(payload, ensure_ascii=False).encode() if changed else req.body

    # ------------------------------------------------------------------ state

    def seed_catalog(self, n: int) -> None:
        self.items = {it.article: it for it in demo_items(n, self.rng_seed)} if n else {}
        self.cards: dict[str, dict[str, Any]] = {
            it.article: {"offerId": it.article, "goodsId": f"{100000000000 + it.index}", "name": it.name,
                         "brand": "MarketSync Demo", "barcodes": [it.barcode], "categoryId": str(it.subject_id),
                         "categoryName": it.category, "marked": it.marked}
            for it in self.items.values()}
        self.prices: dict[str, int] = {a: int(it.price) for a, it in self.items.items()}
        self.stocks: dict[str, int] = {a: it.stock for a, it in self.items.items()}
        self.stock_writes = 0
        self.shipments: dict[str, MmShipment] = {}
        self._next_shipment = self.first_id(9300000000001, 100_000_000)

    def make_orders(self, count: int) -> list[str]:
        """New shipments (one lot per unit) for cards with published stock, never more units than that
        stock (each unit ordered comes off it); pushes order/new. A late buyer (fault `late_buyer_rate`)
        orders a listed card whatever its stock."""
        made: list[MmShipment] = []
        now = datetime.now(UTC)
        for _ in range(count):
            late = self.late_buyer()
            in_stock = [a for a in sorted(self.cards) if late or self.stocks.get(a, 0) > 0]
            if not in_stock:
                break
            sid = str(self._next_shipment)
            self._next_shipment += 1
            n = int(sid[-4:])
            lots: list[Lot] = []
            picks = [(in_stock[(n * 7) % len(in_stock)], 1 + (n % 3 == 0))]
            if n % 4 == 0:
                picks.append((in_stock[(n * 7 + 3) % len(in_stock)], 1))
            for article, wanted in picks:
                card = self.cards[article]
                units = wanted if late else min(wanted, self.stocks.get(article, 0))
                self.stocks[article] = max(0, self.stocks.get(article, 0) - units)
                for _ in range(units):  # one lot per unit
                    lots.append(Lot(len(lots) + 1, article, card["goodsId"], card["name"], card["categoryName"],
                                    self.prices.get(article, 990), bool(card["marked"])))
            shipment = MmShipment(sid, now, lots)
            self.shipments[sid] = shipment
            made.append(shipment)
        for s in made:
            self._push("/order/new", self._new_push(s), f"new:{s.shipment_id}")
        return [s.shipment_id for s in made]

    def _new_push(self, s: MmShipment) -> dict[str, Any]:
        return {"meta": {}, "data": {"merchantId": self.merchant_id, "shipments": [{
            "shipmentId": s.shipment_id, "shipmentDate": _iso(s.created + timedelta(days=1)),
            "handover": {"packingDate": _iso(s.created + timedelta(hours=20)),
                         "reserveExpirationDate": _iso(s.created + timedelta(days=4)),
                         "outletId": "", "serviceScheme": "COLLECT_BY_CUSTOMER", "depositedAmount": 0,
                         "deliveryInterval": {"dateFrom": _iso(s.created + timedelta(days=2)),
                                              "dateTo": _iso(s.created + timedelta(days=3))},
                         "deliveryId": int(s.shipment_id[-6:])},
            "customer": {"customerFullName": "", "phone": "", "email": "", "address": {"source": ""}},
            "flags": [],
            "items": [{"itemIndex": str(lot.item_index), "goodsId": lot.goods_id, "offerId": lot.offer_id,
                       "itemName": lot.name, "price": lot.price, "finalPrice": lot.price, "discounts": [],
                       "quantity": 1, "taxRate": "20", "reservationPerformed": True,
                       "isDigitalMarkRequired": lot.marked} for lot in s.lots]}]}}

    def cancel_by_buyer(self, ids: list[str]) -> list[str]:
        done = []
        for sid in ids:
            s = self.shipments.get(str(sid))
            if s is None:
                continue
            cancelled = [lot for lot in s.lots if lot.status in ("NEW", "CONFIRMED", "PACKED")]
            if not cancelled:
                continue
            for lot in cancelled:
                self._move(s, lot, "CUSTOMER_CANCELED", None)
            done.append(s.shipment_id)
            self._push("/order/cancel", {"meta": {}, "data": {"merchantId": self.merchant_id, "shipments": [{
                "shipmentId": s.shipment_id,
                "items": [{"itemIndex": str(lot.item_index), "goodsId": lot.goods_id, "offerId": lot.offer_id}
                          for lot in cancelled]}]}}, f"cancel:{s.shipment_id}")
        return done

    def control(self, name: str, body: dict[str, Any]) -> Any:
        """`/_sandbox/x/push {"url", "duplicates", "fail_first", "max_attempts"}` (url + "/order/new", "/order/cancel"),
        `/_sandbox/x/cancel {"orders": [shipmentIds]}` (the buyer cancels), `/_sandbox/x/push_wait`,
        `/_sandbox/x/deliver {"orders": [shipmentIds]}` (Megamarket delivers what was shipped)."""
        if name == "push":
            t = self.push.configure(body)
            return {"url": t.url, "duplicates": t.duplicates, "fail_first": t.fail_first,
                    "max_attempts": t.max_attempts}
        if name == "cancel":
            return {"cancelled": self.cancel_by_buyer([str(x) for x in body.get("orders", [])])}
        if name == "push_wait":
            return {"idle": self.push.wait_idle(float(body.get("timeout", 10)))}
        if name == "deliver":  # the buyer received the shipped lots: SHIPPED -> DELIVERED (Megamarket's own move)
            wanted = {str(x) for x in body.get("orders") or []}
            done = []
            for sid, sh in sorted(self.shipments.items()):
                lots = [lot for lot in sh.lots if lot.status == "SHIPPED"]
                if (wanted and sid not in wanted) or not lots:
                    continue
                for lot in lots:
                    self._move(sh, lot, "DELIVERED", None)
                done.append(sid)
            return {"delivered": done}
        if name == "identity":
            return {"merchantId": self.merchant_id, "shippingPoint": self.shipping_point}
        raise ApiError(404, f"no sandbox control {name!r}")

    def stocks_view(self) -> dict[str, Any]:
        return dict(self.stocks)

    def snapshot(self) -> dict[str, Any]:
        return {
            "stocks": self.stocks_view(),
            "prices": dict(self.prices),
            "orders": {sid: _shipment_status(s) for sid, s in self.shipments.items()},
            "lots": {sid: {str(lot.item_index): lot.status for lot in s.lots} for sid, s in self.shipments.items()},
            # what each shipment still holds (its lots not cancelled), per offer: what the buyer gets
            "order_units": {sid: _live_units(s) for sid, s in self.shipments.items()},
            "order_moves": {sid: list(s.moves) for sid, s in self.shipments.items()},
            "stock_writes": self.stock_writes,
            "pushes": self.push.summary(),
            "merchantId": self.merchant_id, "shippingPoint": self.shipping_point,
        }

    def _move(self, s: MmShipment, lot: Lot, status: str, sub: str | None) -> None:
        lot.status, lot.sub_status = status, sub
        now = _iso(datetime.now(UTC))
        lot.events.append({"eventDate": now, "eventName": "STATUS_CHANGED", "eventValue": status})
        s.moves.append(f"{lot.item_index}:{status}")

    # ------------------------------------------------------------------ routes

    def routes(self) -> list[Route]:
        table = [
            (f"{OFFERS}/stock/update", self.stock_update),
            (f"{OFFERS}/manualPrice/save", self.price_save),
            (f"{CARDS}/card/get", self.card_get),
            (f"{CARDS}/stock/getByOfferId", self.stock_get),
            (f"{CARDS}/price/getByOfferId", self.price_get),
            (f"{ORDERS}/order/search", self.order_search),
            (f"{ORDERS}/order/get", self.order_get),
            (f"{ORDERS}/order/confirm", self.order_confirm),
            (f"{ORDERS}/order/reject", self.order_reject),
            (f"{ORDERS}/order/packing", self.order_packing),
            (f"{ORDERS}/sticker/print", self.sticker_print),
            (f"{ORDERS}/order/shipping", self.order_shipping),
        ]
        # the routes that move lots, counted per shipment in `order_calls` (a reject takes a whole shipment
        # or only some of its lots: the lots' own moves say which)
        actions = {"order/confirm": "confirm", "order/reject": "reject", "order/packing": "assemble",
                   "order/shipping": "ship"}
        return [Route("POST", path, self._adapt(fn), action=actions.get(path.split(f"{ORDERS}/")[-1], ""),
                      moves=_shipments_named) for path, fn in table]

    def _adapt(self, fn: Any) -> Any:
        def handler(req: SandboxRequest) -> SandboxReply:
            return fn(req.json()["data"])

        handler.__name__ = fn.__name__
        return handler

    # ------------------------------------------------------------------ offers and cards

    def stock_update(self, data: dict[str, Any]) -> SandboxReply:
        unknown = [s["offerId"] for s in data["stocks"] if s["offerId"] not in self.cards]
        if unknown:
            return failure("OFFER_NOT_FOUND", f"unknown offers: {', '.join(unknown[:5])}")
        for s in data["stocks"]:
            self.note_stock_write(s["offerId"], int(s["quantity"]), self.stocks.get(s["offerId"]))
            self.stocks[s["offerId"]] = int(s["quantity"])
        self.stock_writes += len(data["stocks"])
        return envelope()

    def price_save(self, data: dict[str, Any]) -> SandboxReply:
        saved = 0
        warnings = []
        for p in data["prices"]:
            if p["offerId"] not in self.cards:
                warnings.append({"offerId": p["offerId"], "message": "offer not found"})
                continue
            if p["isDeleted"]:
                self.prices[p["offerId"]] = int(self.items[p["offerId"]].price) if p["offerId"] in self.items else 0
            else:
                self.prices[p["offerId"]] = int(p["price"])
            saved += 1
        return envelope({"savedPrices": saved, "warnings": warnings})

    def card_get(self, data: dict[str, Any]) -> SandboxReply:
        limit = int(data.get("limit") or 100)
        keys = sorted(self.cards)
        if data.get("offerIds"):
            keys = [k for k in data["offerIds"] if k in self.cards]
        after = data.get("searchAfter") or ""
        page = [k for k in keys if k > after][:limit]
        cards = [{k: v for k, v in self.cards[a].items() if k != "marked"} | {"price": self.prices.get(a, 0),
                                                                              "isActive": self.stocks.get(a, 0) > 0}
                 for a in page]
        more = len(page) == limit and any(k > page[-1] for k in keys)
        return envelope({"cards": cards, "searchAfter": page[-1] if more else None})

    def _location(self, data: dict[str, Any]) -> SandboxReply | None:
        if "locationId" in data and int(data["locationId"]) != self.shipping_point:
            return failure("LOCATION_NOT_FOUND", f"the store's warehouse is {self.shipping_point}")
        return None

    def stock_get(self, data: dict[str, Any]) -> SandboxReply:
        """The stocks of the offers asked for at the store's one warehouse (unknown offers: left out)."""
        if (r := self._location(data)) is not None:
            return r
        self.note_stock_read("stock/getByOfferId", data["offerIds"])
        return envelope({"stocks": [{"offerId": o, "locationId": self.shipping_point, "quantity": self.stocks.get(o, 0)}
                                    for o in data["offerIds"] if o in self.cards]})

    def price_get(self, data: dict[str, Any]) -> SandboxReply:
        """The prices of the offers asked for at the store's one warehouse (unknown offers: left out)."""
        if (r := self._location(data)) is not None:
            return r
        return envelope({"prices": [{"offerId": o, "locationId": self.shipping_point, "price": self.prices[o]}
                                    for o in data["offerIds"] if o in self.cards and self.prices.get(o, 0) >= 1]})

    # ------------------------------------------------------------------ orders

    def order_search(self, data: dict[str, Any]) -> SandboxReply:
        d_from = _parse(data.get("dateFrom"), datetime.min.replace(tzinfo=UTC))
        d_to = _parse(data.get("dateTo"), datetime.max.replace(tzinfo=UTC))
        statuses = set(data.get("statuses") or [])
        count = int(data.get("count") or 100)
        ids = [sid for sid, s in sorted(self.shipments.items())
               if d_from <= s.created <= d_to and (not statuses or any(lot.status in statuses for lot in s.lots))]
        return envelope({"shipments": ids[:count]})

    def order_get(self, data: dict[str, Any]) -> SandboxReply:
        out = []
        for sid in data["shipments"]:
            s = self.shipments.get(sid)
            if s is None:
                continue
            out.append({
                "shipmentId": s.shipment_id, "orderCode": s.order_code or None,
                "confirmedTimeLimit": _iso(s.created + timedelta(hours=2)),
                "packingTimeLimit": _iso(s.created + timedelta(hours=20)),
                "shippingTimeLimit": _iso(s.created + timedelta(days=1)),
                "shipmentDateFrom": _iso(s.created + timedelta(days=1)),
                "shipmentDateTo": _iso(s.created + timedelta(days=1, hours=8)),
                "creationDate": _iso(s.created), "deliveryId": int(s.shipment_id[-6:]),
                "shippingPoint": self.shipping_point, "serviceScheme": "COLLECT_BY_CUSTOMER", "depositedAmount": 0,
                "customerFullName": "", "customerAddress": "",
                "items": [{"itemIndex": str(lot.item_index), "status": lot.status, "subStatus": lot.sub_status,
                           "price": lot.price, "finalPrice": lot.price, "discounts": [], "quantity": 1,
                           "offerId": lot.offer_id, "goodsId": lot.goods_id,
                           "goodsData": {"name": lot.name, "categoryName": lot.category},
                           "boxIndex": lot.box_index, "isDigitalMarkRequired": lot.marked,
                           "events": lot.events} for lot in s.lots]})
        return envelope({"shipments": out})

    def _lots(self, shipment: dict[str, Any]) -> tuple[MmShipment, list[Lot]] | SandboxReply:
        s = self.shipments.get(shipment["shipmentId"])
        if s is None:
            return failure("SHIPMENT_NOT_FOUND", "shipment not found", shipmentId=shipment["shipmentId"])
        lots = []
        for ref in shipment["items"]:
            idx = int(ref["itemIndex"])
            lot = next((x for x in s.lots if x.item_index == idx), None)
            if lot is None or ("offerId" in ref and ref["offerId"] != lot.offer_id):
                return failure("ITEM_NOT_FOUND", "no such lot in the shipment", shipmentId=s.shipment_id,
                               itemIndex=idx)
            lots.append(lot)
        return s, lots

    def _each(self, shipments: list[dict[str, Any]], allowed: set[str]) -> list[tuple[MmShipment, Lot, dict]] | SandboxReply:
        """All (shipment, lot, ref) of a request, or the failure of the first that may not move."""
        out = []
        for sh in shipments:
            found = self._lots(sh)
            if isinstance(found, SandboxReply):
                return found
            s, lots = found
            for lot, ref in zip(lots, sh["items"], strict=True):
                if lot.status not in allowed:
                    return failure("INVALID_STATUS", f"lot is {lot.status}", shipmentId=s.shipment_id,
                                   itemIndex=lot.item_index)
                out.append((s, lot, ref))
        return out

    def order_confirm(self, data: dict[str, Any]) -> SandboxReply:
        moves = self._each(data["shipments"], {"NEW"})
        if isinstance(moves, SandboxReply):
            return moves
        for sh in data["shipments"]:
            if sh.get("orderCode"):
                self.shipments[sh["shipmentId"]].order_code = sh["orderCode"]
        for s, lot, _ in moves:
            self._move(s, lot, "CONFIRMED", None)
        return envelope({"result": 1})

    def order_reject(self, data: dict[str, Any]) -> SandboxReply:
        moves = self._each(data["shipments"], {"NEW", "CONFIRMED", "PACKED"})
        if isinstance(moves, SandboxReply):
            return moves
        for s, lot, _ in moves:
            self._move(s, lot, "MERCHANT_CANCELED", "CONFIRMATION_REJECT" if lot.status == "NEW" else "LATE_REJECT")
        return envelope({"result": 1})

    def order_packing(self, data: dict[str, Any]) -> SandboxReply:
        moves = self._each(data["shipments"], {"CONFIRMED", "PACKED"})
        if isinstance(moves, SandboxReply):
            return moves
        for s, lot, ref in moves:
            for box in ref["boxes"]:
                expected = f"{self.merchant_id}*{s.shipment_id}*{box['boxIndex']}"
                if box["boxCode"] != expected:
                    return failure("INVALID_BOX_CODE", f"box code must be {expected}", shipmentId=s.shipment_id,
                                   itemIndex=lot.item_index, boxCode=box["boxCode"])
            if lot.marked and not ref.get("digitalMark"):
                return failure("DIGITAL_MARK_REQUIRED", "this lot needs its Честный ЗНАК code",
                               shipmentId=s.shipment_id, itemIndex=lot.item_index)
        for s, lot, ref in moves:
            lot.box_index = int(ref["boxes"][0]["boxIndex"])
            lot.box_code = ref["boxes"][0]["boxCode"]
            lot.digital_mark = ref.get("digitalMark", "")
            if lot.status != "PACKED":
                self._move(s, lot, "PACKED", None)
        return envelope({"result": 1})

    def sticker_print(self, data: dict[str, Any]) -> SandboxReply:
        s = self.shipments.get(data["shipmentId"])
        if s is None:
            return failure("SHIPMENT_NOT_FOUND", "shipment not found", shipmentId=data["shipmentId"])
        packed = {lot.box_code for lot in s.lots if lot.status in ("PACKED", "SHIPPED") and lot.box_code}
        wanted = list(data["boxCodes"])
        missing = [c for c in wanted if c not in packed]
        if missing:
            return failure("BOX_NOT_FOUND", f"boxes not packed: {', '.join(missing)}", shipmentId=s.shipment_id)
        # the seller's order number when it gave one; no line at all otherwise (never a "-" in its place)
        caption = [f"Shipment {s.shipment_id}", *([f"Order {s.order_code}"] if s.order_code else []),
                   f"Boxes: {len(wanted)}"]
        pdf = pdf_label(wanted[0], STICKER_MM[0], STICKER_MM[1], caption)
        if data.get("printAsPdf"):
            return SandboxReply(200, data=pdf, content_type="application/pdf")
        return envelope({"stickerPdfBase64": base64.b64encode(pdf).decode()})

    def order_shipping(self, data: dict[str, Any]) -> SandboxReply:
        for sh in data["shipments"]:
            s = self.shipments.get(sh["shipmentId"])
            if s is None:
                return failure("SHIPMENT_NOT_FOUND", "shipment not found", shipmentId=sh["shipmentId"])
            if int(sh["shipping"]["shippingPoint"]) != self.shipping_point:
                return failure("INVALID_SHIPPING_POINT", f"shipping point is {self.shipping_point}",
                               shipmentId=s.shipment_id)
            codes = {b["boxCode"] for b in sh["boxes"]}
            lots = [lot for lot in s.lots if lot.box_code in codes]
            if not lots or any(lot.status != "PACKED" for lot in lots):
                return failure("INVALID_STATUS", "only packed boxes can be shipped", shipmentId=s.shipment_id)
        for sh in data["shipments"]:
            s = self.shipments[sh["shipmentId"]]
            codes = {b["boxCode"] for b in sh["boxes"]}
            for lot in s.lots:
                if lot.box_code in codes:
                    self._move(s, lot, "SHIPPED", None)
            self.fates.handed_over(s.shipment_id)
        return envelope({"result": 1})

    def apply_fate(self, oid: str, step: str) -> None:
        """The shipped lots move on (README §6): delivered `DELIVERED`; cancelled on the way, not accepted,
        or refused by the buyer at pick-up (fate "returned": Megamarket's status model has no return after
        delivery) `CUSTOMER_CANCELED` — the parcel comes back to the seller."""
        s = self.shipments.get(oid)
        if s is None:
            return
        fate = self.fates.drawn.get(oid, "")
        if step == "delivered" and fate == "returned":
            return
        target = "DELIVERED" if step == "delivered" else "CUSTOMER_CANCELED"
        for lot in s.lots:
            if lot.status == "SHIPPED":
                self._move(s, lot, target, None)


def _shipments_named(req: SandboxRequest) -> list[str]:
    return [str(sh["shipmentId"]) for sh in json.loads(req.body)["data"]["shipments"]]


def _live_units(s: MmShipment) -> dict[str, int]:
    out: dict[str, int] = {}
    for lot in s.lots:  # a lot the buyer cancelled after it shipped went out all the same
        if not lot.status.endswith("CANCELED") or any(e["eventValue"] == "SHIPPED" for e in lot.events):
            out[lot.offer_id] = out.get(lot.offer_id, 0) + 1
    return out


def _push_accepted(status: int, body: bytes) -> bool:
    if status != 200:
        return False
    try:
        return json.loads(body).get("success") == 1
    except (ValueError, AttributeError):
        return False


def _parse(value: str | None, default: datetime) -> datetime:
    if not value:
        return default
    ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def _shipment_status(s: MmShipment) -> str:
    """One word for the shipment (the sandbox state's "orders"): the lots' status when they agree,
    else the furthest-behind live lot's status."""
    live = [lot.status for lot in s.lots if not lot.status.endswith("CANCELED")]
    if not live:
        return s.lots[0].status
    order = ["NEW", "CONFIRMED", "PACKED", "SHIPPED", "DELIVERED"]
    return min(live, key=lambda st: order.index(st) if st in order else 0)
