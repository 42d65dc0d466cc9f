"""The Megamarket adapter: the common marketplace calls as merchant API (v1) requests, and its pushes.

Owns: the request envelope `{"meta": {}, "data": {"token": …}}` (the token travels in the body),
the answer check (`success == 1` is the only success: HTTP 200 can still be a failure), the 5
requests/s pace and the <= 300 items per stock/price request (from `endpoints/megamarket.toml`), an
explicit non-library User-Agent (Megamarket blocks default library agents), `manualPrice/save` always
with `isDeleted: false`, FBS shipments lot by lot (one unit per lot, each with its own status), box
codes `merchantId*shipmentId*N`, and parsing the order/new and order/cancel pushes (`parse_push`).

Account options: `merchant_id` (required: box codes and push checks), `shipping_point` (the store's
warehouse id, required to ship), `warehouse_id` (defaults to shipping_point).
Credentials: {"token": "<the cabinet's API token>"}.

Stocks and prices are read back through the Assortment API (`stock/getByOfferId`, `price/getByOfferId`,
at most 100 offers a request, the store's shipping point as `locationId`). Not offered by Megamarket's
API (answered with `NotSupported`, the reason in Russian for the seller; the list with its sources is in
marketplaces/README.md): hide/unhide, the realization/commission report, FBO stock, the hand-over act, card
creation here
(the Assortment API's card/save bodies are not verifiable).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

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
    SaleFees,
    StatusChange,
    StockKey,
    StockLevel,
    Uncertain,
    Warehouse,
    only_keys,
)
from marketplaces.endpoints import load_endpoint_map
from marketplaces.http import HttpClient, batches, in_parallel

NAME = "megamarket"
USER_AGENT = "marketsync/0.1 (seller integration; +https://github.com/marketsync)"
LOT_STATUSES = {"NEW", "PENDING", "PENDING_CONFIRMATION", "CONFIRMED", "PENDING_PACKING", "PACKED",
                "PENDING_SHIPPING", "SHIPPED", "PACKING_EXPIRED", "SHIPPING_EXPIRED", "DELIVERED",
                "MERCHANT_CANCELED", "CUSTOMER_CANCELED"}
PROGRESS = ["NEW", "PENDING_CONFIRMATION", "CONFIRMED", "PENDING_PACKING", "PACKED", "PENDING_SHIPPING",
            "SHIPPED", "DELIVERED"]
REJECT_REASONS = {"OUT_OF_STOCK", "INCORRECT_PRICE", "INCORRECT_PRODUCT", "INCORRECT_SPEC", "TWICE_ORDER",
                  "NOT_TIME_FOR_SHIPPING", "FRAUD_ORDER"}
STICKER_MM = (100.0, 70.0)  # landscape: the box code (~220 modules) stays printable at 203 dpi
ORDER_CODE = r"[A-Za-z0-9_-]{1,64}"  # what orderCode may hold (README §5: Latin letters, digits, _ and -)
# What Megamarket's merchant API does not offer, in the seller's words (sources: marketplaces/README.md)
NO_REPORT = ("Мегамаркет не отдаёт отчёт о реализации и комиссиях через API: скачайте его в личном кабинете "
             "(«Отчёты и аналитика») и сверьте вручную.")
NO_HIDE = ("У Мегамаркета нет в API скрытия и возврата карточки на витрину: чтобы снять товар с продажи, "
           "передайте остаток 0 (или выключите его в фиде).")
NO_ACT = ("Мегамаркет не отдаёт через API акт приёма-передачи: курьер сверяет посылки по их этикеткам, а акт, "
          "если он нужен, печатается в личном кабинете («Заказы» → «Отгрузки»). Наш лист передачи печатается на "
          "площадке как обычно.")
NO_FEES = ("Мегамаркет не отдаёт через API комиссии и тарифы (README §7): для юнит-экономики берутся "
           "проценты и суммы из настроек.")
NO_FBO = "Мегамаркет не отдаёт через API остатки на своих складах (FBO): в этом кабинете только FBS."


def shipment_status(lot_statuses: Sequence[str]) -> str:
    """One status for a shipment from its lots': the furthest-behind live lot (a shipment is as far as its
    slowest unit), or the cancel status when every lot is cancelled."""
    live = [s for s in lot_statuses if not s.endswith("CANCELED")]
    if not live:
        return lot_statuses[0] if lot_statuses else "UNKNOWN"
    return min(live, key=lambda s: PROGRESS.index(s) if s in PROGRESS else -1)


class MegamarketAdapter:
    """One Megamarket store of the seller; see the module docstring."""

    name: Literal["megamarket"] = "megamarket"

    def __init__(self, config: AccountConfig) -> None:
        self.config = config
        self.account = config.name
        opts = config.options
        try:
            self.merchant_id = int(opts["merchant_id"])
        except (KeyError, TypeError, ValueError):
            raise MarketplaceError("option merchant_id (a number) is required", account=config.name) from None
        self.shipping_point = int(opts["shipping_point"]) if opts.get("shipping_point") else None
        self.warehouse_id = str(opts.get("warehouse_id") or self.shipping_point or "")
        self.map = load_endpoint_map(NAME, config.endpoints)
        self.client = HttpClient(config, self.map, auth=self._headers)

    # ------------------------------------------------------------------ the envelope

    def _token(self) -> str:
        token = self.config.credentials.get("token")
        if not token:
            raise AuthError("credentials need the Megamarket token", account=self.account, endpoint="auth")
        return token

    def _headers(self, headers: dict[str, str]) -> None:
        headers["User-Agent"] = str(self.config.options.get("user_agent") or USER_AGENT)

    def _call(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        """Send the envelope; returns `data` of a `success == 1` answer, raises otherwise."""
        reply = self.client.call(name, json={"meta": {}, "data": {"token": self._token(), **data}})
        answer = reply.json_object()
        return self._data(answer, name, reply.status)

    def _data(self, answer: dict[str, Any], name: str, status: int = 200) -> dict[str, Any]:
        if "success" not in answer:
            raise BadResponse("the answer has no success flag", account=self.account, endpoint=name, status=status)
        if answer["success"] != 1:
            errors = answer.get("error") or []
            if isinstance(errors, dict):
                errors = [errors]
            codes = {str(e.get("code", "")) for e in errors if isinstance(e, dict)}
            text = "; ".join(f"{e.get('code', '')}: {e.get('message', '')}" for e in errors if isinstance(e, dict))
            cls = AuthError if codes & {"AUTH_ERROR", "ACCESS_DENIED", "UNAUTHORIZED"} else MarketplaceError
            raise cls(f"success={answer['success']}: {text or 'no error given'}"[:500], account=self.account,
                      endpoint=name, status=status, native=errors)
        data = answer.get("data")
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise BadResponse("data is not an object", account=self.account, endpoint=name, status=status)
        return data

    def _bad(self, message: str, ep: str) -> BadResponse:
        return BadResponse(message, account=self.account, endpoint=ep)

    # ------------------------------------------------------------------ catalog

    def warehouses(self) -> list[Warehouse]:
        """Megamarket has no warehouse list: one store is one warehouse, its shipping point (from config)."""
        if not self.warehouse_id:
            raise NotSupported(NAME, "warehouses (no list method; set option shipping_point)", account=self.account)
        return [Warehouse(self.warehouse_id, f"Megamarket store {self.merchant_id}", "fbs",
                          native={"shippingPoint": self.shipping_point, "merchantId": self.merchant_id})]

    def list_cards(self) -> Iterator[Card]:
        after: str | None = None
        seen: set[str] = set()
        while True:
            data = self._call("cards", {"limit": self.map["cards"].batch, **({"searchAfter": after} if after else {})})
            cards = data.get("cards")
            if not isinstance(cards, list):
                raise self._bad("data.cards is missing", "cards")
            for c in cards:
                if not isinstance(c, dict) or "offerId" not in c:
                    raise self._bad("a card without offerId", "cards")
                price = c.get("price")
                yield Card(native_id=str(c["offerId"]), offer_id=str(c["offerId"]), title=str(c.get("name", "")),
                           barcodes=[str(b) for b in c.get("barcodes") or []], category=str(c.get("categoryName", "")),
                           category_id=str(c.get("categoryId", "")), brand=str(c.get("brand", "")),
                           group_id=str(c.get("goodsId", "")), visible=bool(c.get("isActive", True)),
                           price=Decimal(str(price)) if price is not None else None,
                           native_status="active" if c.get("isActive", True) else "inactive", native=c)
            after = data.get("searchAfter")
            if not after or after in seen or not cards:
                return
            seen.add(after)

    def create_card(self, card: NewCard) -> CardCreation:
        raise NotSupported(NAME, "create_card", account=self.account)

    def card_creation_status(self, offer_id: str) -> CardCreation:
        raise NotSupported(NAME, "card_creation_status", account=self.account)

    def set_visibility(self, card_ids: Sequence[str], visible: bool) -> list[ItemResult]:
        raise NotSupported(NAME, "hide/unhide (set stock 0 instead)", account=self.account, seller_text=NO_HIDE)

    # ------------------------------------------------------------------ prices and stocks

    def push_prices(self, changes: Sequence[PriceChange]) -> list[ItemResult]:
        """Whole roubles, `isDeleted: false` always (true would drop the price back to the feed's).
        The crossed-out price comes from the feed's oldprice: `old_price` is not sent."""
        results: list[ItemResult] = []
        prices: list[tuple[str, dict[str, Any]]] = []
        for ch in changes:
            whole = ch.price.quantize(Decimal("1"))
            if whole <= 0:
                results.append(ItemResult(ch.card_id, False, "price must be at least 1 rouble"))
                continue
            prices.append((ch.card_id, {"offerId": ch.offer_id or ch.card_id, "price": int(whole), "isDeleted": False}))
        for chunk in batches(prices, self.map["prices_save"].batch):
            try:
                data = self._call("prices_save", {"prices": [p for _, p in chunk]})
            except MarketplaceError as exc:
                results += [ItemResult(k, False, str(exc), exc.retryable) for k, _ in chunk]
                continue
            refused = {str(w.get("offerId")): str(w.get("message", "refused"))
                       for w in data.get("warnings") or [] if isinstance(w, dict)}
            for key, p in chunk:
                err = refused.get(p["offerId"])
                results.append(ItemResult(key, err is None, err or "", native=data.get("savedPrices")))
        return results

    def _offer_ids(self) -> list[str]:
        return list(dict.fromkeys(c.offer_id for c in self.list_cards()))

    def _read_by_offer(self, name: str, key: str, offers: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Every entry of `data.<key>` for these offers (None: all the store's offers, card/get), <= 100
        offers a request."""
        out: list[dict[str, Any]] = []
        extra = {"locationId": self.shipping_point} if self.shipping_point is not None else {}
        for chunk in batches(self._offer_ids() if offers is None else list(dict.fromkeys(offers)),
                             self.map[name].batch or 100):
            entries = self._call(name, {"offerIds": chunk, **extra}).get(key)
            if not isinstance(entries, list) or any(not isinstance(e, dict) or "offerId" not in e for e in entries):
                raise self._bad(f"data.{key} must be a list of entries with offerId", name)
            out += entries
        return out

    def read_prices(self) -> list[PriceChange]:
        """The prices Megamarket holds now (`price/getByOfferId`): one per offer, whole roubles."""
        out: list[PriceChange] = []
        for e in self._read_by_offer("prices_read", "prices"):
            try:
                price = Decimal(str(e["price"]))
            except (KeyError, InvalidOperation):
                raise self._bad(f"offer {e.get('offerId')}: price is not a number", "prices_read") from None
            out.append(PriceChange(card_id=str(e["offerId"]), offer_id=str(e["offerId"]), price=price,
                                   native={"locationId": e.get("locationId")}))
        return out

    def push_stocks(self, levels: Sequence[StockLevel]) -> list[ItemResult]:
        results: list[ItemResult] = []
        latest: dict[str, StockLevel] = {}
        own = self.warehouse_id
        for lv in levels:
            if lv.kind != "fbs" or lv.quantity < 0:
                results.append(ItemResult(f"{lv.card_id}@{lv.warehouse_id}", False, "only FBS quantities >= 0"))
                continue
            if own and lv.warehouse_id and lv.warehouse_id != own:
                results.append(ItemResult(f"{lv.card_id}@{lv.warehouse_id}", False,
                                          f"warehouse {lv.warehouse_id} is not this store's"))
                continue
            latest[lv.offer_id or lv.card_id] = lv
        def send(chunk: list[StockLevel]) -> list[ItemResult]:
            keys = [f"{lv.card_id}@{lv.warehouse_id}" for lv in chunk]
            try:
                self._call("stocks_update", {"stocks": [{"offerId": lv.offer_id or lv.card_id,
                                                         "quantity": int(lv.quantity)} for lv in chunk]})
                return [ItemResult(k, True) for k in keys]
            except MarketplaceError as exc:
                return [ItemResult(k, False, str(exc), exc.retryable) for k in keys]

        chunks = list(batches(list(latest.values()), self.map["stocks_update"].batch))
        # a few requests in flight: the seller's bucket (5 requests/s, one token) paces them, and the
        # others are prepared and answered meanwhile; with two, a 300-offer request answered later than
        # two intervals (a loaded machine) left the next token unused: 7 % over the floor at load 8
        for part in in_parallel(send, chunks, 4):
            results += part
        return results

    def sale_fees(self, cards: Sequence[FeeAsk]) -> list[SaleFees]:
        """No tariff or commission method in the merchant API (../shared/specs/megamarket/README.md §7)."""
        raise NotSupported(NAME, "sale_fees", account=self.account, seller_text=NO_FEES)

    def read_stocks(self, kind: Literal["fbs", "fbo"] = "fbs",
                    cards: Sequence[StockKey] | None = None) -> list[StockLevel]:
        """The FBS stock Megamarket holds now per offer (`stock/getByOfferId`) at the store's warehouse;
        with `cards`, for their offers alone (the method's `offerIds`)."""
        if kind == "fbo":
            raise NotSupported(NAME, "read_stocks(fbo)", account=self.account, seller_text=NO_FBO)
        out: list[StockLevel] = []
        offers = None if cards is None else [k.offer_id or k.card_id for k in cards]
        for e in self._read_by_offer("stocks_read", "stocks", offers):
            quantity = e.get("quantity")
            if not isinstance(quantity, int) or quantity < 0:
                raise self._bad(f"offer {e.get('offerId')}: quantity must be a whole number >= 0", "stocks_read")
            where = str(e.get("locationId") or self.warehouse_id)
            out.append(StockLevel(str(e["offerId"]), str(e["offerId"]), where, quantity, "fbs"))
        return out if cards is None else only_keys(out, cards)

    # ------------------------------------------------------------------ orders

    def _order(self, s: dict[str, Any], ep: str = "order_get") -> Order:
        if not isinstance(s, dict) or "shipmentId" not in s or not isinstance(s.get("items"), list) or not s["items"]:
            raise self._bad("a shipment without shipmentId or items", ep)
        lines = []
        for lot in s["items"]:
            status = lot.get("status", "NEW")
            if status not in LOT_STATUSES:
                raise self._bad(f"shipment {s['shipmentId']}: unknown lot status {status!r}", ep)
            if lot.get("quantity", 1) != 1:
                raise self._bad(f"shipment {s['shipmentId']}: a lot with quantity {lot.get('quantity')}", ep)
            try:
                price = Decimal(str(lot.get("finalPrice", lot.get("price"))))
            except InvalidOperation:
                raise self._bad(f"shipment {s['shipmentId']}: bad price", ep) from None
            lines.append(OrderLine(card_id=str(lot["offerId"]), offer_id=str(lot["offerId"]), quantity=1, price=price,
                                   title=str((lot.get("goodsData") or {}).get("name", lot.get("itemName", ""))),
                                   native_id=str(lot["itemIndex"]),
                                   marking_required=bool(lot.get("isDigitalMarkRequired")),
                                   native={**lot, "status": status}))
        created = _when(s.get("creationDate"), self.account, ep)  # missing: now (a push as it comes)
        # the assembly deadline (Order.ship_by): to be packed by — order/get's packingTimeLimit, the order/new
        # push's handover.packingDate (the same moment; PACKING_EXPIRED past it); the shipping limit only
        # where neither is given. One meaning in both shapes, so a poll never "moves" a pushed order's deadline
        limit = (s.get("packingTimeLimit") or (s.get("handover") or {}).get("packingDate") or s.get("packingDate")
                 or s.get("shippingTimeLimit"))
        return Order(native_id=str(s["shipmentId"]), marketplace="megamarket", account=self.account,
                     native_status=shipment_status([ln.native["status"] for ln in lines]), created_at=created,
                     lines=lines, warehouse_id=str(s.get("shippingPoint") or self.warehouse_id),
                     ship_by=_when(limit, self.account, ep) if limit else None,
                     number=str(s.get("orderCode") or s["shipmentId"]), native=s)

    def _get(self, ids: list[str]) -> list[Order]:
        out: list[Order] = []
        for chunk in batches(ids, self.map["order_get"].batch):
            data = self._call("order_get", {"shipments": chunk})
            shipments = data.get("shipments")
            if not isinstance(shipments, list):
                raise self._bad("data.shipments is missing", "order_get")
            out += [self._order(s) for s in shipments]
        return out

    def new_orders(self) -> list[Order]:
        now = datetime.now(UTC)
        data = self._call("order_search", {"dateFrom": (now - timedelta(days=30)).isoformat(timespec="seconds"),
                                           "dateTo": (now + timedelta(hours=1)).isoformat(timespec="seconds"),
                                           "statuses": ["NEW"], "count": 1000})
        ids = data.get("shipments")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise self._bad("data.shipments must be a list of shipment ids", "order_search")
        return self._get(ids) if ids else []

    def get_order(self, native_id: str) -> Order:
        found = self._get([str(native_id)])
        if not found:
            raise MarketplaceError(f"shipment {native_id} not found", account=self.account, endpoint="order_get",
                                   status=404)
        return found[0]

    def order_statuses(self, native_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """The shipment status (its lots' statuses in one word) of each shipment, read with `order/get`
        in batches; a shipment Megamarket does not return is left out."""
        ids = [str(i) for i in native_ids]
        return {o.native_id: (o.native_status, o.native_substatus) for o in self._get(ids)} if ids else {}

    def returns(self, since: datetime, order_ids: Sequence[str] = ()) -> list[OrderReturn]:
        raise NotSupported("megamarket", "returns (Megamarket publishes no returns list: a parcel coming back"
                           " shows as CUSTOMER_CANCELED after SHIPPED)", account=self.account)

    def box_code(self, shipment_id: str, box_index: int = 1) -> str:
        return f"{self.merchant_id}*{shipment_id}*{box_index}"

    def set_order_status(self, native_id: str, action: OrderAction, **details: Any) -> StatusChange:
        """Move the shipment's lots one step. `details`: `order_code` (confirm: our number, Latin letters,
        digits, _ and -; default the order's number, i.e. the shipment id), `marking_codes={itemIndex or offerId: [code, ...]}` (assemble), `reason` (cancel:
        one of REJECT_REASONS, default OUT_OF_STOCK) and `comment`. Lots already there are not sent again.
        reduce: `lines=[{"offer_id", "keep"}]` — the live lots of each offer above `keep` (the highest
        itemIndex first) are rejected with `order/reject` (README 5.3, reason OUT_OF_STOCK)."""
        if action == "reduce":
            return self._reduce(native_id, details)
        wants = {"confirm": ({"NEW"}, "CONFIRMED"), "assemble": ({"CONFIRMED"}, "PACKED"),
                 "ship": ({"PACKED"}, "SHIPPED"), "cancel": ({"NEW", "CONFIRMED", "PACKED"}, "MERCHANT_CANCELED")}
        if action not in wants:
            raise MarketplaceError(f"unknown action {action!r}", account=self.account, endpoint="order_status")
        movable, target = wants[action]
        for _ in range(self.client.retry.attempts):
            order = self.get_order(native_id)
            lots = [ln for ln in order.lines if ln.native["status"] in movable]
            if not lots:
                done = [ln for ln in order.lines if _reached(ln.native["status"], target)]
                if done:
                    return StatusChange(native_id, action, True, order.native_status, already=True)
                return StatusChange(native_id, action, False, order.native_status,
                                    error=f"no lot can {action} (lots: "
                                          f"{', '.join(ln.native['status'] for ln in order.lines)})")
            try:
                self._send_move(order, action, lots, details)
            except Uncertain:
                continue  # read the lots back before sending anything again
            except MarketplaceError as exc:
                return StatusChange(native_id, action, False, order.native_status, error=str(exc),
                                    native={"native": exc.native})
            moved = {ln.native_id for ln in lots}
            after = {ln.native_id: (target if ln.native_id in moved else ln.native["status"]) for ln in order.lines}
            return StatusChange(native_id, action, True, shipment_status(list(after.values())), native={"lots": after})
        return StatusChange(native_id, action, False, error="status change not confirmed after every attempt the retry policy allows")

    def _reduce(self, native_id: str, details: dict[str, Any]) -> StatusChange:
        """Reject the lots the parcel does not hold; read back first, so a repeat rejects nothing twice."""
        for _ in range(self.client.retry.attempts):
            order = self.get_order(native_id)
            live = [ln for ln in order.lines if not ln.native["status"].endswith("CANCELED")]
            drop: list[OrderLine] = []
            for want in details.get("lines") or []:
                names = {str(want.get("offer_id") or ""), str(want.get("card_id") or "")} - {""}
                mine = sorted((ln for ln in live if ln.offer_id in names), key=lambda ln: int(ln.native_id))
                extra = len(mine) - max(int(want.get("keep", 0)), 0)
                if extra > 0:
                    drop += mine[-extra:]
            if not drop:
                return StatusChange(native_id, "reduce", True, order.native_status, already=True)
            if len(drop) == len(live):
                return StatusChange(native_id, "reduce", False, order.native_status,
                                    error="every live lot would go: cancel the shipment instead")
            try:
                self._call("order_reject", {
                    "reason": {"type": "OUT_OF_STOCK", "comment": str(details.get("comment") or "нет в наличии")},
                    "shipments": [{"shipmentId": order.native_id,
                                   "items": [{"itemIndex": int(ln.native_id), "offerId": ln.offer_id} for ln in drop]}]})
            except Uncertain:
                continue  # read the lots back before sending anything again
            except MarketplaceError as exc:
                return StatusChange(native_id, "reduce", False, order.native_status, error=str(exc),
                                    native={"native": exc.native})
            gone = {ln.native_id for ln in drop}
            after = [("MERCHANT_CANCELED" if ln.native_id in gone else ln.native["status"]) for ln in order.lines]
            return StatusChange(native_id, "reduce", True, shipment_status(after),
                                native={"rejected": sorted(gone, key=int)})
        return StatusChange(native_id, "reduce", False, error="reduce not confirmed after every attempt the retry policy allows")

    def _send_move(self, order: Order, action: OrderAction, lots: list[OrderLine], details: dict[str, Any]) -> None:
        sid = order.native_id
        refs = [{"itemIndex": int(ln.native_id), "offerId": ln.offer_id} for ln in lots]
        if action == "confirm":
            # orderCode is the seller's number of the order, printed on Megamarket's sticker: the first of
            # the one given, the order's number, its shipment id that Megamarket takes (Latin letters, digits,
            # _ and -) — never left out because one of them has other characters, or the sticker reads "Order -"
            code = next(c for c in (str(details.get("order_code") or ""), order.number, sid)
                        if re.fullmatch(ORDER_CODE, c or ""))
            shipment: dict[str, Any] = {"shipmentId": sid, "items": refs, "orderCode": code}
            self._call("order_confirm", {"shipments": [shipment]})
        elif action == "cancel":
            reason = str(details.get("reason") or "OUT_OF_STOCK")
            if reason not in REJECT_REASONS:
                raise MarketplaceError(f"reject reason must be one of {sorted(REJECT_REASONS)}",
                                       account=self.account, endpoint="order_reject")
            self._call("order_reject", {"reason": {"type": reason, "comment": str(details.get("comment", ""))},
                                        "shipments": [{"shipmentId": sid, "items": refs}]})
        elif action == "assemble":
            codes = {str(k): list(v) for k, v in (details.get("marking_codes") or {}).items()}
            used: dict[str, int] = {}
            items = []
            for ln in lots:
                item: dict[str, Any] = {"itemIndex": int(ln.native_id), "quantity": 1,
                                        "boxes": [{"boxIndex": 1, "boxCode": self.box_code(sid)}]}
                if ln.marking_required:
                    mine = codes.get(ln.native_id) or codes.get(ln.offer_id) or []
                    n = used.get(ln.offer_id, 0) if ln.native_id not in codes else 0
                    if len(mine) <= n:
                        raise MarketplaceError(f"shipment {sid}: lot {ln.native_id} ({ln.offer_id}) needs its marking "
                                               "code", account=self.account, endpoint="order_packing")
                    item["digitalMark"] = mine[n]
                    if ln.native_id not in codes:
                        used[ln.offer_id] = n + 1
                items.append(item)
            shipment = {"shipmentId": sid, "items": items}
            if order.number != sid:
                shipment["orderCode"] = order.number
            self._call("order_packing", {"shipments": [shipment]})
        elif action == "ship":
            if self.shipping_point is None:
                raise MarketplaceError("option shipping_point is needed to ship", account=self.account,
                                       endpoint="order_shipping")
            boxes = sorted({int(ln.native.get("boxIndex") or 1) for ln in lots})
            self._call("order_shipping", {"shipments": [{
                "shipmentId": sid, "boxes": [{"boxIndex": b, "boxCode": self.box_code(sid, b)} for b in boxes],
                "shipping": {"shippingDate": datetime.now(UTC).isoformat(timespec="seconds"),
                             "shippingPoint": self.shipping_point}}]})

    # ------------------------------------------------------------------ labels and reports

    def get_label(self, native_id: str, *, fmt: LabelFormat | None = None, size: str = "") -> Label:
        if fmt not in (None, "pdf"):
            raise NotSupported(NAME, f"labels as {fmt} (Megamarket gives PDF)", account=self.account)
        order = self.get_order(native_id)
        boxes = sorted({int(ln.native.get("boxIndex") or 1) for ln in order.lines
                        if ln.native["status"] in ("PACKED", "SHIPPED")})
        if not boxes:
            raise MarketplaceError(f"shipment {native_id} is not packed yet: no label", account=self.account,
                                   endpoint="sticker")
        codes = [self.box_code(native_id, b) for b in boxes]
        reply = self.client.call("sticker", json={"meta": {}, "data": {
            "token": self._token(), "shipmentId": native_id, "boxCodes": codes, "printAsPdf": True}})
        if reply.content.startswith(b"%PDF"):
            data = reply.content
        else:
            answer = self._data(reply.json_object(), "sticker", reply.status)
            try:
                data = base64.b64decode(answer.get("stickerPdfBase64", ""), validate=True)
            except (binascii.Error, ValueError):
                raise self._bad("the sticker is neither PDF nor base64 PDF", "sticker") from None
            if not data.startswith(b"%PDF"):
                raise self._bad("the sticker is not a PDF", "sticker")
        return Label(native_id, data, "pdf", STICKER_MM[0], STICKER_MM[1], barcode_text=codes[0])

    def realization_report(self, period_from: Any, period_to: Any, *, progress: Any = None) -> RealizationReport:
        raise NotSupported(NAME, "realization_report (cabinet export only)", account=self.account,
                           seller_text=NO_REPORT)

    def handover_documents(self, native_ids: Sequence[str], *, batch_id: str = "") -> list[HandoverDocument]:
        raise NotSupported(NAME, "handover_documents (no act in the merchant API)", account=self.account,
                           seller_text=NO_ACT)

    # ------------------------------------------------------------------ pushes

    def parse_push(self, headers: dict[str, str], body: bytes) -> list[OrderEvent]:
        """An order/new or order/cancel push as events. Which one comes from `headers["x-push-path"]`
        ("order/new" / "order/cancel", set by the receiving endpoint from its URL). Raises `BadResponse`
        for a malformed push and `AuthError` for one about another merchant."""
        lower = {k.lower(): v for k, v in headers.items()}
        which = lower.get("x-push-path", "").strip("/")
        ep = which or "push"
        if which not in ("order/new", "order/cancel"):
            raise self._bad(f"unknown push {which!r} (expected order/new or order/cancel)", ep)
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise self._bad("push body is not valid JSON", ep) from None
        data = payload.get("data") if isinstance(payload, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("shipments"), list) or not data["shipments"]:
            raise self._bad("data.shipments is missing or empty", ep)
        merchant = data.get("merchantId")
        if not isinstance(merchant, int):
            raise self._bad("data.merchantId is missing", ep)
        if merchant != self.merchant_id:
            raise AuthError(f"push for merchant {merchant}, not this account's", account=self.account, endpoint=ep)
        events: list[OrderEvent] = []
        for s in data["shipments"]:
            if not isinstance(s, dict) or not isinstance(s.get("shipmentId"), str) or not s["shipmentId"].isdigit():
                raise self._bad("a shipment without a numeric shipmentId", ep)
            items = s.get("items")
            if not isinstance(items, list) or not items or any(
                    not isinstance(i, dict) or not str(i.get("itemIndex", "")).isdigit() for i in items):
                raise self._bad(f"shipment {s['shipmentId']}: items must carry itemIndex", ep)
            sid = s["shipmentId"]
            if which == "order/new":
                for i in items:
                    if "offerId" not in i or i.get("quantity", 1) != 1:
                        raise self._bad(f"shipment {sid}: each lot needs offerId and quantity 1", ep)
                lots = [{**i, "status": "NEW"} for i in items]
                # order/new carries no creationDate: the push is sent as the order is placed, so it is
                # now (shipmentDate is the day to ship, after the packing deadline — never the creation)
                order = self._order({**s, "items": lots}, ep)
                events.append(OrderEvent("created", sid, "NEW", order=order, dedup_key=f"mm:{merchant}:{sid}:new",
                                         native=s))
            else:
                lots = sorted(int(i["itemIndex"]) for i in items)
                events.append(OrderEvent("cancelled", sid, "CUSTOMER_CANCELED",
                                         dedup_key=f"mm:{merchant}:{sid}:cancel:{','.join(map(str, lots))}",
                                         native={**s, "itemIndexes": lots}))
        return events


def _reached(status: str, target: str) -> bool:
    if target == "MERCHANT_CANCELED":
        return status.endswith("CANCELED")
    if status in PROGRESS and target in PROGRESS:
        return PROGRESS.index(status) >= PROGRESS.index(target)
    return False


def _when(value: Any, account: str, ep: str) -> datetime:
    if not isinstance(value, str) or not value:
        return datetime.now(UTC)
    try:
        ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadResponse(f"not a date-time: {value!r}", account=account, endpoint=ep) from None
    return ts.astimezone(UTC) if ts.tzinfo else ts.replace(tzinfo=UTC)


# ---------------------------------------------------------------- prices in Megamarket's terms


class _MegamarketPrices(PriceModel):
    """Megamarket takes one price per offer: no crossed-out price, no minimum."""

    def price_change(self, *, card_id: str, group_id: str | None, offer_id: str, price: Decimal,
                     crossed_out: Decimal | None, min_price: Decimal | None) -> PriceChange:
        return PriceChange(card_id=card_id, offer_id=offer_id, price=price)


PRICE_MODEL = _MegamarketPrices(PriceTerms("megamarket", crossed_out_supported=False))
