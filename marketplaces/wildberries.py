"""The Wildberries adapter: the common calls of `marketplaces.base.Marketplace` in WB's own requests.

Owns WB's shapes: cards by size (`Card.native_id` = chrtId, `group_id` = nmID), prices per nmID with a
discount (sent as upload tasks, read back from `list/goods/filter`), stocks per seller warehouse keyed
by chrtId, FBS orders moved through supplies (confirm = add to a supply, ship = deliver the supply; WB
has no separate "assembled" status), stickers (PNG/SVG/ZPL at 58x40 or 40x30), the finance
`sales-reports` realization report, and the Честный знак code of a marked order (`PUT meta/sgtin` at
"assemble", while the order is in `confirm`; WB delivers no supply holding an order whose required
marking is missing).

Every status change first reads the order's status on WB and acts only if it is not there yet; a
change that timed out (`Uncertain`) is read back before anything is re-sent, so no order moves twice.
Payloads are checked before sending (a 4xx costs WB's Marketplace family ten requests).
"""

from __future__ import annotations

import base64
import logging
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

from marketplaces.base import (
    AccountConfig,
    BadResponse,
    Card,
    CardCreation,
    Category,
    CategoryAttribute,
    FeeAsk,
    HandoverDocument,
    InvalidRequest,
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
    SaleFees,
    StatusChange,
    StockKey,
    StockLevel,
    Uncertain,
    Warehouse,
    kopecks,
    only_keys,
)
from marketplaces.endpoints import Endpoint, load_endpoint_map
from marketplaces.http import HttpClient, batches, in_parallel

log = logging.getLogger("marketplaces.wildberries")

SUPPLIER_STATUSES = {"new", "confirm", "complete", "cancel", "cancel_carrier"}
TARGET = {"confirm": {"confirm", "complete"}, "ship": {"complete"}, "cancel": {"cancel", "cancel_carrier"}}
MSK = timedelta(hours=3)
MOVE_ATTEMPTS = 8  # sends of one status change, each after reading the status back
STICKER_SIZES = {"58x40": (58, 40), "40x30": (40, 30)}
STICKER_TYPES = {"png": "png", "svg": "svg", "zpl": "zplh"}
# sgtin check results with which WB delivers the supply (MetaDetails.decision in the FBS spec)
# WB's sums per realization report (`sales-reports/list`) that our report's totals are compared with: each
# of ours is the sum of these (a leading "-" subtracts); to_pay is WB's «Итого к оплате», what WB pays
COMPARED_SUMS = {"revenue": ("retailAmountSum",), "logistics": ("deliveryServiceSum",),
                 "storage": ("paidStorageSum",), "penalty": ("penaltySum",),
                 "other": ("paidAcceptanceSum", "deductionSum", "cashbackAmountSum", "-cashbackDiscountSum",
                           "cashbackCommissionChangeSum", "-additionalPaymentSum"),
                 "to_pay": ("bankPaymentSum",)}
REPORT_SUMS = tuple(dict.fromkeys(k.lstrip("-") for ks in COMPARED_SUMS.values() for k in ks)) + (
    "forPaySum", "paymentSchedule")
REPORT_NOTES = {  # English: the cloud shows them in the reader's language (its catalogs hold them)
    "forPaySum": "WB's «to pay for the goods», before logistics, storage, penalties and deductions: our "
                 "«to be paid» is reconciled with its «total to pay» (bankPaymentSum)",
    "paymentSchedule": "a one-off change of the payout date, not a sum",
    "fee": "Wildberries gives no commission total for the report",
    "acquiring": "Wildberries gives no acquiring total for the report",
    "to_pay": "WB's «total to pay» (bankPaymentSum)",
    "other": "acceptance, other deductions and the loyalty programme, less reward corrections",
}
# a detailed row's deductions: ours -> WB's row fields (a leading "-" subtracts)
ROW_DEDUCTIONS = {"logistics": ("deliveryService", "rebillLogisticCost"), "storage": ("paidStorage",),
                  "penalty": ("penalty",),
                  "other": ("paidAcceptance", "deduction", "cashbackAmount", "-cashbackDiscount",
                            "cashbackCommissionChange", "-additionalPayment")}
ERRORS_CLOCK_SLACK = timedelta(seconds=1)  # WB lists errors to the second: listed before our latest re-send (less that) = stale
SGTIN_DELIVERABLE = {"filled", "deadlineExceeded", "optional", "sgtinIntroduced", "sgtinSoldB2B"}


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


def validate_payload(ep: Endpoint, payload: Any) -> None:
    """WB's documented rules, checked before sending (raises ValueError -> InvalidRequest)."""
    if ep.name == "stocks_update":
        stocks = payload.get("stocks") if isinstance(payload, dict) else None
        if not stocks or len(stocks) > (ep.batch or 1000):
            raise ValueError(f"stocks must hold 1..{ep.batch or 1000} items")
        for s in stocks:
            if set(s) != {"chrtId", "amount"}:  # WB silently ignores misspelled fields (204, no change)
                raise ValueError(f"a stock item has exactly chrtId and amount, got {sorted(s)}")
            if not isinstance(s["chrtId"], int) or not isinstance(s["amount"], int):
                raise ValueError("chrtId and amount must be integers")
            if not 0 <= s["amount"] <= 100_000:
                raise ValueError(f"amount {s['amount']} of chrtId {s['chrtId']} is outside 0..100000")
    elif ep.name == "prices_upload":
        data = payload.get("data") if isinstance(payload, dict) else None
        if not data or len(data) > (ep.batch or 1000):
            raise ValueError(f"data must hold 1..{ep.batch or 1000} items")
        for d in data:
            if not isinstance(d.get("nmID"), int):
                raise ValueError("nmID must be an integer")
            if "price" in d and (not isinstance(d["price"], int) or d["price"] <= 0):
                raise ValueError(f"price of nmID {d['nmID']} must be a positive whole number")
            if "discount" in d and not (isinstance(d["discount"], int) and 0 <= d["discount"] <= 99):
                raise ValueError(f"discount of nmID {d['nmID']} must be 0..99")
    elif ep.name == "order_sgtin":
        sgtins = payload.get("sgtins") if isinstance(payload, dict) else None
        if not sgtins or len(sgtins) > (ep.batch or 100) or not all(isinstance(c, str) for c in sgtins):
            raise ValueError(f"sgtins must hold 1..{ep.batch or 100} marking codes")
        for c in sgtins:
            if not 16 <= len(c) <= 135:
                raise ValueError(f"a Честный знак code is 16..135 characters, got {len(c)}")
    elif ep.name in ("supply_add_orders", "stickers", "orders_status", "orders_meta"):
        orders = payload.get("orders") if isinstance(payload, dict) else None
        limit = ep.batch or 100
        if not orders or len(orders) > limit or not all(isinstance(o, int) for o in orders):
            raise ValueError(f"orders must be 1..{limit} integer ids")


def _code(exc: MarketplaceError) -> str:
    """WB's error code (`{"code": ..., "message": ...}`) of a refused request, "" if none."""
    return str(exc.native.get("code") or "") if isinstance(exc.native, dict) else ""


def _money(value: Any, *, kopecks: bool = False) -> Decimal:
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"not a sum of money: {value!r}") from None
    return amount / 100 if kopecks else amount


def _dimensions(dims: Any) -> dict[str, float]:
    """A card's packed dimensions in the common terms (cm, kg); {} when WB holds none (zeros, or not valid)."""
    if not isinstance(dims, dict) or dims.get("isValid") is False:
        return {}
    out = {k: float(dims.get(w) or 0) for k, w in (("length", "length"), ("width", "width"), ("height", "height"),
                                                   ("weight", "weightBrutto"))}
    return out if all(v > 0 for v in out.values()) else {}


