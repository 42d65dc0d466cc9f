"""A 1-bit label image in each printer language, and back again.

Owns the byte formats: ZPL `^GFA` graphics (plain and compressed hex, `:Z64:`), TSPL `BITMAP`,
ESC/POS `GS v 0` raster (built by python-escpos). The decoders (`tspl_to_image`, `escpos_to_image`)
let the virtual printer show exactly what a job would print; ZPL is drawn by `zpl_render`.
"""

from __future__ import annotations

import base64
import binascii
import copy
import io
import re
import zlib

import numpy as np
from PIL import Image

from edge_agent.devices.base import PrinterError, PrinterProfile, need


def to_bits(image: Image.Image) -> np.ndarray:
    """A PIL image -> a bool array, True where the printer burns a dot (black)."""
    if image.mode != "1":
        image = image.convert("L").point([255 if v >= 128 else 0 for v in range(256)]).convert(
            "1", dither=Image.Dither.NONE)
    return ~np.asarray(image, dtype=bool)


def from_bits(bits: np.ndarray) -> Image.Image:
    """A bool array (True = black) -> a 1-bit PIL image (white paper, black dots)."""
    return Image.fromarray(~bits.astype(bool))


def pack_rows(bits: np.ndarray) -> tuple[bytes, int]:
    """Pack a bool array MSB-first into whole bytes per row; returns (data, bytes_per_row)."""
    packed = np.packbits(bits.astype(np.uint8), axis=1)
    return packed.tobytes(), packed.shape[1]


def unpack_rows(data: bytes, bytes_per_row: int, rows: int) -> np.ndarray:
    need_len = bytes_per_row * rows
    buf = np.frombuffer(data[:need_len].ljust(need_len, b"\0"), dtype=np.uint8).reshape(rows, bytes_per_row)
    return np.unpackbits(buf, axis=1).astype(bool)


# ---- ZPL -------------------------------------------------------------------------------------------

def image_to_zpl(image: Image.Image, profile: PrinterProfile, copies: int = 1) -> bytes:
    """One label as ZPL: the image as a compressed `^GFA` graphic at the origin."""
    bits = to_bits(image)
    data, per_row = pack_rows(bits)
    z64 = base64.b64encode(zlib.compress(data, 6)).decode()
    crc = f"{_crc16(z64.encode()):04X}"
    total = len(data)
    body = (
        f"^XA^CI28^PW{profile.width_dots}^LL{profile.height_dots}^LH0,0"
        f"^FO0,0^GFA,{total},{total},{per_row},:Z64:{z64}:{crc}^FS^PQ{copies}^XZ\n"
    )
    return body.encode("ascii")


def _crc16(data: bytes) -> int:
    """CRC-16/XMODEM (the checksum ZPL puts after a :Z64: block)."""
    return binascii.crc_hqx(data, 0)


_ZPL_REPEAT = {chr(ord("G") + i): i + 1 for i in range(19)}  # G..Y = 1..19
_ZPL_REPEAT.update({chr(ord("g") + i): 20 * (i + 1) for i in range(20)})  # g..z = 20..400


def decode_gf_data(data: str, bytes_per_row: int, total: int) -> bytes:
    """The data of a `^GFA` command -> raw bytes. Handles :Z64:, :B64: and ZPL hex compression."""
    data = data.strip()
    if data.startswith((":Z64:", ":B64:")):
        kind, payload = data[1:4], data[5:]
        payload = payload.split(":", 1)[0]
        raw = base64.b64decode(payload)
        return zlib.decompress(raw) if kind == "Z64" else raw
    hex_per_row = bytes_per_row * 2
    rows: list[str] = []
    row = ""
    count = 0
    for ch in re.sub(r"\s", "", data):
        if ch in _ZPL_REPEAT:
            count += _ZPL_REPEAT[ch]
            continue
        if ch == ",":
            rows.append((row + "0" * hex_per_row)[:hex_per_row])
            row, count = "", 0
        elif ch == "!":
            rows.append((row + "F" * hex_per_row)[:hex_per_row])
            row, count = "", 0
        elif ch == ":":
            rows.append(rows[-1] if rows else "0" * hex_per_row)
            row, count = "", 0
        else:
            row += ch * (count or 1)
            count = 0
            while len(row) >= hex_per_row:
                rows.append(row[:hex_per_row])
                row = row[hex_per_row:]
    if row:
        rows.append((row + "0" * hex_per_row)[:hex_per_row])
    try:
        return bytes.fromhex("".join(rows))[:total]
    except ValueError as exc:
        raise PrinterError(f"the ZPL graphic (^GF) holds data that is not hex: {exc}") from exc


