"""Честный знак marking codes: parse and validate the GS1 DataMatrix a packer scans.

A code is `01` + GTIN (14 digits) + `21` + serial, then after a group separator (ASCII 29) the crypto
tail: `91` key id (4 chars) + GS + `92` signature (44 chars), or `93` crypto code (4 chars) for the
short form. Scanners and keyboard wedges send the separator as ASCII 29 or as a substitution
(`<GS>`, `{GS}`, `[GS]`, `~1`, `\\x1d`); a symbology prefix `]d2` / `]C1` / FNC1 is dropped. Codes that
reach us with the separators lost are parsed by the fixed layouts Честный знак uses (13-char serial
with 91/92, 6-char serial with 93). The identity of a code (what "used before" means) is GTIN + serial.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
        serial, tail = rest.split(GS, 1)
        fields = _tail_fields(tail)
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
