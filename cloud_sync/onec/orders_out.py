"""Orders to 1C and 1C's statuses back: the `type=sale` half of the exchange.

`query_answer` writes the orders 1C has not taken yet as CommerceML 2.05 documents «Заказ товара»
(the shape a 1C-Bitrix site answers, which every 1C configuration reads): the marketplace and the
seller account as the counterparty and as requisites, the marketplace's order number, the date, the
lines with the 1C item ids, quantities, prices and the marketplace fee where it is known. Those
orders are remembered as "sent" in the session; `mark_delivered` (1C's `mode=success`) makes them
"delivered", so the next query does not repeat them.

`apply_feedback` reads the documents 1C sends back (`mode=file`) and turns their requisites into a
status per order: cancelled, shipped, paid or confirmed. A shipped order's stock moves are booked
(`ledger.book_order_moves`): 1C's later balances include them, so they stop being kept on top.

Orders come from the cloud's order list (`cloud_sync.orders`: tables `orders`, `order_lines`; the
order key is the document's Ид) and from `enqueue_order` (table `onec_order_queue`: an order built by
hand, with the marketplace fee per line where it is known). An order goes again when its unified status
changed since 1C took it (a cancellation, a return reaches 1C that way).

A return received at a site (`cloud_sync.orders.after_handover`, table `order_returns`) goes once as a
document of its own, «Возврат товара» (the CommerceML 2 business operation for goods coming back from the
buyer; a 1C configuration makes its «Возврат товаров от клиента» from it): Ид = the return id, the order
it returns in the requisite «Основание» (the order document's Ид) and «Номер заказа маркетплейса», the
units received with their price, and per line how many were good and how many defective («Годных»,
«Брак»; defective units went to the defect warehouse «Склад брака»). The order document itself goes again
with «Статус заказа» returned (or cancelled, for a cancellation after the hand-over) and «Финальный
статус» true.
"""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from cloud_sync.config import UNIFIED_STATUSES
from cloud_sync.db import transaction
from cloud_sync.onec.parser import Document, parse
from cloud_sync.orders import intake, records
from cloud_sync.stock import ledger
from cloud_sync.stock.warehouses import defect_warehouse
from marketplaces import profiles

VERSION = "2.05"
MARKETPLACE_TITLES = {name: p.title for name, p in profiles().items()}  # as the seller (and 1C) says them


@dataclass
class OrderLine1C:
    item_id: str  # the 1C item id (with '#characteristic' where the item has one)
    name: str
    quantity: Decimal
    price: Decimal
    fee: Decimal | None = None  # the marketplace's fee for this line, where known
    unit: str = "шт"
    requisites: dict[str, str] = field(default_factory=dict)  # more of the line's requisites (a return's)

    @property
    def amount(self) -> Decimal:
        return self.quantity * self.price


@dataclass
class OrderFor1C:
    id: str  # the cloud's order key, unique across accounts
    marketplace: str
    account: str
    number: str  # the marketplace's order number
    created_at: str  # ISO 8601
    lines: list[OrderLine1C] = field(default_factory=list)
    status: str = "new"  # unified status
    comment: str = ""
    operation: str = "Заказ товара"  # ХозОперация: «Заказ товара», or «Возврат товара» for a return
    requisites: dict[str, str] = field(default_factory=dict)  # more of the document's requisites

    @property
    def total(self) -> Decimal:
        return sum((ln.amount for ln in self.lines), Decimal(0))

    @property
    def fee(self) -> Decimal | None:
        fees = [ln.fee for ln in self.lines if ln.fee is not None]
        return sum(fees, Decimal(0)) if fees else None


def _to_json(order: OrderFor1C) -> str:
    return json.dumps(asdict(order), ensure_ascii=False, default=str)


def _from_json(text: str) -> OrderFor1C:
    d = json.loads(text)
    lines = [OrderLine1C(ln["item_id"], ln["name"], Decimal(ln["quantity"]), Decimal(ln["price"]),
                         Decimal(ln["fee"]) if ln.get("fee") not in (None, "None") else None, ln.get("unit", "шт"),
                         dict(ln.get("requisites") or {}))
             for ln in d.pop("lines")]
    return OrderFor1C(lines=lines, **d)


def enqueue_order(conn: sqlite3.Connection, order: OrderFor1C) -> None:
    """Put (or refresh) an order for 1C; one not yet delivered goes out in the next query."""
    conn.execute("INSERT INTO onec_order_queue(order_id, payload, seq)"
                 " VALUES (?, ?, (SELECT COALESCE(MAX(seq), 0) + 1 FROM onec_order_queue))"
                 " ON CONFLICT(order_id) DO UPDATE SET payload=excluded.payload", (order.id, _to_json(order)))