def _when(value: Any) -> datetime:
    text = str(value).replace("Z", "+00:00")
    dt = datetime.fromisoformat(text)
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _chrt_ids(pairs: dict[str, StockLevel]) -> bool:
    """Whether every card id is written as WB writes a chrtId (ASCII digits, no leading zero): checked on
    the ids joined, by the interpreter's own byte methods (a push's ids are checked before its first
    request: one Python step per id added ~15 ms to a push of 100,000 on three warehouses)."""
    joined = f",{','.join(pairs)},"
    if not joined.isascii():
        return False
    raw = joined.encode()
    return (raw.count(b",") == len(pairs) + 1 and raw.replace(b",", b"").isdigit() and b",," not in raw
            and raw.count(b",0") == raw.count(b",0,"))


def _as_chrt_ids(levels: Sequence[StockLevel]) -> tuple[dict[str, dict[str, StockLevel]], list[ItemResult]]:
    """The levels grouped per warehouse by card, ids made WB's numbers ("07" is 7), in the order given, so
    that the later level of a card wins however its ids were written; a level whose card or warehouse id is
    no such number fails alone."""
    by_wh: dict[str, dict[str, StockLevel]] = {}
    refused: list[ItemResult] = []
    for lv in levels:
        try:
            wh, card = int(lv.warehouse_id), int(lv.card_id)
        except ValueError:
            wh = card = -1
        if wh < 0 or card < 0:
            refused.append(ItemResult(f"{lv.card_id}@{lv.warehouse_id}", False, "card and warehouse ids are numbers on WB"))
            continue
        by_wh.setdefault(str(wh), {})[str(card)] = lv
    return by_wh, refused


