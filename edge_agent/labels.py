"""Any marketplace label -> a print job in the printer's language, at its label size and resolution.

Owns `prepare_label(data, fmt, profile)` (PDF via pypdfium2, PNG, SVG, ZPL) and `own_label(kind, text,
caption, profile)` (item EAN-13 / Code 128, box, DataMatrix labels this project draws itself).
Pictures are drawn at the printer's own dot pitch, turned to fit the loaded label, and made black and
white by a plain threshold (never dithered: dithering breaks bar edges). ZPL goes to ZPL printers
untouched. Prepared jobs are cached by the label's bytes, so a label fetched ahead is rendered once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import threading
from collections import OrderedDict
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from edge_agent.barcodes import (
    GS,
    BarcodeError,
    ean13_check_digit,
    gs1_elements,
    is_ean13,
    looks_gs1,
    symbol_bits,
    symbol_image,
)
from edge_agent.devices.base import PrinterError, PrinterProfile, PrintJob, need
from edge_agent.devices.encoders import encode_image
from edge_agent.devices.zpl_render import font, render_zpl
from edge_agent.svg_render import SvgError, render_svg

FORMATS = ("pdf", "png", "svg", "zpl")
SIZES_MM = ((58, 40), (40, 30), (75, 120))


class LabelError(PrinterError):
    """A label that cannot be made into a print job (broken file, unknown format, too small a label)."""


PDFIUM_LOCK = threading.Lock()  # pdfium is not thread-safe: one document at a time in the whole process (the
# print worker and the labels rendered ahead render in threads of their own)
_CACHE: OrderedDict[tuple, PrintJob] = OrderedDict()
# What the cache may hold in memory, payloads and rasters counted (a raster is held at one byte per dot
# by Pillow, even 1-bit: ~0.6 MB for a 75x120 mm label at 203 dpi, its ZPL ~2 KB). Cached jobs keep no
# raster, so on a Raspberry Pi's budget the cache holds thousands of labels ahead.
_CACHE_MAX_BYTES = 16 * 1024 * 1024
_CACHE_LOCK = threading.Lock()
_CACHE_BYTES = 0


def _profile(printer_profile: Any) -> PrinterProfile:
    if isinstance(printer_profile, PrinterProfile):
        return printer_profile
    prof = getattr(printer_profile, "profile", None)  # a printer object
    if isinstance(prof, PrinterProfile):
        return prof
    return PrinterProfile.from_config(printer_profile)


def sniff_format(data: bytes) -> str | None:
    """The label format from its first bytes (marketplaces sometimes mislabel what they send)."""
    head = data[:512].lstrip()
    if head.startswith(b"%PDF"):
        return "pdf"
    if head.startswith(b"\x89PNG") or head[:3] == b"\xff\xd8\xff":
        return "png"
    if b"<svg" in data[:4096] or head.startswith(b"<?xml"):
        return "svg"
    if b"^XA" in data[:4096].upper():
        return "zpl"
    return None


def prepare_label(data: bytes, fmt: str, printer_profile: Any, copies: int = 1) -> PrintJob:
    """A marketplace label (`fmt` pdf|png|svg|zpl) as a job for this printer. Raises LabelError."""
    profile = _profile(printer_profile)
    fmt = (fmt or "").lower().lstrip(".")
    if fmt in ("jpg", "jpeg"):
        fmt = "png"
    if fmt not in FORMATS:
        raise LabelError(f"unknown label format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if not data:
        raise LabelError("the label file is empty")
    sniffed = sniff_format(data)
    if sniffed is None:
        raise LabelError(f"the label is not a {fmt.upper()} file (nor any label format this box knows)")
    fmt = sniffed
    key = (hashlib.sha256(data).digest(), fmt, profile, copies)
    with _CACHE_LOCK:
        job = _CACHE.get(key)
        if job is not None:
            _CACHE.move_to_end(key)
            return job
    job = _prepare(data, fmt, profile, copies)
    job = dataclasses.replace(job, raster=None)  # what prints is the payload; the picture is ~0.6 MB a label
    with _CACHE_LOCK:
        if key in _CACHE:  # prepared meanwhile by another thread
            return _CACHE[key]
        _CACHE[key] = job
        global _CACHE_BYTES
        _CACHE_BYTES += cached_bytes(job)
        while _CACHE_BYTES > _CACHE_MAX_BYTES and len(_CACHE) > 1:
            _CACHE_BYTES -= cached_bytes(_CACHE.popitem(last=False)[1])
    return job


def clear_cache() -> None:
    """Forget every prepared label (and what they held)."""
    global _CACHE_BYTES
    with _CACHE_LOCK:
        _CACHE.clear()
        _CACHE_BYTES = 0


def cached_bytes(job: PrintJob) -> int:
    """The memory a prepared job holds: its payload and its raster (Pillow keeps 1-bit and gray
    images at a byte per pixel, colour at four)."""
    raster = job.raster
    per_pixel = 0 if raster is None else (1 if raster.mode in ("1", "L", "P") else 4)
    return len(job.payload) + (raster.width * raster.height * per_pixel if per_pixel else 0)


def cache_bytes() -> int:
    """What the prepared-label cache holds now (payloads and rasters)."""
    with _CACHE_LOCK:
        return _CACHE_BYTES


def _prepare(data: bytes, fmt: str, profile: PrinterProfile, copies: int) -> PrintJob:
    if fmt == "zpl" and profile.language == "zpl":
        return _zpl_passthrough(data, profile, copies)
    if fmt == "zpl":
        src = _zpl_source_profile(data, profile)
        check_fits(src.width_mm, src.height_mm, profile)
        gray = render_zpl(data, src).convert("L")
    elif fmt == "pdf":
        gray = _render_pdf(data, profile)
    elif fmt == "svg":
        gray = _render_svg(data, profile)
    else:
        gray = _open_picture(data)
    bw = fit_to_label(gray, profile)
    return PrintJob(profile.language, encode_image(bw, profile, copies), profile.width_dots,
                    profile.height_dots, profile.dpi, description=f"{fmt} label", raster=bw)


def _zpl_passthrough(data: bytes, profile: PrinterProfile, copies: int) -> PrintJob:
    text = data.decode("utf-8", errors="replace")
    pw = re.search(r"\^PW(\d+)", text)
    ll = re.search(r"\^LL(\d+)", text)
    width = int(pw.group(1)) if pw else profile.width_dots
    height = int(ll.group(1)) if ll else profile.height_dots
    if profile.dpi >= 300 and "^MU" not in text.upper() and (pw is None or width <= profile.width_dots * 0.75):
        # a label laid out for 203 dpi (marketplace ZPL is): let the printer scale it (^MU) to its 300 dpi
        text = re.sub(r"\^XA", "^XA^MUd,200,300", text)
        data = text.encode("utf-8")
        width, height = round(width * 1.5) if pw else width, round(height * 1.5) if ll else height
    if width > profile.width_dots * 1.03 + 8 or height > profile.height_dots * 1.03 + 8:
        raise LabelError(
            f"this ZPL label is {width}x{height} dots, larger than the {profile.width_mm:g}x{profile.height_mm:g} mm "
            f"labels loaded in printer {profile.name} ({profile.width_dots}x{profile.height_dots} dots)")
    if copies > 1:
        text = re.sub(r"\^XZ", f"^PQ{copies}^XZ", text, count=1)
        data = text.encode("utf-8")
    return PrintJob("zpl", data, min(width, profile.width_dots), min(height, profile.height_dots), profile.dpi,
                    description="zpl label (passed through)")


MIN_SCALE = 0.7


def check_fits(width_mm: float, height_mm: float, profile: PrinterProfile) -> None:
    """Refuse a label that would have to shrink so much its barcodes stop scanning."""
    long_side, short_side = max(width_mm, height_mm), min(width_mm, height_mm)
    room_long, room_short = max(profile.width_mm, profile.height_mm), min(profile.width_mm, profile.height_mm)
    scale = min(room_long / long_side, room_short / short_side)
    if scale < MIN_SCALE:
        raise LabelError(
            f"this {width_mm:.0f}x{height_mm:.0f} mm label does not fit the {profile.width_mm:g}x"
            f"{profile.height_mm:g} mm labels loaded in printer {profile.name}: shrunk to {scale:.0%} its "
            f"barcode would not scan; load {width_mm:.0f}x{height_mm:.0f} mm labels or use another printer")


def _zpl_source_profile(data: bytes, profile: PrinterProfile) -> PrinterProfile:
    """The label size a ZPL file was made for: its ^PW/^LL at 203 dpi, else the printer's label."""
    text = data[:20000].decode("utf-8", errors="replace")
    pw = re.search(r"\^PW(\d+)", text)
    ll = re.search(r"\^LL(\d+)", text)
    dpi = 203
    width = int(pw.group(1)) / dpi * 25.4 if pw else profile.width_mm
    height = int(ll.group(1)) / dpi * 25.4 if ll else profile.height_mm
    return PrinterProfile("zpl", dpi, max(10.0, width), max(10.0, height), profile.name)


