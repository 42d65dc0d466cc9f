"""Round trip of every label kind: made here (no marketplace sandbox), prepared for each printer
language, sizes and resolutions, "printed" on the virtual printer (which draws the job from the bytes it
would send), and decoded back from the printed PNG with zxing-cpp to the expected text.
Physical printers are replaced by the virtual printer, since none is attached to this machine."""

from __future__ import annotations

import os

import pytest

from edge_agent.devices import PrinterError
from edge_agent.devices.printers import open_printer
from edge_agent.devices.zpl_render import render_zpl
from edge_agent.labels import LabelError, own_label, prepare_label

LANGS = ("raster", "zpl", "tspl", "escpos")
SIZES = ((58, 40), (40, 30), (75, 120))


def printer(tmp_path, language, dpi=203, size=(58, 40)):
    return open_printer({"kind": "virtual", "name": f"p-{language}", "language": language, "dpi": dpi,
                         "width_mm": size[0], "height_mm": size[1], "out_dir": str(tmp_path / language)})


@pytest.mark.parametrize("language", LANGS)
@pytest.mark.parametrize("dpi", (203, 300))
@pytest.mark.parametrize("size", SIZES)
def test_ozon_pdf_round_trip(make, tmp_path, language, dpi, size):
    text = "87654321" if size == (40, 30) else "12345678-0001-1"
    p = printer(tmp_path, language, dpi, size)
    job = prepare_label(make.pdf_label(text, *size), "pdf", p.profile)
    assert job.language == language and (job.width_dots, job.height_dots) == (p.profile.width_dots, p.profile.height_dots)
    p.send(job)
    assert make.decode_png(p.last_png) == [text]


@pytest.mark.parametrize("language", LANGS)
@pytest.mark.parametrize("dpi", (203, 300))
def test_wb_png_svg_round_trip(make, tmp_path, language, dpi):
    p = printer(tmp_path, language, dpi)
    for fmt, data, text in (("png", make.wb_png("WB1234567890"), "WB1234567890"), ("svg", make.wb_svg("SVG-98765"), "SVG-98765")):
        p.send(prepare_label(data, fmt, p.profile))
        assert make.decode_png(p.last_png) == [text], fmt


def test_wb_png_on_small_label(make, tmp_path):
    p = printer(tmp_path, "tspl", 203, (40, 30))
    p.send(prepare_label(make.wb_png("4000123", size=(400, 300), module_px=4), "png", p.profile))
    assert make.decode_png(p.last_png) == ["4000123"]


def test_zpl_passes_through_to_zpl_printer(make, tmp_path):
    data = make.wb_zpl("WB555000111", qr="https://example.test/s/1")
    p = printer(tmp_path, "zpl")
    job = prepare_label(data, "zpl", p.profile)
    assert job.payload == data  # untouched
    p.send(job)
    assert sorted(make.decode_png(p.last_png)) == sorted(["WB555000111", "https://example.test/s/1"])


@pytest.mark.parametrize("language", ("raster", "tspl", "escpos"))
def test_zpl_drawn_for_other_printers(make, tmp_path, language):
    p = printer(tmp_path, language, 300)
    p.send(prepare_label(make.wb_zpl("WB777"), "zpl", p.profile))
    assert make.decode_png(p.last_png) == ["WB777"]


def test_zpl_subset_renders_every_symbol(make, tmp_path):
    """^BE, ^BX with FNC1/GS escapes, ^BC with >8 (GS1-128), ^BQ and compressed ^GFA hex are drawn."""
    from edge_agent.devices.base import PrinterProfile

    prof = PrinterProfile("zpl", 203, 75, 120)
    zpl = ("^XA^PW600^LL960"
           "^FO20,20^BY3^BEN,100,Y,N^FD460123456789^FS"
           "^FO20,200^BXN,8,200,,,,_^FD_10104600439931256215Ks1234_191EE07_192abcd^FS"
           "^FO20,420^BY2^BCN,100,N^FD>;>80104600439931256>810ABC^FS"
           "^FO320,200^BQN,2,6^FDMA,HELLO QR^FS"
           "^FO20,600^GFA,8,8,1,FFJ0:FF,^FS"
           "^XZ")
    image = render_zpl(zpl, prof)
    import numpy as np
    import zxingcpp

    texts = sorted(b.text for b in zxingcpp.read_barcodes(np.asarray(image.convert("L")), text_mode=zxingcpp.TextMode.Plain))
    assert texts == sorted(["4601234567893", "0104600439931256215Ks1234\x1d91EE07\x1d92abcd",
                            "010460043993125610ABC", "HELLO QR"])
    # the 8-row graphic: FF, then 4 zero rows (J = 4 hex zeros... per row of 2 hex), repeated and empty rows
    arr = ~np.asarray(image)[600:608, 20:28]
    assert arr[0].all() and not arr[1].any()


