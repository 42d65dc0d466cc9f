"""Draw a ZPL label as the printer would print it (for the virtual printer and for non-ZPL printers).

Owns the subset of ZPL II that marketplace and own labels use: ^XA/^XZ, ^MUd,200,300 (scaling), ^LH, ^PW/^LL, ^FO/^FT, ^FD/^FS,
^FH (hex escapes), ^FR, ^BY, ^BC (Code 128, with >; >: >8 subset codes), ^BE (EAN-13), ^BX
(DataMatrix, with the escape character for FNC1/GS), ^BQ (QR), ^GB (boxes), ^GF (graphics: hex,
compressed hex, :Z64:/:B64:), ^A/^CF text. Unknown commands are skipped, not fatal; a label with
nothing printable raises PrinterError.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from edge_agent.barcodes import GS, BarcodeError, ean13_check_digit, symbol_bits
from edge_agent.devices.base import PrinterError, PrinterProfile
from edge_agent.devices.encoders import _blit, decode_gf_data, from_bits, unpack_rows

_FONT_PATHS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Bold.ttf",
)


@lru_cache(maxsize=32)
def font(size: int) -> ImageFont.ImageFont:
    """A font that has Cyrillic where the system has one; Pillow's own font otherwise."""
    size = max(6, int(size))
    for path in _FONT_PATHS:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            continue
    return ImageFont.load_default(size=size)


@dataclass
class _State:
    x: int = 0
    y: int = 0
    baseline: bool = False
    home: tuple[int, int] = (0, 0)
    module: int = 2
    ratio: float = 3.0
    bar_height: int = 10 * 8
    font_h: int = 30
    font_w: int = 0
    font_orient: str = "N"
    field_font: tuple[str, int, int] | None = None
    barcode: tuple[str, list[str]] | None = None
    hex_char: str | None = None
    reverse: bool = False
    ops: list = field(default_factory=list)
    above_baseline: int | None = None


def _split(zpl: str) -> list[tuple[str, str]]:
    """ZPL text -> [(command, parameters)]. ^A is followed by its font name, kept as a parameter."""
    out: list[tuple[str, str]] = []
    for chunk in zpl.split("^")[1:]:
        if not chunk:
            continue
        if chunk[0] in "Aa" and chunk[1:2] != "@":
            cmd, rest = "A", chunk[1:]
        else:
            cmd, rest = chunk[:2].upper(), chunk[2:]
        if cmd != "FD":
            rest = rest.split("~", 1)[0]
            rest = rest.strip("\r\n")
        out.append((cmd, rest))
    return out


def _int(params: list[str], i: int, default: int) -> int:
    try:
        return int(float(params[i])) if i < len(params) and params[i].strip() else default
    except ValueError:
        return default


def _rotate(bits: np.ndarray, orient: str) -> np.ndarray:
    return {"R": np.rot90(bits, -1), "I": np.rot90(bits, 2), "B": np.rot90(bits, 1)}.get(orient, bits)


def _text_bits(text: str, height: int, width: int) -> np.ndarray:
    f = font(height)
    left, top, right, bottom = f.getbbox(text or " ")
    img = Image.new("L", (max(1, right - min(0, left)), max(1, height)), 255)
    ImageDraw.Draw(img).text((-min(0, left), 0), text, font=f, fill=0)
    if width and width != height:
        img = img.resize((max(1, int(img.width * width / height)), img.height))
    return np.asarray(img) < 128