def _render_pdf(data: bytes, profile: PrinterProfile) -> Image.Image:
    pdfium = need("pypdfium2", "PDF labels", "pypdfium2")
    with PDFIUM_LOCK:
        return _render_pdf_locked(pdfium, data, profile)


def _render_pdf_locked(pdfium: Any, data: bytes, profile: PrinterProfile) -> Image.Image:
    try:
        pdf = pdfium.PdfDocument(data)
    except Exception as exc:  # pdfium raises PdfiumError
        raise LabelError(f"the PDF label cannot be opened: {exc}") from exc
    try:
        if len(pdf) < 1:
            raise LabelError("the PDF label has no pages")
        page = pdf[0]
        w_pt, h_pt = page.get_size()
        check_fits(w_pt / 72 * 25.4, h_pt / 72 * 25.4, profile)
        rotate = (w_pt > h_pt) != (profile.width_dots > profile.height_dots) and abs(w_pt - h_pt) > 1
        if rotate:
            w_pt, h_pt = h_pt, w_pt
        scale = min(profile.width_dots / w_pt, profile.height_dots / h_pt)
        bitmap = page.render(scale=scale, rotation=90 if rotate else 0, grayscale=True, may_draw_forms=False)
        image = bitmap.to_pil().convert("L")  # a copy: the bitmap is let go here, under the lock
        bitmap.close()
        page.close()
        return image
    finally:
        pdf.close()


