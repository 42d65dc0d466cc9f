"""Streaming, hostile-input-safe reading of CommerceML 2.03–2.10 and 3.x files.

`parse(source)` yields plain records (groups, properties, items, price types, warehouses, offers,
order documents) one by one while it reads, so a 100,000-item catalog never sits in memory: each
handled element is cleared and detached from its parent as soon as its record is out.

What it copes with, as real 1C exports show it: any namespace (`urn:1C.ru:commerceml_2`,
`commerceml_210`, `commerceml_3`, none: elements are matched by local name), a UTF-8 BOM,
windows-1251, decimal commas and spaces in numbers ("10 500,50"), stock per warehouse both as
attributes (`<Склад ИдСклада=… КоличествоНаСкладе=…/>`, 2.07) and as elements
(`<Остатки><Остаток><Склад><Ид/><Количество/>`, 2.08+), characteristics (`product#characteristic`),
incremental packages (`СодержитТолькоИзменения`).

Safety: CommerceML never carries a DTD, so none is allowed: `check_prolog` reads the bytes before the
root element and refuses any `<!DOCTYPE` (or other declaration) there — the only place XML allows one —
and any text encoding that is not ASCII-compatible (UTF-16/32, UTF-7), so the check cannot be dodged.
Without a DTD no entity can be declared: nothing is ever expanded (billion laughs) and no file or URL
named in the XML is ever opened (XXE); an undeclared `&x;` is a well-formedness error. The file is
then fed in 64 KB chunks to the standard library's C-accelerated parser (expat + C TreeBuilder, no
per-element Python callbacks), and finished records are taken from the partly built tree. Any
problem is a `CommerceMLError` naming the file and, where known, the line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import IO
from xml.etree.ElementTree import Element, ParseError, TreeBuilder, XMLParser

from cloud_sync.catalog.nomenclature import Item

ROOT = "КоммерческаяИнформация"
DEFAULT_WAREHOUSE = "default"  # where a bare <Количество> goes when 1C names no warehouse


class CommerceMLError(ValueError):
    """The file is not CommerceML we can import: not XML, cut short, hostile, or a value is unreadable."""


# ---------------------------------------------------------------- records


@dataclass
class Package:
    """The start of a `Каталог` or `ПакетПредложений` (or the root of an orders document)."""

    kind: str  # "catalog" | "offers" | "classifier" | "documents"
    only_changes: bool
    version: str
    formed_at: str = ""  # the root's ДатаФормирования as 1C wrote it (local time, usually no offset)


@dataclass
class Group:
    id: str
    name: str
    parent_id: str | None = None


@dataclass
class Property:
    id: str
    name: str
    value_type: str = ""
    values: dict[str, str] = field(default_factory=dict)  # ИдЗначения -> Значение


@dataclass
class CatalogItem:
    """One `Товар` of a catalog; `item.id` keeps `#characteristic` where 1C put one there."""

    item: Item
    deleted: bool = False


@dataclass
class PriceType:
    id: str
    name: str
    currency: str = "RUB"


@dataclass
class Warehouse:
    id: str
    name: str


@dataclass
class Offer:
    """One `Предложение`: prices and stock of an item or of one characteristic of it (`id` with '#')."""

    id: str
    name: str = ""
    article: str = ""
    barcodes: list[str] = field(default_factory=list)
    prices: dict[str, Decimal] = field(default_factory=dict)  # price type id -> price per unit
    currencies: dict[str, str] = field(default_factory=dict)  # price type id -> currency
    quantity: Decimal | int | None = None  # <Количество>, the total 1C states (an int when written whole)
    stock: dict[str, Decimal | int] = field(default_factory=dict)  # warehouse id -> quantity (see `quantity`)
    characteristics: dict[str, str] = field(default_factory=dict)
    deleted: bool = False
    bin: str = ""  # the storage bin at the sites, where 1C sends it (a requisite «Ячейка»)

    @property
    def item_id(self) -> str:
        return self.id.split("#", 1)[0]


@dataclass
class DocumentLine:
    id: str
    name: str
    quantity: Decimal
    price: Decimal
    amount: Decimal
    requisites: dict[str, str] = field(default_factory=dict)


@dataclass
class Document:
    """One `Документ` (an order from a site, or 1C's answer about it: shipped, paid, cancelled)."""

    id: str
    number: str
    date: str
    operation: str
    amount: Decimal | None
    currency: str = ""
    time: str = ""
    comment: str = ""
    counterparties: list[dict[str, str]] = field(default_factory=list)
    lines: list[DocumentLine] = field(default_factory=list)
    requisites: dict[str, str] = field(default_factory=dict)


Record = Package | Group | Property | CatalogItem | PriceType | Warehouse | Offer | Document


# ---------------------------------------------------------------- helpers

_LOCAL: dict[str, str] = {}


def local(tag: str) -> str:
    name = _LOCAL.get(tag)
    if name is None:
        name = _LOCAL[tag] = tag.rpartition("}")[2]
    return name


def _text(el: Element | None) -> str:
    if el is None or el.text is None:
        return ""
    return el.text.strip()


_CURRENCIES = {"руб": "RUB", "руб.": "RUB", "rub": "RUB", "rur": "RUB", "643": "RUB", "р.": "RUB", "₽": "RUB"}


_CURRENCY_SEEN: dict[str, str] = {}


def currency(value: str) -> str:
    code = _CURRENCY_SEEN.get(value)
    if code is None:
        v = value.strip()
        code = _CURRENCIES.get(v.lower(), v.upper() or "RUB")
        if len(_CURRENCY_SEEN) < 1000:  # a handful of spellings in practice; bounded against odd files
            _CURRENCY_SEEN[value] = code
    return code


_ZERO = Decimal(0)


def number(value: str, what: str = "number", *args: object) -> Decimal:
    """A CommerceML number: decimal comma or point, spaces (also non-breaking) between thousands.
    `what` names it in an error (formatted with `args` only then)."""
    try:
        # the common cases: "100", "181.50", " 7 ", "100,50" (a decimal comma read as the point it means;
        # anything else a comma could be, "1,000.50", fails here as it does below)
        d = Decimal(value.replace(",", ".") if "," in value else value)
        if d.is_finite():
            return d
    except InvalidOperation:
        pass
    what = what.format(*args) if args else what
    try:
        d = Decimal(value)
    except InvalidOperation:
        v = value.strip().replace("\u00a0", "").replace("\u202f", "").replace(" ", "").replace(",", ".")
        if not v:
            raise CommerceMLError(f"empty {what}") from None
        try:
            d = Decimal(v)
        except InvalidOperation:
            raise CommerceMLError(f"unreadable {what} {value.strip()!r}") from None
    if not d.is_finite():
        raise CommerceMLError(f"unreadable {what} {value.strip()!r}")
    return d


def _bool(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "да", "yes")


# CommerceML has no bin element: 1C sends an item's storage bin, where it does, as a requisite or a
# property under one of these names (case aside)
BIN_NAMES = frozenset({"ячейка", "складская ячейка", "адрес хранения", "место хранения"})


def is_bin_name(name: str) -> bool:
    return name.strip().lower() in BIN_NAMES


def _requisites(el: Element) -> dict[str, str]:
    out: dict[str, str] = {}
    for zr in el:
        name = value = ""
        for ch in zr:
            t = _LOCAL.get(ch.tag) or local(ch.tag)
            if t == "Наименование":
                name = ch.text.strip() if ch.text else ""
            elif t == "Значение":
                value = ch.text.strip() if ch.text else ""
        if name:
            out[name] = value
    return out


_UNITS = {"796": "шт", "PCE": "шт", "166": "кг", "KGM": "кг", "112": "л", "LTR": "л", "006": "м", "MTR": "м",
          "715": "пар", "NPR": "пар", "778": "упак", "NMP": "упак"}


def _unit(el: Element) -> str:
    text = _text(el)
    if text:
        return text
    short = (el.get("НаименованиеКраткое") or "").strip()
    if short:
        return short
    for key in ((el.get("Код") or "").strip(), (el.get("МеждународноеСокращение") or "").strip()):
        if key in _UNITS:
            return _UNITS[key]
    return (el.get("НаименованиеПолное") or "").strip() or "шт"


class _Tags:
    """The full tags (`{namespace}name`) of the elements read inside prices, in one namespace: found with
    the C-level `Element.findtext` instead of a Python loop over the children."""

    _by_ns: dict[str, _Tags] = {}

    def __init__(self, ns: str) -> None:
        self.price_type = ns + "ИдТипаЦены"
        self.price = ns + "ЦенаЗаЕдиницу"
        self.currency = ns + "Валюта"

    @classmethod
    def of(cls, el: Element) -> _Tags:
        """The tags in `el`'s namespace (CommerceML keeps one namespace throughout a file)."""
        tag = el.tag
        ns = tag[:tag.find("}") + 1] if tag[:1] == "{" else ""
        tags = cls._by_ns.get(ns)
        if tags is None:
            tags = cls._by_ns[ns] = cls(ns)
        return tags


def quantity(value: str, what: str = "quantity", *args: object) -> Decimal | int:
    """`number` for a stock quantity: a whole number written plainly ("7") is kept as an int — exact,
    and cheaper to sum and compare than a Decimal for 100,000s of balances."""
    return int(value) if value.isdigit() and value.isascii() else number(value, what, *args)


# ---------------------------------------------------------------- the reader


class _Reader:
    def __init__(self, name: str) -> None:
        self.name = name
        self.properties: dict[str, Property] = {}

    # -- records built from a finished element

    def groups(self, el: Element, parent: str | None) -> Iterator[Group]:
        for g in el:
            if local(g.tag) != "Группа":
                continue
            gid = name = ""
            nested = None
            for ch in g:
                t = local(ch.tag)
                if t == "Ид":
                    gid = _text(ch)
                elif t == "Наименование":
                    name = _text(ch)
                elif t == "Группы":
                    nested = ch
            if not gid:
                raise CommerceMLError("a group (Группа) without Ид")
            yield Group(gid, name or gid, parent)
            if nested is not None:
                yield from self.groups(nested, gid)

    def property(self, el: Element) -> Property:
        p = Property("", "")
        for ch in el:
            t = local(ch.tag)
            if t == "Ид":
                p.id = _text(ch)
            elif t == "Наименование":
                p.name = _text(ch)
            elif t == "ТипЗначений":
                p.value_type = _text(ch)
            elif t == "ВариантыЗначений":
                for v in ch:
                    vid = val = ""
                    for x in v:
                        tx = local(x.tag)
                        if tx == "ИдЗначения":
                            vid = _text(x)
                        elif tx == "Значение":
                            val = _text(x)
                    if vid:
                        p.values[vid] = val
        if not p.id:
            raise CommerceMLError("a property (Свойство) without Ид")
        p.name = p.name or p.id
        self.properties[p.id] = p
        return p

    def property_values(self, el: Element, into: dict[str, str]) -> None:
        for zs in el:
            pid = ""
            values: list[str] = []
            for ch in zs:
                t = _LOCAL.get(ch.tag) or local(ch.tag)
                if t == "Ид":
                    pid = ch.text.strip() if ch.text else ""
                elif t == "Значение" or t == "ИдЗначения":
                    values.append(ch.text.strip() if ch.text else "")
            prop = self.properties.get(pid)
            if prop is None:
                name, shown = pid, [v for v in values if v]
            else:
                name = prop.name
                shown = [prop.values.get(v, v) for v in values if v]
                if prop.value_type == "Число":
                    shown = [v.replace(",", ".").replace(" ", "").replace("\u00a0", "") for v in shown]
            if pid and shown:
                into[name] = shown[0] if len(shown) == 1 else "; ".join(dict.fromkeys(shown))

    def item(self, el: Element) -> CatalogItem:
        it = Item(id="", name="")
        deleted = (el.get("Статус") or "").strip() == "Удален"
        requisites: dict[str, str] = {}
        for ch in el:
            t = _LOCAL.get(ch.tag) or local(ch.tag)
            text = ch.text.strip() if ch.text else ""
            if t == "Ид":
                it.id = text
            elif t == "Наименование":
                it.name = text
            elif t == "Артикул":
                it.article = text
            elif t == "Штрихкод":
                if text:
                    it.barcodes.append(text)
            elif t == "Группы":
                for g in ch:
                    if (_LOCAL.get(g.tag) or local(g.tag)) == "Ид" and g.text and g.text.strip():
                        it.group_id = g.text.strip()
                        break
            elif t == "БазоваяЕдиница":
                it.unit = _unit(ch)
            elif t == "ЗначенияСвойств":
                self.property_values(ch, it.properties)
            elif t == "ЗначенияРеквизитов":
                requisites = _requisites(ch)
            elif t == "ХарактеристикиТовара":
                for k, v in _requisites(ch).items():
                    it.properties[k] = v
            elif t == "ПометкаУдаления":
                deleted = deleted or _bool(text)
            elif t == "Код" and text:
                it.properties.setdefault("Код", text)
        if not it.id:
            raise CommerceMLError("an item (Товар) without Ид")
        for name, value in requisites.items():
            if name.lower() in ("штрихкод", "штрихкоды"):
                it.barcodes.extend(b.strip() for b in value.replace(";", ",").split(",") if b.strip())
            elif is_bin_name(name):
                it.bin = it.bin or value
            elif value:
                it.properties.setdefault(name, value)
        for name in [k for k in it.properties if is_bin_name(k)]:  # a bin given as a property
            it.bin = it.bin or it.properties.pop(name)
        it.name = it.name or requisites.get("Полное наименование", "") or it.article or it.id
        return CatalogItem(it, deleted)

    def price_type(self, el: Element) -> PriceType:
        pt = PriceType("", "")
        for ch in el:
            t = local(ch.tag)
            if t == "Ид":
                pt.id = _text(ch)
            elif t == "Наименование":
                pt.name = _text(ch)
            elif t == "Валюта":
                pt.currency = currency(_text(ch))
        if not pt.id:
            raise CommerceMLError("a price type (ТипЦены) without Ид")
        pt.name = pt.name or pt.id
        return pt

    def warehouse(self, el: Element) -> Warehouse:
        wid = name = ""
        for ch in el:
            t = local(ch.tag)
            if t == "Ид":
                wid = _text(ch)
            elif t == "Наименование":
                name = _text(ch)
        if not wid:
            raise CommerceMLError("a warehouse (Склад) without Ид")
        return Warehouse(wid, name or wid)

    def offer(self, el: Element) -> Offer:
        o = Offer("")
        o.deleted = (el.get("Статус") or "").strip() == "Удален"
        for ch in el:
            t = _LOCAL.get(ch.tag) or local(ch.tag)
            text = ch.text.strip() if ch.text else ""
            if t == "Ид":
                o.id = text
            elif t == "Цены":
                for price in ch:
                    tags = _Tags.of(price)
                    type_id = (price.findtext(tags.price_type) or "").strip()
                    value = (price.findtext(tags.price) or "").strip()
                    if type_id and value:
                        cur = (price.findtext(tags.currency) or "").strip()
                        o.prices[type_id] = number(value, "price of offer {}", o.id)
                        o.currencies[type_id] = currency(cur) if cur else ""
            elif t == "Склад":
                wid = (ch.get("ИдСклада") or "").strip()
                qty = ch.get("КоличествоНаСкладе")
                if wid and qty is not None and qty.strip():
                    q = quantity(qty.strip(), "stock of offer {}", o.id)
                    o.stock[wid] = o.stock[wid] + q if wid in o.stock else q
            elif t == "Количество":
                if text:
                    o.quantity = quantity(text, "quantity of offer {}", o.id)
            elif t == "Наименование":
                o.name = text
            elif t == "Артикул":
                o.article = text
            elif t == "Штрихкод":
                if text:
                    o.barcodes.append(text)
            elif t == "Остатки":
                self._rests(ch, o)
            elif t == "ХарактеристикиТовара":
                o.characteristics.update(_requisites(ch))
            elif t == "ЗначенияРеквизитов":
                for name, value in _requisites(ch).items():
                    if name.lower() in ("штрихкод", "штрихкоды"):
                        o.barcodes.extend(b.strip() for b in value.replace(";", ",").split(",") if b.strip())
                    elif is_bin_name(name) and value:
                        o.bin = value
            elif t == "ПометкаУдаления":
                o.deleted = o.deleted or _bool(text)
        if not o.id:
            raise CommerceMLError("an offer (Предложение) without Ид")
        return o

    def _rests(self, el: Element, o: Offer) -> None:
        for rest in el:  # Остаток
            for ch in rest:
                t = local(ch.tag)
                if t == "Склад":
                    wid = qty = ""
                    for x in ch:
                        tx = local(x.tag)
                        if tx == "Ид":
                            wid = _text(x)
                        elif tx == "Количество":
                            qty = _text(x)
                    if wid and qty:
                        o.stock[wid] = o.stock.get(wid, Decimal(0)) + number(qty, f"stock of offer {o.id}")
                elif t == "Количество" and _text(ch):
                    o.quantity = (o.quantity or Decimal(0)) + number(_text(ch), f"stock of offer {o.id}")

    def document(self, el: Element) -> Document:
        d = Document("", "", "", "", None)
        for ch in el:
            t = local(ch.tag)
            if t == "Ид":
                d.id = _text(ch)
            elif t == "Номер":
                d.number = _text(ch)
            elif t == "Дата":
                d.date = _text(ch)
            elif t == "Время":
                d.time = _text(ch)
            elif t == "ХозОперация":
                d.operation = _text(ch)
            elif t == "Валюта":
                d.currency = currency(_text(ch))
            elif t == "Сумма" and _text(ch):
                d.amount = number(_text(ch), f"sum of document {d.id}")
            elif t == "Комментарий":
                d.comment = _text(ch)
            elif t == "Контрагенты":
                for c in ch:
                    d.counterparties.append({local(x.tag): _text(x) for x in c if len(x) == 0})
            elif t == "Товары":
                for line in ch:
                    d.lines.append(self._line(line, d.id))
            elif t == "ЗначенияРеквизитов":
                d.requisites = _requisites(ch)
        if not d.id and not d.number:
            raise CommerceMLError("a document (Документ) without Ид and Номер")
        d.id = d.id or d.number
        return d

    def _line(self, el: Element, doc: str) -> DocumentLine:
        values: dict[str, str] = {}
        requisites: dict[str, str] = {}
        for ch in el:
            t = local(ch.tag)
            if t == "ЗначенияРеквизитов":
                requisites = _requisites(ch)
            elif len(ch) == 0:
                values.setdefault(t, _text(ch))
        qty = number(values.get("Количество") or "0", f"quantity in document {doc}")
        price = number(values.get("ЦенаЗаЕдиницу") or "0", f"price in document {doc}")
        amount = number(values["Сумма"], f"sum in document {doc}") if values.get("Сумма") else qty * price
        return DocumentLine(values.get("Ид", ""), values.get("Наименование", ""), qty, price, amount, requisites)


PROLOG_LIMIT = 1 << 20
_ENCODINGS = {"utf-8", "utf8", "windows-1251", "cp1251", "win-1251", "koi8-r", "iso-8859-5", "iso-8859-1",
              "latin-1", "us-ascii", "ascii", "windows-1252", "cp1252", "cp866", "ibm866"}
_ENCODING_DECL = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def check_prolog(head: bytes) -> None:
    """Refuse a DTD (any `<!` declaration before the root element) and non-ASCII-compatible encodings.

    `head` is the start of the file (at least up to the root element, or all of a smaller file)."""
    i = 3 if head.startswith(b"\xef\xbb\xbf") else 0
    if head[i:i + 2] in (b"\xff\xfe", b"\xfe\xff") or head[i:i + 1] == b"\x00" or head[i + 1:i + 2] == b"\x00":
        raise CommerceMLError("unsupported text encoding (UTF-16/32): 1C writes UTF-8 or windows-1251")
    n = len(head)
    while i < n:
        while i < n and head[i] in b" \t\r\n":
            i += 1
        if head.startswith(b"<?", i):
            end = head.find(b"?>", i)
            if end < 0:
                break
            decl = _ENCODING_DECL.search(head, i, end)
            if decl and decl.group(1).decode("ascii").lower() not in _ENCODINGS:
                raise CommerceMLError(f"unsupported text encoding {decl.group(1).decode('ascii')!r}: "
                                      "1C writes UTF-8 or windows-1251")
            i = end + 2
        elif head.startswith(b"<!--", i):
            end = head.find(b"-->", i)
            if end < 0:
                break
            i = end + 3
        elif head.startswith(b"<!", i):
            raise CommerceMLError("refused hostile XML: a DTD (<!DOCTYPE …>) is not allowed in CommerceML — "
                                  "no entity is expanded and nothing it names is read")
        else:
            return  # the root element (or not XML at all: the parser will say so)
    if n >= PROLOG_LIMIT:
        raise CommerceMLError("refused: no root element within the first 1 MB")


class _Prefixed:
    """`head` then the rest of an unseekable stream, for the chunked reader."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self.head, self.rest = head, rest

    def read(self, n: int = -1) -> bytes:
        if self.head:
            if n < 0 or n >= len(self.head):
                out, self.head = self.head, b""
            else:
                out, self.head = self.head[:n], self.head[n:]
            return out
        return self.rest.read(n)


def _open(source: str | os.PathLike[str] | IO[bytes]) -> tuple[IO[bytes] | _Prefixed, IO[bytes] | None]:
    """(a binary stream from the start with its prolog checked, the file to close when we opened it)."""
    opened = open(source, "rb") if isinstance(source, (str, os.PathLike)) else None  # noqa: SIM115
    fh: IO[bytes] = opened or source  # type: ignore[assignment]
    try:
        head = fh.read(PROLOG_LIMIT)
        check_prolog(head)
        if fh.seekable():
            fh.seek(0)
            return fh, opened
        return _Prefixed(head, fh), opened
    except BaseException:
        if opened:
            opened.close()
        raise


CHUNK = 1 << 16


def _kind(path: tuple[str, ...]) -> str | None:
    """Which record an element at this path (local names from the root) is, if any."""
    t = path[-1]
    parent = path[-2] if len(path) > 1 else ""
    if t == "Товар" and parent == "Товары" and len(path) >= 3 and path[-3] == "Каталог":
        return "item"
    if t == "Предложение" and parent == "Предложения":
        return "offer"
    if t == "Группы" and parent == "Классификатор":
        return "groups"
    if t == "Свойство" and parent == "Свойства":
        return "property"
    if t == "ТипЦены" and parent == "ТипыЦен":
        return "price_type"
    if t == "Склад" and parent == "Склады":
        return "warehouse"
    if t == "Документ" and len(path) == 2:
        return "document"
    return None


class _Walker:
    """Hands out finished records from the partly built tree after each chunk, and detaches them.

    An element is finished when it has a next sibling or its parent is finished: only the rightmost
    path of the tree can still be open. Records leave the tree as soon as they are out, so memory
    holds one chunk's worth of elements, whatever the size of the file."""

    def __init__(self, reader: _Reader) -> None:
        self.reader = reader
        self.kinds: dict[tuple[str, ...], str | None] = {}
        self.packages: set[int] = set()
        self.version = ""
        self.formed = ""

    def drain(self, el: Element, path: tuple[str, ...], closed: bool, out: list[Record]) -> None:
        n = len(el)
        done: list[Element] = []
        r = self.reader
        for idx in range(n):
            ch = el[idx]
            ch_closed = closed or idx < n - 1
            p = (*path, _LOCAL.get(ch.tag) or local(ch.tag))
            kind = self.kinds.get(p, "?")
            if kind == "?":
                kind = self.kinds[p] = _kind(p)
            if kind is None:
                if len(p) == 2 and p[1] in ("Каталог", "ПакетПредложений") and id(ch) not in self.packages:
                    self.packages.add(id(ch))
                    out.append(Package("catalog" if p[1] == "Каталог" else "offers",
                                       _bool(ch.get("СодержитТолькоИзменения") or "false"), self.version,
                                       self.formed))
                if len(ch):
                    self.drain(ch, p, ch_closed, out)
                continue
            if not ch_closed:
                break
            if kind == "item":
                out.append(r.item(ch))
            elif kind == "offer":
                out.append(r.offer(ch))
            elif kind == "groups":
                out.extend(r.groups(ch, None))
            elif kind == "property":
                out.append(r.property(ch))
            elif kind == "price_type":
                out.append(r.price_type(ch))
            elif kind == "warehouse":
                out.append(r.warehouse(ch))
            else:
                out.append(r.document(ch))
            done.append(ch)
        if done:
            k = len(done)
            if el[k - 1] is done[-1] and el[0] is done[0]:
                del el[:k]
            else:
                for ch in done:
                    el.remove(ch)


def parse(source: str | os.PathLike[str] | IO[bytes], *, name: str | None = None) -> Iterator[Record]:
    """Yield the records of one CommerceML file as it is read. Raises `CommerceMLError`."""
    label = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else getattr(source, "name", "xml"))
    label = os.path.basename(str(label))
    walker = _Walker(_Reader(label))
    opened = None
    try:
        stream, opened = _open(source)
        parser = XMLParser(target=TreeBuilder())
        started: list[tuple[str, Element]] = []
        parser._setevents(started, ("start",))  # only to learn the root; then no per-element events
        root: Element | None = None
        while chunk := stream.read(CHUNK):
            parser.feed(chunk)
            if root is None and started:
                root = started[0][1]
                parser._setevents(started, ())
                started.clear()
                if local(root.tag) != ROOT:
                    raise CommerceMLError(f"not CommerceML (root element <{local(root.tag)}>, expected <{ROOT}>)")
                walker.version = root.get("ВерсияСхемы") or ""
                walker.formed = root.get("ДатаФормирования") or ""
            if root is not None:
                out: list[Record] = []
                walker.drain(root, (ROOT,), False, out)
                yield from out
        parser.close()
        if root is not None:
            out = []
            walker.drain(root, (ROOT,), True, out)
            yield from out
    except CommerceMLError as exc:
        msg = str(exc)
        raise CommerceMLError(msg if msg.startswith(label) else f"{label}: {msg}") from None
    except ParseError as exc:
        line = exc.position[0] if getattr(exc, "position", None) else "?"
        raise CommerceMLError(f"{label}: not well-formed XML (line {line}): {exc.msg if hasattr(exc, 'msg') else exc}"
                              ) from None
    except (UnicodeDecodeError, LookupError) as exc:
        raise CommerceMLError(f"{label}: unreadable text encoding: {exc}") from None
    finally:
        if opened is not None:
            opened.close()


def read_all(source: str | os.PathLike[str] | IO[bytes]) -> list[Record]:
    """Every record of a (small) file at once — for tests and for order documents."""
    return list(parse(source))
