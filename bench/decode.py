"""Barcode decoding speed and read rate.

1. Frames per second decoding 1280x720 camera-like frames (a GS1 DataMatrix marking code, a Code 128
   and an EAN-13 on a grey desk with noise and blur), with the camera's fast path
   (`decode_image(frame, thorough=False)`); baseline: zxing-cpp `read_barcodes` with its defaults.
2. Read rate on the shared corpus (../shared/corpus/barcodes; MANIFEST.tsv, .txt/.multi.txt expected
   payloads byte for byte, negatives must give nothing) with `marketsync decode`'s thorough path;
   baseline: one zxing-cpp `read_barcodes` call with defaults, raw text.

Run: .venv/bin/python bench/decode.py [--frames 60]
Last line: fps=X read_rate=Y (Y = positives read / positives; negatives are reported separately).
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
import zxingcpp

from edge_agent import corpus
from edge_agent.barcodes import symbol_image
from edge_agent.decode import decode_image, load_image

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=60)
    args = ap.parse_args()
    data = frames(args.frames)
    base = lambda f: [b.text for b in zxingcpp.read_barcodes(f, text_mode=zxingcpp.TextMode.Plain)]  # noqa: E731
    fast = lambda f: [s.text for s in decode_image(f, thorough=False)]  # noqa: E731
    b_fps, b_ok = fps_of(base, data)
    f_fps, f_ok = fps_of(fast, data)
    print(f"1280x720 frames: baseline zxing-cpp defaults {b_fps:6.1f} fps (all 3 codes read in {b_ok:.0%} of frames)")
    print(f"1280x720 frames: camera fast path          {f_fps:6.1f} fps (all 3 codes read in {f_ok:.0%} of frames)")

    samples = corpus.load()
    positives = [s for s in samples if s.expected]
    negatives = [s for s in samples if not s.expected]

    def base_decode(path):
        return [b.text for b in zxingcpp.read_barcodes(load_image(str(path)), text_mode=zxingcpp.TextMode.Plain)]

    def ours(path):
        return [s.text for s in decode_image(load_image(str(path)))]

    for name, fn in (("baseline zxing-cpp one call", base_decode), ("marketsync decode", ours)):
        t = time.perf_counter()
        ok_pos, _, fails = corpus.score(fn, positives)
        ok_neg, _, _ = corpus.score(fn, negatives)
        ms = (time.perf_counter() - t) * 1000 / len(samples)
        print(f"corpus, {name:<28} {ok_pos}/{len(positives)} read, {ok_neg}/{len(negatives)} negatives clean, "
              f"{ms:5.1f} ms/image; missed: {', '.join(s.image.name for s in fails) or '-'}")
        rate = ok_pos / len(positives)
    print(f"fps={f_fps:.1f} read_rate={rate:.3f}")


if __name__ == "__main__":
    main()