def _render_svg(data: bytes, profile: PrinterProfile) -> Image.Image:
    m = re.search(rb"viewBox=\"[\d.\s-]*?\s([\d.]+)\s+([\d.]+)\"", data[:4096])
    w, h = (float(m.group(1)), float(m.group(2))) if m else (profile.width_dots, profile.height_dots)
    rotate = (w > h) != (profile.width_dots > profile.height_dots) and abs(w - h) > 1
    tw, th = (profile.height_dots, profile.width_dots) if rotate else (profile.width_dots, profile.height_dots)
    try:
        image = render_svg(data, tw, th)
    except SvgError as exc:
        raise LabelError(f"the SVG label cannot be drawn: {exc}") from exc
    return image.rotate(90, expand=True) if rotate else image


def _open_picture(data: bytes) -> Image.Image:
    try:
        pic = Image.open(io.BytesIO(data))
        pic.load()
    except Exception as exc:
        raise LabelError(f"the label picture cannot be opened: {exc}") from exc
    if pic.mode in ("RGBA", "LA", "P", "PA"):
        pic = pic.convert("RGBA")
        pic = Image.alpha_composite(Image.new("RGBA", pic.size, (255, 255, 255, 255)), pic)
    return pic.convert("L")


def threshold(gray: Image.Image) -> Image.Image:
    """Black and white by a threshold halfway between the paper and the ink (no dithering)."""
    cdf = np.cumsum(gray.histogram()[:256])
    lo, hi = int(np.searchsorted(cdf, cdf[-1] * 0.01)), int(np.searchsorted(cdf, cdf[-1] * 0.99))
    cut = (lo + hi + 1) // 2 if hi - lo > 40 else 128
    return gray.point([255 if v >= cut else 0 for v in range(256)]).convert("1", dither=Image.Dither.NONE)


