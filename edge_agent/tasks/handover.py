"""Handover: scan each parcel into the supply / carriage; extra and missing parcels are flagged.

A parcel is recognised by its order id, order number, marketplace id or the barcode text of its label.
Only a packed parcel whose label has printed goes to the courier: any other is refused, and the packer
is told why (not packed, cancelled, its label not printed — waiting for the marketplace's label, for
the printer, or for the packer's answer «этикетка напечаталась?») and whether a reprint helps.
Closing prints the supply QR (when the marketplace gave one with the hand-over) and our own hand-over list
(marketplace, parcel count, order numbers), names every parcel missing and why, and sends `task_progress: handed_over` for every parcel scanned in.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from edge_agent import store, words
from edge_agent.tasks import pack
from edge_agent.tasks.common import ScanResult, Send, TaskError, parcels_word, set_state


def get_handover(conn: sqlite3.Connection, handover_id: str) -> sqlite3.Row:
    h = store.row(conn, "SELECT * FROM handovers WHERE handover_id = ?", handover_id)
    if h is None:
        raise TaskError(f"нет передачи {handover_id}")
    return h


def order_of_parcel(conn: sqlite3.Connection, code: str) -> str | None:
    code = code.strip()
    r = store.row(conn, "SELECT order_id FROM tasks WHERE order_id = ? OR number = ? OR native_id = ? "
                  "ORDER BY created_at DESC LIMIT 1", code, code, code)
    if r:
        return r["order_id"]
    r = store.row(conn, "SELECT order_id FROM labels WHERE barcode_text = ? OR barcode_text = ?", code, code.lstrip("*"))
    return r["order_id"] if r else None


def handover_scan(conn: sqlite3.Connection, handover_id: str, code: str) -> ScanResult:
    h = get_handover(conn, handover_id)
    if h["state"] != "open":
        raise TaskError("эта передача уже закрыта")
    order_id = order_of_parcel(conn, code)
    if order_id is None:
        return ScanResult(False, "unknown", f"Неизвестная посылка {code.strip()}: ни один заказ этого склада не подходит")
    expected = json.loads(h["order_ids"])
    if store.row(conn, "SELECT 1 FROM handover_scans WHERE handover_id = ? AND order_id = ?", handover_id, order_id):
        return ScanResult(False, "extra", f"Посылка заказа {order_id} уже отсканирована в эту передачу")
    refused = check_parcel(conn, order_id)
    if refused is not None:
        return refused
    extra = order_id not in expected
    conn.execute("INSERT INTO handover_scans (handover_id, order_id, code, extra, ts) VALUES (?,?,?,?,?)",
                 (handover_id, order_id, code.strip(), int(extra), store.now()))
    if extra:
        return ScanResult(False, "extra", f"ЛИШНЯЯ ПОСЫЛКА: заказ {order_id} не входит в эту поставку. Отложите её",
                          data={"order_id": order_id})
    done = len(_scanned(conn, handover_id, extra=False))
    return ScanResult(True, "packed", f"Посылка {order_id} в поставке: {done} из {len(expected)}",
                      data={"order_id": order_id})


def _task_of(conn: sqlite3.Connection, order_id: str) -> sqlite3.Row | None:
    return store.row(conn, "SELECT task_id, number, state FROM tasks WHERE order_id = ? ORDER BY created_at DESC LIMIT 1",
                     order_id)


def check_parcel(conn: sqlite3.Connection, order_id: str) -> ScanResult | None:
    """Only a packed, labelled parcel goes to the courier: a cancelled, unpacked or already handed over
    order is refused, and so is one whose label has not printed."""
    t = _task_of(conn, order_id)
    if t is None:
        return ScanResult(False, "not_packed", f"ЗАКАЗ {order_id} НЕ УПАКОВАН на этом складе: не передавайте "
                          "эту посылку, отложите её", data={"order_id": order_id, "state": None})
    name = t["number"] or order_id
    data = {"order_id": order_id, "state": t["state"], "task_id": t["task_id"]}
    if t["state"] == "packed":
        return _label_missing(conn, order_id, name, data)
    if t["state"] == "cancelled":
        return ScanResult(False, "cancelled", f"ЗАКАЗ {name} ОТМЕНЁН: не передавайте эту посылку, отложите её", data=data)
    if t["state"] == "handed_over":
        return ScanResult(False, "extra", f"Заказ {name} уже передан в другой передаче", data=data)
    return ScanResult(False, "not_packed", f"ЗАКАЗ {name} НЕ УПАКОВАН: сначала упакуйте его и наклейте этикетку",
                      data=data)


def label_state(conn: sqlite3.Connection, order_id: str) -> str:
    """Where the order's label is: printed | printing (in the queue, or going to the printer) |
    printer_problem | waiting_label (the marketplace's label has not come) | asked (the packer is asked
    whether it printed) | none (no label job)."""
    if store.row(conn, "SELECT 1 FROM print_jobs WHERE order_id = ? AND kind = 'label' AND state = 'done' "
                 "AND done_at IS NOT NULL", order_id):
        return "printed"
    job = store.row(conn, "SELECT state, error FROM print_jobs WHERE order_id = ? AND kind = 'label' "
                    "AND state IN ('pending','sending','unknown') ORDER BY id DESC LIMIT 1", order_id)
    if job is None:
        return "none"
    if job["state"] == "unknown":
        return "asked"
    if not store.row(conn, "SELECT 1 FROM labels WHERE order_id = ?", order_id):
        return "waiting_label"
    return "printer_problem" if job["error"] else "printing"  # the error stays while it is tried again


def _label_missing(conn: sqlite3.Connection, order_id: str, name: str, data: dict[str, Any]) -> ScanResult | None:
    """Why a packed parcel cannot go yet: its label has not printed (None when it has)."""
    state = label_state(conn, order_id)
    if state == "printed":
        return None
    head = f"ЭТИКЕТКА ЗАКАЗА {name} НЕ НАПЕЧАТАНА: не передавайте посылку без этикетки."
    job = store.row(conn, "SELECT id, error FROM print_jobs WHERE order_id = ? AND kind = 'label' "
                    "ORDER BY id DESC LIMIT 1", order_id)
    why = {
        "waiting_label": "Этикетка маркетплейса ещё не пришла — она придёт, когда облако будет на связи, и "
                         "напечатается сама. Отложите посылку",
        "printing": "Этикетка печатается — дождитесь её, наклейте и отсканируйте посылку снова",
        "printer_problem": f"{job['error'] if job else ''} Наклейте этикетку, когда она напечатается, и "
                           "отсканируйте посылку снова",
        "asked": "Программа склада перезапустилась, когда этикетка уходила на принтер: посмотрите, напечаталась ли она, "
                 "и ответьте на экране «Да» или «Нет — напечатать снова»",
        "none": "Нажмите «Напечатать этикетку», наклейте её и отсканируйте посылку снова",
    }[state]
    return ScanResult(False, "no_label", f"{head} {why}",
                      data={**data, "label": state, "job_id": job["id"] if job else None,
                            "reprint": state in ("none", "printer_problem")})


def reprint(conn: sqlite3.Connection, order_id: str) -> str:
    """At the courier's table: print this parcel's label (again). A label already waiting for the
    printer is tried again now (the caller wakes the print queue); returns what the packer is told."""
    t = _task_of(conn, order_id)
    if t is None:
        raise TaskError(f"заказ {order_id} не упаковывался на этом складе")
    state = label_state(conn, order_id)
    if state == "waiting_label":
        raise TaskError("этикетка маркетплейса ещё не пришла: она напечатается сама, когда облако будет на связи")
    if state in ("printing", "printer_problem"):
        return f"Этикетка заказа {t['number'] or order_id} в очереди: печатаю снова"
    pack.reprint_label(conn, t["task_id"])  # refuses while the packer is asked whether the last one printed
    return f"Этикетка заказа {t['number'] or order_id} печатается"


def missing_why(conn: sqlite3.Connection, order_id: str) -> str:
    """Why an expected parcel is not in the hand-over, in the packer's words."""
    refused = check_parcel(conn, order_id)
    if refused is None:
        return "не отсканирована"
    return {"no_label": "этикетка не напечатана", "cancelled": "заказ отменён", "extra": "уже передана",
            "not_packed": "не упакована"}.get(refused.kind, refused.kind)


