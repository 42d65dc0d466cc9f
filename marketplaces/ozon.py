"""The Ozon adapter: the common calls of `marketplaces.base.Marketplace` in Ozon Seller API requests.

Owns Ozon's shapes: products (`Card.native_id` = product_id, `group_id` = sku), archive/unarchive as
hide/return, prices as strings with old_price, stocks per product x warehouse with per-item answers
inside HTTP 200 (`TOO_MANY_REQUESTS` retried once its 30 s window has passed; other item errors
returned as they are), FBS postings via the current `/v4/posting/fbs/*` methods: confirm = nothing to
send (an Ozon posting needs no confirmation), assemble = `/v4/posting/fbs/ship` (packages; products
that need Честный знак codes get them first through `/v6/fbs/posting/product/exemplar/*`), ship = a
carriage created and approved for the posting's delivery method, cancel = `/v2/posting/fbs/cancel`;
the package label (PDF); the acceptance act and waybill of a shipping (`/v2/posting/fbs/act/*`); the
monthly realization report `/v2/finance/realization` with each posting's logistics and processing per
item from `/v3/finance/transaction/list`, reconciled with Ozon's own transaction totals of its months
(`/v3/finance/transaction/totals`).

Status changes read the posting first and read it back after any uncertain answer: no posting is
moved twice. `config.credentials = {"Client-Id": ..., "Api-Key": ...}`; the limits (50 rps per
Client-Id, 80 stock requests per minute, the per-item rules) come from endpoints/ozon.toml.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from marketplaces.base import (
    AccountConfig,
    AuthError,
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
    ReturnLine,
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

log = logging.getLogger("marketplaces.ozon")

POSTING_STATUSES = {
    "awaiting_registration", "awaiting registration", "acceptance_in_progress", "awaiting_approve",
    "awaiting_verification", "awaiting_packaging", "awaiting_deliver", "delivering", "driver_pickup", "delivered",
    "cancelled", "cancelled_from_split_pending", "not_accepted", "arbitration", "client_arbitration", "sent_by_seller",
}
AFTER_PACKAGING = {"awaiting_deliver", "delivering", "driver_pickup", "delivered", "sent_by_seller"}
HANDED_OVER = {"delivering", "driver_pickup", "delivered", "sent_by_seller"}
# push notifications (push_types) the product uses, as OrderEvent kinds; the rest are acknowledged, ignored
# (TYPE_DELIVERY_DATE_CHANGED, the buyer's delivery window, has no place in the order model: acknowledged, ignored)
PUSH_KINDS = {"TYPE_NEW_POSTING": "created", "TYPE_POSTING_CANCELLED": "cancelled", "TYPE_STATE_CHANGED": "status",
              "TYPE_CUTOFF_DATE_CHANGED": "ship_by"}
# the push model's posting states -> the Seller API's statuses polling gives (push_types, "Correspondence of
# Seller API and push model statuses"); posting_created is awaiting_packaging or awaiting_approve, both "new"
PUSH_STATES = {
    "posting_acceptance_in_progress": "acceptance_in_progress", "posting_created": "awaiting_packaging",
    "posting_awaiting_registration": "awaiting_registration",
    "posting_transferring_to_delivery": "awaiting_deliver", "posting_in_carriage": "awaiting_deliver",
    "posting_not_in_carriage": "awaiting_deliver", "posting_in_arbitration": "arbitration",
    "posting_in_client_arbitration": "client_arbitration", "posting_on_way_to_city": "delivering",
    "posting_transferred_to_courier_service": "delivering", "posting_in_courier_service": "delivering",
    "posting_on_way_to_pickup_point": "delivering", "posting_in_pickup_point": "delivering",
    "posting_conditionally_delivered": "delivering", "posting_driver_pick_up": "driver_pickup",
    "posting_delivered": "delivered", "posting_received": "delivered", "posting_canceled": "cancelled",
    "posting_not_in_sort_center": "not_accepted",
}
RETRYABLE_ITEM_CODES = {"TOO_MANY_REQUESTS"}
ITEM_RETRY_ROUNDS = 3
MOVE_ATTEMPTS = 8  # sends of one status change, each after reading the status back


def validate_payload(ep: Endpoint, payload: Any) -> None:
    """Ozon's documented rules, checked before sending (ValueError -> InvalidRequest)."""
    if ep.name == "stocks_update":
        stocks = payload.get("stocks") if isinstance(payload, dict) else None
        if not stocks or len(stocks) > (ep.batch or 100):
            raise ValueError(f"stocks must hold 1..{ep.batch or 100} pairs")
        for s in stocks:
            if not isinstance(s.get("product_id"), int) or not isinstance(s.get("warehouse_id"), int):
                raise ValueError("product_id and warehouse_id must be integers")
            if not isinstance(s.get("stock"), int) or s["stock"] < 0:
                raise ValueError(f"stock of product {s.get('product_id')} must be a whole number >= 0")
    elif ep.name == "prices_update":
        prices = payload.get("prices") if isinstance(payload, dict) else None
        if not prices or len(prices) > (ep.batch or 1000):
            raise ValueError(f"prices must hold 1..{ep.batch or 1000} items")
        for p in prices:
            if Decimal(p["price"]) <= 0:
                raise ValueError(f"price of {p.get('offer_id')} must be positive")
    elif ep.name == "package_label":
        numbers = payload.get("posting_number") if isinstance(payload, dict) else None
        if not numbers or len(numbers) > (ep.batch or 20):
            raise ValueError(f"1..{ep.batch or 20} postings per label request")


def _import_error(e: dict[str, Any]) -> str:
    """One error of an import task's item in words: the attribute named where Ozon names it."""
    where = f"«{e['attribute_name']}»: " if e.get("attribute_name") else (f"{e['field']}: " if e.get("field") else "")
    return f"Ozon: {where}{e.get('message') or e.get('code') or 'ошибка'}"