# ---- TSPL ------------------------------------------------------------------------------------------

def image_to_tspl(image: Image.Image, profile: PrinterProfile, copies: int = 1) -> bytes:
    """One label as TSPL: SIZE/GAP/CLS, a BITMAP (in TSPL a 0 bit prints), PRINT."""
    bits = to_bits(image)
    data, per_row = pack_rows(~bits)
    head = (
        f"SIZE {profile.width_mm:g} mm,{profile.height_mm:g} mm\r\nGAP 2 mm,0 mm\r\nDIRECTION 0\r\n"
        f"CLS\r\nBITMAP 0,0,{per_row},{bits.shape[0]},0,"
    ).encode("ascii")
    return head + data + f"\r\nPRINT 1,{copies}\r\n".encode("ascii")


def tspl_to_image(payload: bytes, profile: PrinterProfile) -> Image.Image:
    """Draw what a TSPL job prints (its BITMAP commands) on a blank label."""
    canvas = np.zeros((profile.height_dots, profile.width_dots), dtype=bool)
    pos = 0
    found = False
    while True:
        at = payload.find(b"BITMAP ", pos)
        if at < 0:
            break
        header_end = at
        commas = 0
        while commas < 5:
            header_end = payload.index(b",", header_end + 1)
            commas += 1
        x, y, per_row, rows, _mode = (int(v) for v in payload[at + 7:header_end].split(b","))
        data = payload[header_end + 1:header_end + 1 + per_row * rows]
        bits = ~unpack_rows(data, per_row, rows)
        _blit(canvas, bits, x, y)
        pos = header_end + 1 + per_row * rows
        found = True
    if not found:
        raise PrinterError("the TSPL job holds no BITMAP to print")
    return from_bits(canvas)


# ---- ESC/POS ---------------------------------------------------------------------------------------

def image_to_escpos(image: Image.Image, profile: PrinterProfile, fragment_height: int = 64) -> bytes:
    """One label as ESC/POS: `GS v 0` raster bands (python-escpos), then a feed and a cut."""
    printer_mod = need("escpos.printer", "ESC/POS", "python-escpos")
    dummy = printer_mod.Dummy()
    data = copy.deepcopy(dummy.profile.profile_data)  # per instance: the class-level dict is shared
    data.setdefault("media", {}).setdefault("width", {})["pixels"] = profile.width_dots
    dummy.profile.profile_data = data
    dummy.image(image if image.mode == "1" else image.convert("1", dither=Image.Dither.NONE), impl="bitImageRaster", fragment_height=fragment_height, center=False)
    dummy.cut()
    return dummy.output


def escpos_to_image(payload: bytes, profile: PrinterProfile) -> Image.Image:
    """Draw what an ESC/POS job prints: its `GS v 0` raster bands stacked top to bottom."""
    bands: list[np.ndarray] = []
    pos = 0
    while True:
        at = payload.find(b"\x1dv0", pos)
        if at < 0:
            break
        xl, xh, yl, yh = payload[at + 4:at + 8]
        per_row, rows = xl + 256 * xh, yl + 256 * yh
        start = at + 8
        bands.append(unpack_rows(payload[start:start + per_row * rows], per_row, rows))
        pos = start + per_row * rows
    if not bands:
        raise PrinterError("the ESC/POS job holds no raster image (GS v 0) to print")
    width = max(b.shape[1] for b in bands)
    stacked = np.vstack([np.pad(b, ((0, 0), (0, width - b.shape[1]))) for b in bands])
    return from_bits(stacked)


def _blit(canvas: np.ndarray, bits: np.ndarray, x: int, y: int) -> None:
    h = max(0, min(bits.shape[0], canvas.shape[0] - y))
    w = max(0, min(bits.shape[1], canvas.shape[1] - x))
    if h and w and x >= 0 and y >= 0:
        canvas[y:y + h, x:x + w] |= bits[:h, :w]


def encode_image(image: Image.Image, profile: PrinterProfile, copies: int = 1) -> bytes:
    """A label image in the printer's language (raster = PNG bytes, for the virtual printer)."""
    if profile.language == "zpl":
        return image_to_zpl(image, profile, copies)
    if profile.language == "tspl":
        return image_to_tspl(image, profile, copies)
    if profile.language == "escpos":
        return image_to_escpos(image, profile)
    buf = io.BytesIO()
    (image if image.mode == "1" else image.convert("1", dither=Image.Dither.NONE)).save(buf, format="PNG")
    return buf.getvalue()