def _cloud_orders(conn: sqlite3.Connection) -> list[OrderFor1C]:
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='orders'").fetchone():
        return []
    rows = conn.execute(
        "SELECT o.id, o.key, o.marketplace, o.account, o.number, o.native_id, o.created_at, o.status FROM orders o"
        " LEFT JOIN onec_order_deliveries d ON d.order_id=o.key"
        " WHERE d.order_id IS NULL OR d.state='sent' OR d.version!=o.status ORDER BY o.id").fetchall()
    out = []
    for r in rows:
        lines = []
        for ln in conn.execute(
                "SELECT l.item_id, l.offer_id, l.title, l.quantity, l.units, l.price, i.name, i.unit FROM order_lines l"
                " LEFT JOIN items i ON i.id=l.item_id WHERE l.order_id=? ORDER BY l.line_no", (r["id"],)):
            units = ln["units"] or ln["quantity"]
            price = Decimal(ln["price"]) * ln["quantity"] / units if units else Decimal(ln["price"])
            lines.append(OrderLine1C(ln["item_id"] or "", ln["name"] or ln["title"] or ln["offer_id"], Decimal(units),
                                     price.quantize(Decimal("0.01")), None, ln["unit"] or "шт"))
        out.append(OrderFor1C(r["key"], r["marketplace"], r["account"], r["number"] or r["native_id"],
                              r["created_at"], lines, r["status"]))
    return out


