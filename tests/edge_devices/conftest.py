"""Fixtures of the edge device tests: a local TCP "printer" on 127.0.0.1 (a raw 9100 port stand-in,
because no physical printer is attached here), and test label makers (PDF via reportlab, WB-style
PNG, SVG and ZPL) that do not depend on the marketplace sandboxes."""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator

import numpy as np
import pytest
from PIL import Image, ImageDraw

from edge_agent.barcodes import symbol_bits


class TcpPrinter:
    """Accepts connections, stores every job's bytes, answers status queries with `status_reply`.
    `drop_after` > 0 closes the connection after that many bytes (a cable pulled mid-job)."""

    def __init__(self, port: int = 0, drop_after: int = 0, status_reply: bytes = b"") -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.drop_after = drop_after
        self.status_reply = status_reply
        self.jobs: list[bytes] = []
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                data = b""
                conn.settimeout(5)
                while True:
                    try:
                        part = conn.recv(65536)
                    except OSError:
                        break
                    if not part:
                        break
                    data += part
                    if data in (b"~HS", b"\x1b!?") and self.status_reply:
                        conn.sendall(self.status_reply)
                        break
                    if self.drop_after and len(data) >= self.drop_after:
                        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                        break
                if data not in (b"~HS", b"\x1b!?") and not (self.drop_after and len(data) >= self.drop_after):
                    self.jobs.append(data)

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture
def tcp_printer() -> Iterator[TcpPrinter]:
    server = TcpPrinter()
    try:
        yield server
    finally:
        server.close()


def pdf_label(text: str, width_mm: float = 75, height_mm: float = 120, title: str = "OZON 12345678-0001-1") -> bytes:
    """An Ozon-style PDF label: a caption and a Code 128 of the posting number (reportlab)."""
    from reportlab.graphics.barcode import code128
    from reportlab.lib.units import mm
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(width_mm * mm, height_mm * mm))
    c.setFont("Helvetica-Bold", 9 if width_mm < 60 else 14)
    c.drawString(3 * mm, (height_mm - 8) * mm, title)
    probe = code128.Code128(text, barWidth=1, quiet=False)
    bar_width = min(0.5 * mm, (width_mm - 8) * mm / probe.width)
    bc = code128.Code128(text, barWidth=bar_width, barHeight=min(25, height_mm / 3) * mm, quiet=False)
    bc.drawOn(c, 4 * mm, height_mm * mm / 2 - 10 * mm)
    c.drawString(4 * mm, 4 * mm, text)
    c.showPage()
    c.save()
    return buf.getvalue()


def wb_png(text: str, module_px: int = 3, size: tuple[int, int] = (580, 400)) -> bytes:
    """A Wildberries-style 58x40 sticker PNG (580x400 px): Code 128 bars and the order number."""
    img = Image.new("L", size, 255)
    draw = ImageDraw.Draw(img)
    row = symbol_bits("code128", text)[0]
    x0 = (size[0] - len(row) * module_px) // 2
    for i, dark in enumerate(row):
        if dark:
            draw.rectangle([x0 + i * module_px, 60, x0 + (i + 1) * module_px - 1, 260], fill=0)
    draw.text((40, 290), f"WB {text}", fill=0)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def wb_svg(text: str, module: float = 3.0) -> bytes:
    """A Wildberries-style SVG sticker: the bars as <rect>s in a 580x400 viewBox, with text."""
    row = symbol_bits("code128", text)[0]
    x0 = (580 - len(row) * module) / 2
    rects = []
    i = 0
    while i < len(row):
        if row[i]:
            j = i
            while j < len(row) and row[j]:
                j += 1
            rects.append(f'<rect x="{x0 + i * module}" y="60" width="{(j - i) * module}" height="200" fill="#000"/>')
            i = j
        else:
            i += 1
    body = "".join(rects)
    return (f'<?xml version="1.0" encoding="UTF-8"?><svg xmlns="http://www.w3.org/2000/svg" width="580" height="400" '
            f'viewBox="0 0 580 400"><rect width="580" height="400" fill="white"/><g>{body}</g>'
            f'<text x="290" y="320" font-size="36" text-anchor="middle">{text}</text></svg>').encode()


def wb_zpl(text: str, qr: str | None = None) -> bytes:
    """A Wildberries-style 58x40 ZPL sticker (203 dpi): box, caption, Code 128, optional QR."""
    zpl = ("^XA^CI28^PW464^LL320^LH0,0^FO8,8^GB448,304,3^FS^FO24,20^A0N,28,28^FDWB заказ^FS"
           f"^BY2,3,120^FO40,60^BCN,120,Y,N,N^FD{text}^FS")
    if qr:
        zpl += f"^FO330,200^BQN,2,3^FDQA,{qr}^FS"
    return (zpl + "^XZ").encode("utf-8")


def decode_png(path) -> list[str]:
    import zxingcpp

    image = np.asarray(Image.open(path).convert("L"))
    return [b.text for b in zxingcpp.read_barcodes(image, text_mode=zxingcpp.TextMode.Plain)]


@pytest.fixture
def make():
    """The label makers and helpers above, for tests (pytest's importlib mode cannot import conftest)."""
    import types

    return types.SimpleNamespace(pdf_label=pdf_label, wb_png=wb_png, wb_svg=wb_svg, wb_zpl=wb_zpl,
                                 decode_png=decode_png, TcpPrinter=TcpPrinter)
