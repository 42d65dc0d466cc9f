"""Barcode decoding speed and read rate.

Pinned to one core. 1. Frames per second decoding 1280x720 camera-like frames (a GS1 DataMatrix
marking code, a Code 128 and an EAN-13 on a grey desk with noise and blur, the parcel moving a little
every frame), with the camera's path (`decode.FrameDecoder`: regions of the last codes, a whole-frame
pass every few frames); beside it one fast whole-frame pass per frame (the camera path before it) and
zxing-cpp `read_barcodes` with its defaults.
2. Read rate with `marketsync decode`'s thorough path on the shared corpus (../shared/corpus/barcodes),
on the hard corpus in tests/edge_devices/hard_corpus (65 pictures + 8 negatives, generate.py) and on a
held-out hard set generated with another seed; baseline: one zxing-cpp `read_barcodes` call with
defaults, raw text. Expected payloads byte for byte; negatives must give nothing. pyzbar and OpenCV's
own detectors are measured for what they would add to it.

Run: .venv/bin/python bench/decode.py [--frames 120]
Last line: fps=X fps_before=X read_rate=Y hard=N/65 held_out=N/65 (read_rate: shared corpus positives).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import zxingcpp

from edge_agent import corpus
from edge_agent.barcodes import symbol_image
from edge_agent.decode import FrameDecoder, decode_image, load_image

ROOT = Path(__file__).resolve().parents[1]
HARD = ROOT / "tests" / "edge_devices" / "hard_corpus"

MARK = "0104600439931256215Ks1234\x1d91EE07\x1d92dGhpcyBpcyBhIHRlc3Q="


def frames(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    dm = np.asarray(symbol_image("datamatrix", MARK, 5).convert("L"))
    c128 = np.asarray(symbol_image("code128", "WB-ORDER-1234567", 3, 120).convert("L"))
    ean = np.asarray(symbol_image("ean13", "4601234567893", 3, 110).convert("L"))
    out = []
    for i in range(n):
        f = np.full((720, 1280), 150, np.uint8)
        for sym, (x, y) in ((dm, (80 + i % 40, 80)), (c128, (500, 120 + i % 30)), (ean, (420, 420))):
            f[y - 20:y + sym.shape[0] + 20, x - 20:x + sym.shape[1] + 20] = 235
            f[y:y + sym.shape[0], x:x + sym.shape[1]] = np.where(sym < 128, 30, 235)
        f = cv2.GaussianBlur(f, (0, 0), 0.8)
        f = np.clip(f.astype(np.int16) + rng.normal(0, 6, f.shape), 0, 255).astype(np.uint8)
        out.append(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    return out


def fps_of(fn, data: list[np.ndarray]) -> tuple[float, float]:
    fn(data[0])
    full = 0
    t = time.perf_counter()
    for f in data:
        texts = set(fn(f))
        full += {MARK, "WB-ORDER-1234567", "4601234567893"} <= texts
    return len(data) / (time.perf_counter() - t), full / len(data)


def second_decoders() -> dict[str, Callable[[np.ndarray], list[str]]]:
    """The other decoders this box could carry, measured for what they add (not used by the box
    unless they add reads): pyzbar (ZBar; needs Debian's libzbar0) and OpenCV's own detectors."""
    out: dict[str, Callable[[np.ndarray], list[str]]] = {}
    try:
        from pyzbar import pyzbar  # optional: measured only where installed

        out["pyzbar"] = lambda g: [r.data.decode("utf-8", "replace") for r in pyzbar.decode(g)]
    except (ImportError, OSError) as exc:
        print(f"pyzbar not measured: {exc}")
    bd = cv2.barcode.BarcodeDetector()

    def cv_barcode(g: np.ndarray) -> list[str]:
        ok, texts, *_ = bd.detectAndDecodeWithType(g) if hasattr(bd, "detectAndDecodeWithType") else (None, None)
        return [t for t in (texts or ()) if t]

    out["cv2.barcode.BarcodeDetector"] = cv_barcode
    qr = cv2.QRCodeDetectorAruco()

    def cv_qr(g: np.ndarray) -> list[str]:
        ok, texts, *_ = qr.detectAndDecodeMulti(g)
        return [t for t in (texts or ()) if t] if ok else []

    out["cv2.QRCodeDetectorAruco"] = cv_qr
    return out


def corpus_report(label: str, folder: Path, extra: dict[str, Callable[[np.ndarray], list[str]]]) -> int:
    samples = corpus.load(folder)
    positives = [s for s in samples if s.expected]
    negatives = [s for s in samples if not s.expected]
    images = {s.image: load_image(str(s.image)) for s in samples}
    ours_texts: dict[Path, list[str]] = {}

    def base_decode(path):
        return [b.text for b in zxingcpp.read_barcodes(images[path], text_mode=zxingcpp.TextMode.Plain)]

    def ours(path):
        ours_texts[path] = [s.text for s in decode_image(images[path])]
        return ours_texts[path]

    result = 0
    for name, fn in (("baseline zxing-cpp one call", base_decode), ("marketsync decode", ours)):
        t = time.perf_counter()
        ok_pos, _, fails = corpus.score(fn, positives)
        ok_neg, _, _ = corpus.score(fn, negatives)
        ms = (time.perf_counter() - t) * 1000 / len(samples)
        print(f"{label}, {name:<28} {ok_pos}/{len(positives)} read, {ok_neg}/{len(negatives)} negatives clean, "
              f"{ms:5.1f} ms/image; missed: {', '.join(s.image.name for s in fails) or '-'}")
        result = ok_pos
    for name, fn in extra.items():
        alone = sum(corpus.passes(s, fn(images[s.image])) for s in positives)
        adds = [s.image.name for s in positives
                if not corpus.passes(s, ours_texts[s.image]) and corpus.passes(s, ours_texts[s.image] + fn(images[s.image]))]
        false = [s.image.name for s in negatives if fn(images[s.image])]
        print(f"{label}, second decoder {name:<28} alone {alone}/{len(positives)}; adds to marketsync decode: "
              f"{len(adds)} ({', '.join(adds) or '-'}); false reads on negatives: {len(false)}")
    return result


def pin_one_core() -> str:
    """Run on one core, as the edge box's decoding would on a Raspberry Pi's spare core."""
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"pinned to core {core}"
    return "not pinned"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=120)
    args = ap.parse_args()
    print(pin_one_core())
    data = frames(args.frames)
    base = lambda f: [b.text for b in zxingcpp.read_barcodes(f, text_mode=zxingcpp.TextMode.Plain)]  # noqa: E731
    stateless = lambda f: [s.text for s in decode_image(f, thorough=False)]  # noqa: E731
    tracker = FrameDecoder()
    camera = lambda f: [s.text for s in tracker.decode(f)]  # noqa: E731
    b_fps, b_ok = fps_of(base, data)
    s_fps, s_ok = fps_of(stateless, data)
    f_fps, f_ok = fps_of(camera, data)
    st = tracker.stats
    print(f"1280x720 frames: baseline zxing-cpp defaults       {b_fps:6.1f} fps (all 3 codes read in {b_ok:.0%} of frames)")
    print(f"1280x720 frames: one fast pass per frame (before)  {s_fps:6.1f} fps (all 3 codes read in {s_ok:.0%} of frames)")
    print(f"1280x720 frames: camera path (FrameDecoder)        {f_fps:6.1f} fps (all 3 codes read in {f_ok:.0%} of frames; "
          f"{st.full} whole-frame passes, {st.regions} region-only, {st.still} still frames skipped)")

    extra = second_decoders()
    rate = 0.0
    if (corpus.DEFAULT_DIR / "MANIFEST.tsv").exists():
        samples = corpus.load()
        read = corpus_report("shared corpus", corpus.DEFAULT_DIR, extra)
        rate = read / sum(1 for s in samples if s.expected)
    hard = corpus_report("hard corpus (tests/)", HARD, extra)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, str(HARD / "generate.py"), "--out", tmp, "--seed", "20"], check=True,
                       capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
        held_out = corpus_report("hard corpus, held-out seed 20", Path(tmp), {})
    print(f"fps={f_fps:.1f} fps_before={s_fps:.1f} read_rate={rate:.3f} hard={hard}/65 held_out={held_out}/65")


if __name__ == "__main__":
    main()