def _cloud_returns(conn: sqlite3.Connection) -> list[OrderFor1C]:
    """Returns received at the sites that 1C has not taken, as «Возврат товара» documents."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='order_returns'").fetchone():
        return []
    rows = conn.execute(
        "SELECT r.id, r.order_id AS oid, r.kind, r.reason, r.warehouse, r.good, r.defective, r.received_ts, o.key,"
        " o.marketplace, o.account, o.number, o.native_id FROM order_returns r JOIN orders o ON o.id=r.order_id"
        " LEFT JOIN onec_order_deliveries d ON d.order_id=r.id WHERE r.state='received' AND (d.order_id IS NULL OR"
        " d.state='sent') ORDER BY r.received_ts").fetchall()
    out = []
    for r in rows:
        good, bad = json.loads(r["good"]), json.loads(r["defective"])
        lines = []
        for item in sorted(set(good) | set(bad)):
            ln = conn.execute("SELECT l.quantity, l.units, l.price, l.title, i.name, i.unit FROM order_lines l LEFT JOIN"
                              " items i ON i.id=l.item_id WHERE l.order_id=? AND l.item_id=? ORDER BY l.line_no",
                              (r["oid"], item)).fetchone()
            units = (ln["units"] or ln["quantity"]) if ln else 1
            price = Decimal(ln["price"]) * ln["quantity"] / units if ln and units else Decimal(0)
            n = good.get(item, 0) + bad.get(item, 0)
            lines.append(OrderLine1C(item, (ln["name"] or ln["title"]) if ln else item, Decimal(n),
                                     price.quantize(Decimal("0.01")), None, (ln["unit"] if ln else None) or "шт",
                                     {"Годных": str(good.get(item, 0)), "Брак": str(bad.get(item, 0))}))
        number = r["number"] or r["native_id"]
        received = datetime.fromtimestamp(r["received_ts"], UTC).strftime("%Y-%m-%dT%H:%M:%S")
        title = MARKETPLACE_TITLES.get(r["marketplace"], r["marketplace"])
        out.append(OrderFor1C(
            r["id"], r["marketplace"], r["account"], f"{number}-В", received, lines, "returned",
            f"Возврат по заказу {title} №{number}" + (f": {r['reason']}" if r["reason"] else ""),
            operation="Возврат товара",
            requisites={"Основание": r["key"], "Номер заказа маркетплейса": number, "Склад": r["warehouse"],
                        "Склад брака": defect_warehouse(r["warehouse"]),
                        "Вид возврата": {"return": "возврат покупателя", "unredeemed": "невыкуп",
                                         "cancelled": "отмена после передачи"}.get(r["kind"], r["kind"])}))
    return out


def pending_orders(conn: sqlite3.Connection) -> list[OrderFor1C]:
    """Orders 1C has not taken (or has taken in an older status), the cloud's first, then queued ones, then
    the returns received."""
    queued = conn.execute(
        "SELECT q.payload, d.state, d.version FROM onec_order_queue q"
        " LEFT JOIN onec_order_deliveries d ON d.order_id=q.order_id ORDER BY q.seq, q.order_id").fetchall()
    out = _cloud_orders(conn)
    seen = {o.id for o in out}
    for payload, state, version in queued:
        o = _from_json(payload)
        if o.id not in seen and (state is None or state == "sent" or version != o.status):
            out.append(o)
    return out + _cloud_returns(conn)


def xml_encoding(setting: str) -> str:
    """The encoding named in the XML declaration and the charset: windows-1251 (1C's default) or UTF-8."""
    return "windows-1251" if setting.lower() in ("windows-1251", "cp1251") else "UTF-8"


def _xml_bytes(root: ET.Element, encoding: str) -> bytes:
    enc = xml_encoding(encoding)
    text = ET.tostring(root, encoding="unicode")
    return f'<?xml version="1.0" encoding="{enc}"?>\n{text}\n'.encode(enc, errors="xmlcharrefreplace")


def _num(d: Decimal, places: int = 2) -> str:
    return f"{d:.{places}f}"


def _requisites(parent: ET.Element, values: dict[str, str]) -> None:
    block = ET.SubElement(parent, "ЗначенияРеквизитов")
    for name, value in values.items():
        zr = ET.SubElement(block, "ЗначениеРеквизита")
        ET.SubElement(zr, "Наименование").text = name
        ET.SubElement(zr, "Значение").text = value


def orders_xml(orders: list[OrderFor1C], *, encoding: str = "windows-1251", now: datetime | None = None) -> bytes:
    """The CommerceML document 1C reads from `mode=query`."""
    now = now or datetime.now(UTC)
    root = ET.Element("КоммерческаяИнформация", {
        "ВерсияСхемы": VERSION, "ДатаФормирования": now.strftime("%Y-%m-%dT%H:%M:%S"),
        "ФорматДаты": "ДФ=yyyy-MM-dd; ДЛФ=DT", "ФорматВремени": "ДФ=ЧЧ:мм:сс; ДЛФ=T",
        "РазделительДатаВремя": "T", "ФорматСуммы": "ЧЦ=18; ЧДЦ=2; ЧРД=.", "ФорматКоличества": "ЧЦ=18; ЧДЦ=2; ЧРД=."})
    for o in orders:
        created = datetime.fromisoformat(o.created_at)
        title = MARKETPLACE_TITLES.get(o.marketplace, o.marketplace)
        doc = ET.SubElement(root, "Документ")
        for tag, text in (("Ид", o.id), ("Номер", o.number), ("Дата", created.strftime("%Y-%m-%d")),
                          ("ХозОперация", o.operation), ("Роль", "Продавец"), ("Валюта", "руб"),
                          ("Курс", "1"), ("Сумма", _num(o.total))):
            ET.SubElement(doc, tag).text = text
        parties = ET.SubElement(doc, "Контрагенты")
        party = ET.SubElement(parties, "Контрагент")
        ET.SubElement(party, "Ид").text = f"{o.marketplace}#{o.account}"
        ET.SubElement(party, "Наименование").text = f"{title} ({o.account})"
        ET.SubElement(party, "ПолноеНаименование").text = f"{title}, кабинет {o.account}"
        ET.SubElement(party, "Роль").text = "Покупатель"
        ET.SubElement(doc, "Время").text = created.strftime("%H:%M:%S")
        ET.SubElement(doc, "Комментарий").text = o.comment or f"Заказ {title} №{o.number}"
        goods = ET.SubElement(doc, "Товары")
        for ln in o.lines:
            g = ET.SubElement(goods, "Товар")
            ET.SubElement(g, "Ид").text = ln.item_id
            ET.SubElement(g, "Наименование").text = ln.name
            ET.SubElement(g, "БазоваяЕдиница", {"Код": "796", "НаименованиеПолное": "Штука",
                                               "МеждународноеСокращение": "PCE"}).text = ln.unit
            ET.SubElement(g, "ЦенаЗаЕдиницу").text = _num(ln.price)
            ET.SubElement(g, "Количество").text = _num(ln.quantity, 3)
            ET.SubElement(g, "Сумма").text = _num(ln.amount)
            req = {"ВидНоменклатуры": "Товар", "ТипНоменклатуры": "Товар", **ln.requisites}
            if ln.fee is not None:
                req["Комиссия маркетплейса"] = _num(ln.fee)
            _requisites(g, req)
        req = {"Маркетплейс": title, "Кабинет": o.account, "Номер заказа маркетплейса": o.number,
               "Статус заказа": o.status, "Отменен": "true" if o.status == "cancelled" else "false",
               "Финальный статус": "true" if o.status in ("delivered", "cancelled", "returned") else "false",
               "Дата изменения статуса": created.strftime("%d.%m.%Y %H:%M:%S")}
        if o.fee is not None:
            req["Комиссия маркетплейса"] = _num(o.fee)
        req.update(o.requisites)
        _requisites(doc, req)
    ET.indent(root, space="  ")
    return _xml_bytes(root, encoding)


def query_answer(conn: sqlite3.Connection, session_id: str, *, encoding: str = "windows-1251") -> bytes:
    """Orders not yet delivered to 1C, remembered as sent in this session."""
    orders = pending_orders(conn)
    with transaction(conn):
        conn.executemany(
            "INSERT INTO onec_order_deliveries(order_id, state, session_id, version) VALUES (?, 'sent', ?, ?)"
            " ON CONFLICT(order_id) DO UPDATE SET state='sent', session_id=excluded.session_id,"
            " version=excluded.version, sent_at=datetime('now'), delivered_at=NULL",
            [(o.id, session_id, o.status) for o in orders])
    return orders_xml(orders, encoding=encoding)


def mark_delivered(conn: sqlite3.Connection, session_id: str) -> int:
    with transaction(conn):
        cur = conn.execute("UPDATE onec_order_deliveries SET state='delivered', delivered_at=datetime('now')"
                           " WHERE session_id=? AND state='sent'", (session_id,))
    return cur.rowcount


def _true(v: str | None) -> bool:
    return (v or "").strip().lower() in ("true", "1", "да")


def status_of(doc: Document) -> str:
    """1C's word on an order, from the requisites 1C writes back to a site."""
    r = doc.requisites
    if _true(r.get("Отменен")) or _true(r.get("ПометкаУдаления")):
        return "cancelled"
    if (_true(r.get("Отгружен")) or r.get("Номер отгрузки по 1С") or r.get("Дата отгрузки по 1С")
            or r.get("Статус заказа ИД") == "F"):
        return "shipped"
    if _true(r.get("Оплачен")) or r.get("Номер оплаты по 1С") or _true(r.get("Заказ оплачен")):
        return "paid"
    return "confirmed"


def apply_feedback(conn: sqlite3.Connection, path: Path, *, cloud_config=None, cancel_on_marketplace: bool = False
                   ) -> int:
    """Record 1C's status for each document of the file, all in one transaction, and apply it to the
    cloud's order of that key: an order event always; a cancellation in 1C also cancels the order here
    (reservation released, the site told to stop) when the cloud configuration is at hand, and on the
    marketplace only with `cancel_on_marketplace`."""
    docs = [rec for rec in parse(path) if isinstance(rec, Document)]
    with transaction(conn):
        for d in docs:
            status = status_of(d)
            number_1c = d.requisites.get("Номер отгрузки по 1С") or d.requisites.get("Номер по 1С") or ""
            conn.execute("INSERT INTO onec_order_statuses(order_id, status, onec_number, requisites)"
                         " VALUES (?,?,?,?)", (d.id, status, number_1c, json.dumps(d.requisites, ensure_ascii=False)))
            if status == "shipped":  # 1C booked the shipment: the site's moves for it are in its balances now
                ledger.book_order_moves(conn, d.id, f"1c shipped {number_1c}".strip())
            row = conn.execute("SELECT id, stage FROM orders WHERE key=?", (d.id,)).fetchone()
            if row is None:
                continue
            records.log_event(conn, row["id"], f"onec_{status}", f"1C: {status}" + (f" ({number_1c})" if number_1c else ""))
            if status == "cancelled" and cloud_config is not None and row["stage"] != "cancelled":
                intake.cancel(conn, cloud_config, row["id"], reason="отменён в 1С",
                                    tell_marketplace=cancel_on_marketplace)
    return len(docs)


def last_status(conn: sqlite3.Connection, order_id: str) -> str | None:
    row = conn.execute("SELECT status FROM onec_order_statuses WHERE order_id=? ORDER BY id DESC LIMIT 1",
                       (order_id,)).fetchone()
    return row[0] if row else None


def info_xml(encoding: str = "windows-1251") -> bytes:
    """`mode=info`: the site's reference lists 1C maps its own to (order statuses, "payment systems" and
    "delivery services": here the marketplaces)."""
    root = ET.Element("Справочник")
    statuses = ET.SubElement(root, "Статусы")
    for s in UNIFIED_STATUSES:
        el = ET.SubElement(statuses, "Элемент")
        ET.SubElement(el, "Ид").text = s
        ET.SubElement(el, "Название").text = s
    for tag in ("ПлатежныеСистемы", "СлужбыДоставки"):
        block = ET.SubElement(root, tag)
        for key, title in MARKETPLACE_TITLES.items():
            el = ET.SubElement(block, "Элемент")
            ET.SubElement(el, "Ид").text = key
            ET.SubElement(el, "Название").text = title
    return _xml_bytes(root, encoding)
