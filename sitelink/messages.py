"""The site-link message contract: every message type, its direction and the body it carries.

Both sides import this module (it depends on nothing). A received message whose type is not listed
here, or whose body lacks a required field or has a field of the wrong kind, is not applied: it goes to
the dead-letter table with the reason and is acknowledged (see DESIGN.md, "The site link").

`FIELDS[type]` maps each required body field to its JSON kind; optional fields are listed in
`OPTIONAL[type]` and checked only when present.
"""

from __future__ import annotations

from typing import Any, Literal

Direction = Literal["down", "up"]  # down: cloud -> site; up: site -> cloud

_JSON_KINDS: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "num": (int, float),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
}

DIRECTION: dict[str, Direction] = {
    # cloud -> site
    "pick_task": "down",  # an order to pick and pack at the site
    "cancel_task": "down",  # the order was cancelled: stop, put the goods back
    "task_deadline": "down",  # the marketplace moved the order's assembly deadline: the task sorts by the new one
    "label": "down",  # the marketplace label of an order, fetched ahead by the cloud
    "catalog": "down",  # items the site handles: barcodes, names, bins, marking
    "reservation": "down",  # stock reserved at the site's warehouse for an order (informational)
    "handover": "down",  # a supply / carriage to hand over: which parcels belong to it
    "return_expected": "down",  # a parcel on its way back to the site: which order, which units to expect
    "handover_document": "down",  # a marketplace's hand-over document to print (supply QR, act, waybill)
    # site -> cloud
    "task_progress": "up",  # picked / packed / short / handed_over
    "stock_delta": "up",  # a change of on-hand stock at the site (pick, receipt, adjust...)
    "stock_count": "up",  # an inventory count: the absolute quantity found
    "printed": "up",  # a label or document was printed
    "scan": "up",  # a scan of note (unknown barcode, wrong item)
    "device_status": "up",  # printers / scanners / cameras online or not
    "handover_closed": "up",  # a hand-over closed at the site: which parcels went, which stayed (and why)
    "return_received": "up",  # an expected return unpacked at the site: units found good and defective
    "handover_request": "up",  # the senior packer asks for a hand-over of an account's packed parcels
    "item_bin": "up",  # an item's bin set at the site (receipt or count), or given way to 1C's newer one
}

FIELDS: dict[str, dict[str, str]] = {
    "pick_task": {"task_id": "str", "order_id": "str", "marketplace": "str", "lines": "list"},
    "cancel_task": {"task_id": "str", "order_id": "str"},
    # task_deadline.deadline: ISO 8601 with its offset, as pick_task.deadline; a task the site does not hold
    #   (yet, or any more: cancelled, handed over) is left alone
    "task_deadline": {"task_id": "str", "order_id": "str", "deadline": "str"},
    "label": {"order_id": "str", "format": "str", "data_b64": "str"},
    "catalog": {"items": "list"},
    "reservation": {"order_id": "str", "item_id": "str", "quantity": "int"},
    "handover": {"handover_id": "str", "marketplace": "str", "order_ids": "list"},
    "task_progress": {"task_id": "str", "order_id": "str", "state": "str"},
    "stock_delta": {"warehouse": "str", "item_id": "str", "delta": "int", "reason": "str"},
    "stock_count": {"warehouse": "str", "item_id": "str", "counted": "int"},
    "printed": {"order_id": "str", "printer": "str"},
    "scan": {"code": "str"},
    "device_status": {"devices": "list"},
    "handover_closed": {"handover_id": "str", "handed": "list", "missing": "list"},
    # return_expected.lines: [{"item_id", "quantity" (units expected), "name", "barcode", "barcodes",
    #   "bin", "marking_required"}] — the same line shape as pick_task.lines
    "return_expected": {"return_id": "str", "order_id": "str", "lines": "list"},
    # return_received.lines: [{"item_id": str, "good": int >= 0, "defective": int >= 0}], only items of the
    #   return, at most the units expected; units that did not come are simply not counted. The cloud moves
    #   the ledger from this message alone: good units back on hand at `warehouse`, defective ones to
    #   "<warehouse>:defect" (never published). The site sends NO stock_delta for these units (a
    #   stock_delta with reason "return" stays for a return nobody announced).
    "return_received": {"return_id": "str", "order_id": "str", "lines": "list"},
    "handover_document": {"handover_id": "str", "kind": "str", "format": "str", "data_b64": "str"},
    "handover_request": {"account": "str"},
    # item_bin.bin: the bin the site keeps the item in now; "" = the site's own bin gave way to the bin
    #   1C stated (the cloud then shows 1C's)
    "item_bin": {"item_id": "str", "bin": "str"},
}