@pytest.mark.parametrize("language", LANGS)
@pytest.mark.parametrize("dpi", (203, 300))
@pytest.mark.parametrize("size", SIZES)
def test_own_labels_round_trip(make, tmp_path, language, dpi, size):
    p = printer(tmp_path, language, dpi, size)
    cases = [("item", "4601234567893"), ("item", "ART-00017"), ("box", "BOX-2026-0042"),
             ("datamatrix", "0104600439931256215Ks1234\x1d91EE07\x1d92dGhpcyBpcyBhIHRlc3Q=")]
    for kind, text in cases:
        p.send(own_label(kind, text, "Футболка синяя, размер M", p.profile))
        assert make.decode_png(p.last_png) == [text], (kind, text)


def test_own_item_label_from_12_digits_adds_check_digit(make, tmp_path):
    p = printer(tmp_path, "raster")
    p.send(own_label("item", "460123456789", "", p.profile))
    assert make.decode_png(p.last_png) == ["4601234567893"]


def test_bad_labels_give_clear_errors(make, tmp_path):
    p = printer(tmp_path, "zpl", 203, (58, 40))
    with pytest.raises(LabelError, match="larger than the 58x40 mm"):
        prepare_label(b"^XA^PW1200^LL1800^FO10,10^A0N,30,30^FDbig^FS^XZ", "zpl", p.profile)
    with pytest.raises(LabelError, match="75x120 mm label does not fit the 58x40 mm"):
        prepare_label(make.pdf_label("12345678-0001-1", 75, 120), "pdf", p.profile)
    with pytest.raises(LabelError, match="not a PDF"):
        prepare_label(b"hello", "pdf", p.profile)
    with pytest.raises(LabelError, match="cannot be opened"):
        prepare_label(b"%PDF-1.4 broken", "pdf", p.profile)
    with pytest.raises(LabelError, match="empty"):
        prepare_label(b"", "png", p.profile)
    with pytest.raises(LabelError, match="unknown label format"):
        prepare_label(b"x", "docx", p.profile)
    with pytest.raises(LabelError, match="EAN-13"):
        own_label("item", "4601234567890", "", p.profile)  # wrong check digit: refuse, don't print junk
    tspl_job = prepare_label(make.wb_png("X1"), "png", printer(tmp_path, "tspl").profile)
    with pytest.raises(PrinterError, match="speaks ZPL"):
        p.send(tspl_job)
    assert p.printed == []  # nothing half-printed


def test_prepared_labels_are_cached(make, tmp_path):
    p = printer(tmp_path, "zpl")
    data = make.pdf_label("CACHE-1", 58, 40)
    assert prepare_label(data, "pdf", p.profile) is prepare_label(data, "pdf", p.profile)


def test_label_cache_memory_is_bounded(make, tmp_path):
    """The cache counts what it really holds: each PDF label's raster (~0.6 MB at 75x120 mm, 203 dpi)
    besides its ZPL (~2 KB). Counting only the ZPL, a day of Ozon labels grew the box by ~300 MB per
    500 labels (bench/edge_pi.py) — far past a Raspberry Pi's budget."""
    from edge_agent import labels

    p = printer(tmp_path, "zpl", 203, (75, 120))
    for i in range(40):
        prepare_label(make.pdf_label(f"MEM-{i:04d}", 75, 120), "pdf", p.profile)
    with labels._CACHE_LOCK:  # a print worker of another test may be preparing labels ahead meanwhile
        held = sum(labels.cached_bytes(job) for job in labels._CACHE.values())
        counted = labels._CACHE_BYTES
    assert held == counted
    assert held <= labels._CACHE_MAX_BYTES <= 16 * 1024 * 1024
    assert len(labels._CACHE) >= 10  # still a cache: the labels ahead stay prepared


def test_zpl_field_typeset_puts_bars_on_the_baseline():
    """^FT places a barcode by the bottom of its bars (the interpretation line hangs below) and text by its baseline."""
    import numpy as np

    from edge_agent.devices.base import PrinterProfile

    prof = PrinterProfile("zpl", 203, 58, 40)
    bars = ~np.asarray(render_zpl("^XA^FT40,200^BY2^BCN,100,N^FDABC123^FS^XZ", prof))
    rows = np.where(bars.any(axis=1))[0]
    assert (rows.min(), rows.max()) == (100, 199)
    text = ~np.asarray(render_zpl("^XA^FT40,200^A0N,40,40^FDHHH^FS^XZ", prof))
    assert np.where(text.any(axis=1))[0].max() in (198, 199, 200)


def test_pdf_labels_render_from_several_threads_at_once(tmp_path):
    """pdfium is not thread-safe: the print worker and the labels rendered ahead render in threads of
    their own, so PDF rendering takes turns (without it this crashed the process: run in a child)."""
    import subprocess
    import sys
    import textwrap
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    code = textwrap.dedent(f"""
        import sys, threading
        sys.path.insert(0, {str(root / "tests" / "edge_devices")!r})
        from conftest import pdf_label
        from edge_agent.devices.base import PrinterProfile
        from edge_agent.labels import prepare_label
        profile = PrinterProfile("zpl", 203, 58, 40)
        pdfs = [pdf_label(f"{{10000000 + i}}-0001-1", 58, 40) for i in range(80)]
        jobs = []
        def work(k):
            jobs.extend(prepare_label(d, "pdf", profile) for d in pdfs[k::4])
        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print(len(jobs), len({{j.payload for j in jobs}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["80", "80"]
