"""Scan-to-label latency at a packing station: from a scan event to the last byte written to the
printer backend, for an Ozon-style PDF label (rendered to ZPL ^GFA) and a Wildberries ZPL label
(passed through). The printer is a raw TCP 9100 server on 127.0.0.1 started here.

Run: .venv/bin/python bench/edge_scan_to_label.py [--n 200]
Baseline (same run): the naive path — PDF rendered at 4x and downscaled, Floyd-Steinberg dithered,
sent as uncompressed ^GFA hex in one write, rendered anew on every scan.
Last line: p99_ms=X (the worse p99 of the two labels with nothing pre-rendered: every scan is a new label).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from pathlib import Path

# the project first (run as a script, bench/ would stand first on the path)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.lib.tcp_printer import TcpPrinter  # noqa: E402
from edge_agent.devices.base import PrintJob  # noqa: E402
from edge_agent.devices.printers import open_printer  # noqa: E402
from edge_agent.devices.scanners import VirtualScanner  # noqa: E402
from edge_agent.labels import prepare_label  # noqa: E402


def ozon_pdf(posting: str) -> bytes:
    # lazy: reportlab is a cloud-side dependency; the edge bench needs it only to make its test PDF
    from reportlab.graphics.barcode import code128
    from reportlab.lib.units import mm
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(75 * mm, 120 * mm))
    c.setFont("Helvetica-Bold", 16)
    c.drawString(5 * mm, 110 * mm, "OZON  FBS")
    c.setFont("Helvetica", 10)
    for i, line in enumerate(("Склад: Хоругвино", "ПВЗ 1234, Москва", "Вес 0.4 кг", posting)):
        c.drawString(5 * mm, (100 - i * 6) * mm, line)
    bc = code128.Code128(posting, barWidth=0.4 * mm, barHeight=30 * mm, quiet=False)
    bc.drawOn(c, 5 * mm, 30 * mm)
    c.rect(3 * mm, 3 * mm, 69 * mm, 114 * mm)
    c.showPage()
    c.save()
    return buf.getvalue()


def wb_zpl(order: str) -> bytes:
    return (f"^XA^CI28^PW464^LL320^FO8,8^GB448,304,3^FS^FO24,20^A0N,28,28^FDWB {order}^FS"
            f"^BY2,3,140^FO40,70^BCN,140,Y,N,N^FD{order}^FS^XZ").encode()


def naive_job(pdf: bytes, printer) -> PrintJob:
    # lazy: the naive path's heavy parts load only when that baseline runs, as they would on the box
    import numpy as np
    import pypdfium2 as pdfium
    from PIL import Image

    prof = printer.profile
    doc = pdfium.PdfDocument(pdf)
    page = doc[0]
    img = page.render(scale=4).to_pil().convert("L")
    doc.close()
    img = img.resize((prof.width_dots, prof.height_dots), Image.Resampling.LANCZOS).convert("1")  # dithered

    bits = ~np.asarray(img, dtype=bool)
    packed = np.packbits(bits, axis=1)
    hexdata = packed.tobytes().hex().upper()
    total = packed.size
    zpl = f"^XA^FO0,0^GFA,{total},{total},{packed.shape[1]},{hexdata}^FS^XZ".encode()
    return PrintJob("zpl", zpl, prof.width_dots, prof.height_dots, prof.dpi)


def measure(name: str, labels: list[bytes], fmt: str, printer, prepare, warm: bool = False) -> list[float]:
    """Time from the scan event to send() returning, over one scan per label."""
    store = dict(enumerate(labels))
    if warm:
        for data in labels:
            prepare(data, fmt, printer)
    times: list[float] = []
    scanner = VirtualScanner("pack-1")
    started: dict[str, float] = {}

    def on_scan(event) -> None:
        job = prepare(store[int(event.text)], fmt, printer)
        printer.send(job)
        times.append((time.perf_counter() - started[event.text]) * 1000)

    scanner.start(on_scan)
    for i in range(len(labels)):
        started[str(i)] = time.perf_counter()
        scanner.feed(str(i))
    scanner.stop()
    times.sort()
    p = lambda q: times[min(len(times) - 1, int(q * len(times)))]  # noqa: E731
    print(f"{name:<44} n={len(times):4d} p50={p(0.5):7.2f} ms  p95={p(0.95):7.2f} ms  p99={p(0.99):7.2f} ms  "
          f"mean={statistics.mean(times):6.2f} ms")
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args()
    sink = TcpPrinter()
    zebra = open_printer({"kind": "zpl_tcp", "name": "zebra", "host": "127.0.0.1", "port": sink.port,
                          "width_mm": 75, "height_mm": 120, "dpi": 203})
    zebra58 = open_printer({"kind": "zpl_tcp", "name": "zebra58", "host": "127.0.0.1", "port": sink.port,
                            "width_mm": 58, "height_mm": 40, "dpi": 203})
    pdfs = [ozon_pdf(f"{10000000 + i}-0001-1") for i in range(args.n)]
    zpls = [wb_zpl(f"WB{400000000 + i}") for i in range(args.n)]
    prepare = lambda data, fmt, p: prepare_label(data, fmt, p.profile)  # noqa: E731
    naive = lambda data, fmt, p: naive_job(data, p) if fmt == "pdf" else PrintJob("zpl", data, 464, 320, 203)  # noqa: E731
    print(f"printer: ZPL over TCP 127.0.0.1:{sink.port}; labels: Ozon PDF 75x120 mm, WB ZPL 58x40 mm at 203 dpi")
    base_pdf = measure("baseline: PDF naive (4x render, dither, hex)", pdfs[: max(20, args.n // 4)], "pdf", zebra, naive)
    cold_pdf = measure("PDF -> ZPL ^GFA :Z64:, new label every scan", pdfs, "pdf", zebra, prepare)
    warm_pdf = measure("PDF -> ZPL, label pre-rendered when fetched", pdfs, "pdf", zebra, prepare, warm=True)
    cold_zpl = measure("WB ZPL passed through, new label every scan", zpls, "zpl", zebra58, prepare)
    job_pdf = prepare_label(pdfs[0], "pdf", zebra.profile)
    print(f"bytes per label: PDF->ZPL {len(job_pdf.payload)} (naive hex {len(naive_job(pdfs[0], zebra).payload)}), "
          f"WB ZPL {len(zpls[0])}; printer received {sink.bytes} bytes in total")
    p99 = lambda t: t[min(len(t) - 1, int(0.99 * len(t)))]  # noqa: E731
    print(f"baseline p99 {p99(base_pdf):.2f} ms; warm PDF p99 {p99(warm_pdf):.2f} ms")
    print(f"p99_ms={max(p99(cold_pdf), p99(cold_zpl)):.2f}")


if __name__ == "__main__":
    main()
