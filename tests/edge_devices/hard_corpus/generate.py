"""Generate the hard barcode corpus of this folder (deterministic: a fixed seed, same files every run).

The kinds of pictures a warehouse camera and `marketsync decode` meet that the shared reference set
(../shared/corpus/barcodes) has few of: codes rotated off the axes, perspective-warped labels, blurred
and low-contrast prints, small labels on a parcel photo, GS1 DataMatrix Честный знак codes on curved
packaging and under glossy film, and negatives (parcels, text, stripes and broken codes that must decode
to nothing). Every symbol is drawn by zxing-cpp's encoder (edge_agent.barcodes), then put on a
synthetic photo with OpenCV. The output is in the shared corpus's layout (MANIFEST.tsv, one .txt per
expected payload, "-" for a negative) so `edge_agent.corpus.load` reads it.

Run: PYTHONPATH=. .venv/bin/python tests/edge_devices/hard_corpus/generate.py [--out DIR]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from edge_agent.barcodes import GS, ean13_check_digit, symbol_image

HERE = Path(__file__).resolve().parent
SEED = 19


class Gen:
    """One random stream for the whole corpus: payloads, backgrounds and distortions."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def digits(self, n: int) -> str:
        return "".join(str(d) for d in self.rng.integers(0, 10, n))

    def chars(self, n: int, alphabet: str) -> str:
        return "".join(alphabet[i] for i in self.rng.integers(0, len(alphabet), n))

    # -- payloads ------------------------------------------------------------------------------

    def ean13(self) -> str:
        body = "460" + self.digits(9)
        return body + ean13_check_digit(body)

    def code128(self) -> str:
        kind = int(self.rng.integers(0, 3))
        if kind == 0:
            return f"{self.digits(8)}-{self.digits(4)}-{int(self.rng.integers(1, 4))}"  # an Ozon posting
        if kind == 1:
            return f"WB-GI-{self.digits(8)}"  # a WB supply
        return self.digits(10)  # a WB sticker number

    def marking(self) -> str:
        """A Честный знак code as the DataMatrix holds it: GTIN, serial, GS, key id (91), GS, crypto (92)."""
        gtin = "0" + self.ean13()
        b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        serial_abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!\"%&'*+-./_,:;=<>?"
        if self.rng.random() < 0.5:  # shoes, clothes: 13-char serial, 44-char crypto tail
            return f"01{gtin}21{self.chars(13, serial_abc)}{GS}91{self.chars(4, b64)}{GS}92{self.chars(44, b64)}"
        return f"01{gtin}21{self.chars(6, serial_abc)}{GS}93{self.chars(4, b64)}"  # milk, water: short code

    def qr(self) -> str:
        return f"WB-GI-{self.digits(8)}"

    # -- pictures ------------------------------------------------------------------------------

    def symbol(self, kind: str, text: str, module: int) -> np.ndarray:
        """The symbol on white with a quiet zone, 0/255 gray."""
        height = module * 40 if kind in ("code128", "ean13") else None
        sym = np.asarray(symbol_image(kind, text, module, height).convert("L"))
        quiet = module * (10 if kind in ("code128", "ean13") else 3)
        return cv2.copyMakeBorder(sym, quiet, quiet, quiet, quiet, cv2.BORDER_CONSTANT, value=255)

    def label(self, sym: np.ndarray, caption: str = "") -> np.ndarray:
        """A white sticker around the symbol with a caption line below it."""
        h, w = sym.shape
        lab = np.full((h + 60, w + 40), 250, np.uint8)
        lab[20:20 + h, 20:20 + w] = sym
        if caption:
            cv2.putText(lab, caption, (24, h + 48), cv2.FONT_HERSHEY_SIMPLEX, 0.8, 40, 2, cv2.LINE_AA)
        return lab

    def parcel(self, w: int, h: int) -> np.ndarray:
        """A cardboard parcel photo: low-frequency shading, fibre grain, a tape strip and some print."""
        low = cv2.resize(self.rng.normal(0, 1, (6, 8)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        grain = cv2.GaussianBlur(self.rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), 1.2)
        img = 150 + 14 * low + 10 * grain
        y = int(self.rng.integers(h // 5, 4 * h // 5))
        img[y:y + h // 8] += 35  # packing tape, brighter and smooth
        img = np.clip(img, 0, 255).astype(np.uint8)
        for _ in range(3):
            x0, y0 = int(self.rng.integers(0, w - 200)), int(self.rng.integers(30, h - 10))
            cv2.putText(img, self.chars(8, "ABCDEFGHJKLMNPRSTUVWXYZ0123456789"), (x0, y0),
                        cv2.FONT_HERSHEY_SIMPLEX, float(self.rng.uniform(0.6, 1.4)), 70, 2, cv2.LINE_AA)
        grad = np.linspace(1.0, float(self.rng.uniform(0.7, 1.0)), w, dtype=np.float32)[None, :]
        return np.clip(img * grad, 0, 255).astype(np.uint8)

    def paste(self, bg: np.ndarray, fg: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        """Warp `fg` onto `bg` by a 3x3 homography (what is outside `fg` keeps the background)."""
        h, w = bg.shape
        warped = cv2.warpPerspective(fg, matrix, (w, h), flags=cv2.INTER_AREA, borderValue=0)
        mask = cv2.warpPerspective(np.full(fg.shape, 255, np.uint8), matrix, (w, h), flags=cv2.INTER_LINEAR)
        alpha = mask.astype(np.float32) / 255
        return (bg * (1 - alpha) + warped * alpha).astype(np.uint8)

    def placed(self, fg: np.ndarray, size: tuple[int, int], angle: float = 0.0, scale: float = 1.0,
               tilt: float = 0.0) -> np.ndarray:
        """The homography that puts `fg` in the middle of a picture of `size`, rotated by `angle`
        degrees, scaled, and with its corners pulled by `tilt` (a fraction of its size) for perspective."""
        h, w = fg.shape
        src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
        pull = self.rng.uniform(-tilt, tilt, (4, 2)) * np.float32([w, h])
        if tilt:  # a label seen at an angle: one side nearer, shorter on the far side
            side = int(self.rng.integers(0, 4))
            a, b = side, (side + 1) % 4
            centre = src.mean(axis=0)
            for k in (a, b):
                pull[k] += (centre - src[k]) * tilt * 1.2
        dst = src + pull
        rot = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
        dst = cv2.transform(dst[None], rot)[0]
        dst += np.float32([size[0] / 2, size[1] / 2]) - dst.mean(axis=0)
        dst += self.rng.uniform(-0.08, 0.08, 2).astype(np.float32) * np.float32(size)
        return cv2.getPerspectiveTransform(src, dst.astype(np.float32))

    def camera(self, img: np.ndarray, blur: float = 0.6, noise: float = 4.0) -> np.ndarray:
        out = img.astype(np.float32)
        if blur:
            out = cv2.GaussianBlur(out, (0, 0), blur)
        out += self.rng.normal(0, noise, out.shape)
        return np.clip(out, 0, 255).astype(np.uint8)


def _jpeg(img: np.ndarray, quality: int = 85) -> bytes:
    ok, data = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return data.tobytes()


def _kind_text(g: Gen, kind: str) -> str:
    return {"code128": g.code128, "ean13": g.ean13, "datamatrix": g.marking, "qr": g.qr}[kind]()


SYMBOLOGY = {"code128": "Code128", "ean13": "EAN-13", "datamatrix": "GS1 DataMatrix (Честный знак)", "qr": "QR"}


def rotated(g: Gen, kind: str, i: int) -> tuple[np.ndarray, str, str]:
    text = _kind_text(g, kind)
    angle = float([17, 33, 48, 62, 118, 141, 163, 208, 231, 305][i % 10] + g.rng.uniform(-3, 3))
    lab = g.label(g.symbol(kind, text, 3 if kind in ("code128", "ean13") else 5))
    bg = g.parcel(800, 600)
    img = g.paste(bg, lab, g.placed(lab, (800, 600), angle, float(g.rng.uniform(0.7, 0.9))))
    return g.camera(img), text, f"rotated {angle:.0f} degrees on a parcel"


def perspective(g: Gen, kind: str, i: int) -> tuple[np.ndarray, str, str]:
    text = _kind_text(g, kind)
    tilt = float(0.16 + 0.02 * (i % 5))
    lab = g.label(g.symbol(kind, text, 3 if kind in ("code128", "ean13") else 5))
    bg = g.parcel(800, 600)
    angle = float(g.rng.uniform(-12, 12))
    img = g.paste(bg, lab, g.placed(lab, (800, 600), angle, 0.8, tilt))
    return g.camera(img), text, f"perspective-warped label (corner pull {tilt:.2f}), {angle:.0f} degrees"


def blurred(g: Gen, kind: str, i: int) -> tuple[np.ndarray, str, str]:
    text = _kind_text(g, kind)
    lab = g.label(g.symbol(kind, text, 4 if kind in ("code128", "ean13") else 6))
    bg = g.parcel(800, 600)
    img = g.paste(bg, lab, g.placed(lab, (800, 600), float(g.rng.uniform(-6, 6)), 0.75))
    if i % 2:
        length = 4 + i % 3  # along any direction; across the bars at most ~1.5 modules
        kernel = np.zeros((length, length), np.float32)
        kernel[length // 2, :] = 1.0 / length
        rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), float(g.rng.uniform(0, 180)), 1.0)
        kernel = cv2.warpAffine(kernel, rot, (length, length))
        kernel /= kernel.sum()
        return g.camera(cv2.filter2D(img, -1, kernel), 0), text, f"motion blur {length} px"
    sigma = 1.2 + 0.15 * (i % 5)
    return g.camera(img, blur=sigma), text, f"out of focus (gaussian sigma {sigma:.2f} px)"


def low_contrast(g: Gen, kind: str, i: int) -> tuple[np.ndarray, str, str]:
    text = _kind_text(g, kind)
    sym = g.symbol(kind, text, 3 if kind in ("code128", "ean13") else 5).astype(np.float32)
    dark, light = 150 - 4 * (i % 4), 190 + 3 * (i % 3)  # faded thermal print on grey paper
    lab = g.label((dark + (sym / 255) * (light - dark)).astype(np.uint8))
    lab[lab >= 250] = light
    bg = g.parcel(800, 600)
    img = g.paste(bg, lab, g.placed(lab, (800, 600), float(g.rng.uniform(-8, 8)), 0.8))
    shade = np.linspace(0.8, 1.1, 800, dtype=np.float32)[None, :]
    return g.camera(np.clip(img * shade, 0, 255).astype(np.uint8), noise=6), text, \
        f"low contrast: dark {dark} on light {light}, uneven light"


def small_on_parcel(g: Gen, kind: str, i: int) -> tuple[np.ndarray, str, str]:
    text = _kind_text(g, kind)
    lab = g.label(g.symbol(kind, text, 4), g.digits(6))
    module_px = 1.5 + 0.15 * (i % 5) + (0.5 if kind in ("datamatrix", "qr") else 0.0)
    scale = module_px / 4
    bg = g.parcel(1280, 960)
    img = g.paste(bg, lab, g.placed(lab, (1280, 960), float(g.rng.uniform(-15, 15)), scale, 0.05))
    return g.camera(img, blur=0.7), text, f"small label on a parcel photo 1280x960, {module_px:.2f} px per module"


def curved(g: Gen, kind: str, i: int) -> tuple[np.ndarray, str, str]:
    """A marking code on a bottle or can: the symbol wraps round a cylinder, shaded towards its edges."""
    text = g.marking()
    sym = g.symbol("datamatrix", text, 8)
    h, w = sym.shape
    radius_ratio = 0.62 + 0.07 * (i % 4)  # symbol width / cylinder circumference share: tighter is harder
    radius = w / (2 * radius_ratio * math.pi / 2)
    out_w = int(2 * radius * math.sin(w / (2 * radius))) + 2
    u = np.arange(out_w, dtype=np.float32) - out_w / 2
    theta = np.arcsin(np.clip(u / radius, -1, 1))
    src_x = (theta * radius + w / 2).astype(np.float32)
    map_x = np.repeat(src_x[None, :], h, axis=0)
    map_y = np.repeat(np.arange(h, dtype=np.float32)[:, None], out_w, axis=1)
    wrapped = cv2.remap(sym, map_x, map_y, cv2.INTER_LINEAR, borderValue=255).astype(np.float32)
    shade = (0.55 + 0.45 * np.cos(theta))[None, :]
    wrapped = wrapped * shade + 60 * (1 - shade)
    pack = np.full((h + 80, out_w + 60), 0, np.float32)
    pack[:] = (210 * (0.55 + 0.45 * np.cos(np.arcsin(np.clip((np.arange(out_w + 60) - (out_w + 60) / 2) / (radius + 30),
                                                                  -1, 1)))))[None, :]
    pack[40:40 + h, 30:30 + out_w] = wrapped
    bg = g.parcel(800, 600) // 2 + 40
    img = g.paste(bg, pack.astype(np.uint8), g.placed(pack.astype(np.uint8), (800, 600),
                                                       float(g.rng.uniform(-20, 20)), 0.55))
    return g.camera(img, blur=0.8), text, f"curved packaging: wraps {radius_ratio:.0%} of a half cylinder"


def glossy(g: Gen, kind: str, i: int) -> tuple[np.ndarray, str, str]:
    """A code under shrink film: a bright specular streak washes part of it out, the film ripples."""
    text = _kind_text(g, kind)
    lab = g.label(g.symbol(kind, text, 3 if kind == "ean13" else 6)).astype(np.float32)
    h, w = lab.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ripple = 1.0 + 0.4 * (i % 3)  # at most ~0.4 of a module: film, not a crumpled bag
    map_x = xx + ripple * np.sin(yy / 23.0 + i)
    map_y = yy + ripple * np.sin(xx / 31.0)
    lab = cv2.remap(lab, map_x, map_y, cv2.INTER_LINEAR, borderValue=250)
    cx, cy = float(g.rng.uniform(0.3, 0.7)) * w, float(g.rng.uniform(0.3, 0.7)) * h
    ang = float(g.rng.uniform(0, math.pi))
    dist = (xx - cx) * math.cos(ang) + (yy - cy) * math.sin(ang)
    strength = 0.6 + 0.05 * (i % 4)
    streak = np.exp(-(dist / (0.08 * max(w, h))) ** 2) * strength
    lab = lab + (255 - lab) * streak
    lab = lab * 0.85 + 20  # the film lowers contrast everywhere
    bg = g.parcel(800, 600)
    lab8 = np.clip(lab, 0, 255).astype(np.uint8)
    img = g.paste(bg, lab8, g.placed(lab8, (800, 600), float(g.rng.uniform(-25, 25)), 0.7, 0.06))
    return g.camera(img), text, f"glossy film: specular streak {strength:.0%}, ripple {ripple:.1f} px"


def negative(g: Gen, kind: str, i: int) -> tuple[np.ndarray, str, str]:
    bg = g.parcel(800, 600)
    what = i % 8
    if what == 0:
        return g.camera(bg), "", "bare parcel: cardboard, tape, print"
    if what == 1:  # stripes that look like bars but follow no symbology
        x = 200
        while x < 600:
            width = int(g.rng.integers(2, 12))
            bg[200:450, x:x + width] = 30
            x += width + int(g.rng.integers(2, 12))
        return g.camera(bg), "", "random stripes (bar-like, no symbology)"
    if what == 2:  # a random dot matrix with an L finder: looks like a DataMatrix, is none
        n = 20
        bits = g.rng.random((n, n)) < 0.5
        bits[:, 0] = True
        bits[-1, :] = True
        bits[0, ::2] = True
        bits[0, 1::2] = False
        bits[::2, -1] = False
        img = np.where(np.kron(bits, np.ones((8, 8), bool)), 20, 245).astype(np.uint8)
        lab = g.label(cv2.copyMakeBorder(img, 16, 16, 16, 16, cv2.BORDER_CONSTANT, value=245))
        return g.camera(g.paste(bg, lab, g.placed(lab, (800, 600), 10, 1.0))), "", "random dots with a finder L"
    if what == 3:  # a Code 128 cut in half by the label's edge
        sym = g.symbol("code128", g.code128(), 3)
        lab = g.label(sym[:, : sym.shape[1] // 2])
        return g.camera(g.paste(bg, lab, g.placed(lab, (800, 600), 0, 1.0))), "", "half of a Code 128 (cut off)"
    if what == 4:  # a DataMatrix with a third of it scratched away: beyond its error correction
        sym = g.symbol("datamatrix", g.marking(), 6).copy()
        h, w = sym.shape
        sym[h // 4: 3 * h // 4, w // 3: 2 * w // 3] = 255
        lab = g.label(sym)
        return g.camera(g.paste(bg, lab, g.placed(lab, (800, 600), 20, 1.0))), "", "DataMatrix torn beyond repair"
    if what == 5:
        lab = np.full((260, 520), 248, np.uint8)
        for row in range(6):
            cv2.putText(lab, g.chars(18, "ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789"), (10, 35 + row * 40),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.9, 30, 2, cv2.LINE_AA)
        return g.camera(g.paste(bg, lab, g.placed(lab, (800, 600), -5, 1.0))), "", "address label: text only"
    if what == 6:  # a checkerboard and a grid: strong edges, no code
        board = (np.indices((12, 16)).sum(axis=0) % 2 * 225 + 15).astype(np.uint8)
        board = np.kron(board, np.ones((14, 14), np.uint8))
        return g.camera(g.paste(bg, board, g.placed(board, (800, 600), 30, 1.0))), "", "checkerboard"
    sym = g.symbol("qr", g.qr(), 7).copy()  # a QR with its finder patterns painted over
    sym[: 7 * 10, : 7 * 10] = 255
    sym[-7 * 10:, : 7 * 10] = 255
    lab = g.label(sym)
    return g.camera(g.paste(bg, lab, g.placed(lab, (800, 600), 0, 1.0))), "", "QR with two finders covered"


PLAN: list[tuple[str, Callable[[Gen, str, int], tuple[np.ndarray, str, str]], list[str]]] = [
    ("rotated", rotated, ["code128", "ean13", "code128", "ean13", "datamatrix", "code128", "ean13", "qr",
                          "code128", "ean13"]),
    ("perspective", perspective, ["code128", "ean13", "datamatrix", "qr", "code128", "ean13", "datamatrix",
                                  "code128", "ean13", "qr"]),
    ("blurred", blurred, ["code128", "ean13", "datamatrix", "code128", "ean13", "qr", "code128", "ean13",
                          "datamatrix", "ean13"]),
    ("lowcontrast", low_contrast, ["code128", "ean13", "datamatrix", "qr", "code128", "ean13", "datamatrix",
                                   "code128"]),
    ("small", small_on_parcel, ["code128", "ean13", "datamatrix", "qr", "code128", "ean13", "datamatrix",
                                "code128", "ean13", "datamatrix"]),
    ("curved", curved, ["datamatrix"] * 9),
    ("glossy", glossy, ["datamatrix", "ean13", "datamatrix", "code128", "datamatrix", "datamatrix", "ean13",
                        "datamatrix"]),
    ("negative", negative, ["none"] * 8),
]


def generate(out: Path, seed: int = SEED) -> int:
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("*.jpg")) + list(out.glob("*.txt")):
        old.unlink()
    g = Gen(seed)
    rows = ["file\texpected_file\tsymbology\tnotes"]
    for group, make, kinds in PLAN:
        for i, kind in enumerate(kinds):
            img, text, notes = make(g, kind, i)
            stem = f"{group}__{i + 1:02d}_{kind}"
            (out / f"{stem}.jpg").write_bytes(_jpeg(img))
            if text:
                (out / f"{stem}.txt").write_bytes(text.encode("utf-8"))
                rows.append(f"{stem}.jpg\t{stem}.txt\t{SYMBOLOGY[kind]}\t{notes}")
            else:
                rows.append(f"{stem}.jpg\t-\tnone (negative)\t{notes}")
    (out / "MANIFEST.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return len(rows) - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args()
    print(f"{generate(args.out, args.seed)} pictures in {args.out}")


if __name__ == "__main__":
    main()