def _dec(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValueError(f"not a number: {value!r}") from None


def _when(value: Any) -> datetime:
    dt = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _ozon_time(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


class OzonAdapter:
    """One Ozon seller account (one Client-Id)."""

    name: Literal["ozon"] = "ozon"

    def __init__(self, config: AccountConfig) -> None:
        self.config = config
        self.account = config.name
        creds = config.credentials
        self._client_id = str(creds.get("Client-Id") or creds.get("client_id") or config.options.get("client_id") or "")
        self._api_key = str(creds.get("Api-Key") or creds.get("api_key") or "")
        self.map = load_endpoint_map("ozon", config.endpoints)
        if "client_id" not in config.options and self._client_id:
            config.options = dict(config.options, client_id=self._client_id)  # limits are per Client-Id
        self.http = HttpClient(config, self.map, auth=self._auth, validate=validate_payload)
        self._sku_of: dict[str, int] = {}
        # requests in flight for a push: the stock window (80 a minute) reopens its slots one window after
        # they were used, all together; with few requests in flight they go out one after the other and
        # every window after starts that much later (16: a window's 80 go out in a fifth of the time 4 took)
        self.push_workers = int(config.options.get("push_workers", 16))
        self._product_by_sku: dict[str, str] = {}
        self._import_tasks: dict[str, int] = {}  # offer_id -> the import task this process started for it

    def _auth(self, headers: dict[str, str]) -> None:
        headers["Client-Id"] = self._client_id
        headers["Api-Key"] = self._api_key

    def close(self) -> None:
        self.http.close()

    def _bad(self, message: str, endpoint: str) -> BadResponse:
        return BadResponse(message, account=self.account, endpoint=endpoint)

    # ------------------------------------------------------------ catalog

    def warehouses(self) -> list[Warehouse]:
        out: list[Warehouse] = []
        cursor = ""
        while True:
            body: dict[str, Any] = {"limit": self.map["warehouses"].batch or 200}
            if cursor:
                body["cursor"] = cursor
            data = self.http.call("warehouses", json=body).json_object()
            items = data.get("warehouses")
            if not isinstance(items, list):
                raise self._bad("warehouses missing in the answer", "warehouses")
            for w in items:
                if "warehouse_id" not in w:
                    raise self._bad("a warehouse without warehouse_id", "warehouses")
                out.append(Warehouse(str(w["warehouse_id"]), str(w.get("name", "")),
                                     "dbs" if w.get("is_rfbs") else "fbs", w))
            cursor = str(data.get("cursor") or "")
            if not data.get("has_next") or not cursor:
                return out

    def list_cards(self) -> Iterable[Card]:
        ids: list[int] = []
        last = ""
        limit = self.map["products_list"].batch or 1000
        while True:
            body: dict[str, Any] = {"filter": {"visibility": "ALL"}, "limit": limit}
            if last:
                body["last_id"] = last
            result = self.http.call("products_list", json=body).json_object().get("result")
            if not isinstance(result, dict) or not isinstance(result.get("items"), list):
                raise self._bad("result.items missing in the answer", "products_list")
            for it in result["items"]:
                if "product_id" not in it:
                    raise self._bad("a product without product_id", "products_list")
                ids.append(int(it["product_id"]))
            last = str(result.get("last_id") or "")
            if not last or not result["items"]:
                break
        cards: list[Card] = []
        for chunk in batches(ids, self.map["products_info"].batch or 1000):
            data = self.http.call("products_info", json={"product_id": [str(i) for i in chunk]}).json_object()
            for it in data.get("items") or []:
                try:
                    pid = str(it["id"])
                    statuses = it.get("statuses") or {}
                    self._sku_of[pid] = int(it.get("sku") or 0)
                    self._product_by_sku[str(it.get("sku") or "")] = pid
                    cards.append(Card(native_id=pid, offer_id=str(it["offer_id"]), title=str(it.get("name", "")),
                                      barcodes=[str(b) for b in it.get("barcodes") or []],
                                      category_id=str(it.get("description_category_id", "")),
                                      group_id=str(it.get("sku", "")), visible=not it.get("is_archived", False),
                                      price=_dec(it["price"]) if it.get("price") not in (None, "") else None,
                                      native_status=str(statuses.get("status", "")), native=it))
                except (KeyError, TypeError, ValueError) as exc:
                    raise self._bad(f"a product cannot be read ({exc})", "products_info") from None
        return cards

    # ------------------------------------------------------------ product creation (issue 18.3)

    @staticmethod
    def _category_ids(category_id: str) -> tuple[int, int]:
        try:
            desc, type_id = (int(x) for x in category_id.split(":"))
        except ValueError:
            raise ValueError(f"an Ozon category is 'description_category_id:type_id', got {category_id!r}") from None
        return desc, type_id

    def categories(self, name: str = "") -> list[Category]:
        """Ozon's product types (the leaves of `description-category/tree`) whose name or category holds
        `name`; `Category.id` = "description_category_id:type_id", as the import needs both."""
        data = self.http.call("category_tree", json={"language": "RU"}).json_object()
        if not isinstance(data.get("result"), list):
            raise self._bad("result missing in the category tree", "category_tree")
        out: list[Category] = []

        def walk(nodes: list[Any], desc: dict[str, Any] | None) -> None:
            for node in nodes:
                if not isinstance(node, dict):
                    continue
                if "type_id" in node and desc is not None:
                    cat = Category(f"{desc['description_category_id']}:{node['type_id']}", str(node.get("type_name", "")),
                                   str(desc.get("category_name", "")))
                    wanted = name.casefold()
                    if not node.get("disabled") and (wanted in cat.name.casefold() or wanted in cat.parent_name.casefold()):
                        out.append(cat)
                walk(node.get("children") or [], node if "description_category_id" in node else desc)

        walk(data["result"], None)
        return out

    def category_attributes(self, category_id: str) -> list[CategoryAttribute]:
        desc, type_id = self._category_ids(category_id)
        data = self.http.call("category_attributes", json={"description_category_id": desc, "type_id": type_id,
                                                           "language": "RU"}).json_object()
        rows = data.get("result")
        if not isinstance(rows, list):
            raise self._bad("result missing in the attributes", "category_attributes")
        try:
            return [CategoryAttribute(
                int(r["id"]), str(r.get("name", "")), bool(r.get("is_required")),
                "number" if r.get("type") in ("Integer", "Decimal") else "strings",
                int(r.get("max_value_count") or 0) if r.get("is_collection") else 1, "",
                bool(r.get("dictionary_id"))) for r in rows]
        except (KeyError, TypeError, ValueError):
            raise self._bad("an attribute without id", "category_attributes") from None

    def _dictionary_value(self, desc: int, type_id: int, attr: CategoryAttribute, text: str) -> int | None:
        """The id of `text` in the attribute's dictionary (`values/search`), matched whole, any case, ё as е."""
        want = text.strip().casefold().replace("ё", "е")
        data = self.http.call("attribute_values_search", json={
            "attribute_id": attr.id, "description_category_id": desc, "type_id": type_id, "value": text.strip(),
            "limit": min(100, self.map["attribute_values_search"].batch or 100)}).json_object()
        for row in data.get("result") or []:
            if str(row.get("value", "")).casefold().replace("ё", "е") == want:
                return int(row["id"])
        return None

    def create_card(self, card: NewCard) -> CardCreation:
        """Import one product (`/v3/product/import`) with its category's attributes: dictionary values are
        looked up first (a value the dictionary lacks fails the card before anything is sent, named in
        Russian); dimensions in mm and weight in g; images by URL. Followed by `card_creation_status`."""
        try:
            desc, type_id = self._category_ids(card.category_id or str(card.subject_id))
        except ValueError as exc:
            raise InvalidRequest(str(exc), account=self.account, endpoint="product_import") from None
        size = (card.sizes or [{}])[0]
        price = int(size.get("price") or 0)
        problems = [] if price > 0 else ["Ozon: укажите цену больше 0"]
        dims = card.dimensions
        if not all(dims.get(k) for k in ("length", "width", "height", "weightBrutto")):
            problems.append("Ozon: нужны реальные габариты и вес товара")
        attrs = {a.id: a for a in self.category_attributes(f"{desc}:{type_id}")}
        attributes = []
        for ch in card.characteristics:
            attr = attrs.get(int(ch["id"]))
            if attr is None:
                problems.append(f"Ozon: характеристики {ch['id']} нет в этой категории")
                continue
            values = ch["value"] if isinstance(ch["value"], list) else [ch["value"]]
            out = []
            for v in values:
                if attr.dictionary:
                    found = self._dictionary_value(desc, type_id, attr, str(v))
                    if found is None:
                        problems.append(f"Ozon: значения «{v}» нет в справочнике характеристики «{attr.name}»")
                        continue
                    out.append({"dictionary_value_id": found, "value": str(v)})
                else:
                    out.append({"value": str(v)})
            attributes.append({"id": attr.id, "complex_id": 0, "values": out})
        if problems:
            return CardCreation(card.offer_id, "failed", problems)
        item: dict[str, Any] = {
            "offer_id": card.offer_id, "name": card.title, "description_category_id": desc, "type_id": type_id,
            "price": str(price), "currency_code": "RUB", "vat": str(self.config.options.get("vat", "0.22")),
            "depth": round(float(dims["length"]) * 10), "width": round(float(dims["width"]) * 10),
            "height": round(float(dims["height"]) * 10), "dimension_unit": "mm",
            "weight": round(float(dims["weightBrutto"]) * 1000), "weight_unit": "g", "attributes": attributes,
        }
        if size.get("skus"):
            item["barcode"] = str(size["skus"][0])
        if card.photos:
            item["images"] = list(card.photos)[:30]
        data = self.http.call("product_import", json={"items": [item]}).json_object()
        task = (data.get("result") or {}).get("task_id") if isinstance(data.get("result"), dict) else None
        if not task:
            raise self._bad("task_id missing in the import answer", "product_import")
        self._import_tasks[card.offer_id] = int(task)
        return CardCreation(card.offer_id, "pending")

    def card_creation_status(self, offer_id: str) -> CardCreation:
        """The import task's item followed to its end (`import/info`): imported -> created (the product read
        back), failed -> Ozon's errors in words (with the attribute named). Without the task (another
        process started it), the product's own state is read."""
        task = self._import_tasks.get(offer_id)
        if task is not None:
            data = self.http.call("product_import_info", json={"task_id": task}).json_object()
            items = (data.get("result") or {}).get("items") if isinstance(data.get("result"), dict) else None
            if not isinstance(items, list):
                raise self._bad("result.items missing in the import info", "product_import_info")
            mine = next((i for i in items if i.get("offer_id") == offer_id), None)
            if mine is None or mine.get("status") == "pending":
                return CardCreation(offer_id, "pending")
            errors = [e for e in mine.get("errors") or [] if e.get("level", "error") == "error"]
            if mine.get("status") == "failed" or errors:
                return CardCreation(offer_id, "failed", [_import_error(e) for e in errors] or ["Ozon: не создан"])
        found = [c for c in self._cards_by_offer([offer_id])]
        if found:
            failed = str((found[0].native.get("statuses") or {}).get("status_failed") or "")
            if failed:
                return CardCreation(offer_id, "failed", [f"Ozon: {failed}"])
            return CardCreation(offer_id, "created", card=found[0])
        return CardCreation(offer_id, "pending")

    def _cards_by_offer(self, offers: Sequence[str]) -> list[Card]:
        data = self.http.call("products_info", json={"offer_id": list(offers)}).json_object()
        out = []
        for it in data.get("items") or []:
            try:
                out.append(Card(native_id=str(it["id"]), offer_id=str(it["offer_id"]), title=str(it.get("name", "")),
                                barcodes=[str(b) for b in it.get("barcodes") or []],
                                category_id=str(it.get("description_category_id", "")),
                                group_id=str(it.get("sku", "")), visible=not it.get("is_archived", False),
                                native=it, photos=[str(u) for u in it.get("images") or []]))
            except (KeyError, TypeError):
                raise self._bad("a product without id", "products_info") from None
        return out

    def add_photos(self, card: Card, urls: Sequence[str]) -> None:
        """The product's pictures by URL (`pictures/import`: the list replaces them; at most 30)."""
        if not urls:
            return
        if len(urls) > 30:
            raise InvalidRequest("an Ozon product holds at most 30 images", account=self.account,
                                 endpoint="pictures_import")
        self.http.call("pictures_import", json={"product_id": int(card.native_id), "images": list(urls)})

    # ------------------------------------------------------------ end of product creation

    def set_visibility(self, card_ids: Sequence[str], visible: bool) -> list[ItemResult]:
        """Archive (hide) or unarchive products. Ozon asks for stock zeroed before archiving."""
        endpoint = "product_unarchive" if visible else "product_archive"
        results: list[ItemResult] = []
        for chunk in batches(list(card_ids), self.map[endpoint].batch or 100):
            try:
                data = self.http.call(endpoint, json={"product_id": [int(c) for c in chunk]}).json_object()
                ok, error = data.get("result") is True, "" if data.get("result") is True else "not applied"
            except MarketplaceError as exc:
                ok, error = False, str(exc)
            results += [ItemResult(c, ok, error) for c in chunk]
        return results

    # ------------------------------------------------------------ prices and stocks

    def _item_results(self, data: dict[str, Any], endpoint: str, key_of: Any) -> dict[str, ItemResult]:
        rows = data.get("result")
        if not isinstance(rows, list):
            raise self._bad("result missing in the answer", endpoint)
        out: dict[str, ItemResult] = {}
        for r in rows:
            if not isinstance(r, dict):
                raise self._bad("a result item is not an object", endpoint)
            key = key_of(r)
            errors = r.get("errors") or []
            codes = [str(e.get("code", "")) for e in errors if isinstance(e, dict)]
            ok = bool(r.get("updated")) and not errors
            text = "; ".join(f"{e.get('code')}: {e.get('message', '')}" for e in errors if isinstance(e, dict))
            out[key] = ItemResult(key, ok, "" if ok else (text or "not updated"),
                                  retryable=bool(codes) and all(c in RETRYABLE_ITEM_CODES for c in codes), native=r)
        return out

    def push_prices(self, changes: Sequence[PriceChange]) -> list[ItemResult]:
        """Prices as Ozon strings; a product priced 10 times this hour is not sent (retryable result)."""
        latest: dict[str, PriceChange] = {ch.card_id: ch for ch in changes}
        gate = self.http.gate(self.map["prices_update"].item_rule) if self.map["prices_update"].item_rule else None
        results: list[ItemResult] = []
        sendable: list[PriceChange] = []
        for ch in latest.values():
            if gate is not None and gate.delay([ch.card_id]) > 0:
                results.append(ItemResult(ch.card_id, False, "price updated 10 times this hour; try later",
                                          retryable=True))
            else:
                sendable.append(ch)
        for chunk in batches(sendable, self.map["prices_update"].batch or 1000):
            items = []
            for ch in chunk:
                item = {"product_id": int(ch.card_id), "offer_id": ch.offer_id, "price": f"{ch.price:.2f}",
                        "old_price": f"{ch.old_price:.2f}" if ch.old_price else "0", "currency_code": "RUB"}
                if ch.min_price is not None:
                    item["min_price"] = f"{ch.min_price:.2f}"
                items.append(item)
            try:
                data = self.http.call("prices_update", json={"prices": items}, record_items=False,
                                      item_keys=[ch.card_id for ch in chunk]).json_object()
            except MarketplaceError as exc:
                results += [ItemResult(ch.card_id, False, str(exc), retryable=exc.retryable) for ch in chunk]
                continue
            got = self._item_results(data, "prices_update", lambda r: str(r.get("product_id", "")))
            by_offer = {r.native.get("offer_id"): r for r in got.values() if isinstance(r.native, dict)}
            for ch in chunk:
                res = got.get(ch.card_id) or by_offer.get(ch.offer_id)
                if gate is not None and res is not None and res.ok:
                    gate.record([ch.card_id])  # only prices Ozon took count against its 10 an hour
                results.append(ItemResult(ch.card_id, res.ok, res.error, res.retryable, res.native) if res else
                               ItemResult(ch.card_id, False, "no answer for this product", retryable=True))
        return results

    def read_prices(self) -> list[PriceChange]:
        """The prices Ozon holds now (`/v5/product/info/prices`, every product, cursor paging): price,
        old_price (0: none) and min_price per product, with what Ozon tells beside them in `native`:
        `commissions` (FBS/FBO sales percent, delivery and return charges), `marketing_seller_price`
        (the price with the seller's promotions), `marketing_actions`, `acquiring`, `price_indexes`."""
        ep = "prices_read"
        limit = self.map[ep].batch or 1000
        out: list[PriceChange] = []
        cursor, seen = "", set()
        while True:
            body: dict[str, Any] = {"filter": {"visibility": "ALL"}, "limit": limit}
            if cursor:
                body["cursor"] = cursor
            data = self.http.call(ep, json=body).json_object()
            items = data.get("items")
            if not isinstance(items, list):
                raise self._bad("items missing in the answer", ep)
            for it in items:
                try:
                    pr = it["price"]
                    old = _dec(pr.get("old_price") or 0)
                    minimum = _dec(pr["min_price"]) if pr.get("min_price") not in (None, "", 0) else None
                    native = {k: it[k] for k in ("commissions", "marketing_actions", "acquiring", "price_indexes")
                              if k in it}
                    if pr.get("marketing_seller_price") is not None:
                        native["marketing_seller_price"] = _dec(pr["marketing_seller_price"])
                    out.append(PriceChange(card_id=str(int(it["product_id"])), offer_id=str(it.get("offer_id", "")),
                                           price=_dec(pr["price"]), old_price=old, min_price=minimum, native=native))
                except (KeyError, TypeError, ValueError) as exc:
                    raise self._bad(f"a product's prices cannot be read ({exc})", ep) from None
            cursor = str(data.get("cursor") or "")
            if not cursor or not items or cursor in seen:
                return out
            seen.add(cursor)

    def push_stocks(self, levels: Sequence[StockLevel]) -> list[ItemResult]:
        """Stocks per product x warehouse, 100 pairs a request, paced at 80 requests a minute; the last
        level of a pair wins; a pair refused with TOO_MANY_REQUESTS is sent again after its window."""
        pairs: dict[str, StockLevel] = {}
        results: dict[str, ItemResult] = {}
        for lv in levels:
            key = f"{lv.card_id}@{lv.warehouse_id}"
            try:
                int(lv.card_id), int(lv.warehouse_id)
            except ValueError:
                results[key] = ItemResult(key, False, "product and warehouse ids are numbers on Ozon")
                continue
            pairs[key] = lv
        pending = list(pairs)

        def send(chunk: list[str]) -> dict[str, ItemResult]:
            body = {"stocks": [{"offer_id": pairs[k].offer_id, "product_id": int(pairs[k].card_id),
                                "stock": int(pairs[k].quantity), "warehouse_id": int(pairs[k].warehouse_id),
                                "quant_size": 1} for k in chunk]}
            try:
                data = self.http.call("stocks_update", json=body, item_keys=chunk).json_object()
            except MarketplaceError as exc:
                return {k: ItemResult(k, False, str(exc), retryable=exc.retryable) for k in chunk}
            got = self._item_results(data, "stocks_update", lambda r: f"{r.get('product_id')}@{r.get('warehouse_id')}")
            return {k: got.get(k) or ItemResult(k, False, "no answer for this pair", retryable=True) for k in chunk}

        for _round in range(ITEM_RETRY_ROUNDS):
            chunks = list(batches(pending, self.map["stocks_update"].batch or 100))
            for answered in in_parallel(send, chunks, self.push_workers):
                results.update(answered)
            retry = [k for k in pending if not results[k].ok and results[k].retryable]
            if not retry:
                break
            pending = retry
        return [results[k] for k in list(results)]

    def read_stocks(self, kind: Literal["fbs", "fbo"] = "fbs",
                    cards: Sequence[StockKey] | None = None) -> list[StockLevel]:
        """FBS: per product and warehouse (`/v1/product/info/stocks-by-warehouse/fbs`, available = present
        less reserved, for the products `/v4/product/info/stocks` lists; with `cards`, for their offer_ids
        alone, the method's own filter, and `/v4/product/info/stocks` only for a card named without its
        offer_id, filtered by its product_id); FBO: per product and every Ozon warehouse
        (`/v1/analytics/manage/stocks`, `valid_stock_count`: what Ozon can sell; its warehouses are named,
        not numbered, so the name is the warehouse's key; `cards` filters it here)."""
        if kind == "fbo":
            levels = self._read_fbo_stocks()
            return levels if cards is None else only_keys(levels, cards)
        if cards is not None:
            return only_keys(self._read_by_warehouse("offer_id", self._offers_of(cards)), cards)
        totals = self._read_stock_totals(kind)
        if kind != "fbs":
            return totals
        return self._read_by_warehouse("sku", sorted({sku for sku in self._skus_seen if sku}))

    def _offers_of(self, cards: Sequence[StockKey]) -> list[str]:
        """The offer_ids of the named cards; those named by product_id alone are looked up in
        `/v4/product/info/stocks` (its `filter.product_id`)."""
        offers = {k.offer_id for k in cards if k.offer_id}
        bare = sorted({k.card_id for k in cards if not k.offer_id and k.card_id.isdigit()})
        size = self.map["stocks_read"].batch or 1000
        for i in range(0, len(bare), size):
            data = self.http.call("stocks_read", json={"filter": {"product_id": bare[i:i + size], "visibility": "ALL"},
                                                       "limit": size}).json_object()
            offers |= {str(it["offer_id"]) for it in data.get("items") or [] if it.get("offer_id")}
        return sorted(offers)

    def _read_by_warehouse(self, by: Literal["sku", "offer_id"], ids: list[str]) -> list[StockLevel]:
        """`/v1/product/info/stocks-by-warehouse/fbs` for these skus or offer_ids, <= its batch a request."""
        out: list[StockLevel] = []
        size = self.map["stocks_by_warehouse"].batch or 500
        for i in range(0, len(ids), size):
            data = self.http.call("stocks_by_warehouse", json={by: ids[i:i + size]}).json_object()
            for row in data.get("result") or []:
                try:
                    out.append(StockLevel(str(row["product_id"]), str(row.get("offer_id", "")),
                                          str(row["warehouse_id"]),
                                          int(row.get("present", 0)) - int(row.get("reserved", 0)), "fbs"))
                except (KeyError, TypeError, ValueError):
                    raise self._bad("a warehouse stock cannot be read", "stocks_by_warehouse") from None
        return out

    def _read_fbo_stocks(self) -> list[StockLevel]:
        """`/v1/analytics/manage/stocks` paged by limit/offset until a short page; products keyed back by
        their offer_id (the answer names sku and offer_id, cards are keyed by product_id). A row without a
        count refuses the whole answer: nothing is kept from a partial one."""
        ep = "fbo_stocks"
        self._read_stock_totals("fbo")
        product_of = self._product_of_offer
        limit = self.map[ep].batch or 1000
        out: list[StockLevel] = []
        offset = 0
        while True:
            data = self.http.call(ep, json={"filter": {"stock_types": ["STOCK_TYPE_VALID"]}, "limit": limit,
                                            "offset": offset}).json_object()
            items = data.get("items")
            if not isinstance(items, list):
                raise self._bad("items missing in the answer", ep)
            for row in items:
                try:
                    offer, wh = str(row["offer_id"]), str(row["warehouse_name"])
                    qty = int(row["valid_stock_count"])
                except (KeyError, TypeError, ValueError) as exc:
                    raise self._bad(f"an Ozon warehouse's stock cannot be read ({exc})", ep) from None
                out.append(StockLevel(product_of.get(offer, f"sku:{row.get('sku', '')}"), offer, wh, qty, "fbo",
                                      warehouse_name=wh))
            if len(items) < limit:
                return out
            offset += limit

    def sale_fees(self, cards: Sequence[FeeAsk]) -> list[SaleFees]:
        """What Ozon takes per product, from `/v5/product/info/prices`: `commissions.sales_percent_fbs` (of
        the price), the delivery to the buyer (`fbs_deliv_to_customer_amount`, plus the first-mile
        `fbs_direct_flow_trans_max_amount` where Ozon states it) and `acquiring` (an amount)."""
        wanted = {c.card_id for c in cards}
        out = []
        for ch in self.read_prices():
            if ch.card_id not in wanted:
                continue
            com = ch.native.get("commissions") or {}
            try:
                pct = _dec(com["sales_percent_fbs"]) if com.get("sales_percent_fbs") is not None else None
                parts = [com.get(k) for k in ("fbs_deliv_to_customer_amount", "fbs_direct_flow_trans_max_amount")]
                logistics = sum((_dec(v) for v in parts if v is not None), Decimal(0)) \
                    if any(v is not None for v in parts) else None
                acq = ch.native.get("acquiring")
                acquiring = _dec(acq) if acq is not None else None
            except (TypeError, ValueError, ArithmeticError) as exc:
                raise self._bad(f"a product's commissions cannot be read ({exc})", "prices_read") from None
            out.append(SaleFees(ch.card_id, commission_percent=pct, logistics=logistics, acquiring=acquiring,
                                source="product/info/prices"))
        return out

    def _read_stock_totals(self, kind: Literal["fbs", "fbo"]) -> list[StockLevel]:
        """`/v4/product/info/stocks`: per product and stock type, totalled over warehouses (the first one
        Ozon lists is named); remembers the products' FBS skus for the per-warehouse read."""
        self._skus_seen: set[str] = set()
        self._product_of_offer: dict[str, str] = {}
        out: list[StockLevel] = []
        cursor = ""
        while True:
            body: dict[str, Any] = {"filter": {"visibility": "ALL"}, "limit": self.map["stocks_read"].batch or 1000}
            if cursor:
                body["cursor"] = cursor
            data = self.http.call("stocks_read", json=body).json_object()
            for it in data.get("items") or []:
                if it.get("offer_id") and it.get("product_id") is not None:
                    self._product_of_offer[str(it["offer_id"])] = str(it["product_id"])
                for s in it.get("stocks") or []:
                    if s.get("type") == "fbs" and s.get("sku"):
                        self._skus_seen.add(str(s["sku"]))
                    if s.get("type") != kind:
                        continue
                    try:
                        whs = s.get("warehouse_ids") or [""]
                        out.append(StockLevel(str(it["product_id"]), str(it.get("offer_id", "")), str(whs[0]),
                                              int(s.get("present", 0)) - int(s.get("reserved", 0)), kind))
                    except (KeyError, TypeError, ValueError):
                        raise self._bad("a stock item cannot be read", "stocks_read") from None
            cursor = str(data.get("cursor") or "")
            if not cursor:
                return out

    # ------------------------------------------------------------ orders

    def _order(self, p: dict[str, Any], endpoint: str) -> Order:
        try:
            number = str(p["posting_number"])
            status = str(p["status"])
        except (KeyError, TypeError):
            raise self._bad("a posting without posting_number or status", endpoint) from None
        if status not in POSTING_STATUSES:
            raise self._bad(f"posting {number} has an unknown status {status!r}", endpoint)
        marked = {str(sku) for sku in (p.get("requirements") or {}).get("products_requiring_mandatory_mark") or []}
        try:
            lines = []
            for pr in p.get("products") or []:
                price = pr.get("price")
                amount = price.get("amount") if isinstance(price, dict) else price
                lines.append(OrderLine(card_id=self._product_of_sku(pr.get("sku")), offer_id=str(pr.get("offer_id", "")),
                                       quantity=int(pr["quantity"]), price=_dec(amount if amount is not None else 0),
                                       title=str(pr.get("name", "")), native_id=str(pr.get("sku", "")),
                                       marking_required=str(pr.get("sku", "")) in marked or bool(pr.get("mandatory_mark")),
                                       native=pr))
            if not lines:
                raise ValueError("a posting without products")
            method = p.get("delivery_method") or {}
            order = Order(native_id=number, marketplace="ozon", account=self.account, native_status=status,
                          created_at=_when(p["in_process_at"]), lines=lines,
                          warehouse_id=str(method.get("warehouse_id", "")),
                          ship_by=_when(p["shipment_date"]) if p.get("shipment_date") else None, number=number,
                          native_substatus=str(p.get("substatus", "")), native=p)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._bad(f"a posting is missing or garbles a field ({exc})", endpoint) from None
        return order

    def _product_of_sku(self, sku: Any) -> str:
        """Card.native_id (product_id) of a posting's sku; the catalog is read once when unknown."""
        key = str(sku or "")
        if not self._product_by_sku and key:
            self.list_cards()
        return self._product_by_sku.get(key, key)

    def new_orders(self) -> list[Order]:
        """Postings awaiting packaging (`/v4/posting/fbs/unfulfilled/list`, cursor pages of 100)."""
        now = datetime.now(UTC)
        raws: list[dict[str, Any]] = []
        cursor = ""
        while True:
            body: dict[str, Any] = {
                "filter": {"cutoff_from": _ozon_time(now - timedelta(days=30)),
                           "cutoff_to": _ozon_time(now + timedelta(days=30)), "statuses": ["awaiting_packaging"]},
                "limit": self.map["postings_unfulfilled"].batch or 100, "sort_dir": "ASC",
                "with": {"barcodes": True, "financial_data": False, "analytics_data": False}}
            if cursor:
                body["cursor"] = cursor
            data = self.http.call("postings_unfulfilled", json=body).json_object()
            page = data.get("postings")
            if not isinstance(page, list):
                raise self._bad("postings missing in the answer", "postings_unfulfilled")
            raws += page
            cursor = str(data.get("cursor") or "")
            if not data.get("has_next") or not cursor:
                break
        return [self._order(p, "postings_unfulfilled") for p in raws]

    def _posting(self, number: str) -> dict[str, Any]:
        data = self.http.call("posting_get", json={"posting_number": number, "with": {"barcodes": True}}).json_object()
        result = data.get("result")
        if not isinstance(result, dict) or "status" not in result:
            raise self._bad("result.status missing in the answer", "posting_get")
        if result["status"] not in POSTING_STATUSES:
            raise self._bad(f"posting {number} has an unknown status {result['status']!r}", "posting_get")
        return result

    def get_order(self, native_id: str) -> Order:
        return self._order(self._posting(native_id), "posting_get")

    def order_statuses(self, native_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
        """(status, substatus) of each posting (`/v3/posting/fbs/get`); a posting Ozon does not know is left out."""
        out: dict[str, tuple[str, str]] = {}
        for number in native_ids:
            try:
                p = self._posting(str(number))
            except MarketplaceError as exc:
                if exc.status == 404:
                    continue
                raise
            out[str(number)] = (str(p["status"]), str(p.get("substatus", "")))
        return out

    def returns(self, since: datetime, order_ids: Sequence[str] = ()) -> list[OrderReturn]:
        """FBS returns and non-redemptions (`/v1/returns/list`) whose status changed since `since`, or
        of the given postings: one OrderReturn per return (Ozon lists each product of a posting apart).
        `type` Cancellation / NotAccepted / Unredeemed... — anything but a buyer's ClientReturn — is a
        parcel that never reached the buyer."""
        out: list[OrderReturn] = []
        chunks: list[list[str] | None] = [list(c) for c in batches([str(n) for n in order_ids], 50)] \
            if order_ids else [None]
        for chunk in chunks:  # Ozon takes at most 50 postings per filter
            flt: dict[str, Any] = {"return_schema": "FBS"}
            if chunk:
                flt["posting_numbers"] = chunk
            else:
                # to a minute ahead: the time is sent to the second, a return of this very second must count
                flt["visual_status_change_moment"] = {"time_from": _ozon_time(since),
                                                      "time_to": _ozon_time(datetime.now(UTC) + timedelta(minutes=1))}
            out.extend(self._returns_pages(flt))
        return out

    def _returns_pages(self, flt: dict[str, Any]) -> list[OrderReturn]:
        limit = self.map["returns_list"].batch or 500
        out: list[OrderReturn] = []
        last_id = 0
        while True:
            body: dict[str, Any] = {"filter": flt, "limit": limit}
            if last_id:
                body["last_id"] = last_id
            data = self.http.call("returns_list", json=body).json_object()
            rows = data.get("returns")
            if not isinstance(rows, list):
                raise self._bad("returns missing in the answer", "returns_list")
            out.extend(self._return(r) for r in rows)
            if not data.get("has_next") or not rows:
                return out
            last_id = int(rows[-1]["id"])

    def _return(self, r: dict[str, Any]) -> OrderReturn:
        try:
            prod = r.get("product") or {}
            kind = "return" if str(r.get("type", "")) == "ClientReturn" else "unredeemed"
            visual = ((r.get("visual") or {}).get("status") or {})
            line = ReturnLine(card_id=self._product_of_sku(prod.get("sku")) if prod.get("sku") else "",
                              offer_id=str(prod.get("offer_id", "")), quantity=int(prod.get("quantity") or 1),
                              native=prod)
            changed = (r.get("visual") or {}).get("change_moment")
            return OrderReturn(return_id=str(r["id"]), order_native_id=str(r["posting_number"]), kind=kind,
                               lines=[line], native_status=str(visual.get("sys_name", "")),
                               created_at=_when(changed) if changed else None, native=r)
        except (KeyError, TypeError, ValueError) as exc:
            raise self._bad(f"a return is missing or garbles a field ({exc})", "returns_list") from None

    def set_order_status(self, native_id: str, action: OrderAction, **details: Any) -> StatusChange:
        """confirm: nothing to send; assemble: ship with one package holding every product (or
        `packages=[...]`), after setting the Честный знак codes of products that need them
        (`marking_codes={sku, offer id or product id: [codes]}`; missing ones refused before sending);
        ship: create and approve a carriage for its delivery method (every posting packed for that
        method goes with it); cancel: `reason_id=` (default 352 out of stock), `reason=`; reduce:
        `lines=[{"card_id", "offer_id", "keep"}]` — the units above `keep` are cancelled with
        `/v2/posting/fbs/product/cancel` (reason 352, the posting read back before every send)."""
        number = str(native_id)
        p = self._posting(number)
        status = p["status"]
        if action == "reduce":
            return self._reduce(number, p, details)
        if action == "confirm":
            ok = status not in ("cancelled", "cancelled_from_split_pending")
            return StatusChange(number, action, ok, status, already=ok, error="" if ok else f"posting is {status}",
                                native={"note": "an Ozon posting needs no confirmation"})
        target = {"assemble": AFTER_PACKAGING, "ship": HANDED_OVER, "cancel": {"cancelled"}}.get(action)
        if target is None:
            raise InvalidRequest(f"unknown action {action!r}", account=self.account, endpoint="set_order_status")
        if status in target:
            return StatusChange(number, action, True, status, already=True)
        allowed = {"assemble": {"awaiting_packaging"}, "ship": {"awaiting_deliver"},
                   "cancel": {"awaiting_packaging", "awaiting_deliver", "awaiting_registration",
                              "acceptance_in_progress", "awaiting_approve", "awaiting_verification"}}[action]
        if status not in allowed:
            return StatusChange(number, action, False, status, error=f"cannot {action} a posting that is {status}")
        if action == "assemble":  # a marked product without its codes is refused before anything is sent
            details = dict(details, _marks=self._marks_to_send(self._order(p, "posting_get"), details))
        for attempt in range(MOVE_ATTEMPTS):
            try:
                self._send_move(number, action, p, details)
            except Uncertain as exc:
                log.warning("%s: %s of %s uncertain (%s); reading it back", self.account, action, number, exc)
                self.http.settle(attempt)
            except MarketplaceError as exc:
                if exc.status != 400 or exc.retryable:
                    raise
                log.warning("%s: %s of %s refused (%s); reading it back", self.account, action, number, exc)
            p = self._posting(number)
            if p["status"] in target:
                if p.get("substatus") == "ship_failed":
                    return StatusChange(number, action, False, p["status"], error="ship_failed")
                return StatusChange(number, action, True, p["status"])
            if p["status"] not in allowed:
                return StatusChange(number, action, False, p["status"], error=f"posting moved to {p['status']}")
        return StatusChange(number, action, False, p["status"], error=f"{action} did not take after {MOVE_ATTEMPTS} attempts")

    def _reduce(self, number: str, p: dict[str, Any], details: dict[str, Any]) -> StatusChange:
        """Cancel the units of the posting's products above what the parcel keeps; nothing above: already."""
        for attempt in range(MOVE_ATTEMPTS):
            if p["status"] != "awaiting_packaging":
                return StatusChange(number, "reduce", False, p["status"],
                                    error=f"cannot take products out of a posting that is {p['status']}")
            order = self._order(p, "posting_get")
            items, left = [], sum(ln.quantity for ln in order.lines)
            for want in details.get("lines") or []:
                names = {str(want.get("offer_id") or ""), str(want.get("card_id") or "")} - {""}
                for ln in order.lines:
                    if names & {ln.offer_id, ln.card_id, ln.native_id}:
                        extra = ln.quantity - max(int(want.get("keep", 0)), 0)
                        if extra > 0:
                            items.append({"sku": int(ln.native_id), "quantity": extra})
                            left -= extra
                        break
            if not items:
                return StatusChange(number, "reduce", True, p["status"], already=True)
            if left <= 0:
                return StatusChange(number, "reduce", False, p["status"],
                                    error="every product would go: cancel the posting instead")
            try:
                self.http.call("posting_product_cancel", json={
                    "posting_number": number, "cancel_reason_id": int(details.get("reason_id", 352)),
                    "cancel_reason_message": str(details.get("comment") or "Товара нет в наличии"), "items": items})
            except Uncertain as exc:
                log.warning("%s: reduce of %s uncertain (%s); reading it back", self.account, number, exc)
                self.http.settle(attempt)
                p = self._posting(number)
                continue
            except MarketplaceError as exc:
                if exc.retryable:
                    raise
                return StatusChange(number, "reduce", False, p["status"], error=str(exc))
            p = self._posting(number)
            return StatusChange(number, "reduce", True, p["status"], native={"cancelled": items})
        return StatusChange(number, "reduce", False, p["status"], error=f"reduce did not take after {MOVE_ATTEMPTS} attempts")

    def _send_move(self, number: str, action: str, p: dict[str, Any], details: dict[str, Any]) -> None:
        if action == "assemble":
            if details.get("_marks"):
                self._set_exemplars(number, details["_marks"])
            packages = details.get("packages") or [{"products": [
                {"product_id": int(pr["sku"]), "quantity": int(pr["quantity"])} for pr in p.get("products") or []]}]
            self.http.call("posting_ship", json={"posting_number": number, "packages": packages,
                                                 "with": {"additional_data": True}})
        elif action == "ship":
            method = (p.get("delivery_method") or {}).get("id")
            if not method:
                raise self._bad("posting without delivery_method.id", "posting_get")
            carriage = self._open_carriage(int(method))  # one left unapproved before (a lost answer)
            if not carriage:
                created = self.http.call("carriage_create", json={"delivery_method_id": int(method),
                                                                  "departure_date": _ozon_time(datetime.now(UTC))})
                carriage = created.json_object().get("carriage_id")
                if not carriage:
                    raise self._bad("carriage created without carriage_id", "carriage_create")
            self.http.call("carriage_approve", json={"carriage_id": int(carriage)})
        elif action == "cancel":
            self.http.call("posting_cancel", json={
                "posting_number": number, "cancel_reason_id": int(details.get("reason_id", 352)),
                "cancel_reason_message": str(details.get("reason", "Product is out of stock"))})

    # ------------------------------------------------------------ marking (Честный знак)

    def _marks_to_send(self, order: Order, details: dict[str, Any]) -> dict[str, list[str]]:
        """{sku: codes} for the posting's products that need a Честный знак code, one per unit, from
        `marking_codes={sku, offer id or product id: [codes]}`; a missing code is a MarketplaceError."""
        codes = {str(k): [str(c) for c in v] for k, v in (details.get("marking_codes") or {}).items()}
        out: dict[str, list[str]] = {}
        for ln in order.lines:
            mine = next((codes[k] for k in (ln.native_id, ln.offer_id, ln.card_id) if codes.get(k)), [])
            if not ln.marking_required:
                continue
            if len(mine) < ln.quantity:
                raise MarketplaceError(f"posting {order.native_id}: {ln.offer_id} needs {ln.quantity} Честный знак "
                                       f"marking code(s), got {len(mine)}", account=self.account,
                                       endpoint="exemplar_set")
            out[ln.native_id] = mine[: ln.quantity]
        return out

    def _set_exemplars(self, number: str, marks: dict[str, list[str]]) -> None:
        """The posting's product items with their codes: item ids from `exemplar/create-or-get`, the
        complete set sent to `exemplar/set`, then its check read back (`exemplar/status`)."""
        data = self.http.call("exemplar_create_or_get", json={"posting_number": number}).json_object()
        products = []
        for pr in data.get("products") or []:
            sku = str(pr.get("product_id", ""))
            codes = marks.get(sku, [])
            items = pr.get("exemplars") or []
            if len(items) < len(codes):
                raise self._bad(f"posting {number}: {len(items)} items of sku {sku} for {len(codes)} codes",
                                "exemplar_create_or_get")
            out = []
            for n, ex in enumerate(items):
                item: dict[str, Any] = {"exemplar_id": int(ex["exemplar_id"])}
                item.update({k: ex[k] for k in ("gtd", "is_gtd_absent", "rnpt", "is_rnpt_absent") if k in ex})
                if n < len(codes):
                    item["marks"] = [{"mark": codes[n], "mark_type": "mandatory_mark"}]
                out.append(item)
            products.append({"product_id": int(pr["product_id"]), "exemplars": out})
        missing = set(marks) - {str(pr["product_id"]) for pr in products}
        if missing:
            raise self._bad(f"posting {number}: no items for sku {', '.join(sorted(missing))}", "exemplar_create_or_get")
        self.http.call("exemplar_set", json={"posting_number": number, "products": products})
        check = self.http.call("exemplar_status", json={"posting_number": number}).json_object()
        if check.get("status") == "ship_not_available":
            failed = [f"{m.get('mark')}: {', '.join(m.get('error_codes') or [])}" for pr in check.get("products") or []
                      for ex in pr.get("exemplars") or [] for m in ex.get("marks") or [] if m.get("check_status") == "failed"]
            raise MarketplaceError(f"posting {number}: Ozon did not accept the marking codes ({'; '.join(failed)})",
                                   account=self.account, endpoint="exemplar_status", native=check)

    # ------------------------------------------------------------ hand-over documents

    def handover_documents(self, native_ids: Sequence[str], *, batch_id: str = "") -> list[HandoverDocument]:
        """The acceptance act and the waybill of the shipping that took these postings, one PDF from
        `/v2/posting/fbs/act/get-pdf`: the approved carriage (its id is the shipping's) holding them, found
        through `act/get-postings`; none (shipped some other way): `act/create` forms one for the delivery
        method. `act/check-status` is asked until `ready` (ACT_CHECKS times, ACT_WAIT_S apart; then a
        retryable error — the next attempt finds the same shipping, nothing is formed twice)."""
        numbers = {str(n) for n in native_ids}
        if not numbers:
            raise MarketplaceError("no postings given", account=self.account, endpoint="act_get_pdf")
        method = (self._posting(sorted(numbers)[0]).get("delivery_method") or {}).get("id")
        if not method:
            raise self._bad("posting without delivery_method.id", "posting_get")
        shipping = self._shipping_of(int(method), numbers)
        if not shipping:
            made = self.http.call("act_create", json={"delivery_method_id": int(method),
                                                      "departure_date": _ozon_time(datetime.now(UTC))}).json_object()
            shipping = int((made.get("result") or {}).get("id") or 0)
            if not shipping:
                raise self._bad("act/create answered without result.id", "act_create")
        for attempt in range(ACT_CHECKS):
            status = (self.http.call("act_check_status", json={"id": shipping}).json_object().get("result") or {})
            if status.get("status") == "ready":
                break
            if status.get("status") not in ("in_process", None) and attempt:
                raise MarketplaceError(f"shipping {shipping}: documents {status.get('status')}", account=self.account,
                                       endpoint="act_check_status", retryable=True, native=status)
            time.sleep(ACT_WAIT_S)
        else:
            raise MarketplaceError(f"shipping {shipping}: documents not ready yet", account=self.account,
                                   endpoint="act_check_status", retryable=True)
        reply = self.http.call("act_get_pdf", json={"id": shipping})
        data = reply.content
        if not data.startswith(b"%PDF"):
            body = reply.json() if reply.content_type == "application/json" else None
            if isinstance(body, dict) and isinstance(body.get("file_content"), str):
                data = base64.b64decode(body["file_content"])
            else:
                raise self._bad("the act is not a PDF", "act_get_pdf")
        width, height = _pdf_size_mm(data)
        return [HandoverDocument("act", "pdf", data, f"Акт приёма-передачи и накладная Ozon, отгрузка {shipping}",
                                 width, height, ref=str(shipping))]

    def _shipping_of(self, method: int, numbers: set[str]) -> int:
        """The approved carriage of this delivery method that holds any of these postings, or 0."""
        data = self.http.call("carriages_list", json={"filter": {"delivery_method_id": method},
                                                      "limit": 100}).json_object()
        ids = sorted((int(c["id"]) for m in data.get("methods") or [] if int(m.get("delivery_method_id") or 0) == method
                      for c in m.get("carriages") or [] if c.get("status") != "NEW" and c.get("id")), reverse=True)
        for cid in ids[:ACT_LOOKUPS]:
            held = self.http.call("act_get_postings", json={"id": cid}).json_object().get("result") or []
            if numbers & {str(p.get("posting_number")) for p in held}:
                return cid
        return 0

    def _open_carriage(self, method: int) -> int:
        """The id of a carriage of this delivery method still waiting for approval, or 0."""
        data = self.http.call("carriages_list", json={"filter": {"delivery_method_id": method},
                                                      "limit": 100}).json_object()
        for m in data.get("methods") or []:
            if int(m.get("delivery_method_id") or 0) != method:
                continue
            for c in m.get("carriages") or []:
                if c.get("status") == "NEW" and int(c.get("postings_count") or 0) > 0:
                    return int(c["id"])
        return 0

    def get_label(self, native_id: str, *, fmt: LabelFormat | None = None, size: str = "") -> Label:
        if fmt not in (None, "pdf"):
            raise NotSupported("ozon", f"get_label({fmt}) (Ozon gives PDF labels only)", account=self.account)
        reply = self.http.call("package_label", json={"posting_number": [str(native_id)]})
        data = reply.content
        if reply.content_type == "application/json" or not data.startswith(b"%PDF"):
            body = reply.json() if reply.content_type == "application/json" else None
            if isinstance(body, dict) and isinstance(body.get("file_content"), str):
                data = base64.b64decode(body["file_content"])
            else:
                raise self._bad("the label is not a PDF", "package_label")
        width, height = _pdf_size_mm(data)
        return Label(str(native_id), data, "pdf", width, height, barcode_text=str(native_id))

    # ------------------------------------------------------------ reports

    def realization_report(self, period_from: date, period_to: date, *,
                           progress: ReportProgress | None = None) -> RealizationReport:
        """Ozon's monthly realization reports for every month the period touches (goods sold and returned,
        the commission), the charges of those months per operation from `/v3/finance/transaction/list`
        (logistics and processing per posting and item, other services per account), and Ozon's own
        transaction totals of the same months (`/v3/finance/transaction/totals`) as `native_totals` to
        reconcile both against (the report is monthly, so its totals are the months')."""
        lines: list[ReportLine] = []
        month = date(period_from.year, period_from.month, 1)
        numbers = []
        native: dict[str, Decimal] = {}
        tell = progress or (lambda done, steps: None)
        months = (period_to.year - month.year) * 12 + period_to.month - month.month + 1
        steps = 3 * months  # the report, the operations and the totals of each month
        done = 0
        tell(done, steps)
        while month <= period_to:
            data = self.http.call("realization", json={"month": month.month, "year": month.year}).json_object()
            result = data.get("result")
            if not isinstance(result, dict) or not isinstance(result.get("rows"), list):
                raise self._bad("result.rows missing in the answer", "realization")
            numbers.append(str((result.get("header") or {}).get("number", "")))
            done += 1
            tell(done, steps)
            sold = [ln for r in result["rows"] for ln in self._report_lines(r, month)]
            lines += sold
            lines += self._operation_lines(month, {ln.card_id: ln for ln in sold})
            done += 1
            tell(done, steps)
            totals = self._month_totals(month)
            done += 1
            tell(done, steps)
            for name, amount in totals.items():
                native[name] = native.get(name, Decimal(0)) + amount
            month = _next_month(month)
        if native:  # what Ozon pays for those months: the sum of every figure of its totals
            native["to_pay"] = native.get("revenue", Decimal(0)) - native.get("fee", Decimal(0)) + sum(
                (native.get(k, Decimal(0)) for k in OTHER_TOTALS), Decimal(0)) - native.get("logistics", Decimal(0))
        return RealizationReport(self.account, period_from, period_to, lines, native,
                                 ",".join(n for n in numbers if n), notes=dict(TOTALS_NOTES))

    def _month_totals(self, month: date) -> dict[str, Decimal]:
        """Ozon's transaction totals of one calendar month (UTC), in the report's terms.

        Compared with the report's lines (they say the same thing):
          revenue   <- accruals_for_sale  ("total cost of products and returns for the period")
          fee       <- -sale_commission   (withheld at a sale, refunded at a return; Ozon gives it negative)
          logistics <- -(processing_and_delivery + refunds_and_cancellations): the sum of the logistics
                       and processing services of the month's operations (`_operation_lines`)
        The rest (OTHER_TOTALS: services, compensations, transfers, other) are kept under Ozon's own names:
        they enter `to_pay`, compared with the sum of every figure (what Ozon pays for the months), but are
        not compared one by one (our columns split them by service, Ozon's totals by kind). Ozon's totals
        give no quantities, so sold/returned are not compared."""
        body = {"date": _month_period(month), "transaction_type": "all"}
        result = self.http.call("transaction_totals", json=body).json_object().get("result")
        if not isinstance(result, dict):
            raise self._bad("result missing in the transaction totals", "transaction_totals")
        try:
            amounts = {k: _dec(v) for k, v in result.items() if isinstance(v, int | float | str)}
        except ValueError as exc:
            raise self._bad(f"a transaction total cannot be read ({exc})", "transaction_totals") from None
        totals: dict[str, Decimal] = {}
        if "accruals_for_sale" in amounts:
            totals["revenue"] = amounts.pop("accruals_for_sale")
        if "sale_commission" in amounts:
            totals["fee"] = -amounts.pop("sale_commission")
        totals["logistics"] = -sum((amounts.pop(k, Decimal(0)) for k in LOGISTICS_TOTALS), Decimal(0))
        return totals | amounts

    def _operations(self, month: date) -> list[dict[str, Any]]:
        """Every finance operation of one calendar month, page after page (sequentially, as Ozon asks)."""
        out: list[dict[str, Any]] = []
        page = 1
        while True:
            # the filter is a period or a posting, never both (the spec's oneOf)
            body = {"filter": {"date": _month_period(month), "operation_type": [], "transaction_type": "all"},
                    "page": page, "page_size": LIST_PAGE}
            result = self.http.call("transaction_list", json=body).json_object().get("result")
            if not isinstance(result, dict) or not isinstance(result.get("operations"), list):
                raise self._bad("result.operations missing in the answer", "transaction_list")
            out += result["operations"]
            if page >= int(result.get("page_count") or 0) or not result["operations"]:
                return out
            page += 1

    def _operation_lines(self, month: date, by_sku: dict[str, ReportLine]) -> list[ReportLine]:
        """The charges of the month's operations the realization report does not carry, per item.

        Of each operation, the goods and the commission are the realization report's (not taken again);
        the rest of its `amount` is split: Ozon's logistics and processing services (LOGISTICS_SERVICES,
        and `delivery_charge`/`return_delivery_charge` of the old rates) into `logistics`, acquiring and
        storage operations into their columns, anything else into `other`. An operation with items shares
        its charges among its units (kopecks to the last); one of no items is an account line. `by_sku`: the
        month's report lines, for the offer id and barcode of an operation's SKU."""
        out: list[ReportLine] = []
        for op in self._operations(month):
            try:
                extra = _dec(op.get("amount", 0)) - _dec(op.get("accruals_for_sale", 0)) \
                    - _dec(op.get("sale_commission", 0))
                logistics = -(_dec(op.get("delivery_charge", 0)) + _dec(op.get("return_delivery_charge", 0)) + sum(
                    (_dec(sv.get("price", 0)) for sv in op.get("services") or ()
                     if sv.get("name") in LOGISTICS_SERVICES), Decimal(0)))
                rest = -extra - logistics  # charged, positive
                column = OPERATION_COLUMNS.get(str(op.get("operation_type", "")), "other")
                skus = [str(it.get("sku", "")) for it in op.get("items") or () if it.get("sku")]
                posting = str((op.get("posting") or {}).get("posting_number", ""))
                when = datetime.strptime(str(op["operation_date"])[:10], "%Y-%m-%d").date()
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise self._bad(f"an operation cannot be read ({exc})", "transaction_list") from None
            if not logistics and not rest:
                continue
            shares = _split(logistics, len(skus) or 1)
            rests = _split(rest, len(skus) or 1)
            for i, sku in enumerate(skus or [""]):
                charges = {"logistics": shares[i], "acquiring": Decimal(0), "storage": Decimal(0), "other": Decimal(0)}
                charges[column] += rests[i]
                kind: Any = "logistics" if shares[i] else ("storage" if column == "storage" else "other")
                known = by_sku.get(sku)
                out.append(ReportLine(kind=kind, offer_id=known.offer_id if known else "", card_id=sku,
                                      barcode=known.barcode if known else "", quantity=0, revenue=Decimal(0),
                                      fee=Decimal(0), logistics=charges["logistics"], other=charges["other"],
                                      acquiring=charges["acquiring"], storage=charges["storage"],
                                      to_pay=-sum(charges.values(), Decimal(0)), date=when,
                                      order_native_id=posting, native=op))
        return out

    def _report_lines(self, r: dict[str, Any], month: date) -> list[ReportLine]:
        try:
            item = r["item"]
            out = []
            for key, kind, sign in (("delivery_commission", "sale", 1), ("return_commission", "return", -1)):
                part = r.get(key)
                if not part or not int(part.get("quantity") or 0):
                    continue
                out.append(ReportLine(
                    kind=kind, offer_id=str(item.get("offer_id", "")), card_id=str(item.get("sku", "")),
                    quantity=sign * int(part["quantity"]), revenue=sign * _dec(part.get("amount", 0)),
                    fee=sign * _dec(part.get("commission", 0)), logistics=Decimal(0), other=Decimal(0),
                    to_pay=sign * _dec(part.get("total", 0)), date=month, barcode=str(item.get("barcode", "")),
                    native=r))
            return out
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._bad(f"a report row cannot be read ({exc})", "realization") from None

    def parse_push(self, headers: dict[str, str], body: bytes) -> list[OrderEvent]:
        """An Ozon push notification (the one URL of the cabinet, `<push URL>/notification`) as events:
        TYPE_PING a ping; TYPE_NEW_POSTING "created", TYPE_POSTING_CANCELLED "cancelled", TYPE_STATE_CHANGED
        "status" in the Seller API's posting statuses (the ones polling gives: `PUSH_STATES`),
        TYPE_CUTOFF_DATE_CHANGED "ship_by" (the shipping date, `Order.ship_by`, moved: `OrderEvent.ship_by` the
        new one; [] while `new_cutoff_date` is empty, "the delivery interval has been deleted": Ozon pushes
        again once a new date is set); [] for the types the product does not use (the delivery date change,
        products, stocks, chats), which are acknowledged.
        The new posting's notification is thin (no prices): its event carries no order, so the intake
        reads the posting (`get_order`, /v3/posting/fbs/get) keyed by the posting_number polling gives.
        Raises `BadResponse` for a malformed notification and `AuthError` for one about another seller
        (`seller_id` against the account's `options["seller_id"]`, else its numeric Client-Id)."""
        ep = "notification"
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise self._bad("notification body is not valid JSON", ep) from None
        if not isinstance(data, dict) or not isinstance(data.get("message_type"), str):
            raise self._bad("message_type is missing", ep)
        kind_name = data["message_type"]
        if kind_name == "TYPE_PING":
            return [OrderEvent("ping", dedup_key="", native=data)]
        kind = PUSH_KINDS.get(kind_name)
        if kind is None:
            return []
        required = {"created": ("posting_number", "products"), "cancelled": ("posting_number",),
                    "status": ("posting_number", "new_state"), "ship_by": ("posting_number",)}[kind]
        missing = [k for k in required if data.get(k) in (None, "", [])]
        if missing:
            raise self._bad(f"{kind_name}: missing {', '.join(missing)}", ep)
        number = data["posting_number"]
        if not isinstance(number, str):
            raise self._bad(f"{kind_name}: posting_number must be a string", ep)
        if "products" in data and (not isinstance(data["products"], list) or any(
                not isinstance(p, dict) or not isinstance(p.get("sku"), int) or not isinstance(p.get("quantity"), int)
                for p in data["products"])):
            raise self._bad(f"{kind_name}: products must be [{{sku, quantity}}] (integers)", ep)
        for stamp in ("in_process_at", "shipment_date", "changed_state_date", "new_cutoff_date", "old_cutoff_date"):
            if data.get(stamp):  # in_process_at may be empty for a posting paid late (push_types)
                try:
                    _when(data[stamp])
                except (TypeError, ValueError):
                    raise self._bad(f"{kind_name}: {stamp} is not a date-time", ep) from None
        seller = data.get("seller_id")
        if seller is not None and (isinstance(seller, bool) or not isinstance(seller, int)):
            raise self._bad(f"{kind_name}: seller_id must be an integer", ep)
        own = str(self.config.options.get("seller_id") or self._client_id)
        if seller is not None and own.isdigit() and seller != int(own):
            raise AuthError(f"notification for seller {seller}, not this account's", account=self.account,
                            endpoint=ep)
        prefix = f"oz:{seller if seller is not None else own or self.account}:{number}"
        if kind == "created":
            return [OrderEvent("created", number, "awaiting_packaging", dedup_key=f"{prefix}:new", native=data)]
        if kind == "cancelled":
            return [OrderEvent("cancelled", number, "cancelled", dedup_key=f"{prefix}:cancelled", native=data)]
        if kind == "ship_by":
            if not data.get("new_cutoff_date"):  # the interval was deleted: a new notification brings the date
                return []
            new = data["new_cutoff_date"]
            return [OrderEvent("ship_by", number, dedup_key=f"{prefix}:cutoff:{new}", ship_by=_when(new), native=data)]
        state = data["new_state"]
        status = PUSH_STATES.get(state) if isinstance(state, str) else None
        if status is None:
            raise self._bad(f"TYPE_STATE_CHANGED: unknown new_state {state!r}", ep)
        return [OrderEvent("status", number, status,
                           dedup_key=f"{prefix}:state:{state}@{data.get('changed_state_date') or ''}", native=data)]


# Ozon's transaction totals that are the month's logistics and processing (compared with our logistics)
LOGISTICS_TOTALS = ("processing_and_delivery", "refunds_and_cancellations")
# ... and those that enter what Ozon pays, not compared one by one
OTHER_TOTALS = ("services_amount", "compensation_amount", "money_transfer", "others_amount")
# /v3/finance/transaction/list services that are logistics or processing of a posting (the spec's names)
LOGISTICS_SERVICES = frozenset({
    "MarketplaceNotDeliveredCostItem", "MarketplaceReturnAfterDeliveryCostItem", "MarketplaceDeliveryCostItem",
    "MarketplaceServiceItemDelivToCustomer", "MarketplaceServiceItemDirectFlowTrans", "MarketplaceServiceItemDropoffFF",
    "MarketplaceServiceItemDropoffPVZ", "MarketplaceServiceItemDropoffSC", "MarketplaceServiceItemFulfillment",
    "MarketplaceServiceItemPickup", "MarketplaceServiceItemReturnAfterDelivToCustomer",
    "MarketplaceServiceItemReturnFlowTrans", "MarketplaceServiceItemReturnNotDelivToCustomer",
    "MarketplaceServiceItemReturnPartGoodsCustomer", "MarketplaceServiceItemDeliveryKGT",
    "MarketplaceServiceItemDirectFlowLogistic", "MarketplaceServiceItemReturnFlowLogistic",
    "MarketplaceServiceItemDropoffPPZ", "MarketplaceServiceItemRedistributionReturnsPVZ",
})
# operation types whose charge (beyond logistics) has a column of its own; any other goes to `other`
OPERATION_COLUMNS = {"MarketplaceRedistributionOfAcquiringOperation": "acquiring",
                     "OperationMarketplaceServiceStorage": "storage"}
LIST_PAGE = 1000  # operations per page of /v3/finance/transaction/list (the spec's example)
TOTALS_NOTES = {  # English: the cloud shows them in the reader's language (its catalogs hold them)
    "services_amount": "Ozon's services: in what Ozon pays, not compared one by one",
    "compensation_amount": "Ozon's compensations: in what Ozon pays, not compared one by one",
    "money_transfer": "money transfers: in what Ozon pays, not compared one by one",
    "others_amount": "other accruals: in what Ozon pays, not compared one by one",
    "to_pay": "the sum of all of Ozon's transaction totals for the report's months",
    "logistics": "processing and delivery, returns processing: per item from Ozon's operations, "
                 "compared with Ozon's monthly totals",
}


def _month_period(month: date) -> dict[str, str]:
    last = _next_month(month) - timedelta(days=1)
    return {"from": f"{month.isoformat()}T00:00:00.000Z", "to": f"{last.isoformat()}T23:59:59.999Z"}


def _split(amount: Decimal, parts: int) -> list[Decimal]:
    """An amount shared among `parts` in kopecks, the remainder on the last share."""
    share = (amount / parts).quantize(Decimal("0.01"))
    return [share] * (parts - 1) + [amount - share * (parts - 1)]


def _next_month(month: date) -> date:
    return (month.replace(day=1) + timedelta(days=32)).replace(day=1)


ACT_CHECKS = 6  # act/check-status asked this many times per attempt ...
ACT_WAIT_S = 1.0  # ... this far apart
ACT_LOOKUPS = 20  # the latest approved shippings of a delivery method searched for the postings


def _pdf_size_mm(pdf: bytes) -> tuple[float, float]:
    """The first page's MediaBox in millimetres (75x120 when it cannot be read)."""
    m = re.search(rb"/MediaBox\s*\[\s*([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s+([-\d.]+)\s*\]", pdf)
    if not m:
        return 75.0, 120.0
    x0, y0, x1, y1 = (float(v) for v in m.groups())
    return round((x1 - x0) * 25.4 / 72, 1), round((y1 - y0) * 25.4 / 72, 1)


# ---------------------------------------------------------------- prices in Ozon's terms


def min_gap(price: Decimal) -> Decimal:
    """The least difference Ozon accepts between price and old_price (/v1/product/import/prices)."""
    if price < 400:
        return Decimal(20)
    if price <= 10000:
        return price * Decimal("0.05")
    return Decimal(500)


class _OzonPrices(PriceModel):
    """Ozon takes price, old_price (0: none) and min_price as they are, with kopecks; a crossed-out price
    must stand far enough above the price (`min_gap`)."""

    def price_change(self, *, card_id: str, group_id: str | None, offer_id: str, price: Decimal,
                     crossed_out: Decimal | None, min_price: Decimal | None) -> PriceChange:
        return PriceChange(card_id=card_id, offer_id=offer_id, price=price,
                           old_price=crossed_out if crossed_out is not None else Decimal(0), min_price=min_price)

    def crossed_out_problem(self, price: Decimal, crossed_out: Decimal) -> str | None:
        if crossed_out - price < min_gap(price):
            return f"Ozon needs at least {kopecks(min_gap(price))} between price and crossed-out price"
        return None


# a product's price may change at most 10 times an hour; discounts up to 89.99%
PRICE_MODEL = _OzonPrices(PriceTerms("ozon", whole_roubles=False, max_discount_percent=Decimal("89.99"),
                                     max_updates_per_hour=10))