def fit_to_label(gray: Image.Image, profile: PrinterProfile) -> Image.Image:
    """Turn (if its orientation differs), scale to fit, threshold and centre on a blank label."""
    w, h = profile.width_dots, profile.height_dots
    if (gray.width > gray.height) != (w > h) and abs(gray.width - gray.height) > 2:
        gray = gray.transpose(Image.Transpose.ROTATE_90)
    already_fits = gray.width <= w and gray.height <= h and min(w - gray.width, h - gray.height) <= 2
    if not already_fits:  # (a PDF is rendered at the printer's pitch already: no second resampling)
        ratio = min(w / gray.width, h / gray.height)
        size = (max(1, round(gray.width * ratio)), max(1, round(gray.height * ratio)))
        if size != gray.size:
            gray = gray.resize(size, Image.Resampling.BOX if ratio < 1 else Image.Resampling.NEAREST)
    bw = threshold(gray)
    canvas = Image.new("1", (w, h), 1)
    canvas.paste(bw, ((w - bw.width) // 2, (h - bw.height) // 2))
    return canvas


# ---- the project's own labels ----------------------------------------------------------------------

def _wrap(draw: ImageDraw.ImageDraw, text: str, fnt: Any, width: int, max_lines: int) -> list[str]:
    words, lines, cur = text.split(), [], ""
    for word in words:
        trial = f"{cur} {word}".strip()
        if draw.textlength(trial, font=fnt) <= width or not cur:
            cur = trial
        else:
            lines.append(cur)
            cur = word
    if cur:
        lines.append(cur)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(1, len(lines[-1]) - 1)] + "…"
    return lines


def own_label(kind: str, text: str, caption: str = "", printer_profile: Any = None, copies: int = 1) -> PrintJob:
    """A label this project draws: kind "item" (EAN-13 if `text` is one, else Code 128), "box" (Code 128,
    big caption) or "datamatrix" (a marking code; GS1 when it has AIs and \\x1d separators)."""
    profile = _profile(printer_profile if printer_profile is not None else {})
    if kind not in ("item", "box", "datamatrix"):
        raise LabelError(f"unknown own label kind {kind!r}; expected item, box or datamatrix")
    if not text:
        raise LabelError("an own label needs the text to encode")
    w, h = profile.width_dots, profile.height_dots
    margin = max(8, profile.dpi // 25)  # ~1 mm
    canvas = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(canvas)
    small = font(max(14, h // 11))
    try:
        if kind == "datamatrix":
            _draw_datamatrix(canvas, draw, text, caption, profile, margin)
        else:
            _draw_linear(canvas, draw, kind, text, caption, profile, margin, small)
    except BarcodeError as exc:
        raise LabelError(str(exc)) from exc
    bw = canvas.point([255 if v >= 128 else 0 for v in range(256)]).convert("1", dither=Image.Dither.NONE)
    return PrintJob(profile.language, encode_image(bw, profile, copies), w, h, profile.dpi,
                    description=f"own {kind} label", raster=bw)


def _draw_linear(canvas: Image.Image, draw: ImageDraw.ImageDraw, kind: str, text: str, caption: str,
                 profile: PrinterProfile, margin: int, small: Any) -> None:
    w, h = canvas.size
    symbol = "ean13" if kind == "item" and (is_ean13(text) or (len(text) == 12 and text.isdigit())) else "code128"
    if kind == "item" and len(text) == 13 and text.isdigit() and not is_ean13(text):
        symbol = "ean13"  # a 13-digit item code is an EAN-13: a wrong check digit is refused, not printed
    modules = symbol_bits(symbol, text).shape[1]
    quiet = 10
    module = (w - 2 * margin) // (modules + 2 * quiet)
    if module < 1:
        raise LabelError(f"{text!r} is too long for a {profile.width_mm:g} mm wide label at {profile.dpi} dpi")
    module = min(module, 4 if profile.dpi < 300 else 6)
    cap_font = font(max(16, h // (5 if kind == "box" else 9)))
    top = margin
    if caption:
        for line in _wrap(draw, caption, cap_font, w - 2 * margin, 2 if kind == "item" else 3):
            draw.text((margin, top), line, font=cap_font, fill=0)
            top += int(cap_font.size * 1.15)
    shown = text.replace(GS, " ")
    text_h = int(small.size * 1.3)
    bar_h = max(profile.dpi // 8, h - top - text_h - 2 * margin)
    bars = symbol_image(symbol, text, module, bar_h)
    x = (w - bars.width) // 2
    canvas.paste(bars, (x, top + margin // 2))
    label_text = shown if symbol == "code128" else (text if len(text) == 13 else text + _check(text))
    tw = draw.textlength(label_text, font=small)
    draw.text(((w - tw) / 2, top + margin // 2 + bars.height + 2), label_text, font=small, fill=0)


def _check(text: str) -> str:
    return ean13_check_digit(text[:12])


def _draw_datamatrix(canvas: Image.Image, draw: ImageDraw.ImageDraw, text: str, caption: str,
                     profile: PrinterProfile, margin: int) -> None:
    w, h = canvas.size
    n = symbol_bits("datamatrix", text).shape[0]
    side = min(h, w // 2 + w // 8) - 2 * margin
    module = side // (n + 2)
    if module < 2:
        raise LabelError(f"the DataMatrix of {len(text)} characters does not fit a "
                         f"{profile.width_mm:g}x{profile.height_mm:g} mm label at {profile.dpi} dpi")
    module = min(module, 12)
    sym = symbol_image("datamatrix", text, module)
    y = (h - sym.height) // 2
    canvas.paste(sym, (margin + module, y))
    x_text = margin + sym.width + 2 * module + margin
    room = w - x_text - margin
    if room > 40:
        fnt = font(max(12, h // 12))
        lines = _wrap(draw, caption or _marking_caption(text), fnt, room, max(1, (h - 2 * margin) // int(fnt.size * 1.2)))
        yy = margin
        for line in lines:
            draw.text((x_text, yy), line, font=fnt, fill=0)
            yy += int(fnt.size * 1.2)


def _marking_caption(text: str) -> str:
    if looks_gs1(text):
        parts = dict(gs1_elements(text))
        return f"GTIN {parts.get('01', '')} SN {parts.get('21', '')}"
    return text[:40]