def _unescape_hex(data: str, indicator: str | None) -> str:
    if not indicator:
        return data
    return re.sub(re.escape(indicator) + r"([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), data)


def _code128_text(data: str, mode: str) -> str:
    """ZPL ^BC field data -> the text a scanner reads (subset codes removed, >8 as FNC1/GS)."""
    if mode == "D":  # UCC/EAN mode: data like (01)...(21)...
        return re.sub(r"\((\d{2,4})\)", lambda m: m.group(1), data)
    out = []
    i = 0
    while i < len(data):
        if data[i] == ">" and i + 1 < len(data):
            code = data[i + 1]
            if code == "8":
                if out:
                    out.append(GS)
            elif code == ">":
                out.append(">")
            i += 2
            continue
        out.append(data[i])
        i += 1
    return "".join(out)


def _datamatrix_text(data: str, escape: str) -> str:
    """ZPL ^BX field data -> the encoded text; `<escape>1` is FNC1 (GS inside the data)."""
    out = []
    i = 0
    while i < len(data):
        if data[i] == escape and i + 1 < len(data):
            nxt = data[i + 1]
            if nxt == "1":
                if out:
                    out.append(GS)
                i += 2
                continue
            if nxt == "d" and data[i + 2:i + 5].isdigit():
                out.append(chr(int(data[i + 2:i + 5])))
                i += 5
                continue
            if nxt == escape:
                out.append(escape)
                i += 2
                continue
        out.append(data[i])
        i += 1
    return "".join(out)


def _qr_text(data: str) -> str:
    """ZPL ^BQ field data ("QA,text", "MM,Btext"...) -> the text."""
    if len(data) >= 3 and data[2] == ",":
        mode, text = data[1], data[3:]
        if mode == "M" and text[:1] in "NAK":
            text = text[1:]
        elif mode == "M" and text[:1] == "B":
            text = text[5:]
        return text
    return data


def render_zpl(zpl: bytes | str, profile: PrinterProfile) -> Image.Image:
    """The first label (^XA..^XZ) of a ZPL job as a 1-bit image the size of the profile's label."""
    text = zpl.decode("utf-8", errors="replace") if isinstance(zpl, bytes) else zpl
    if "^XA" not in text.upper():
        raise PrinterError("this is not a ZPL label (no ^XA)")
    text = text[text.upper().index("^XA"):]
    end = text.upper().find("^XZ")
    text = text if end < 0 else text[:end + 3]
    mu = re.search(r"\^MU[dD],(\d+),(\d+)", text)
    if mu and int(mu.group(2)) > int(mu.group(1)):
        # ^MUd,200,300: a format laid out for 200 dpi, scaled by the printer to its resolution
        base, target = int(mu.group(1)), int(mu.group(2))
        src = PrinterProfile(profile.language, 203, profile.width_mm, profile.height_mm, profile.name)
        small = render_zpl(text.replace(mu.group(0), ""), src)
        scaled = small.resize((round(small.width * target / base), round(small.height * target / base)),
                              Image.Resampling.NEAREST)
        canvas_img = Image.new("1", (profile.width_dots, profile.height_dots), 1)
        canvas_img.paste(scaled, (0, 0))
        return canvas_img
    width, height = profile.width_dots, profile.height_dots
    canvas = np.zeros((height, width), dtype=bool)
    st = _State()
    drew = False
    for cmd, raw in _split(text):
        p = raw.split(",")
        if cmd == "LH":
            st.home = (_int(p, 0, 0), _int(p, 1, 0))
        elif cmd in ("FO", "FT"):
            st.x, st.y, st.baseline = _int(p, 0, 0) + st.home[0], _int(p, 1, 0) + st.home[1], cmd == "FT"
        elif cmd == "BY":
            st.module = max(1, _int(p, 0, st.module))
            st.bar_height = _int(p, 2, st.bar_height)
        elif cmd == "CF":
            st.font_h = _int(p, 1, st.font_h)
            st.font_w = _int(p, 2, 0)
        elif cmd == "A":
            orient = (raw[1:2] or "N").upper() if not raw.startswith(",") else "N"
            q = raw[2:].lstrip(",").split(",") if len(raw) > 2 else []
            st.field_font = (orient if orient in "NRIB" else "N", _int(q, 0, st.font_h), _int(q, 1, 0))
        elif cmd == "FH":
            st.hex_char = raw[:1] or "_"
        elif cmd == "FR":
            st.reverse = True
        elif cmd in ("BC", "BE", "BX", "BQ"):
            st.barcode = (cmd, p)
        elif cmd == "GB":
            w, h, t = _int(p, 0, 1), _int(p, 1, 1), _int(p, 2, 1)
            w, h = max(w, t), max(h, t)
            box = np.zeros((h, w), dtype=bool)
            if t * 2 >= min(w, h):
                box[:] = True
            else:
                box[:t, :] = box[-t:, :] = box[:, :t] = box[:, -t:] = True
            if (p[3:4] or ["B"])[0].strip().upper() == "W":
                canvas[st.y:st.y + h, st.x:st.x + w] &= ~box[: max(0, height - st.y), : max(0, width - st.x)]
            else:
                _place(canvas, box, st)
            drew = True
        elif cmd == "GF":
            total, per_row = _int(p, 2, 0), _int(p, 3, 0)
            if per_row <= 0:
                raise PrinterError("the ZPL graphic (^GF) has no bytes-per-row")
            data = decode_gf_data(",".join(p[4:]), per_row, total)
            bits = unpack_rows(data, per_row, max(1, len(data) // per_row))
            _place(canvas, bits, st)
            drew = True
        elif cmd == "FD":
            data = _unescape_hex(raw, st.hex_char)
            try:
                bits = _field_bits(data, st)
            except BarcodeError as exc:
                raise PrinterError(f"the ZPL label has a barcode the printer cannot draw: {exc}") from exc
            if bits is not None:
                _place(canvas, bits, st, st.above_baseline)
                drew = True
        elif cmd == "FS":
            st.barcode, st.field_font, st.hex_char, st.reverse = None, None, None, False
    if not drew:
        raise PrinterError("the ZPL label prints nothing (no fields, barcodes or graphics)")
    return from_bits(canvas)


def _place(canvas: np.ndarray, bits: np.ndarray, st: _State, above: int | None = None) -> None:
    """Put a field at ^FO (top-left) or ^FT (its baseline: the bottom of the bars, the text baseline)."""
    y = st.y - (bits.shape[0] if above is None else above) if st.baseline else st.y
    if st.reverse:
        h = max(0, min(bits.shape[0], canvas.shape[0] - y))
        w = max(0, min(bits.shape[1], canvas.shape[1] - st.x))
        if h and w and y >= 0 and st.x >= 0:
            canvas[y:y + h, st.x:st.x + w] ^= bits[:h, :w]
        return
    _blit(canvas, bits, st.x, max(0, y))


def _field_bits(data: str, st: _State) -> np.ndarray | None:
    st.above_baseline = None
    if st.barcode is None:
        orient, h, w = st.field_font or (st.font_orient, st.font_h, st.font_w)
        if orient == "N":
            st.above_baseline = font(h).getmetrics()[0]
        return _rotate(_text_bits(data, h, w), orient)
    cmd, p = st.barcode
    orient = (p[0][:1] or "N").upper() if p else "N"
    if cmd in ("BC", "BE"):
        bar_h = _int(p, 1, st.bar_height)
        interp = (p[2:3] or ["Y"])[0].strip().upper() != "N"
        if cmd == "BC":
            mode = (p[5:6] or ["N"])[0].strip().upper()
            kind, content = "code128", _code128_text(data, mode)
        else:
            kind, content = "ean13", data.strip()[:12]
        row = symbol_bits(kind, content)
        bits = np.repeat(np.repeat(row, st.module, axis=1), max(1, bar_h), axis=0)
        if orient == "N":
            st.above_baseline = bits.shape[0]
        if interp:
            shown = content.replace(GS, " ") if kind == "code128" else symbol_text_ean(content)
            txt = _text_bits(shown, max(12, st.module * 9), 0)
            pad = np.zeros((txt.shape[0] + 4, bits.shape[1]), dtype=bool)
            x0 = max(0, (bits.shape[1] - txt.shape[1]) // 2)
            pad[4:, x0:x0 + min(txt.shape[1], bits.shape[1])] = txt[:, : bits.shape[1]]
            bits = np.vstack([bits, pad])
        return _rotate(bits, orient)
    if cmd == "BX":
        module = max(1, _int(p, 1, st.module))
        escape = (p[6:7] or ["~"])[0][:1] or "~"
        bits = symbol_bits("datamatrix", _datamatrix_text(data, escape))
        return _rotate(np.kron(bits, np.ones((module, module), dtype=bool)).astype(bool), orient)
    if cmd == "BQ":
        mag = max(1, _int(p, 2, 2))
        bits = symbol_bits("qr", _qr_text(data))
        bits = np.pad(bits, 0)
        return np.kron(bits, np.ones((mag, mag), dtype=bool)).astype(bool)
    return None


def symbol_text_ean(digits12: str) -> str:
    return digits12 + ean13_check_digit(digits12) if len(digits12) == 12 else digits12
