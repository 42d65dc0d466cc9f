"""Честный знак marking codes: parse and validate the GS1 DataMatrix a packer scans.

A code is `01` + GTIN (14 digits) + `21` + serial, then after a group separator (ASCII 29) the crypto
tail: `91` key id (4 chars) + GS + `92` signature (44 chars), or `93` crypto code (4 chars) for the
short form. Scanners and keyboard wedges send the separator as ASCII 29 or as a substitution
(`<GS>`, `{GS}`, `[GS]`, `~1`, `\\x1d`); a symbology prefix `]d2` / `]C1` / FNC1 is dropped. Codes that
reach us with the separators lost are parsed by the fixed layouts Честный знак uses (13-char serial
with 91/92, 6-char serial with 93). The identity of a code (what "used before" means) is GTIN + serial.
A code with its separators is read by biip (GS1 element strings); without them no GS1 parser can tell
where a variable-length serial ends, hence the fixed layouts.

`registry_refusal` reads Честный знак's answer about a code (True API `cises/info`, see
edge_agent/chestny_znak.py): why the code must not ship — not in circulation, sold, another owner's INN,
another GTIN, unknown — in the packer's words, or None when it may ship.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

GS = "\x1d"
_SUBSTITUTES = ("<GS>", "{GS}", "[GS]", "~1", "\\x1d", "\\u001d", "<FNC1>")
_PREFIXES = ("]d2", "]C1", "]Q3", "\xe8")
# GS1 AI encodable character set 82 (what a serial may hold).
_CSET82 = re.compile(r"^[!\"%&'()*+,\-./0-9:;<=>?A-Z_a-z]+$")


class MarkingError(ValueError):
    """The scanned text is not a valid marking code; the message says why, in the packer's words."""


@dataclass(frozen=True)
class MarkingCode:
    gtin: str
    serial: str
    key_id: str  # AI 91, or '' for the short form
    crypto: str  # AI 92 signature or AI 93 crypto code
    raw: str  # normalised: separators as ASCII 29

    @property
    def code_id(self) -> str:
        return f"01{self.gtin}21{self.serial}"


def normalise(text: str) -> str:
    s = text.strip("\r\n\t ")
    for sub in _SUBSTITUTES:
        s = s.replace(sub, GS)
    for prefix in _PREFIXES:
        if s.startswith(prefix):
            s = s[len(prefix) :]
    return s.lstrip(GS)


def looks_like_marking(text: str) -> bool:
    """True when the text is meant as a marking code (starts with AI 01 and is longer than a GTIN)."""
    s = normalise(text)
    return s.startswith("01") and len(s) > 18 and s[2:16].isdigit() and s[16:18] == "21"


def gtin_check_ok(gtin: str) -> bool:
    if len(gtin) != 14 or not gtin.isdigit():
        return False
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(gtin[:13]))
    return (10 - total % 10) % 10 == int(gtin[13])


def gtin_of_barcode(barcode: str) -> str | None:
    """The GTIN-14 of an EAN-13 / EAN-8 / UPC-A / GTIN-14 barcode, or None when it is not one."""
    if barcode and barcode.isdigit() and len(barcode) in (8, 12, 13, 14):
        return barcode.zfill(14)
    return None


def parse(text: str) -> MarkingCode:
    s = normalise(text)
    if not s.startswith("01"):
        raise MarkingError("это не код маркировки: он должен начинаться с (01) GTIN")
    gtin = s[2:16]
    if len(gtin) != 14 or not gtin.isdigit():
        raise MarkingError("в коде маркировки нет GTIN из 14 цифр")
    if not gtin_check_ok(gtin):
        raise MarkingError(f"GTIN {gtin} в коде маркировки с неверной контрольной цифрой")
    if s[16:18] != "21":
        raise MarkingError("в коде маркировки нет серийного номера (21)")
    rest = s[18:]
    if GS in rest:
        serial, fields = _gs1_fields(s)
    else:
        serial, fields = _split_without_separators(rest)
    if not 1 <= len(serial) <= 20 or not _CSET82.match(serial):
        raise MarkingError("серийный номер кода маркировки повреждён")
    if "91" in fields and "92" in fields:
        key_id, crypto = fields["91"], fields["92"]
        if len(key_id) != 4 or len(crypto) != 44:
            raise MarkingError("криптохвост кода маркировки неполный (91/92)")
    elif "93" in fields:
        key_id, crypto = "", fields["93"]
        if len(crypto) != 4:
            raise MarkingError("криптохвост кода маркировки неполный (93)")
    else:
        raise MarkingError("у кода маркировки нет криптохвоста (91+92 или 93): отсканируйте DataMatrix целиком")
    return MarkingCode(gtin=gtin, serial=serial, key_id=key_id, crypto=crypto,
                       raw=f"01{gtin}21{serial}{GS}" + (f"91{key_id}{GS}92{crypto}" if key_id else f"93{crypto}"))