class WildberriesAdapter:
    """One Wildberries seller account. `config.credentials = {"Authorization": token}`."""

    name: Literal["wildberries"] = "wildberries"

    def __init__(self, config: AccountConfig) -> None:
        self.config = config
        self.account = config.name
        self.map = load_endpoint_map("wildberries", config.endpoints)
        token = config.credentials.get("Authorization") or config.credentials.get("token", "")
        self._token = token
        self.http = HttpClient(config, self.map, auth=self._auth, validate=validate_payload)
        self._orders: dict[str, dict[str, Any]] = {}  # raw orders seen, by id
        self._open_supply: dict[str, str] = {}  # warehouseId -> supply id still taking orders
        self._nm_of_chrt: dict[str, str] = {}
        self._uploaded: dict[str, datetime] = {}  # vendor code -> when this process first uploaded its card
        self._last_upload: dict[str, datetime] = {}  # vendor code -> this process's latest upload of it
        self.push_workers = int(config.options.get("push_workers", 4))  # requests in flight for a push

    def _auth(self, headers: dict[str, str]) -> None:
        headers["Authorization"] = self._token

    def close(self) -> None:
        self.http.close()

    def _bad(self, message: str, endpoint: str) -> BadResponse:
        return BadResponse(message, account=self.account, endpoint=endpoint)

    # ------------------------------------------------------------ catalog

    def warehouses(self) -> list[Warehouse]:
        data = self.http.call("warehouses").json()
        if not isinstance(data, list):
            raise self._bad("expected a list of warehouses", "warehouses")
        kinds = {1: "fbs", 2: "dbs", 3: "dbs"}
        try:
            return [Warehouse(str(w["id"]), str(w.get("name", "")), kinds.get(w.get("deliveryType", 1), "fbs"), w)
                    for w in data if not w.get("isDeleting")]
        except (KeyError, TypeError):
            raise self._bad("a warehouse without id", "warehouses") from None

    def _cards_pages(self, endpoint: str, stamp: str) -> Iterable[dict[str, Any]]:
        limit = min(100, self.map[endpoint].batch or 100)
        cursor: dict[str, Any] = {"limit": limit}
        while True:
            body = {"settings": {"cursor": cursor, "filter": {"withPhoto": -1}} if endpoint == "cards_list"
                    else {"cursor": cursor}}
            data = self.http.call(endpoint, json=body).json_object()
            cards = data.get("cards")
            page = data.get("cursor")
            if not isinstance(cards, list) or not isinstance(page, dict):
                raise self._bad("cards or cursor missing in the answer", endpoint)
            yield from cards
            if int(page.get("total") or 0) < limit or not cards:
                return
            cursor = {"limit": limit, stamp: page.get(stamp), "nmID": page.get("nmID")}

    def list_cards(self) -> Iterable[Card]:
        cards: list[Card] = []
        for endpoint, stamp, visible in (("cards_list", "updatedAt", True), ("cards_trash_list", "trashedAt", False)):
            for raw in self._cards_pages(endpoint, stamp):
                try:
                    nm = str(raw["nmID"])
                    for size in raw.get("sizes") or []:
                        chrt = str(size["chrtID"])
                        self._nm_of_chrt[chrt] = nm
                        cards.append(Card(
                            native_id=chrt, offer_id=str(raw.get("vendorCode", "")), title=str(raw.get("title", "")),
                            barcodes=[str(s) for s in size.get("skus") or []], category=str(raw.get("subjectName", "")),
                            category_id=str(raw.get("subjectID", "")), brand=str(raw.get("brand", "")),
                            size=str(size.get("techSize", "")), group_id=nm, visible=visible,
                            native_status="trash" if not visible else "active", native=raw,
                            dimensions=_dimensions(raw.get("dimensions")),
                            photos=[str(p["big"]) for p in raw.get("photos") or [] if isinstance(p, dict) and p.get("big")]))
                except (KeyError, TypeError):
                    raise self._bad("a card without nmID or chrtID", endpoint) from None
        return cards

    # ------------------------------------------------------------ card creation

    def categories(self, name: str = "") -> list[Category]:
        """WB's subjects whose name holds `name` (`object/all`, paged by offset until a short page)."""
        limit = min(1000, self.map["subjects"].batch or 1000)
        out: list[Category] = []
        offset = 0
        while True:
            params: dict[str, Any] = {"limit": limit, "offset": offset, "locale": "ru"}
            if name:
                params["name"] = name
            data = self.http.call("subjects", params=params).json_object()
            rows = data.get("data")
            if data.get("error") or not isinstance(rows, list):
                raise self._bad(f"subjects missing in the answer ({data.get('errorText') or 'no data'})", "subjects")
            try:
                out += [Category(str(int(r["subjectID"])), str(r.get("subjectName", "")), str(r.get("parentName", "")))
                        for r in rows]
            except (KeyError, TypeError, ValueError):
                raise self._bad("a subject without subjectID", "subjects") from None
            if len(rows) < limit:
                return out
            offset += limit

    def category_attributes(self, category_id: str) -> list[CategoryAttribute]:
        """The characteristics of one subject (`object/charcs/{subjectId}`); `charcType` 0 (not used) left out."""
        data = self.http.call("subject_charcs", path_params={"subjectId": int(category_id)},
                              params={"locale": "ru"}).json_object()
        rows = data.get("data")
        if data.get("error") or not isinstance(rows, list):
            raise self._bad(f"characteristics missing in the answer ({data.get('errorText') or 'no data'})",
                            "subject_charcs")
        out = []
        try:
            for r in rows:
                kind = {1: "strings", 4: "number"}.get(int(r.get("charcType") or 0))
                if kind is None:
                    continue
                out.append(CategoryAttribute(int(r["charcID"]), str(r.get("name", "")), bool(r.get("required")),
                                             kind, int(r.get("maxCount") or 0), str(r.get("unitName") or "")))
        except (KeyError, TypeError, ValueError):
            raise self._bad("a characteristic without charcID", "subject_charcs") from None
        return out

    def create_card(self, card: NewCard) -> CardCreation:
        """Upload one card (`cards/upload`). What WB refuses at once (an unknown subject, a required
        characteristic missing) comes back as `failed` with the reason in words; the rest is followed
        with `card_creation_status`."""
        if not card.offer_id or not card.title or len(card.title) > 60 or len(card.offer_id) > 72:
            raise InvalidRequest("a new card needs a vendor code of at most 72 characters and a title of at most 60",
                                 account=self.account, endpoint="card_upload")
        variant: dict[str, Any] = {"vendorCode": card.offer_id, "title": card.title}
        if card.brand:
            variant["brand"] = card.brand
        if card.description:
            variant["description"] = card.description
        if card.dimensions:
            variant["dimensions"] = card.dimensions
        if card.characteristics:
            variant["characteristics"] = card.characteristics
        if card.sizes:
            variant["sizes"] = card.sizes
        if card.marked:
            variant["kizMarked"] = True  # without it WB's moderation refuses a card of marked goods
        self._uploaded.setdefault(card.offer_id, datetime.now(UTC))  # the first upload: a re-send keeps it
        self._last_upload[card.offer_id] = datetime.now(UTC)
        try:
            data = self.http.call("card_upload",
                                  json=[{"subjectID": card.subject_id, "variants": [variant]}]).json_object()
        except MarketplaceError as exc:
            if exc.status != 400 or not isinstance(exc.native, dict):
                raise
            return CardCreation(card.offer_id, "failed", self._upload_refusal(card, exc.native))
        if data.get("error"):
            return CardCreation(card.offer_id, "failed", [str(data.get("errorText") or "rejected")])
        return CardCreation(card.offer_id, "pending")

    def _upload_refusal(self, card: NewCard, native: dict[str, Any]) -> list[str]:
        """A refused upload in the seller's words: missing characteristics by name, an unknown subject."""
        text = str(native.get("errorText") or "")
        extra = native.get("additionalErrors")
        mine = extra.get(card.offer_id) if isinstance(extra, dict) else None
        if isinstance(mine, str) and "missing required characteristics" in mine:
            ids = {int(x) for x in re.findall(r"\d+", mine.split(":", 1)[-1])}
            names = {a.id: a.name for a in self.category_attributes(str(card.subject_id))}
            return ["Wildberries: не заполнены обязательные характеристики: "
                    + ", ".join(names.get(i, str(i)) for i in sorted(ids))]
        if "category does not exist" in text.lower():
            return [f"Wildberries: предмета {card.subject_id} не существует"]
        return [f"Wildberries отказал: {text or 'без объяснения'}" + (f" ({mine})" if mine else "")]

    def card_errors(self) -> dict[str, list[str]]:
        """Every card WB could not create, by vendor code, with its errors: the error list followed page by
        page (`cursor.updatedAt` + `batchUUID`) until WB answers `next: false`; a later batch wins."""
        return {vendor: errors for vendor, (errors, _) in self._card_errors().items()}

    def _card_errors(self) -> dict[str, tuple[list[str], datetime | None]]:
        """`card_errors` with when WB listed each vendor code's errors (None when it does not say)."""
        limit = min(100, self.map["card_errors"].batch or 100)
        cursor: dict[str, Any] = {"limit": limit}
        out: dict[str, tuple[list[str], datetime | None]] = {}
        for _ in range(1000):  # a guard against an answer whose cursor never moves on
            data = self.http.call("card_errors", json={"cursor": cursor, "order": {"ascending": True}}).json_object()
            page = data.get("data") if isinstance(data.get("data"), dict) else None
            if data.get("error") or page is None:
                raise self._bad(f"the error list is missing ({data.get('errorText') or 'no data'})", "card_errors")
            for item in page.get("items") or []:
                try:
                    listed: datetime | None = _when(item["updatedAt"])
                except (KeyError, TypeError, ValueError):
                    listed = None
                for vendor in item.get("vendorCodes") or []:
                    errors = (item.get("errors") or {}).get(vendor) or ["отклонена без объяснения"]
                    out[str(vendor)] = ([str(e) for e in errors], listed)
            nxt = page.get("cursor") or {}
            if not nxt.get("next"):
                return out
            cursor = {"limit": limit, "updatedAt": nxt.get("updatedAt"), "batchUUID": nxt.get("batchUUID")}
        return out

    def card_creation_status(self, offer_id: str) -> CardCreation:
        """Created once a card of this vendor code made since this process first uploaded it is among the
        cards (so a re-send after an upload whose answer was lost, which WB lists as a duplicate vendor
        code, does not hide the card the first upload made); failed while the card is in WB's error list
        (a corrected re-send takes it out); else still pending. Without an upload of ours to compare with
        (another process started it), the error list is believed first."""
        sent = self._uploaded.get(offer_id)
        cards = [c for c in self.list_cards() if c.offer_id == offer_id]
        if sent is not None:
            made = [c for c in cards if not self._older_than(c, sent)]
            if made:
                return CardCreation(offer_id, "created", card=made[0])
        errors, listed = self._card_errors().get(offer_id, ([], None))
        latest = self._last_upload.get(offer_id)
        if errors and (latest is None or listed is None or listed >= latest - ERRORS_CLOCK_SLACK):
            return CardCreation(offer_id, "failed", errors)  # (errors listed before our latest re-send are stale)
        if sent is None and cards:
            return CardCreation(offer_id, "created", card=cards[0])
        return CardCreation(offer_id, "pending")

    @staticmethod
    def _older_than(card: Card, sent: datetime) -> bool:
        """The card existed before our upload (another card with the same vendor code: the upload will
        land in the error list), allowing two minutes of clock difference."""
        try:
            return _when(card.native.get("createdAt")) < sent - timedelta(minutes=2)
        except (TypeError, ValueError):
            return False

    def add_photos(self, card: Card, urls: Sequence[str]) -> None:
        """Give a created card its photos by URL (`media/save`: the list replaces the card's photos)."""
        if not urls:
            return
        if len(urls) > 30:
            raise InvalidRequest("a Wildberries card holds at most 30 photos", account=self.account,
                                 endpoint="media_save")
        data = self.http.call("media_save", json={"nmId": int(card.group_id), "data": list(urls)}).json_object()
        if data.get("error"):
            raise MarketplaceError(f"photos refused: {data.get('errorText')}", account=self.account,
                                   endpoint="media_save", native=data)

    def _nm(self, card_id: str) -> str:
        if card_id in self._nm_of_chrt:
            return self._nm_of_chrt[card_id]
        if not self._nm_of_chrt:
            self.list_cards()
        return self._nm_of_chrt.get(card_id, card_id)  # an nmID given directly

    def set_visibility(self, card_ids: Sequence[str], visible: bool) -> list[ItemResult]:
        """Trash (hide) or recover cards. NB: a card in WB's trash keeps selling while it has stock;
        zero its stock first (push_stocks) to stop sales."""
        endpoint = "cards_recover" if visible else "cards_to_trash"
        nms = {cid: self._nm(cid) for cid in card_ids}
        results: list[ItemResult] = []
        for chunk in batches(sorted(set(nms.values())), self.map[endpoint].batch or 1000):
            try:
                data = self.http.call(endpoint, json={"nmIDs": [int(n) for n in chunk]}).json_object()
                ok, error = not data.get("error"), str(data.get("errorText") or "")
            except MarketplaceError as exc:
                ok, error = False, str(exc)
            results += [ItemResult(cid, ok, error) for cid, nm in nms.items() if nm in chunk]
        return results

    # ------------------------------------------------------------ prices and stocks

    def push_prices(self, changes: Sequence[PriceChange]) -> list[ItemResult]:
        by_nm: dict[int, dict[str, Any]] = {}
        keys: dict[int, str] = {}
        for ch in changes:
            nm = int(self._nm(ch.card_id))
            item: dict[str, Any] = {"nmID": nm, "price": int(ch.price.to_integral_value())}
            if ch.discount_percent is not None:
                item["discount"] = int(ch.discount_percent)
            by_nm[nm] = item
            keys[nm] = ch.card_id
        results: list[ItemResult] = []
        for chunk in batches(list(by_nm.values()), self.map["prices_upload"].batch):
            try:
                reply = self.http.call("prices_upload", json={"data": chunk}, ok_statuses=(208,))
                data = reply.json_object()
                ok = not data.get("error")
                native = data.get("data")
                error = str(data.get("errorText") or "") if not ok else ""
            except InvalidRequest as exc:
                ok, native, error = False, None, str(exc)
            except MarketplaceError as exc:
                ok, native, error = False, exc.native, str(exc)
            results += [ItemResult(keys[d["nmID"]], ok, error, retryable=False, native=native) for d in chunk]
        return results

    def read_prices(self) -> list[PriceChange]:
        """The prices WB holds now, in WB's terms: per nmID (`card_id`) the base price and the discount
        in percent (the buyer pays the price less the discount; `cloud_sync.money.price_list.read_prices`
        converts). A product whose sizes are priced apart (`editableSizePrice`, sizes at different
        prices) gives one price per size, `card_id` = chrtID. `GET /api/v2/list/goods/filter`, paged
        by limit/offset until WB answers an empty page (as the spec says)."""
        limit = min(1000, self.map["prices_list"].batch or 1000)
        out: list[PriceChange] = []
        offset = 0
        while True:
            data = self.http.call("prices_list", params={"limit": limit, "offset": offset}).json_object()
            goods = (data.get("data") or {}).get("listGoods") if isinstance(data.get("data"), dict) else None
            if data.get("error") or not isinstance(goods, list):
                raise self._bad(f"listGoods missing in the answer ({data.get('errorText') or 'no data'})",
                                "prices_list")
            if not goods:
                return out
            for g in goods:
                out += self._goods_prices(g)
            offset += limit

    def _goods_prices(self, g: dict[str, Any]) -> list[PriceChange]:
        """One product of `listGoods` as PriceChanges (one per nmID, or per size where sizes differ)."""
        try:
            nm, offer = str(int(g["nmID"])), str(g.get("vendorCode", ""))
            discount = _int(g.get("discount") or 0, "discount")
            sizes = [(str(int(s["sizeID"])), _money(s["price"])) for s in g.get("sizes") or []]
        except (KeyError, TypeError, ValueError) as exc:
            raise self._bad(f"a product's prices cannot be read ({exc})", "prices_list") from None
        for chrt, _ in sizes:
            self._nm_of_chrt.setdefault(chrt, nm)
        prices = {price for _, price in sizes}
        if not prices:
            return []
        if len(prices) == 1 or not g.get("editableSizePrice"):
            return [PriceChange(nm, offer, sizes[0][1], discount_percent=discount)]
        return [PriceChange(chrt, offer, price, discount_percent=discount) for chrt, price in sizes]

    def push_stocks(self, levels: Sequence[StockLevel]) -> list[ItemResult]:
        """Set FBS stocks: per warehouse, in batches of 1000 chrtIds; the last level of a pair wins."""
        # grouped by the ids as given (one dict step per level: this runs before the first request, so
        # it is time added to the push); ids written otherwise than WB writes them (rare) group again
        raw: dict[str, dict[str, StockLevel]] = {}
        last, pairs = None, {}
        for lv in levels:
            if lv.warehouse_id != last:  # levels come a warehouse after another: one look-up per run
                last = lv.warehouse_id
                pairs = raw.get(last)
                if pairs is None:
                    pairs = raw[last] = {}
            pairs[lv.card_id] = lv
        results: list[ItemResult] = []
        if not (_chrt_ids(raw) and all(_chrt_ids(pairs) for pairs in raw.values())):
            raw, results = _as_chrt_ids(levels)
        tasks = [(wh, chunk) for wh, pairs in raw.items()
                 for chunk in batches(list(pairs.values()), self.map["stocks_update"].batch)]
        for answered in in_parallel(lambda t: self._put_stocks(*t), tasks, self.push_workers):
            results += answered
        return results

    def _put_stocks(self, wh: str, chunk: list[StockLevel]) -> list[ItemResult]:
        def key(lv: StockLevel) -> str:
            return f"{lv.card_id}@{wh}"

        body = {"stocks": [{"chrtId": int(lv.card_id), "amount": int(lv.quantity)} for lv in chunk]}
        try:
            self.http.call("stocks_update", path_params={"warehouseId": wh}, json=body)
            return [ItemResult(key(lv), True) for lv in chunk]
        except InvalidRequest as exc:
            return [ItemResult(key(lv), False, str(exc)) for lv in chunk]
        except MarketplaceError as exc:
            if exc.status != 409 or not isinstance(exc.native, list | dict):
                return [ItemResult(key(lv), False, str(exc), retryable=exc.retryable) for lv in chunk]
            # 409: nothing applied; drop the chrtIds WB named and send the rest once more
            errors = exc.native if isinstance(exc.native, list) else [exc.native]
            bad: set[int] = set()
            for err in errors:
                for d in (err.get("data") or []) if isinstance(err, dict) else []:
                    if isinstance(d, dict) and "chrtId" in d:
                        bad.add(int(d["chrtId"]))
            if not bad:
                return [ItemResult(key(lv), False, str(exc)) for lv in chunk]
            rest = [lv for lv in chunk if int(lv.card_id) not in bad]
            failed = [ItemResult(key(lv), False, "NotFound: WB does not know this chrtId on this warehouse")
                      for lv in chunk if int(lv.card_id) in bad]
            return failed + (self._put_stocks(wh, rest) if rest else [])

    def read_stocks(self, kind: Literal["fbs", "fbo"] = "fbs",
                    cards: Sequence[StockKey] | None = None) -> list[StockLevel]:
        """FBS: per seller warehouse (`POST /api/v3/stocks/{warehouseId}`, every chrtId of the cards; with
        `cards`, only theirs, at their warehouses); FBO: per size and WB warehouse
        (`stocks-report/wb-warehouses`: `quantity`, what buyers can put in the basket; units on their way
        to or from buyers are not counted; `cards` filters it here, the report has no such filter)."""
        if kind == "fbo":
            levels = self._read_fbo_stocks()
            return levels if cards is None else only_keys(levels, cards)
        if cards is not None:
            return self._read_named_stocks(cards)
        offer = {c.native_id: c.offer_id for c in self.list_cards()}
        return self._read_fbs_stocks([wh.native_id for wh in self.warehouses()], {}, offer)

    def _read_named_stocks(self, cards: Sequence[StockKey]) -> list[StockLevel]:
        """The named chrtIds at their warehouses (a key without a warehouse: at every seller warehouse)."""
        offer = {k.card_id: k.offer_id for k in cards if k.card_id.isdigit()}
        anywhere = {k.card_id for k in cards if not k.warehouse_id and k.card_id in offer}
        whs = sorted({k.warehouse_id for k in cards if k.warehouse_id})
        if anywhere:
            whs = sorted({*whs, *(wh.native_id for wh in self.warehouses())})
        named = {wh: {k.card_id for k in cards if k.warehouse_id == wh and k.card_id in offer} | anywhere
                 for wh in whs}
        return only_keys(self._read_fbs_stocks([wh for wh in whs if named[wh]], named, offer), cards)

    def _read_fbs_stocks(self, warehouses: Sequence[str], named: dict[str, set[str]],
                         offer: dict[str, str]) -> list[StockLevel]:
        """`POST /api/v3/stocks/{warehouseId}` per warehouse for its chrtIds (`named[wh]`, every one of
        `offer` when not named), <= the endpoint's batch a request."""
        out: list[StockLevel] = []
        for wh_id in warehouses:
            for chunk in batches(sorted(named.get(wh_id, offer)), self.map["stocks_read"].batch or 1000):
                data = self.http.call("stocks_read", path_params={"warehouseId": wh_id},
                                      json={"chrtIds": [int(c) for c in chunk]}).json_object()
                for s in data.get("stocks") or []:
                    try:
                        chrt = str(s["chrtId"])
                        out.append(StockLevel(chrt, offer.get(chrt, ""), wh_id, int(s["amount"])))
                    except (KeyError, TypeError, ValueError):
                        raise self._bad("a stock without chrtId or amount", "stocks_read") from None
        return out

    def _read_fbo_stocks(self) -> list[StockLevel]:
        """`POST /api/analytics/v1/stocks-report/wb-warehouses`, paged by limit/offset until a short page.
        A row without a quantity is refused as a whole (nothing is kept from a partial answer)."""
        ep = "fbo_stocks"
        limit = self.map[ep].batch or 250000
        out: list[StockLevel] = []
        offset = 0
        while True:
            data = self.http.call(ep, json={"limit": limit, "offset": offset}).json_object()
            items = (data.get("data") or {}).get("items") if isinstance(data.get("data"), dict) else None
            if not isinstance(items, list):
                raise self._bad("data.items missing in the answer", ep)
            for row in items:
                try:
                    chrt = str(int(row["chrtId"]))
                    out.append(StockLevel(chrt, "", str(int(row["warehouseId"])), _int(row["quantity"], "quantity"),
                                          "fbo", warehouse_name=str(row.get("warehouseName") or "")))
                except (KeyError, TypeError, ValueError) as exc:
                    raise self._bad(f"a WB warehouse's stock cannot be read ({exc})", ep) from None
            if len(items) < limit:
                return out
            offset += limit

    def sale_fees(self, cards: Sequence[FeeAsk]) -> list[SaleFees]:
        """WB's commission for selling from the seller's warehouse (FBS, `kgvpMarketplace`) by the card's
        subject (`GET /api/v1/tariffs/commission`), and its FBS logistics by the card's packed volume
        (`GET /api/v1/tariffs/box` of today: first litre + each further litre; of the warehouses stating
        FBS rates the highest, so the profit is never overstated). Acquiring is not per card in WB's API
        (the realization report has it afterwards): left to the estimate."""
        ep = "tariffs_commission"
        data = self.http.call(ep, params={"locale": "ru"}).json_object()
        report = data.get("report")
        if not isinstance(report, list):
            raise self._bad("report missing in the answer", ep)
        by_subject: dict[str, Decimal] = {}
        for row in report:
            try:
                if row.get("kgvpMarketplace") is not None:
                    by_subject[str(int(row["subjectID"]))] = Decimal(str(row["kgvpMarketplace"]))
            except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
                raise self._bad(f"a commission row cannot be read ({exc})", ep) from None
        base, per_litre = self._fbs_box_rates()
        dims = {c.native_id: c.dimensions for c in self.list_cards()} if base is not None else {}
        out = []
        for c in cards:
            d = c.dimensions or dims.get(c.card_id) or {}
            logistics = None
            if base is not None and all(float(d.get(k) or 0) > 0 for k in ("length", "width", "height")):
                litres = Decimal(str(d["length"])) * Decimal(str(d["width"])) * Decimal(str(d["height"])) / 1000
                logistics = (base + per_litre * max(Decimal(0), litres - 1)).quantize(Decimal("0.01"))
            out.append(SaleFees(c.card_id, commission_percent=by_subject.get(c.category_id), logistics=logistics,
                                source="tariffs/commission, tariffs/box"))
        return out

    def _fbs_box_rates(self) -> tuple[Decimal | None, Decimal]:
        """(first litre, each further litre) of WB's FBS logistics today, the highest stated; (None, 0)
        when no warehouse states one. WB writes the figures as text with a decimal comma («11,2»)."""
        ep = "tariffs_box"
        data = self.http.call(ep, params={"date": datetime.now(UTC).date().isoformat()}).json_object()
        box = ((data.get("response") or {}).get("data") or {}) if isinstance(data.get("response"), dict) else None
        if not isinstance(box, dict):
            raise self._bad("response.data missing in the answer", ep)
        best: tuple[Decimal, Decimal] | None = None
        for w in box.get("warehouseList") or []:
            try:
                b = Decimal(str(w.get("boxDeliveryMarketplaceBase") or "").replace(" ", "").replace(",", "."))
                lit = Decimal(str(w.get("boxDeliveryMarketplaceLiter") or "0").replace(" ", "").replace(",", "."))
            except InvalidOperation:
                continue  # "-": this warehouse takes no FBS parcels
            if best is None or b > best[0]:
                best = (b, lit)
        return (best[0], best[1]) if best else (None, Decimal(0))

    # ------------------------------------------------------------ orders

    def _order(self, raw: dict[str, Any], status: str, wb_status: str = "") -> Order:
        try:
            oid = str(int(raw["id"]))
            price = _money(raw.get("convertedPrice", raw.get("finalPrice", raw["price"])), kopecks=True)
            line = OrderLine(card_id=str(raw["chrtId"]), offer_id=str(raw.get("article", "")), quantity=1, price=price,
                             barcode=str((raw.get("skus") or [""])[0]), native_id=oid,
                             marking_required=bool(raw.get("requiredMeta")), native={"nmId": raw.get("nmId")})
            order = Order(native_id=oid, marketplace="wildberries", account=self.account, native_status=status,
                          created_at=_when(raw["createdAt"]), lines=[line], warehouse_id=str(raw.get("warehouseId", "")),
                          number=oid, native_substatus=wb_status, native=raw)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._bad(f"an order is missing or garbles a field ({exc})", "orders_new") from None
        if status not in SUPPLIER_STATUSES:
            raise self._bad(f"order {oid} has an unknown status {status!r}", "orders_status")
        return order

    def new_orders(self) -> list[Order]:
        data = self.http.call("orders_new").json_object()
        raws = data.get("orders")
        if not isinstance(raws, list):
            raise self._bad("orders missing in the answer", "orders_new")
        orders = [self._order(r, "new", "waiting") for r in raws]  # all parsed before any is kept
        for r in raws:
            self._orders[str(r["id"])] = r
        return orders

    def _statuses(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for chunk in batches([int(i) for i in ids], self.map["orders_status"].batch or 1000):
            data = self.http.call("orders_status", json={"orders": chunk}).json_object()
            for s in data.get("orders") or []:
                try:
                    out[str(s["id"])] = s
                except (KeyError, TypeError):
                    raise self._bad("a status without id", "orders_status") from None
        return out

    def _status_of(self, oid: str) -> dict[str, Any]:
        st = self._statuses([oid]).get(oid)
        if st is None:
            raise MarketplaceError(f"order {oid} is not known to WB", account=self.account, endpoint="orders_status")
        if st.get("supplierStatus") not in SUPPLIER_STATUSES:
            raise self._bad(f"order {oid} has an unknown status {st.get('supplierStatus')!r}", "orders_status")
        return st

    def _raw_order(self, oid: str) -> dict[str, Any]:
        if oid in self._orders:
            return self._orders[oid]
        now = datetime.now(UTC)
        nxt = 0
        while True:
            data = self.http.call("orders_list", params={"limit": 1000, "next": nxt,
                                                         "dateFrom": int((now - timedelta(days=30)).timestamp()),
                                                         "dateTo": int(now.timestamp())}).json_object()
            raws = data.get("orders") or []
            for r in raws:
                self._orders[str(r.get("id"))] = r
            if oid in self._orders or not raws:
                break
            nxt = int(data.get("next") or 0)
        if oid not in self._orders:
            raise MarketplaceError(f"order {oid} not found in the last 30 days", account=self.account,
                                   endpoint="orders_list")
        return self._orders[oid]

    def get_order(self, native_id: str) -> Order:
        st = self._status_of(native_id)
        return self._order(self._raw_order(native_id), st["supplierStatus"], str(st.get("wbStatus", "")))

    def order_statuses(self, native_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(supplierStatus, wbStatus) of each order, up to 1000 per `/api/v3/orders/status` request; an
        order WB does not answer for is left out."""
        out: dict[str, tuple[str, str]] = {}
        for oid, st in self._statuses([str(i) for i in native_ids]).items():
            if st.get("supplierStatus") not in SUPPLIER_STATUSES:
                raise self._bad(f"order {oid} has an unknown status {st.get('supplierStatus')!r}", "orders_status")
            out[oid] = (str(st["supplierStatus"]), str(st.get("wbStatus", "")))
        return out

    def returns(self, since: datetime, order_ids: Sequence[str] = ()) -> list[OrderReturn]:
        raise NotSupported("wildberries", "returns (an FBS parcel coming back shows in its order status: wbStatus"
                           " canceled, canceled_by_client, defect)", account=self.account)

    def set_order_status(self, native_id: str, action: OrderAction, **details: Any) -> StatusChange:
        """confirm: add to a supply of its warehouse (`batch_id=`: the open supply to join; `new_batch=True`:
        open a new one — the caller knows of no open supply, so the one this adapter last used may be
        closing; a supply WB refuses (delivered) is replaced by a new one); assemble: WB has no such status;
        an order in `confirm` whose marking identifiers include sgtin gets its Честный знак code
        (`marking_codes={order id, article or chrtId: [code]}`, PUT meta/sgtin; a required code missing is a
        MarketplaceError before anything is sent), otherwise nothing is sent; ship: deliver the order's own
        supply (`batch_id=`: the supply recorded for it, checked against WB; else read from WB), with
        `handed_over=[order ids]` every other order of that supply still on assembly is first moved to
        another open supply (`next_batch=`, else a new one; WB moves orders between open supplies), so only
        parcels that left are delivered; the answer's `native` says `shipped` (the order ids the delivery
        moved to `complete`) and `moved` ({order id: its new supply}); cancel: cancel.
        Reads the status first and after any uncertain or refused answer. reduce: an assembly task is one
        unit, so there is nothing to take out of it (NotSupported; a task not found goes whole)."""
        oid = str(native_id)
        if action == "reduce":
            raise NotSupported("wildberries", "reduce (an assembly task is one unit: cancel it instead)", account=self.account,
                               seller_text="Сборочное задание Wildberries — это одна единица товара: убрать из него"
                                           " часть нельзя, его можно только отменить.")
        if details.get("batch_id") and not details.get("supply_id"):
            details["supply_id"] = details["batch_id"]  # a WB shipment batch is a supply
        sgtins: list[str] | None = None
        if action == "assemble" and "requiredMeta" in self._orders.get(oid, {}):
            sgtins = self._sgtins_to_send(oid, details)  # a missing code is refused before any request
        st = self._status_of(oid)
        current = st["supplierStatus"]
        if action == "assemble":
            if current == "confirm" and sgtins is None:
                sgtins = self._sgtins_to_send(oid, details)
            if current == "confirm" and sgtins:
                return self._send_sgtins(oid, sgtins)
            ok = current in ("confirm", "complete")
            return StatusChange(oid, action, ok, current, already=ok,
                                error="" if ok else f"order is {current}; confirm it first",
                                native={"note": "WB has no separate assembled status"})
        if action not in TARGET:
            raise InvalidRequest(f"unknown action {action!r}", account=self.account, endpoint="set_order_status")
        if current in TARGET[action]:
            supply = self._supply_of(oid, fresh=True)
            native: dict[str, Any] = {}
            if action == "ship" and supply:
                native["shipped"] = [m for m, s in self._statuses(self._supply_orders(supply)).items()
                                     if s.get("supplierStatus") == "complete"]
            return StatusChange(oid, action, True, current, already=True, batch_id=supply, native=native)
        allowed = {"confirm": {"new"}, "ship": {"confirm"}, "cancel": {"new", "confirm"}}[action]
        if current not in allowed:
            return StatusChange(oid, action, False, current, error=f"cannot {action} an order that is {current}")
        outcome: dict[str, Any] = {}
        for attempt in range(MOVE_ATTEMPTS):
            sent = False
            try:
                outcome = self._send_move(oid, action, details)
                sent = True
            except Uncertain as exc:
                log.warning("%s: %s of order %s uncertain (%s); reading it back", self.account, action, oid, exc)
                self.http.settle(attempt)
            except MarketplaceError as exc:
                if exc.status != 409:
                    raise
                if action == "ship" and _code(exc) == "MetaValidationFail" and not self._late_in(exc, details):
                    # a parcel that left lacks its marking: re-sending won't help
                    return StatusChange(oid, action, False, current, error=f"WB refused the supply: {exc}",
                                        native={"native": exc.native})
                if action == "confirm":  # the supply was delivered meanwhile: the next attempt opens another
                    details["supply_id"], details["new_batch"] = "", True
                log.warning("%s: %s of order %s refused (%s); reading it back", self.account, action, oid, exc)
            now = self._status_of(oid)["supplierStatus"]
            if now in TARGET[action]:
                return StatusChange(oid, action, True, now, batch_id=self._supply_of(oid, fresh=not sent),
                                    native=outcome)
            if now not in allowed:
                return StatusChange(oid, action, False, now, error=f"order moved to {now} meanwhile")
        return StatusChange(oid, action, False, now, error=f"{action} did not take after {MOVE_ATTEMPTS} attempts")

    @staticmethod
    def _late_in(exc: MarketplaceError, details: dict[str, Any]) -> bool:
        """Whether a refused delivery names an order that had not been handed over (it joined the supply
        after it was read): another attempt moves it out first."""
        ready = details.get("handed_over")
        if ready is None:
            return False
        ready = {str(i) for i in ready}
        data = exc.native.get("data") if isinstance(exc.native, dict) else None
        named = {str(o.get("id")) for o in (data or {}).get("orders") or [] if isinstance(o, dict)}
        return bool(named - ready)

    # ------------------------------------------------------------ marking (Честный знак)

    def _meta_keys(self, oid: str) -> tuple[set[str], set[str]]:
        """(required, possible) marking identifiers of an order: from the order as listed by
        `orders/new` when seen there, else from WB's marking identifiers of the order."""
        raw = self._orders.get(oid, {})
        if "requiredMeta" in raw:
            required = set(raw.get("requiredMeta") or [])
            return required, required | set(raw.get("optionalMeta") or [])
        data = self.http.call("orders_meta", json={"orders": [int(oid)]}).json_object()
        required, possible = set(), set()
        for o in data.get("orders") or []:
            if str(o.get("id")) != oid:
                continue
            for d in o.get("metaDetails") or []:
                key = str(d.get("key") or "")
                possible.add(key)
                if d.get("decision") not in SGTIN_DELIVERABLE:  # still required, or its code was refused
                    required.add(key)
        return required, possible

    def _sgtins_to_send(self, oid: str, details: dict[str, Any]) -> list[str]:
        """The Честный знак codes of the order's one unit, from `marking_codes={order id, article or
        chrtId: [codes]}`; [] when the order takes none. A required code that is missing is refused
        here, before anything is sent."""
        required, possible = self._meta_keys(oid)
        if "sgtin" not in possible:
            return []
        raw = self._orders.get(oid) or self._raw_order(oid)
        codes = {str(k): [str(c) for c in v] for k, v in (details.get("marking_codes") or {}).items()}
        mine = next((codes[k] for k in (oid, str(raw.get("article", "")), str(raw.get("chrtId", "")))
                     if codes.get(k)), [])
        if not mine and "sgtin" in required:
            raise MarketplaceError(f"order {oid} ({raw.get('article', '')}) needs its Честный знак marking code "
                                   "(sgtin); none was given", account=self.account, endpoint="order_sgtin")
        return mine[:1]  # a WB assembly task is one unit

    def _send_sgtins(self, oid: str, sgtins: list[str]) -> StatusChange:
        try:
            self.http.call("order_sgtin", path_params={"orderId": oid}, json={"sgtins": sgtins})
        except InvalidRequest:
            raise
        except MarketplaceError as exc:
            if exc.status not in (400, 409):
                raise
            return StatusChange(oid, "assemble", False, "confirm", error=f"WB refused the marking code: {exc}",
                                native={"native": exc.native})
        return StatusChange(oid, "assemble", True, "confirm", batch_id=self._supply_of(oid),
                            native={"note": "WB has no separate assembled status", "sgtins": len(sgtins)})

    def _supply_of(self, oid: str, *, fresh: bool = False) -> str:
        """The supply the order is in ("" for none), from the order as last read or moved (`fresh`: read
        from WB again — an order listed as new carries no supply)."""
        if fresh:
            self._orders.pop(oid, None)
        try:
            return str(self._raw_order(oid).get("supplyId") or "")
        except MarketplaceError:
            return ""

    def _supply_orders(self, supply: str) -> list[str]:
        """The ids of the orders WB holds in a supply (cancelled ones included)."""
        data = self.http.call("supply_order_ids", path_params={"supplyId": supply}).json_object()
        ids = data.get("orderIds")
        if not isinstance(ids, list):
            raise self._bad("orderIds missing in the answer", "supply_order_ids")
        return [str(i) for i in ids]

    def _send_move(self, oid: str, action: str, details: dict[str, Any]) -> dict[str, Any]:
        if action == "cancel":
            self.http.call("order_cancel", path_params={"orderId": oid})
            return {}
        raw = self._raw_order(oid)
        wh = str(raw.get("warehouseId", ""))
        if action == "confirm":
            supply = details.get("supply_id") or ("" if details.get("new_batch") else self._open_supply.get(wh))
            if not supply:
                supply = self._create_supply(wh)
                details["supply_id"], details["new_batch"] = supply, False  # a retry joins it, not another
            self._open_supply[wh] = supply
            try:
                self.http.call("supply_add_orders", path_params={"supplyId": supply}, json={"orders": [int(oid)]})
            except MarketplaceError as exc:
                if exc.status == 409 and self._open_supply.get(wh) == supply:
                    del self._open_supply[wh]  # delivered meanwhile (or full): the next attempt opens another
                raise
            raw["supplyId"] = supply
            return {}
        return self._deliver(oid, wh, details)

    def _deliver(self, oid: str, wh: str, details: dict[str, Any]) -> dict[str, Any]:
        """Deliver the order's own supply as WB holds it now; orders of it not handed over move out first."""
        supply = str(details.get("supply_id") or "")
        members = self._supply_orders(supply) if supply else []
        if oid not in members:  # the supply recorded for it is not where WB has it (or none was recorded)
            supply = self._supply_of(oid, fresh=True)
            if not supply:
                raise MarketplaceError(f"order {oid} is in no supply", account=self.account, endpoint="supply_deliver")
            members = self._supply_orders(supply)
        on_assembly = [m for m, st in self._statuses(members).items() if st.get("supplierStatus") == "confirm"]
        ready = details.get("handed_over")
        late = [m for m in on_assembly if m != oid and ready is not None and m not in {str(i) for i in ready}]
        moved: dict[str, str] = details.setdefault("moved_out", {})  # kept across attempts of one call
        if late:
            target = str(details.get("next_batch") or "")  # the caller's open supply, else a new one
            if not target or target == supply:
                target = details["next_batch"] = self._create_supply(wh)
                self._open_supply[wh] = target
            for chunk in batches([int(m) for m in late], self.map["supply_add_orders"].batch or 100):
                self.http.call("supply_add_orders", path_params={"supplyId": target}, json={"orders": chunk})
            for m in late:
                moved[m] = target
                if m in self._orders:
                    self._orders[m]["supplyId"] = target
            log.info("%s: supply %s: %d order(s) not handed over moved to supply %s before delivery",
                     self.account, supply, len(late), target)
        if self._open_supply.get(wh) == supply:
            del self._open_supply[wh]  # a delivered supply takes no more orders
        details["supply_id"] = supply
        self.http.call("supply_deliver", path_params={"supplyId": supply})
        return {"shipped": [m for m in on_assembly if m not in moved], "moved": moved}

    def _create_supply(self, wh: str) -> str:
        """A new open supply; when its creation answer is lost, find it again by its unique name."""
        name = f"marketsync {wh} {datetime.now(UTC):%Y-%m-%d %H:%M:%S.%f}"
        try:
            reply = self.http.call("supply_create", json={"name": name})
        except Uncertain:
            found = self._supply_named(name)
            if found:
                return found
            raise
        supply = str(reply.json_object().get("id") or "")
        if not supply:
            raise self._bad("supply created without an id", "supply_create")
        return supply

    def _supply_named(self, name: str) -> str:
        nxt = 0
        while True:
            data = self.http.call("supplies_list", params={"limit": 1000, "next": nxt}).json_object()
            supplies = data.get("supplies") or []
            for s in supplies:
                if s.get("name") == name and not s.get("done"):
                    return str(s.get("id") or "")
            if len(supplies) < 1000:
                return ""
            nxt = int(data.get("next") or 0)

    def get_label(self, native_id: str, *, fmt: LabelFormat | None = None, size: str = "") -> Label:
        fmt = fmt or "png"
        if fmt not in STICKER_TYPES:
            raise NotSupported("wildberries", f"get_label({fmt}) (WB stickers: png, svg, zpl)", account=self.account)
        width, height = STICKER_SIZES.get(size or "58x40", (0, 0))
        if not width:
            raise InvalidRequest(f"sticker size {size!r}: WB offers 58x40 or 40x30", account=self.account,
                                 endpoint="stickers")
        data = self.http.call("stickers", params={"type": STICKER_TYPES[fmt], "width": width, "height": height},
                              json={"orders": [int(native_id)]}).json_object()
        for s in data.get("stickers") or []:
            if str(s.get("orderId")) == str(native_id):
                try:
                    blob = base64.b64decode(s["file"], validate=True)
                except (KeyError, ValueError):
                    raise self._bad("a sticker without a readable file", "stickers") from None
                return Label(str(native_id), blob, fmt, float(width), float(height),
                             barcode_text=str(s.get("barcode") or ""))
        raise MarketplaceError(f"no sticker for order {native_id} (stickers exist only once it is confirmed)",
                               account=self.account, endpoint="stickers")

    # ------------------------------------------------------------ hand-over documents

    def handover_documents(self, native_ids: Sequence[str], *, batch_id: str = "") -> list[HandoverDocument]:
        """The supply's QR sticker (580x400 px PNG; WB gives it once the supply is delivered — before that,
        409 SupplyNotClosed: retried). WB's FBS API has no acceptance act."""
        supplies = [batch_id] if batch_id else sorted({s for s in (self._supply_of(str(o)) for o in native_ids) if s})
        if not supplies:
            raise MarketplaceError(f"orders {', '.join(map(str, native_ids))} are in no supply", account=self.account,
                                   endpoint="supply_barcode")
        out = []
        for supply in supplies:
            try:
                data = self.http.call("supply_barcode", path_params={"supplyId": supply},
                                      params={"type": "png"}).json_object()
            except MarketplaceError as exc:
                if exc.status == 409:  # not delivered yet: the ship comes first
                    raise MarketplaceError(f"supply {supply} is not delivered yet", account=self.account,
                                           endpoint="supply_barcode", status=409, retryable=True) from exc
                raise
            try:
                blob = base64.b64decode(data["file"], validate=True)
            except (KeyError, ValueError, TypeError):
                raise self._bad("a supply QR without a readable file", "supply_barcode") from None
            out.append(HandoverDocument("supply_qr", "png", blob, f"QR-код поставки {data.get('barcode') or supply}",
                                        58.0, 40.0, ref=str(data.get("barcode") or supply)))
        return out

    # ------------------------------------------------------------ reports

    def realization_report(self, period_from: date, period_to: date, *,
                           progress: ReportProgress | None = None) -> RealizationReport:
        """WB finance `sales-reports/detailed`, dates in Moscow time, paged by rrdId; WB's own sums of
        those reports (`sales-reports/list`) as `native_totals`."""
        limit = self.map["sales_report_detailed"].batch or 100000
        rrd = 0
        lines: list[ReportLine] = []
        report_id = ""
        tell = progress or (lambda done, steps: None)
        calls, steps = 0, 2  # a page of rows, then WB's sums (each 1 request a minute)
        tell(calls, steps)
        while True:
            body = {"dateFrom": period_from.isoformat(), "dateTo": period_to.isoformat(), "limit": limit,
                    "rrdId": rrd, "period": "daily"}
            reply = self.http.call("sales_report_detailed", json=body)
            calls += 1
            if reply.status == 204:
                break
            rows = reply.json()
            if not isinstance(rows, list):
                raise self._bad("expected a list of report rows", "sales_report_detailed")
            parsed = [self._report_line(r) for r in rows]
            lines += parsed
            if rows:
                rrd = max(int(r.get("rrdId") or 0) for r in rows)
                report_id = str(rows[-1].get("reportId", report_id))
            if len(rows) < limit:
                break
            steps += 1  # a full page: another one follows
            tell(calls, steps)
        tell(calls, steps)
        totals = self._report_totals(period_from, period_to)
        tell(steps, steps)
        return RealizationReport(self.account, period_from, period_to, lines, totals, report_id,
                                 notes=dict(REPORT_NOTES))

    def _report_totals(self, period_from: date, period_to: date) -> dict[str, Decimal]:
        """WB's own sums of the realization reports of the period (`sales-reports/list`, the same
        dates and periodicity as the rows), in the report's terms, to reconcile the rows against.

        Compared (the same columns of the same report, summed by WB; COMPARED_SUMS):
          revenue   <- retailAmountSum ("Продажа": retailAmount)
          logistics <- deliveryServiceSum ("Стоимость логистики": deliveryService; our rows' logistics
                       also hold rebillLogisticCost, of which the list gives no sum)
          storage   <- paidStorageSum, penalty <- penaltySum
          other     <- paidAcceptanceSum + deductionSum + cashbackAmountSum - cashbackDiscountSum
                       + cashbackCommissionChangeSum - additionalPaymentSum
          to_pay    <- bankPaymentSum ("Итого к оплате": what WB pays, every deduction taken)
        Kept, not compared: forPaySum ("К перечислению за товар", before the deductions) and
        paymentSchedule. WB gives no commission or acquiring sum (avgSalePercent is a discount percent)
        and no quantities."""
        limit = min(1000, self.map["sales_reports_list"].batch or 1000)
        sums: dict[str, Decimal] = {}
        offset = 0
        while True:
            body = {"dateFrom": period_from.isoformat(), "dateTo": period_to.isoformat(), "limit": limit,
                    "offset": offset, "period": "daily"}
            reply = self.http.call("sales_reports_list", json=body)
            reports = [] if reply.status == 204 else reply.json()
            if not isinstance(reports, list):
                raise self._bad("expected a list of reports", "sales_reports_list")
            for rep in reports:
                for name in REPORT_SUMS:
                    if isinstance(rep, dict) and rep.get(name) not in (None, ""):
                        try:
                            sums[name] = sums.get(name, Decimal(0)) + _money(rep[name])
                        except ValueError as exc:
                            raise self._bad(f"a report sum cannot be read ({exc})", "sales_reports_list") from None
            if len(reports) < limit:
                break
            offset += limit
        if not sums:
            return {}
        totals = {ours: sum((-sums.get(k[1:], Decimal(0)) if k.startswith("-") else sums.get(k, Decimal(0))
                             for k in theirs), Decimal(0)) for ours, theirs in COMPARED_SUMS.items()}
        return totals | {k: sums[k] for k in ("forPaySum", "paymentSchedule") if k in sums}

    def _report_line(self, r: dict[str, Any]) -> ReportLine:
        try:
            doc = str(r.get("docTypeName") or "")
            qty = int(r.get("quantity") or 0)
            revenue = _money(r.get("retailAmount") or 0)
            sign = -1 if doc == "Возврат" else 1  # a return gives the goods' money and the fees back
            fee = sign * _money(r.get("ppvzSalesCommission") or 0)
            acquiring = sign * _money(r.get("acquiringFee") or 0)
            cut = {ours: sum((-_money(r.get(k[1:]) or 0) if k.startswith("-") else _money(r.get(k) or 0)
                              for k in theirs), Decimal(0)) for ours, theirs in ROW_DEDUCTIONS.items()}
            logistics, other = cut["logistics"], cut["other"]
            # forPay is what WB pays for the goods (commission and acquiring taken); the row's deductions
            # come off it, as WB's «Итого к оплате» takes them
            to_pay = sign * _money(r.get("forPay") or 0) - sum(cut.values(), Decimal(0))
            kind: Any = "sale" if doc == "Продажа" else "return" if doc == "Возврат" else \
                "logistics" if logistics else "penalty" if cut["penalty"] else \
                "storage" if cut["storage"] else "other"
            if kind == "return":
                revenue, qty = -abs(revenue), -abs(qty)
            sale_day = r.get("saleDt") or r.get("rrDate")
            day = (_when(sale_day) + MSK).date() if sale_day and "T" in str(sale_day) else \
                (date.fromisoformat(str(sale_day)) if sale_day else None)
        except (ValueError, TypeError) as exc:
            raise self._bad(f"a report row cannot be read ({exc})", "sales_report_detailed") from None
        return ReportLine(kind=kind, offer_id=str(r.get("vendorCode") or ""), card_id=str(r.get("nmId") or ""),
                          quantity=qty, revenue=revenue, fee=fee, logistics=logistics, other=other, to_pay=to_pay,
                          date=day, order_native_id=str(r.get("orderId") or ""), barcode=str(r.get("sku") or ""),
                          native=r, acquiring=acquiring, storage=cut["storage"], penalty=cut["penalty"])

    def parse_push(self, headers: dict[str, str], body: bytes) -> list[OrderEvent]:
        raise NotSupported("wildberries", "parse_push (WB sends no order notifications; poll new_orders)",
                           account=self.account)


# ---------------------------------------------------------------- prices in Wildberries' terms


def _rub(value: Decimal) -> str:
    """Money as a Russian reader writes it: «2 992,50 ₽», «4 600 ₽»."""
    text = f"{value:,.2f}".replace(",", "\u00a0").replace(".", ",")
    return (text[:-3] if text.endswith(",00") else text) + "\u00a0₽"


class _WildberriesPrices(PriceModel):
    """WB prices a whole nmID (all its sizes) at once, as a base price and a whole discount %: the buyer
    pays base × (100 − discount) / 100. The seller's crossed-out price becomes the base (whole roubles)."""

    def price_change(self, *, card_id: str, group_id: str | None, offer_id: str, price: Decimal,
                     crossed_out: Decimal | None, min_price: Decimal | None) -> PriceChange:
        base = crossed_out or price
        discount = 0 if base <= price else int(((base - price) / base * 100).quantize(Decimal(1), ROUND_HALF_UP))
        return PriceChange(card_id=group_id or card_id, offer_id=offer_id,
                           price=base.quantize(Decimal(1), ROUND_HALF_UP), discount_percent=discount)

    def buyer_price(self, change: PriceChange, price: Decimal) -> Decimal:
        if change.discount_percent:
            return kopecks(change.price * (100 - change.discount_percent) / 100)
        return price

    def not_exact(self, price: Decimal, crossed_out: Decimal | None, buyer_pays: Decimal) -> str:
        if buyer_pays == price or not crossed_out:
            return ""
        base = crossed_out.quantize(Decimal(1), ROUND_HALF_UP)
        discount = int(((base - price) / base * 100).quantize(Decimal(1), ROUND_HALF_UP))
        exact = []  # a whole base price with a whole discount that gives exactly the typed price
        for d in sorted(range(1, 96), key=lambda d: abs(d - discount)):
            b = price * 100 / (100 - d)
            if b == b.to_integral_value():
                exact.append(f"зачёркнутая {_rub(b)} при скидке {d}%")
            if len(exact) == 2:
                break
        text = (f"{_rub(price)} нельзя получить из зачёркнутой {_rub(base)}: WB ставит скидку целым процентом,"
                f" ближайшая цена — {_rub(buyer_pays)} (скидка {discount}%)")
        return text + (f"; ровно {_rub(price)} будет: {' или '.join(exact)}" if exact else "")

    def seller_price(self, change: PriceChange) -> tuple[Decimal, Decimal | None, Decimal | None]:
        base = Decimal(change.price)
        if change.discount_percent:  # the buyer pays the base less the discount; the base shows crossed out
            return (base * (100 - Decimal(change.discount_percent)) / 100).quantize(Decimal("0.01")), base, \
                change.min_price
        return base, change.old_price or None, change.min_price


# a drop to a third or less of the old price is held in WB's price quarantine (prices spec)
PRICE_MODEL = _WildberriesPrices(PriceTerms("wildberries", quarantine_ratio=Decimal(3), prices_by_group=True))