def summary(conn: sqlite3.Connection, handover_id: str) -> dict[str, Any]:
    h = get_handover(conn, handover_id)
    expected = json.loads(h["order_ids"])
    scanned = _scanned(conn, handover_id, extra=False)
    missing = [o for o in expected if o not in scanned]
    return {"handover_id": handover_id, "marketplace": h["marketplace"], "supply_id": h["supply_id"],
            "state": h["state"], "expected": expected, "scanned": scanned, "missing": missing,
            "missing_why": {o: missing_why(conn, o) for o in missing},
            "labels": {o: label_state(conn, o) for o in expected},
            "extra": _scanned(conn, handover_id, extra=True)}


def close(conn: sqlite3.Connection, send: Send, handover_id: str, force: bool = False) -> dict[str, Any]:
    """Close the handover; with parcels missing only when `force` (the packer confirmed)."""
    s = summary(conn, handover_id)
    if s["state"] != "open":
        raise TaskError("эта передача уже закрыта")
    if s["missing"] and not force:
        raise TaskError(f"не хватает {words.parcels(len(s['missing']))}: "
                        + "; ".join(f"{_name(conn, o)} — {s['missing_why'][o]}" for o in s["missing"]))
    handed = 0
    cancelled: set[str] = set()
    for order_id in s["scanned"]:
        t = _task_of(conn, order_id)
        if t is not None and t["state"] == "cancelled":  # cancelled after it was scanned in: it stays here
            cancelled.add(order_id)
            continue
        body = {"task_id": t["task_id"] if t else "", "order_id": order_id, "state": "handed_over",
                "handover_id": handover_id}
        send(conn, "task_progress", body)
        handed += 1
        if t:
            set_state(conn, t["task_id"], "handed_over")
    h = get_handover(conn, handover_id)
    numbers = [_name(conn, o) for o in s["scanned"] if o not in cancelled]
    payload = {"handover_id": handover_id, "supply_id": h["supply_id"], "count": handed,
               "marketplace": h["marketplace"], "account": h["account"], "numbers": numbers,
               "missing": s["missing"], "missing_why": s["missing_why"]}
    # the supply's QR when it came with the hand-over (the marketplace's documents that come after the ship
    # arrive as `handover_document`), and always our own hand-over list
    for kind in (("supply_qr",) if h["qr_b64"] else ()) + ("act",):
        conn.execute("INSERT INTO print_jobs (order_id, kind, payload, created_at) VALUES (?,?,?,?)",
                     (h["supply_id"] or handover_id, kind, store.dumps(payload), store.now()))
    conn.execute("UPDATE handovers SET state='closed', closed_at=? WHERE handover_id=?", (store.now(), handover_id))
    # after the parcels' own hand-overs (the link keeps their order): the cloud offers the ones that stayed
    # to the next courier
    send(conn, "handover_closed", {"handover_id": handover_id, "handed": [o for o in s["scanned"]],
                                   "missing": s["missing"], "missing_why": s["missing_why"]})
    s["state"] = "closed"
    return s