OPTIONAL: dict[str, dict[str, str]] = {
    # pick_task.lines: [{"item_id", "barcode", "barcodes", "name", "quantity", "bin", "marking_required",
    #   "title"}] — name: the item's 1C name (the one name the manager and the packer see); title: the
    #   marketplace card's own title, only when it differs (shown as a second line); bin: 1C's bin
    "pick_task": {
        "account": "str",
        "native_id": "str",
        "number": "str",
        "warehouse": "str",
        "deadline": "str",  # ISO 8601 UTC
        "label": "dict",  # same body as a "label" message, when already fetched
    },
    "cancel_task": {"reason": "str"},
    "handover_closed": {"missing_why": "dict"},  # order id -> why it stayed, in the packer's words
    # kind: return (the buyer's, after delivery) | unredeemed (never reached the buyer) | cancelled (after
    # hand-over); parcel_codes: codes printed on the parcel (order number, marketplace id, order key) that
    # find the return when scanned
    "return_expected": {"kind": "str", "marketplace": "str", "account": "str", "native_id": "str", "number": "str",
                        "warehouse": "str", "reason": "str", "parcel_codes": "list"},
    "return_received": {"warehouse": "str", "note": "str", "station": "str"},
    "label": {"width_mm": "num", "height_mm": "num", "barcode_text": "str"},
    "reservation": {"warehouse": "str"},
    "handover": {"supply_id": "str", "qr_b64": "str", "account": "str"},
    # kinds: supply_qr | act (the acceptance act, with the waybill when the marketplace puts both in one
    # file) | waybill; format: pdf | png | svg | zpl; a document of label size prints on the label printer,
    # a sheet is opened from the packers' page
    "handover_document": {"title": "str", "width_mm": "num", "height_mm": "num"},
    "handover_request": {"requested_by": "str"},
    # states: picked | packed | short | handed_over | failed
    "task_progress": {"lines": "list", "marking_codes": "list", "note": "str", "handover_id": "str"},
    # reasons: pick | ship | receipt | return | adjust | writeoff
    "stock_delta": {"ref": "str", "note": "str"},
    "stock_count": {"ref": "str"},
    "printed": {"file": "str", "format": "str", "kind": "str"},
    "scan": {"station": "str", "note": "str", "order_id": "str"},
    "item_bin": {"warehouse": "str", "ref": "str", "set_by": "str"},
}

TASK_STATES = ("picked", "packed", "short", "handed_over", "failed")


class BadMessage(ValueError):
    """The envelope or body does not follow this contract; the reason says what is wrong."""


class EncodedBody(dict):  # type: ignore[type-arg]
    """A body (a dict, checked as any other) whose canonical JSON text (`sitelink.envelope.canonical`'s
    encoding of it) its maker wrote already, knowing its shape: `Envelope.to_json` uses `text` instead of
    encoding the body again (a batch of pick tasks: the lines of one item are alike in every order). The
    maker keeps the two equal and changes neither after."""

    __slots__ = ("text",)

    def __init__(self, body: dict[str, Any], text: str) -> None:
        super().__init__(body)
        self.text = text


def check_body(msg_type: str, body: Any) -> None:
    """Raise BadMessage when `body` is not a valid body of `msg_type`."""
    fast = _FAST.get(msg_type)
    if fast is not None and (type(body) is dict or type(body) is EncodedBody):
        # the usual body, in one pass of exact types (what JSON decodes to): a body it does not clear
        # is judged by the full check below, which says what is wrong (it accepts what this accepts)
        required, optional = fast
        get = body.get
        for name, allowed in required:
            if type(get(name)) not in allowed:
                break
        else:
            if len(body) == len(required):
                return
            for name, allowed in optional:
                value = get(name)
                if value is not None and type(value) not in allowed:
                    break
            else:
                return
    _check_body_full(msg_type, body)


def _check_body_full(msg_type: str, body: Any) -> None:
    required = _REQUIRED.get(msg_type)
    if required is None:
        raise BadMessage(f"unknown message type {msg_type!r}")
    if not isinstance(body, dict):
        raise BadMessage(f"{msg_type}: body must be a JSON object, got {type(body).__name__}")
    for name, kinds, no_bool in required:
        value = body.get(name, _ABSENT)
        if not isinstance(value, kinds) or (no_bool and type(value) is bool):
            if value is _ABSENT:
                raise BadMessage(f"{msg_type}: body lacks required field {name!r}")
            _check_kind(msg_type, name, value, FIELDS[msg_type][name])
    for name, kind in OPTIONAL.get(msg_type, {}).items():
        if name in body and body[name] is not None:
            _check_kind(msg_type, name, body[name], kind)
    if msg_type == "task_progress" and body["state"] not in TASK_STATES:
        raise BadMessage(f"task_progress: unknown state {body['state']!r}")
    if msg_type == "return_received":
        for ln in body["lines"]:
            if not isinstance(ln, dict) or not isinstance(ln.get("item_id"), str) or any(
                    isinstance(ln.get(k, 0), bool) or not isinstance(ln.get(k, 0), int) or ln.get(k, 0) < 0
                    for k in ("good", "defective")):
                raise BadMessage("return_received: each line is {item_id: str, good: int >= 0, defective: int >= 0}")


_ABSENT = object()
# per type: (field, the Python types its JSON kind allows, whether a bool is refused although an int)
_REQUIRED: dict[str, list[tuple[str, tuple[type, ...], bool]]] = {
    t: [(name, _JSON_KINDS[kind], kind in ("int", "num")) for name, kind in spec.items()]
    for t, spec in FIELDS.items()
}


# per type without checks beyond the fields' kinds: (required, optional) as (field, the exact types its
# JSON kind allows: a bool is never an int here)
_EXACT: dict[str, frozenset[type]] = {kind: frozenset(types) for kind, types in _JSON_KINDS.items()}
_FAST: dict[str, tuple[tuple[tuple[str, frozenset[type]], ...], tuple[tuple[str, frozenset[type]], ...]]] = {
    t: (tuple((name, _EXACT[kind]) for name, kind in spec.items()),
        tuple((name, _EXACT[kind]) for name, kind in OPTIONAL.get(t, {}).items()))
    for t, spec in FIELDS.items() if t not in ("task_progress", "return_received")
}


def _check_kind(msg_type: str, name: str, value: Any, kind: str) -> None:
    ok = isinstance(value, _JSON_KINDS[kind]) and not (kind in ("int", "num") and isinstance(value, bool))
    if not ok:
        raise BadMessage(f"{msg_type}: field {name!r} must be {kind}, got {type(value).__name__}")
