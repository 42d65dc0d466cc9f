"""Label files the sandboxes hand out: real SVG, PNG, ZPL and PDF whose barcode decodes to a number.

Owns the drawing only (Code 128 modules from zxing-cpp, laid out at the label's size with a caption; a
supply's QR sticker; an A4 hand-over document):
`png_label`, `svg_label`, `zpl_label`, `pdf_label`, `qr_png`, `pdf_document`. Sizes are in millimetres; raster labels use 10 px
per mm (WB: 58x40 mm -> 580x400 px, 40x30 mm -> 400x300 px, as WB documents).
"""

from __future__ import annotations

import io
from xml.sax.saxutils import escape

PX_PER_MM = 10


def code128_modules(text: str) -> list[int]:
    """The Code 128 symbol of `text` as a list of module colours (1 = bar), without quiet zones."""
    # lazy: numpy and zxing-cpp take ~0.2 s to import; only drawing a label needs them
    import numpy as np
    import zxingcpp

    barcode = zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.Code128)
    image = np.array(barcode.to_image(scale=1, add_quiet_zones=False))
    row = image[image.shape[0] // 2]
    return [1 if v < 128 else 0 for v in row]


def _runs(modules: list[int]) -> list[tuple[int, int]]:
    """(start, length) of each bar."""
    out, start = [], None
    for i, m in enumerate(modules + [0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            out.append((start, i - start))
            start = None
    return out


def _layout(n_modules: int, width_px: int, height_px: int) -> tuple[int, int, int, int]:
    """module width, left x, top y, bar height for a barcode centred in the upper part."""
    quiet = 10
    module = max(1, (width_px - 2 * 8) // (n_modules + 2 * quiet))
    left = (width_px - module * n_modules) // 2
    top = height_px // 8
    bar_h = height_px // 2
    return module, left, top, bar_h


def png_label(text: str, width_mm: float, height_mm: float, caption: list[str] | None = None) -> bytes:
    from PIL import Image, ImageDraw  # lazy: Pillow takes ~0.08 s to import; only PNG labels need it

    w, h = int(width_mm * PX_PER_MM), int(height_mm * PX_PER_MM)
    modules = code128_modules(text)
    module, left, top, bar_h = _layout(len(modules), w, h)
    img = Image.new("L", (w, h), 255)
    draw = ImageDraw.Draw(img)
    for start, length in _runs(modules):
        x0 = left + start * module
        draw.rectangle([x0, top, x0 + length * module - 1, top + bar_h - 1], fill=0)
    y = top + bar_h + 8
    for line in [text] + (caption or []):
        draw.text((left, y), line, fill=0)
        y += 14
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def svg_label(text: str, width_mm: float, height_mm: float, caption: list[str] | None = None) -> bytes:
    w, h = int(width_mm * PX_PER_MM), int(height_mm * PX_PER_MM)
    modules = code128_modules(text)
    module, left, top, bar_h = _layout(len(modules), w, h)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">',
        f'<rect x="0" y="0" width="{w}" height="{h}" fill="#fff"/>',
    ]
    for start, length in _runs(modules):
        parts.append(f'<rect x="{left + start * module}" y="{top}" width="{length * module}" '
                     f'height="{bar_h}" fill="#000"/>')
    y = top + bar_h + 24
    for line in [text] + (caption or []):
        parts.append(f'<text x="{left}" y="{y}" font-family="sans-serif" font-size="20">{escape(line)}</text>')
        y += 24
    parts.append("</svg>")
    return "\n".join(parts).encode("utf-8")


def zpl_label(text: str, width_mm: float, height_mm: float, *, rotated: bool = False,
              caption: list[str] | None = None) -> bytes:
    """ZPL II at 203 dpi (8 dots per mm); `rotated` draws the barcode vertically (WB `zplv`)."""
    dots_w, dots_h = int(width_mm * 8), int(height_mm * 8)
    orientation = "R" if rotated else "N"
    lines = ["^XA", "^CI28", f"^PW{dots_w}", f"^LL{dots_h}", "^FO24,24",
             f"^BY2^BC{orientation},{dots_h // 2},Y,N,N", f"^FD{text}^FS"]
    y = dots_h // 2 + 70
    for line in caption or []:
        lines += [f"^FO24,{y}^A0N,24,24^FD{line}^FS"]
        y += 28
    lines.append("^XZ")
    return ("\n".join(lines) + "\n").encode("utf-8")


def pdf_label(text: str, width_mm: float, height_mm: float, caption: list[str] | None = None) -> bytes:
    # lazy: reportlab takes ~0.1 s to import; only PDF labels need it
    from reportlab.graphics.barcode import code128
    from reportlab.lib.units import mm
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(width_mm * mm, height_mm * mm))
    c.setTitle(f"label {text}")
    probe = code128.Code128(text, barWidth=1, quiet=False)
    bar_width = min(0.5 * mm, width_mm * mm * 0.85 / probe.width)
    bar = code128.Code128(text, barHeight=height_mm * mm * 0.4, barWidth=bar_width, quiet=False)
    x = max(2 * mm, (width_mm * mm - bar.width) / 2)
    bar.drawOn(c, x, height_mm * mm * 0.5)
    c.setFont("Helvetica", 9)
    y = height_mm * mm * 0.5 - 5 * mm
    for line in [text] + (caption or []):
        c.drawString(4 * mm, y, line)
        y -= 4 * mm
    c.showPage()
    c.save()
    return buf.getvalue()


def qr_png(text: str, width_mm: float = 58, height_mm: float = 40, caption: list[str] | None = None) -> bytes:
    """A QR sticker (a WB supply's: 580x400 px) whose QR decodes to `text`, the text printed beside it."""
    # lazy: numpy, zxing-cpp and Pillow take ~0.3 s to import; only drawing a sticker needs them
    import numpy as np
    import zxingcpp
    from PIL import Image, ImageDraw

    w, h = int(width_mm * PX_PER_MM), int(height_mm * PX_PER_MM)
    symbol = np.array(zxingcpp.create_barcode(text, zxingcpp.BarcodeFormat.QRCode).to_image(scale=1,
                                                                                             add_quiet_zones=False))
    side = h - 40
    module = max(1, side // symbol.shape[0])
    qr = Image.fromarray(symbol).resize((symbol.shape[1] * module, symbol.shape[0] * module), Image.NEAREST)
    img = Image.new("L", (w, h), 255)
    img.paste(qr, (20, (h - qr.height) // 2))
    draw = ImageDraw.Draw(img)
    y = 40
    for line in [text] + (caption or []):
        draw.text((40 + qr.width, y), line, fill=0)
        y += 16
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def pdf_document(title: str, code: str, rows: list[list[str]], header: list[str],
                 pages: list[str] | None = None) -> bytes:
    """An A4 document as a marketplace hands it out for a hand-over (an act, a waybill): a title, a
    Code 128 of `code` (the document's id), a table of `rows` under `header`; one page per entry of
    `pages` (their titles), else one. Latin text only (the sandbox draws with the PDF's base fonts)."""
    # lazy: reportlab takes ~0.1 s to import; only documents need it
    from reportlab.graphics.barcode import code128
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=A4)
    c.setTitle(title)
    width, height = A4
    for page_title in pages or [title]:
        c.setFont("Helvetica-Bold", 14)
        c.drawString(20 * mm, height - 25 * mm, page_title)
        bar = code128.Code128(code, barHeight=12 * mm, barWidth=0.4 * mm, quiet=False)
        bar.drawOn(c, width - 20 * mm - bar.width, height - 30 * mm)
        c.setFont("Helvetica", 10)
        c.drawString(width - 20 * mm - bar.width, height - 35 * mm, code)
        y = height - 50 * mm
        columns = [20 * mm + i * (170 * mm / max(1, len(header))) for i in range(len(header))]
        c.setFont("Helvetica-Bold", 10)
        for x, text in zip(columns, header, strict=True):
            c.drawString(x, y, text)
        c.setFont("Helvetica", 10)
        for row in rows:
            y -= 6 * mm
            if y < 30 * mm:
                c.showPage()
                y = height - 25 * mm
                c.setFont("Helvetica", 10)
            for x, text in zip(columns, row, strict=True):
                c.drawString(x, y, str(text))
        c.drawString(20 * mm, 25 * mm, "Sender: ____________________    Carrier: ____________________")
        c.showPage()
    c.save()
    return buf.getvalue()
