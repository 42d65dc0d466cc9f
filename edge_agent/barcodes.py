"""Barcode symbols for the labels this project draws itself, and GS1 text helpers.

Owns: EAN-13 check digits, turning a raw GS1 string (AIs with \\x1d group separators, as a scanner
or a Честный знак DataMatrix gives it) into the bracketed form encoders take and back, and drawing
EAN-13 / Code 128 / DataMatrix / QR symbols as 1-bit images with whole-dot modules (so a thermal print
stays scannable). Uses zxing-cpp's encoder.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from edge_agent.devices.base import need

GS = "\x1d"

# Application identifiers with a fixed data length (GS1 General Specifications, figure 5.10.1-2 and
# the fixed-length AIs used on Russian marking codes). Every other AI is variable and ends at GS.
_FIXED_AI = {
    "00": 18, "01": 14, "02": 14, "03": 14, "04": 16, "11": 6, "12": 6, "13": 6, "14": 6, "15": 6,
    "16": 6, "17": 6, "18": 6, "19": 6, "20": 2, "31": 6, "32": 6, "33": 6, "34": 6, "35": 6, "36": 6,
    "41": 13,
}
_AI_LEN = {"00": 2, "01": 2, "02": 2, "10": 2, "11": 2, "12": 2, "13": 2, "15": 2, "16": 2, "17": 2,
           "20": 2, "21": 2, "22": 2, "30": 2, "37": 2, "90": 2, "91": 2, "92": 2, "93": 2, "94": 2,
           "95": 2, "96": 2, "97": 2, "98": 2, "99": 2}


class BarcodeError(ValueError):
    """Text that cannot be drawn as the requested symbol."""


def ean13_check_digit(digits12: str) -> str:
    total = sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(digits12))
    return str((10 - total % 10) % 10)


def is_ean13(text: str) -> bool:
    return len(text) == 13 and text.isdigit() and ean13_check_digit(text[:12]) == text[12]


def _ai_length(data: str) -> int:
    """How many characters the AI at the start of `data` takes (2, 3 or 4)."""
    two = data[:2]
    if two in _AI_LEN:
        return 2
    if two[:1] in "23" or two in ("41", "70", "71", "72", "80", "81", "82"):
        return 4 if two[:1] in "3478" else 3
    return 2 if len(data) >= 2 else len(data)


def gs1_elements(raw: str) -> list[tuple[str, str]]:
    """A raw GS1 string (GS between variable fields) -> [(ai, value), ...]. Raises BarcodeError."""
    text = raw.lstrip(GS)
    out: list[tuple[str, str]] = []
    while text:
        n = _ai_length(text)
        ai = text[:n]
        if not ai.isdigit() or len(ai) < 2:
            raise BarcodeError(f"not a GS1 string: {raw!r} (no application identifier at {text[:6]!r})")
        rest = text[n:]
        fixed = _FIXED_AI.get(ai[:2])
        if fixed is not None:
            value, text = rest[:fixed], rest[fixed:]
            if len(value) < fixed:
                raise BarcodeError(f"GS1 field ({ai}) is short: {value!r}")
            text = text.lstrip(GS)
        else:
            end = rest.find(GS)
            value, text = (rest, "") if end < 0 else (rest[:end], rest[end + 1:])
        out.append((ai, value))
    return out


def looks_gs1(text: str) -> bool:
    """True for strings that start like a GS1 element string: (01) GTIN-14 then more AIs."""
    if not (len(text) > 16 and text[:2] in ("01", "02") and text[2:16].isdigit()):
        return False
    try:
        return len(gs1_elements(text)) >= 2
    except BarcodeError:
        return False


def gs1_to_bracketed(raw: str) -> str:
    return "".join(f"({ai}){value}" for ai, value in gs1_elements(raw))


_FORMATS = {"ean13": "EAN13", "code128": "Code128", "datamatrix": "DataMatrix", "qr": "QRCode"}


def symbol_bits(kind: str, text: str) -> np.ndarray:
    """The symbol's modules as a bool array (True = dark), one element per module, no quiet zone.

    `text` for Code 128 / DataMatrix that looks like GS1 (starts 01 + GTIN, with \\x1d separators) is
    encoded as GS1 (FNC1 first), so a scanner returns the same raw string with its separators.
    """
    zx = need("zxingcpp", "barcode drawing", "zxing-cpp")
    if kind not in _FORMATS:
        raise BarcodeError(f"unknown barcode kind {kind!r}; expected one of {', '.join(_FORMATS)}")
    fmt = getattr(zx.BarcodeFormat, _FORMATS[kind])
    if kind == "ean13":
        digits = text.strip()
        if not (digits.isdigit() and len(digits) in (12, 13)):
            raise BarcodeError(f"an EAN-13 needs 12 or 13 digits, got {text!r}")
        if len(digits) == 13 and not is_ean13(digits):
            raise BarcodeError(f"{text!r} is not a valid EAN-13 (check digit should be "
                               f"{ean13_check_digit(digits[:12])})")
        content, kwargs = digits[:12], {}
    elif kind in ("code128", "datamatrix") and looks_gs1(text):
        content, kwargs = gs1_to_bracketed(text), {"gs1": True}
    else:
        content, kwargs = text, {}
    extra = {"force_square": True} if kind == "datamatrix" else {}  # marking codes must be square
    try:
        barcode = zx.create_barcode(content, fmt, **kwargs, **extra)
    except Exception as exc:  # zxing-cpp raises its own error types
        if kwargs:
            barcode = zx.create_barcode(text, fmt, **extra)
        else:
            raise BarcodeError(f"cannot encode {text!r} as {kind}: {exc}") from exc
    image = np.asarray(zx.write_barcode_to_image(barcode, scale=1, add_quiet_zones=False))
    bits = image < 128
    if kind in ("ean13", "code128") and bits.ndim == 2:
        bits = bits[:1]  # a linear symbol: one row of modules
    return bits


def symbol_image(kind: str, text: str, module: int, height: int | None = None) -> Image.Image:
    """The symbol drawn with `module` dots per module (and `height` dots tall for linear codes)."""
    bits = symbol_bits(kind, text)
    if bits.shape[0] == 1:
        bits = np.repeat(bits, max(1, height or 80), axis=0)
        bits = np.repeat(bits, module, axis=1)
    else:
        bits = np.kron(bits, np.ones((module, module), dtype=bool)).astype(bool)
    return Image.fromarray(~bits)