def _gs1_fields(s: str) -> tuple[str, dict[str, str]]:
    """The serial (AI 21) and the crypto tail's fields of a code with its separators, read by biip; a tail
    biip cannot read as GS1 (a scanner's stray bytes) is split on the separators as it comes."""
    # lazy: biip holds GS1's tables in memory (~16 MB resident, more than the rest of the page's code):
    # loaded by the first marking code scanned, never on a box that packs no marked goods
    import biip

    try:
        message = biip.parse(s, config=biip.ParseConfig(separator_chars=[GS])).gs1_message
    except biip.ParseError:
        message = None
    if message is not None:
        found = {es.ai.ai: es.value for es in message.element_strings}
        if "21" in found:
            return found.pop("21"), found
    serial, tail = s[18:].split(GS, 1)
    return serial, _tail_fields(tail)


def _tail_fields(tail: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    for part in tail.split(GS):
        if len(part) >= 2:
            fields[part[:2]] = part[2:]
    return fields


def _split_without_separators(rest: str) -> tuple[str, dict[str, str]]:
    """Separators lost: try the fixed layouts of Честный знак codes."""
    for serial_len in (13, 6, 7, 8, 11, 20):
        serial, tail = rest[:serial_len], rest[serial_len:]
        if tail.startswith("91") and len(tail) == 2 + 4 + 2 + 44 and tail[6:8] == "92":
            return serial, {"91": tail[2:6], "92": tail[8:]}
        if tail.startswith("93") and len(tail) == 6:
            return serial, {"93": tail[2:]}
    return rest, {}


@dataclass(frozen=True)
class RegistryCheck:
    """Честный знак's verdict on one code: may ship (`ok`), must not (`refused`), or not known now
    (`unchecked`: the register could not be reached; packed on structure checks, checked later)."""

    state: Literal["ok", "refused", "unchecked"]
    reason: str = ""  # Russian: why refused, or why it could not be checked


# Честный знак statuses (True API `cisInfo.status`) in the packer's words; only INTRODUCED may ship.
STATUS_WORDS = {
    "EMITTED": "код выпущен, но не нанесён и не введён в оборот",
    "APPLIED": "код нанесён, но товар не введён в оборот",
    "APPLIED_NOT_PAID": "код нанесён, но не оплачен и не введён в оборот",
    "WRITTEN_OFF": "код списан",
    "RETIRED": "товар уже выбыл из оборота (продан)",
    "WITHDRAWN": "товар выведен из оборота",
    "DISAGGREGATION": "это код расформированной упаковки, а не единицы товара",
    "DISAGGREGATED": "это код расформированной упаковки, а не единицы товара",
}


def registry_refusal(row: dict[str, Any], code: MarkingCode, seller_inn: str) -> str | None:
    """Why Честный знак's answer about `code` forbids shipping it (Russian), or None when it may ship:
    the code must be known, in circulation (INTRODUCED), owned by the seller's INN and carry the same GTIN."""
    info = row.get("cisInfo") if isinstance(row.get("cisInfo"), dict) else {}
    status = str(info.get("status") or "")
    if not status:
        why = str(row.get("errorMessage") or "кода нет в Честном знаке")
        return f"Честный знак не знает этот код ({why})"
    if status != "INTRODUCED":
        return f"{STATUS_WORDS.get(status, 'код не в обороте')} (статус {status})"
    owner = str(info.get("ownerInn") or "")
    if owner != seller_inn:
        return f"код принадлежит другому владельцу (ИНН {owner or 'не указан'}), а не продавцу (ИНН {seller_inn})"
    gtin = str(info.get("gtin") or "")
    if gtin and gtin != code.gtin:
        return f"в Честном знаке код числится за другим товаром (GTIN {gtin}, а на коде {code.gtin})"
    return None