def sheet(conn: sqlite3.Connection, handover_id: str) -> dict[str, Any]:
    """Our own hand-over list, as the courier signs it: the marketplace, the account, the batch, each
    parcel that went (order number), their count as a number, and the parcels that stayed and why."""
    s = summary(conn, handover_id)
    h = get_handover(conn, handover_id)
    went = s["scanned"] if s["state"] != "open" else []
    went = [o for o in went if (_task_of(conn, o) or {"state": ""})["state"] != "cancelled"]
    return {"handover_id": handover_id, "marketplace": h["marketplace"], "account": h["account"] or "",
            "supply_id": h["supply_id"] or "", "state": s["state"], "closed_at": h["closed_at"],
            "parcels": [{"order_id": o, "number": _name(conn, o)} for o in went], "count": len(went),
            "missing": [{"order_id": o, "number": _name(conn, o), "why": s["missing_why"].get(o, "")}
                        for o in s["missing"]]}


def closed_recently(conn: sqlite3.Connection, since: float) -> list[dict[str, Any]]:
    """The hand-overs closed here since `since`, newest first, with their parcel count (a number)."""
    return [{"handover_id": r["handover_id"], "marketplace": r["marketplace"], "account": r["account"] or "",
             "count": int(r["n"])} for r in store.rows(
        conn, "SELECT h.handover_id, h.marketplace, h.account, (SELECT COUNT(*) FROM handover_scans x JOIN tasks t "
        "ON t.order_id = x.order_id WHERE x.handover_id = h.handover_id AND x.extra = 0 AND t.state = 'handed_over') "
        "AS n FROM handovers h WHERE h.state = 'closed' AND h.closed_at > ? ORDER BY h.closed_at DESC LIMIT 50", since)]


def accounts_to_hand_over(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The accounts with packed parcels at this site that no open hand-over holds: marketplace, account,
    parcels (a number)."""
    held = {o for h in store.rows(conn, "SELECT order_ids FROM handovers WHERE state = 'open'")
            for o in json.loads(h["order_ids"])}
    out: dict[str, dict[str, Any]] = {}
    for t in store.rows(conn, "SELECT order_id, marketplace, account FROM tasks WHERE state = 'packed' AND "
                        "account IS NOT NULL AND account != '' ORDER BY account"):
        if t["order_id"] in held:
            continue
        a = out.setdefault(t["account"], {"account": t["account"], "marketplace": t["marketplace"], "parcels": 0})
        a["parcels"] += 1
    return list(out.values())


def request(conn: sqlite3.Connection, send: Send, account: str, requested_by: str = "") -> str:
    """The senior packer asks the cloud for a hand-over of the account's packed parcels (`handover_request`,
    up); the cloud answers with the `handover` to scan. Returns what the packer is told."""
    known = {a["account"]: a for a in accounts_to_hand_over(conn)}
    if account not in known:
        raise TaskError(f"у кабинета {account} нет упакованных посылок для передачи")
    body: dict[str, Any] = {"account": account}
    if requested_by:
        body["requested_by"] = requested_by
    send(conn, "handover_request", body)
    n = known[account]["parcels"]
    return (f"Передача {account} запрошена ({n} {parcels_word(n)}): "
            "она появится в списке, когда облако ответит")


def _name(conn: sqlite3.Connection, order_id: str) -> str:
    t = _task_of(conn, order_id)
    return str(t["number"] or order_id) if t is not None else order_id


def _scanned(conn: sqlite3.Connection, handover_id: str, extra: bool) -> list[str]:
    return [r["order_id"] for r in store.rows(conn, "SELECT order_id FROM handover_scans WHERE handover_id = ? "
                                              "AND extra = ? ORDER BY ts", handover_id, int(extra))]
