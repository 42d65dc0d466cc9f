"""The common marketplace interface and its plain data types.

Every adapter (wildberries.py, ozon.py, yandex_market.py, megamarket.py) implements `Marketplace`.
The rest of the system (cloud_sync) speaks only these types; each type keeps the marketplace's
native ids and native statuses beside the common fields, so nothing is lost in translation.

Money is `Decimal` in the account's currency (roubles), never kopecks: adapters convert.
Quantities are whole units (`int`). Times are timezone-aware `datetime` in UTC.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal, Protocol, runtime_checkable

MarketplaceName = Literal["wildberries", "ozon", "yandex_market", "megamarket"]
LabelFormat = Literal["pdf", "png", "svg", "zpl"]

# The one order status the seller sees, whatever the marketplace: each marketplace's profile maps its
# native statuses onto these (the cloud's configuration may override the map).
UNIFIED_STATUSES = (
    "new", "in_work", "reserved", "picking", "packed", "handed_over", "delivered", "cancelled", "returned",
)


# ---------------------------------------------------------------- urgency

# True while the calls of this context are urgent (see `urgent_calls`); the HTTP client reads it.
urgent_var: contextvars.ContextVar[bool] = contextvars.ContextVar("marketplace_urgent", default=False)


def urgent_calls() -> contextvars.Token:
    """Calls made from now on in this context (and the parallel requests they start) take their
    account's next tokens ahead of every other waiting call — polls, price pushes, other stock pushes: a
    stock push of a zero (an item ran out) must not queue behind them. The documented limits hold all the
    same; only the order of the waiters changes. Undo with `calls_as_usual(token)`."""
    return urgent_var.set(True)


def calls_as_usual(token: contextvars.Token) -> None:
    urgent_var.reset(token)


# ---------------------------------------------------------------- errors


class MarketplaceError(Exception):
    """A marketplace call failed. Always names the account and the endpoint; never holds a secret."""

    def __init__(
        self,
        message: str,
        *,
        account: str = "",
        endpoint: str = "",
        status: int | None = None,
        retryable: bool = False,
        native: Any = None,
    ) -> None:
        where = " ".join(p for p in (account and f"account={account}", endpoint and f"endpoint={endpoint}") if p)
        super().__init__(f"{message} ({where})" if where else message)
        self.account = account
        self.endpoint = endpoint
        self.status = status
        self.retryable = retryable
        self.native = native


class BadResponse(MarketplaceError):
    """The marketplace answered something we cannot read: malformed JSON, an HTML page, a body cut
    short, a missing field, an unknown status. Nothing is applied from such an answer."""


class RateLimited(MarketplaceError):
    """Still throttled after every retry the policy allows."""


class AuthError(MarketplaceError):
    """401/403: the token is wrong, expired or lacks the scope."""


class InvalidRequest(MarketplaceError):
    """The payload was refused before sending (fails the marketplace's documented rules): nothing sent."""


class Uncertain(MarketplaceError):
    """A non-idempotent call timed out or got a 5xx: it may or may not have been applied.

    Adapters answer it by reading the state back from the marketplace before acting again."""


class NotSupported(MarketplaceError):
    """The marketplace's API does not offer this call (e.g. Megamarket has no hide/unhide).

    The UI shows it as such; it is an answer, not a failure: `for_seller()` says so in the seller's words
    (`seller_text`, Russian, given by the adapter that knows why — e.g. the API has no such method and
    the cabinet has an export instead)."""

    def __init__(self, marketplace: str, call: str, *, account: str = "", seller_text: str = "") -> None:
        super().__init__(f"{call} is not supported by {marketplace}", account=account, endpoint=call)
        self.marketplace = marketplace
        self.call = call
        self.seller_text = seller_text

    def for_seller(self) -> str:
        """What the seller reads: the adapter's words, else a plain statement that the API has no such call."""
        return self.seller_text or f"API маркетплейса не предоставляет эту операцию ({self.call}): это не ошибка."


# ---------------------------------------------------------------- catalog


@dataclass
class Warehouse:
    """A marketplace warehouse of the account (FBS: the seller's own; FBO: the marketplace's)."""

    native_id: str
    name: str
    kind: Literal["fbs", "fbo", "dbs"] = "fbs"
    native: dict[str, Any] = field(default_factory=dict)


@dataclass
class Card:
    """A product card (one sellable variant: WB size/chrtId, Ozon product, YM offer, MM offer)."""

    native_id: str  # the id the marketplace keys stocks by (WB chrtId, Ozon product_id, YM/MM offerId)
    offer_id: str  # the seller's article / vendor code / SKU on that marketplace
    title: str = ""
    barcodes: list[str] = field(default_factory=list)
    category: str = ""  # human-readable category name
    category_id: str = ""
    brand: str = ""
    size: str = ""
    group_id: str = ""  # WB nmID / Ozon sku / YM marketSku: the card that groups variants
    visible: bool = True  # False when hidden from the storefront (WB trash, Ozon archive, YM hidden)
    price: Decimal | None = None
    native_status: str = ""
    native: dict[str, Any] = field(default_factory=dict)
    # packed dimensions {"length", "width", "height": cm, "weight": kg} and photo URLs, where the marketplace
    # gives them (a card that matches no 1C item can become one with them)
    dimensions: dict[str, float] = field(default_factory=dict)
    photos: list[str] = field(default_factory=list)


@dataclass
class NewCard:
    """A card to create (Wildberries): from an item of the 1C nomenclature."""

    offer_id: str
    title: str
    subject_id: int  # WB subjectID (category)
    brand: str = ""
    description: str = ""
    characteristics: list[dict[str, Any]] = field(default_factory=list)  # [{"id": 123, "value": ...}]
    sizes: list[dict[str, Any]] = field(default_factory=list)  # [{"techSize", "wbSize", "price", "skus": [...]}]
    dimensions: dict[str, Any] = field(default_factory=dict)  # length/width/height cm, weightBrutto kg
    photos: list[str] = field(default_factory=list)  # public URLs, uploaded through the media API once created
    category_id: str = ""  # Category.id where it is not the WB subject (Ozon: "description_category_id:type_id")
    marked: bool = False  # goods under Честный знак marking: the seller confirms the code is on them (WB kizMarked)


# ---------------------------------------------------------------- card creation: categories and attributes


@dataclass(frozen=True)
class Category:
    """A category a card is created in (WB subject), from the marketplace's category tree."""

    id: str
    name: str
    parent_name: str = ""


@dataclass(frozen=True)
class CategoryAttribute:
    """A characteristic the marketplace asks of a card in one category (WB `object/charcs`).

    `kind`: "strings" (a list of texts, at most `max_count` of them; 0 = any number) or "number"."""

    id: int
    name: str
    required: bool = False
    kind: Literal["strings", "number"] = "strings"
    max_count: int = 0
    unit: str = ""
    dictionary: bool = False  # the values must be taken from the marketplace's dictionary of this attribute


@dataclass
class CardCreation:
    """Where an asynchronous card creation stands."""

    offer_id: str
    state: Literal["pending", "created", "failed"]
    errors: list[str] = field(default_factory=list)
    card: Card | None = None


# ---------------------------------------------------------------- prices and stocks


@dataclass
class PriceChange:
    """One price to publish for a card."""

    card_id: str  # Card.native_id (or group id where the marketplace prices by group: WB nmID)
    offer_id: str
    price: Decimal  # the price the buyer pays before the marketplace's own promotions
    old_price: Decimal | None = None  # crossed-out price (Ozon/YM/MM)
    discount_percent: int | None = None  # WB: price is the base, discount is applied on top
    min_price: Decimal | None = None
    # read back only (`Marketplace.read_prices`): what else the marketplace tells with the price, in its
    # own words (Ozon: commissions, the price with its promotions; Yandex.Market: the price level)
    native: dict[str, Any] = field(default_factory=dict)


def kopecks(value: Decimal) -> Decimal:
    """A money amount to the kopeck (half up), shown without trailing zeros (1080.00 -> 1080, 699.30 -> 699.3)."""
    q = value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return q.quantize(Decimal(1)) if q == q.to_integral_value() else q.normalize()


@dataclass(frozen=True)
class PriceTerms:
    """What a marketplace accepts for a price, from its spec in shared/specs (the domain checks price
    documents against them; an account's config may override them).

    `quarantine_ratio`: a new price at or below old/ratio is held in the marketplace's quarantine.
    `max_updates_per_hour`: how often one product's price may change.
    `prices_by_group`: the marketplace prices a whole group of cards at once (WB: all sizes of an nmID).
    """

    marketplace: str
    whole_roubles: bool = True
    min_price: Decimal = Decimal("1")
    max_discount_percent: Decimal = Decimal("99")
    min_discount_percent: Decimal = Decimal("0")
    crossed_out_supported: bool = True
    quarantine_ratio: Decimal | None = None
    max_updates_per_hour: int | None = None
    prices_by_group: bool = False


class PriceModel:
    """How a marketplace states a price. The seller says "the buyer pays X, crossed out Y, never below
    Z"; each marketplace wants that in its own fields (WB: a base price and a discount; Ozon: price,
    old_price, min_price; ...). An adapter module publishes its model as `PRICE_MODEL`; this default
    passes the seller's figures through as they are."""

    def __init__(self, terms: PriceTerms) -> None:
        self.terms = terms

    def price_change(self, *, card_id: str, group_id: str | None, offer_id: str, price: Decimal,
                     crossed_out: Decimal | None, min_price: Decimal | None) -> PriceChange:
        """The PriceChange to send for one card (`group_id`: the card's group, where it has one)."""
        return PriceChange(card_id=card_id, offer_id=offer_id, price=price, old_price=crossed_out,
                           min_price=min_price)

    def buyer_price(self, change: PriceChange, price: Decimal) -> Decimal:
        """What the buyer pays once `change` is applied (`price`: what the seller asked for)."""
        return price

    def crossed_out_problem(self, price: Decimal, crossed_out: Decimal) -> str | None:
        """Why the marketplace would refuse this crossed-out price beside `price`, or None."""
        return None

    def not_exact(self, price: Decimal, crossed_out: Decimal | None, buyer_pays: Decimal) -> str:
        """Why the buyer would pay `buyer_pays` rather than the `price` the seller typed (the marketplace's
        own arithmetic), with the nearest ways to get the typed price, in the seller's words; "" when exact."""
        return ""

    def seller_price(self, change: PriceChange) -> tuple[Decimal, Decimal | None, Decimal | None]:
        """A price read back from the marketplace in the seller's terms: (what the buyer pays, the
        crossed-out price, the minimum) — the inverse of `price_change`."""
        return Decimal(change.price), change.old_price or None, change.min_price


@dataclass
class StockLevel:
    """The quantity to publish (or read back) for one card at one marketplace warehouse."""

    card_id: str  # Card.native_id
    offer_id: str
    warehouse_id: str  # Warehouse.native_id
    quantity: int
    kind: Literal["fbs", "fbo"] = "fbs"
    warehouse_name: str = ""  # read back only: the marketplace's name of the warehouse (FBO: «Коледино»)


@dataclass(frozen=True)
class StockKey:
    """One card at one marketplace warehouse whose stock is to be read (`Marketplace.read_stocks`'s
    `cards`): the adapter names it to the marketplace by whichever of the ids its stock read filters on."""

    card_id: str  # Card.native_id
    offer_id: str = ""
    warehouse_id: str = ""  # Warehouse.native_id; "" = at any of the account's warehouses


def only_keys(levels: Iterable[StockLevel], cards: Sequence[StockKey]) -> list[StockLevel]:
    """The levels of the named cards (at their named warehouses) among `levels`: a read's local filter."""
    anywhere = {k.card_id for k in cards if not k.warehouse_id}
    at = {(k.card_id, k.warehouse_id) for k in cards if k.warehouse_id}
    return [lv for lv in levels if lv.card_id in anywhere or (lv.card_id, lv.warehouse_id) in at]


@dataclass
class FeeAsk:
    """A card whose selling fees are asked for (`Marketplace.sale_fees`), at the price it would sell for."""

    card_id: str  # Card.native_id
    offer_id: str
    price: Decimal  # what the buyer pays
    category_id: str = ""  # Card.category_id (WB subjectID, Ozon description category, YM market category)
    dimensions: dict[str, float] = field(default_factory=dict)  # {"length","width","height": cm, "weight": kg}


@dataclass
class SaleFees:
    """What the marketplace takes when one unit of a card sells, as far as its API tells (None: it does
    not tell; the cloud then uses the seller's configured estimate). Amounts are per unit, in roubles."""

    card_id: str
    commission_percent: Decimal | None = None  # of the price
    logistics: Decimal | None = None  # delivery to the buyer (and the marketplace's handling), per unit
    acquiring_percent: Decimal | None = None  # payment processing, of the price
    acquiring: Decimal | None = None  # payment processing as an amount (where the marketplace states one)
    source: str = ""  # where the figures come from (the marketplace's method), for the page's note


@dataclass
class ItemResult:
    """The marketplace's answer for one item of a batch (prices, stocks, statuses)."""

    key: str  # card_id, or "card_id@warehouse_id" for stocks, or the order id
    ok: bool
    error: str = ""
    retryable: bool = False
    native: Any = None


# ---------------------------------------------------------------- orders

# "reduce": take units the seller cannot send out of the order (details: `lines=[{"card_id", "offer_id",
# "keep"}]`, the cards of that line the parcel really holds, and `reason`); idempotent — the adapter reads
# the order back and removes only what is above `keep` (nothing left to remove: `already`)
OrderAction = Literal["confirm", "assemble", "ship", "cancel", "reduce"]


@dataclass
class OrderLine:
    card_id: str
    offer_id: str
    quantity: int
    price: Decimal  # per unit, what the buyer paid
    barcode: str = ""
    title: str = ""
    native_id: str = ""  # line / item / unit id where the marketplace has one
    marking_required: bool = False
    native: dict[str, Any] = field(default_factory=dict)


@dataclass
class Order:
    native_id: str  # the id used to move the order (WB assembly task id, Ozon posting_number, ...)
    marketplace: MarketplaceName
    account: str
    native_status: str
    created_at: datetime
    lines: list[OrderLine]
    warehouse_id: str = ""  # the marketplace warehouse the order ships from
    ship_by: datetime | None = None  # assembly / ship-by deadline
    number: str = ""  # the number the buyer and the label show (WB rid/id, Ozon posting number...)
    native_substatus: str = ""
    native: dict[str, Any] = field(default_factory=dict)


@dataclass
class OrderEvent:
    """A pushed notification (YM Notification API, Megamarket order/new...) parsed by its adapter."""

    kind: Literal["created", "cancelled", "status", "ship_by", "ping"]
    order_native_id: str = ""
    native_status: str = ""
    order: Order | None = None
    dedup_key: str = ""  # identical for a duplicate delivery of the same event
    native: dict[str, Any] = field(default_factory=dict)
    # "ship_by": the order's new assembly / ship-by deadline as the push gives it (Order.ship_by's meaning)
    ship_by: datetime | None = None


@dataclass
class StatusChange:
    """The outcome of moving an order one step."""

    order_native_id: str
    action: OrderAction
    ok: bool
    native_status: str = ""
    already: bool = False  # the order was found already in the target state (no second move sent)
    error: str = ""
    # the marketplace's shipment batch the order is in after the move (WB supply), when it has such a
    # thing: orders of one batch are handed over and shipped together. Pass it back as `batch_id=` to
    # put the next order into the same batch, or to ship it.
    batch_id: str = ""
    native: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReturnLine:
    """Units of one card coming back in a return."""

    card_id: str
    offer_id: str
    quantity: int
    barcode: str = ""
    native: dict[str, Any] = field(default_factory=dict)


ReturnKind = Literal["return", "unredeemed"]


@dataclass
class OrderReturn:
    """A parcel (or part of it) on its way back to the seller, as the marketplace's returns API lists it:
    `return` — the buyer returned it after delivery; `unredeemed` — it never reached the buyer (cancelled
    after hand-over, refused at pick-up, not accepted at the sorting centre)."""

    return_id: str
    order_native_id: str
    kind: ReturnKind
    lines: list[ReturnLine]
    native_status: str = ""
    created_at: datetime | None = None
    native: dict[str, Any] = field(default_factory=dict)


@dataclass
class Label:
    """A shipping label as the marketplace gives it."""

    order_native_id: str
    data: bytes
    format: LabelFormat
    width_mm: float
    height_mm: float
    barcode_text: str = ""  # what the label's barcode decodes to, where the marketplace says


@dataclass
class HandoverDocument:
    """A document the marketplace gives for a hand-over to its courier, as it gives it: `kind` is
    "supply_qr" (the batch's QR sticker), "act" (the acceptance act; with the waybill when the marketplace
    puts both in one file) or "waybill"; `title` names it for the packer, in Russian."""

    kind: str
    format: LabelFormat
    data: bytes
    title: str
    width_mm: float = 0.0  # 0: as the file says (a PDF's page size)
    height_mm: float = 0.0
    ref: str = ""  # the marketplace's id of the document or of what it is for (supply, shipping, shipment)


# ---------------------------------------------------------------- reports


@dataclass
class ReportLine:
    """One row of a realization (commission agent) report, in the common shape."""

    kind: Literal["sale", "return", "logistics", "fee", "penalty", "storage", "other"]
    offer_id: str
    card_id: str
    quantity: int
    revenue: Decimal  # what the buyer paid for the goods (negative for returns)
    fee: Decimal  # marketplace commission (positive = charged to the seller)
    logistics: Decimal  # delivery/return logistics charged
    other: Decimal  # other deductions: acceptance, loyalty programme, corrections (less extra payments)
    to_pay: Decimal  # what the marketplace transfers to the seller for this row, every deduction taken:
    #                  revenue - fee - acquiring - logistics - storage - penalty - other
    date: date | None = None
    order_native_id: str = ""
    barcode: str = ""
    native: dict[str, Any] = field(default_factory=dict)
    acquiring: Decimal = Decimal(0)  # payment processing charged
    storage: Decimal = Decimal(0)  # storage charged
    penalty: Decimal = Decimal(0)  # penalties charged


ReportProgress = Callable[[int, int], None]  # (calls done, calls expected) while a report is read


@dataclass
class RealizationReport:
    account: str
    period_from: date
    period_to: date
    lines: list[ReportLine]
    native_totals: dict[str, Decimal] = field(default_factory=dict)  # the marketplace's own totals
    report_id: str = ""
    # why a native total is not compared, or how it entered the report (its name -> a sentence in Russian)
    notes: dict[str, str] = field(default_factory=dict)
    # the native totals that are counts of units, not money (shown and exported as whole numbers)
    counts: frozenset[str] = frozenset()


# ---------------------------------------------------------------- what a marketplace is

LabelAfter = Literal["confirm", "assemble"]
# How the marketplace takes parcels from the seller: each order shipped on its own ("per_order"), or orders
# gathered into a batch that is shipped as a whole ("per_batch", e.g. a supply) once its last parcel left.
ShipModel = Literal["per_order", "per_batch"]
SHIP_MODELS = ("per_order", "per_batch")


@dataclass(frozen=True)
class Capabilities:
    """What a marketplace's API lets the seller do beyond the calls every marketplace answers. A call it
    does not offer answers `NotSupported` (the cloud shows that as such; it is not a failure)."""

    hide_cards: bool = False  # set_visibility: take a card off the storefront and return it
    create_cards: bool = False  # the seller creates cards on it from a 1C item (the products page offers it)
    read_fbo_stock: bool = False  # read_stocks("fbo"): the stock in the marketplace's own warehouses
    realization_report: bool = False  # realization_report: the commission agent report's source
    read_prices: bool = False  # read_prices: the prices it shows now, in its own terms
    sale_fees: bool = False  # sale_fees: its commission / logistics / acquiring per card (unit economics)
    receive_pushes: bool = False  # it pushes order events to the cloud (parse_push); polling stays
    handover_documents: bool = False  # handover_documents: what the courier signs or scans (QR, act, waybill)
    reduce_order: bool = False  # set_order_status(.., "reduce"): take missing units out of an order before it ships


@dataclass(frozen=True)
class PushTerms:
    """How a marketplace pushes order events to the cloud, and how it wants each push answered.

    It posts to `<cloud>/push/<marketplace>/<account>/<push token>/<path>` for each of `paths`
    ("notification", "order/new"...). `sources`: the networks it pushes from (CIDR), allowed by default
    when the account names none; () allows any. The answer bodies are templates in the marketplace's own
    shape: `accepted` answers a push taken (HTTP 200), `ping` a connection check (HTTP 200; None: as
    `accepted` — Ozon answers its TYPE_PING with `{"version","name","time"}` but an event with
    `{"result": true}`), `refused` any other status; a string that is exactly "{time}" (now, ISO 8601 UTC
    to the millisecond), "{kind}" (`refusal_kinds` by HTTP status, else `other_refusal`), "{message}" is
    filled in, and "{null}" becomes JSON null (TOML has none). `noun` is what it calls one push.
    `appends`: the seller enters one URL in the cabinet and the marketplace appends each of `paths` to it
    (Yandex.Market's Notification API: <URL>/notification); else the seller enters each full URL
    (`<cloud>/push/.../<path>`: Ozon's one notification URL, Megamarket's order/new and order/cancel).
    `cabinet`: where in the seller's cabinet the URL(s) go, in English (translated where it is shown)."""

    paths: tuple[str, ...]
    accepted: Mapping[str, Any]
    refused: Mapping[str, Any]
    sources: tuple[str, ...] = ()
    refusal_kinds: Mapping[int, str] = field(default_factory=dict)
    other_refusal: str = ""
    noun: str = "push"
    ping: Mapping[str, Any] | None = None
    appends: bool = False
    # where the seller pastes the URL(s) in the marketplace's cabinet, in the seller's words: an English
    # msgid (extracted from the TOML by web/translations/toml_extract.py), translated where it is shown
    cabinet: str = ""

    def answer(self, status: int, message: str = "", *, now: datetime | None = None,
               ping: bool = False) -> dict[str, Any]:
        """The body answering a push with HTTP `status` (200: taken — `ping`: a connection check; else
        refused for `message`)."""
        if status == 200:
            moment = (now or utc_now()).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            template = self.ping if ping and self.ping is not None else self.accepted
            return _filled(template, {"{time}": moment})
        return _filled(self.refused, {"{kind}": self.refusal_kinds.get(status, self.other_refusal),
                                      "{message}": message})


def _filled(template: Any, values: Mapping[str, str]) -> Any:
    """A copy of a JSON template with each placeholder string replaced by its value."""
    if isinstance(template, str):
        return None if template == "{null}" else values.get(template, template)
    if isinstance(template, Mapping):
        return {k: _filled(v, values) for k, v in template.items()}
    if isinstance(template, list | tuple):
        return [_filled(v, values) for v in template]
    return template


@dataclass(frozen=True)
class MarketplaceProfile:
    """What the rest of the system knows of a marketplace without opening an account: its name and
    title, its native order statuses and the unified status each means by default, the pace its
    documented limits allow, when its label exists, what its API offers, and how it pushes.
    `marketplaces.profile(name)` gives it; each marketplace declares it in `endpoints/<name>.toml`.

    `statuses`: native status, or "STATUS/SUBSTATUS" (which wins over the bare status) -> one of
    `UNIFIED_STATUSES`. `min_poll_s`: the shortest new-order poll that leaves the account's request
    budget for stock pushes and status moves (real-world seconds; `poll_reason` says which budget,
    `poll_endpoint` is the endpoint a poll calls). `min_stock_interval_s`: how long one card's stock at
    one warehouse must wait before it may be updated again. `label_after`: the order action after which
    its label can be fetched. `push`: None when it pushes nothing. `ships`: its ShipModel — "per_batch"
    marketplaces put each confirmed order into a batch (`StatusChange.batch_id`) and ship the batch;
    "per_order" ones ship each parcel handed over on its own. `stock_follows_orders`: the marketplace
    itself subtracts an order's units from the stock the card shows at the order's warehouse (and adds
    them back when the order is cancelled before it ships), so what it shows moves without a push."""

    name: str
    title: str  # as the seller says it: «Яндекс Маркет», «Мегамаркет», Wildberries, Ozon
    colour: str  # its brand colour, "#rrggbb" (charts)
    statuses: Mapping[str, str]
    min_poll_s: float
    poll_reason: str
    poll_endpoint: str
    label_after: LabelAfter
    can: Capabilities
    min_stock_interval_s: float = 0.0
    stock_interval_reason: str = ""
    push: PushTerms | None = None
    stock_follows_orders: bool = False
    ships: ShipModel = "per_order"


# ---------------------------------------------------------------- the interface


@runtime_checkable
class Marketplace(Protocol):
    """What cloud_sync may ask of any marketplace account.

    A call the marketplace does not offer raises `NotSupported`. Batched calls take any number of
    items: the adapter splits them by the endpoint map's batch size and paces them by its limits.
    """

    name: MarketplaceName
    account: str

    def warehouses(self) -> list[Warehouse]: ...

    def list_cards(self) -> Iterable[Card]: ...

    def create_card(self, card: NewCard) -> CardCreation: ...

    def card_creation_status(self, offer_id: str) -> CardCreation: ...

    def set_visibility(self, card_ids: Sequence[str], visible: bool) -> list[ItemResult]: ...

    def push_prices(self, changes: Sequence[PriceChange]) -> list[ItemResult]: ...

    def read_prices(self) -> list[PriceChange]: ...

    def sale_fees(self, cards: Sequence[FeeAsk]) -> list[SaleFees]: ...

    def push_stocks(self, levels: Sequence[StockLevel]) -> list[ItemResult]: ...

    def read_stocks(self, kind: Literal["fbs", "fbo"] = "fbs",
                    cards: Sequence[StockKey] | None = None) -> list[StockLevel]:
        """What the cards show now. `cards` (None: the whole catalogue) names the cards (and warehouses) to
        read: the adapter asks only for them where the marketplace's stock read takes a filter (by the ids
        it documents), and otherwise reads as without it and keeps theirs; a named card the marketplace
        does not report is left out."""
        ...

    def new_orders(self) -> list[Order]: ...

    def get_order(self, native_id: str) -> Order: ...

    def order_statuses(self, native_ids: Sequence[str]) -> dict[str, tuple[str, str]]: ...

    def returns(self, since: datetime, order_ids: Sequence[str] = ()) -> list[OrderReturn]: ...

    def set_order_status(self, native_id: str, action: OrderAction, **details: Any) -> StatusChange: ...

    def get_label(self, native_id: str, *, fmt: LabelFormat | None = None, size: str = "") -> Label: ...

    def realization_report(self, period_from: date, period_to: date, *,
                           progress: ReportProgress | None = None) -> RealizationReport:
        """The realization report of the period; `progress(done, steps)` is told after each call made
        (`steps` may grow as the marketplace's pages show more)."""
        ...

    def handover_documents(self, native_ids: Sequence[str], *, batch_id: str = "") -> list[HandoverDocument]:
        """The documents of the hand-over of these orders (already shipped; `batch_id`: their batch, where
        the marketplace ships per batch). Not ready yet: a retryable MarketplaceError; none offered by the
        API: NotSupported."""
        ...

    def parse_push(self, headers: dict[str, str], body: bytes) -> list[OrderEvent]: ...


@runtime_checkable
class CardMaker(Protocol):
    """What a marketplace that creates cards (`Capabilities.create_cards`) answers besides `Marketplace`:
    its category tree, the characteristics one category asks for, and the photos of a created card."""

    def categories(self, name: str = "") -> list[Category]: ...

    def category_attributes(self, category_id: str) -> list[CategoryAttribute]: ...

    def add_photos(self, card: Card, urls: Sequence[str]) -> None: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class AccountConfig:
    """One seller account on one marketplace, as the cloud's config gives it.

    `credentials` are the exact auth values the adapter sends (headers, or for Megamarket the body
    token); they come from the environment or a secrets file, never from the repo, and are never logged.
    `endpoints` overrides entries of the marketplace's endpoint map by name, e.g.
    `{"orders_new": {"path": "/api/v4/orders/new"}}`. `time_scale` runs every time-based limit that
    many times faster (for sandboxes at a time scale). `options` holds marketplace-specific settings
    (Ozon client id, YM business/campaign ids, Megamarket merchant id...).
    """

    name: str
    marketplace: MarketplaceName
    base_url: str
    credentials: dict[str, str] = field(default_factory=dict, repr=False)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    time_scale: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)
