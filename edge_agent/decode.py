"""Barcode decoding for images and camera frames, and `marketsync decode FILE...`.

Owns `decode_image(array)` (zxing-cpp over several passes: as is, then another binarizer, bars turned upright,
local contrast, adaptive black-and-white, label quadrilaterals warped flat, scaled
and sharpened copies, until something reads; raw text with GS1 group separators kept as \\x1d) and the
command, which prints one JSON line per file: {"file", "symbols": [{"format", "text"}]} plus "error"
when a file cannot be read or holds no barcode.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from edge_agent.devices.base import need
from edge_agent.labels import PDFIUM_LOCK


@dataclass(frozen=True)
class Symbol:
    """One decoded barcode: its format ("Code128", "EAN13", "DataMatrix", "QRCode"...) and text."""

    format: str
    text: str
    gs1: bool = False


def _zx() -> Any:
    return need("zxingcpp", "barcode decoding", "zxing-cpp")


def _fmt_name(fmt: Any) -> str:
    return getattr(fmt, "name", None) or str(fmt).split(".")[-1].replace(" ", "")


def _text(barcode: Any) -> str:
    """The raw payload as text: bytes decoded by the symbol's own character set (zxing's Plain text)."""
    return barcode.text


CAMERA_FORMATS = ("DataMatrix", "Code128", "EAN13", "EAN8", "UPCA", "QRCode")
LINEAR = ("Code128", "EAN13", "EAN8", "UPCA")
SMALL_FRAME = 800 * 600  # pixels: a still frame up to this size gets the thorough pass whole
FEATURELESS = 8  # levels: a still frame whose thumbnail spans less holds no code (no thorough pass, which
# on a 1280x720 frame costs ~0.25 s of the core and ~15 MB of frame-sized copies for nothing)


def _read(zx: Any, image: np.ndarray, binarizer: Any, fast: bool) -> list[Any]:
    """One zxing-cpp pass. The camera's fast pass looks only for the symbologies parcels and marking
    codes use (about twice the frame rate); the thorough pass looks for every format."""
    kwargs: dict[str, Any] = {}
    if fast:
        kwargs["formats"] = tuple(getattr(zx.BarcodeFormat, name) for name in CAMERA_FORMATS)
    return zx.read_barcodes(image, try_rotate=True, try_downscale=True, try_invert=not fast,
                            text_mode=zx.TextMode.Plain, binarizer=binarizer, **kwargs)


def _to_gray(image: Any) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 3:
        cv2 = need("cv2", "barcode decoding", "opencv-python-headless")
        code = cv2.COLOR_BGRA2GRAY if arr.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        arr = cv2.cvtColor(arr, code)
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _rotated(gray: np.ndarray, angle: float, scale: float = 1.0) -> np.ndarray:
    """`gray` turned by `angle` degrees (counter-clockwise) on a canvas big enough for all of it."""
    cv2 = need("cv2", "barcode decoding", "opencv-python-headless")
    h, w = gray.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, scale)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(h * s + w * c), int(h * c + w * s)
    m[0, 2] += nw / 2 - w / 2
    m[1, 2] += nh / 2 - h / 2
    return cv2.warpAffine(gray, m, (nw, nh), flags=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def bar_angle(gray: np.ndarray) -> float:
    """The dominant edge direction of the picture, in degrees: for a linear code, the direction across
    its bars (the strongest 3% of the gradients, averaged on the doubled angle so opposite edges agree).
    Gradients are kept as 16-bit integers and the threshold is found on a sample (no sorted copy of
    a whole frame: memory a Raspberry Pi does not have to spare)."""
    cv2 = need("cv2", "barcode decoding", "opencv-python-headless")
    gx = cv2.Sobel(gray, cv2.CV_16S, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_16S, 0, 1, ksize=3)
    mag = cv2.magnitude(gx.astype(np.float32), gy.astype(np.float32))
    strong = mag > np.percentile(mag[::3, ::3], 97)
    if not strong.any():
        return 0.0
    sx, sy, weight = gx[strong].astype(np.float32), gy[strong].astype(np.float32), mag[strong]
    double = np.arctan2(sy, sx) * 2
    return float(np.degrees(np.arctan2((np.sin(double) * weight).sum(), (np.cos(double) * weight).sum()) / 2))


def aligned_bars(gray: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """The picture turned so a linear code's bars stand upright, smoothed along the bars (noise and
    blur along them go, the widths stay) and sharpened across them."""
    cv2 = need("cv2", "barcode decoding", "opencv-python-headless")
    upright = _rotated(gray, bar_angle(gray), scale)
    along = cv2.blur(upright, (1, 15))
    return cv2.addWeighted(along, 2.5, cv2.GaussianBlur(along, (0, 0), 2.5), -1.5, 0)


def local_contrast(gray: np.ndarray, radius: float = 12.0) -> np.ndarray:
    """Each pixel against its neighbourhood's mean and spread: a glare streak, a shadow or a faded
    print become the same full-contrast picture (worked in place: three frame-sized float buffers)."""
    cv2 = need("cv2", "barcode decoding", "opencv-python-headless")
    f = gray.astype(np.float32)
    f -= cv2.GaussianBlur(f, (0, 0), radius)
    spread = cv2.multiply(f, f)
    cv2.GaussianBlur(spread, (0, 0), radius, dst=spread)
    cv2.sqrt(spread, spread)
    spread += 4.0
    cv2.divide(f, spread, f, scale=60.0)
    del spread
    f += 128.0
    np.clip(f, 0, 255, out=f)
    return f.astype(np.uint8)


def quadrilaterals(gray: np.ndarray, limit: int = 3, min_share: float = 0.01) -> list[np.ndarray]:
    """Bright four-cornered shapes (labels, stickers) big enough to hold a code, largest first, as
    4x2 corner arrays (top-left, top-right, bottom-right, bottom-left)."""
    cv2 = need("cv2", "barcode decoding", "opencv-python-headless")
    _, mask = cv2.threshold(cv2.GaussianBlur(gray, (5, 5), 0), 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((9, 9), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    area_min = gray.size * min_share
    quads = []
    for c in sorted(contours, key=cv2.contourArea, reverse=True)[:8]:
        if cv2.contourArea(c) < area_min:
            break
        approx = cv2.approxPolyDP(c, 0.03 * cv2.arcLength(c, True), True)
        if len(approx) == 4 and cv2.isContourConvex(approx):
            pts = approx.reshape(4, 2).astype(np.float32)
            by_sum, by_diff = pts.sum(axis=1), np.diff(pts, axis=1).ravel()
            quads.append(np.float32([pts[by_sum.argmin()], pts[by_diff.argmin()], pts[by_sum.argmax()],
                                     pts[by_diff.argmax()]]))
        if len(quads) >= limit:
            break
    return quads


def rectified(gray: np.ndarray, quad: np.ndarray, min_side: int = 300) -> np.ndarray:
    """The inside of a quadrilateral seen at an angle, warped back to a rectangle (enlarged to at
    least `min_side` pixels on its short side, so a small label's modules get room)."""
    cv2 = need("cv2", "barcode decoding", "opencv-python-headless")
    tl, tr, br, bl = quad
    w = max(np.linalg.norm(tr - tl), np.linalg.norm(br - bl))
    h = max(np.linalg.norm(bl - tl), np.linalg.norm(br - tr))
    k = max(1.0, min_side / max(1.0, min(w, h)))
    w, h = int(w * k), int(h * k)
    dst = np.float32([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]])
    warp = cv2.warpPerspective(gray, cv2.getPerspectiveTransform(quad, dst), (w, h), flags=cv2.INTER_CUBIC)
    return cv2.copyMakeBorder(warp, 16, 16, 16, 16, cv2.BORDER_REPLICATE)


def adaptive_binary(gray: np.ndarray, block: int) -> np.ndarray:
    """Black and white by each pixel's `block`-wide neighbourhood (uneven light, glare)."""
    cv2 = need("cv2", "barcode decoding", "opencv-python-headless")
    return cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY, block, 3)


def decode_image(image: Any, thorough: bool = True) -> list[Symbol]:
    """Every barcode in a picture (numpy gray/BGR array or PIL image), each once.

    `thorough=False` is the camera's fast path: one pass per frame. The thorough path adds passes,
    cheapest and likeliest first, until one reads: another binarizer; the picture turned so a linear
    code's bars stand upright (any angle, smoothed along the bars); local contrast (glare, shadows,
    faded print); adaptive black-and-white; each label-like quadrilateral warped flat (perspective)
    and enlarged; upscaled (small codes), sharpened, CLAHE, mirrored and downscaled copies.
    """
    zx = _zx()
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("L"))
    gray = _to_gray(image)
    found: dict[tuple[str, str], Symbol] = {}

    def run(img: np.ndarray, binarizer: Any = None, fast: bool = False) -> None:
        for b in _read(zx, np.ascontiguousarray(img), binarizer or zx.Binarizer.LocalAverage, fast):
            text = _text(b)
            key = (_fmt_name(b.format), text)
            if key not in found:
                found[key] = Symbol(key[0], text, b.symbology_identifier in ("]C1", "]d2", "]Q3", "]e0"))

    run(gray, fast=not thorough)
    if found or not thorough:
        return list(found.values())
    cv2 = need("cv2", "barcode decoding", "opencv-python-headless")
    h, w = gray.shape[:2]
    small = max(h, w) < 1200

    def rectify_each() -> None:
        for quad in quadrilaterals(gray):
            flat = rectified(gray, quad)
            run(flat)
            if not found:
                run(aligned_bars(flat))
            if found:
                return

    passes: list[Any] = [
        lambda: run(gray, zx.Binarizer.GlobalHistogram),
        lambda: run(aligned_bars(gray)),
        lambda: run(local_contrast(gray)),
        lambda: run(adaptive_binary(gray, 51), zx.Binarizer.BoolCast),
        lambda: run(adaptive_binary(gray, 15), zx.Binarizer.BoolCast),
        rectify_each,
        lambda: run(local_contrast(gray, 6.0)),
        lambda: run(gray[:, ::-1], zx.Binarizer.LocalAverage),
    ]
    if small:
        passes += [lambda: run(aligned_bars(gray, 2.0))]
        big = cv2.resize(gray, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        passes += [lambda: run(big), lambda: run(big, zx.Binarizer.GlobalHistogram)]
    blur = cv2.GaussianBlur(gray, (0, 0), 2.0)
    sharp = cv2.addWeighted(gray, 2.0, blur, -1.0, 0)
    passes += [lambda: run(sharp)]
    clahe = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8)).apply(gray)
    passes += [lambda: run(clahe), lambda: run(clahe, zx.Binarizer.GlobalHistogram)]
    for scale in (0.5, 0.75):
        passes.append(lambda scale=scale: run(cv2.resize(gray, None, fx=scale, fy=scale,
                                                          interpolation=cv2.INTER_AREA)))
    for step in passes:
        step()
        if found:
            break
    return list(found.values())


@dataclass
class FrameStats:
    """What a FrameDecoder did with its frames (the bench and the tests read it)."""

    frames: int = 0
    full: int = 0  # whole-frame passes
    regions: int = 0  # frames read only where the codes were
    still: int = 0  # frames skipped: nothing moved since the last one read
    thorough: int = 0  # thorough passes on a still picture that the fast pass could not read


class FrameDecoder:
    """The camera's decoding of a stream of frames, cheaper than one whole-frame pass per frame:

    - a frame that did not change since the last one read (a tiny thumbnail compared) keeps the
      last result;
    - where codes were read, the next frames are read only in those regions (with a margin for the
      parcel moving), and the whole frame again every `full_every` frames or as soon as a code is lost,
      so a new code elsewhere is found within a few frames;
    - a picture held still that the fast pass cannot read gets the thorough pass once (a hard code
      held up to the camera is read as `marketsync decode` reads it), unless there is nothing in it
      (`FEATURELESS`).
    """

    def __init__(self, full_every: int = 6, thorough_when_still: bool = True, margin: float = 0.35) -> None:
        self.full_every = max(1, full_every)
        self.thorough_when_still = thorough_when_still
        self.margin = margin
        self.stats = FrameStats()
        self._thumb: np.ndarray | None = None
        self._last: list[Symbol] = []
        self._boxes: list[tuple[int, int, int, int, str]] = []
        self._since_full = 0
        self._thorough_done = False

    def _thumbnail(self, gray: np.ndarray) -> np.ndarray:
        cv2 = need("cv2", "barcode decoding", "opencv-python-headless")
        return cv2.resize(gray[::2, ::2], (160, 90), interpolation=cv2.INTER_AREA).astype(np.int16)

    def _read(self, zx: Any, gray: np.ndarray, offset: tuple[int, int] = (0, 0), fmt: str | None = None,
              turned: bool = False, upright: bool = False) -> list[tuple[Symbol, tuple]]:
        """Codes in `gray` with their boxes in frame coordinates. `fmt`: look for that one symbology;
        `upright`: a linear code known to lie along the rows (no 90-degree pass); `turned`: `gray` is
        the region transposed and flipped (a vertical linear code laid along the rows)."""
        if fmt is None:
            barcodes = _read(zx, np.ascontiguousarray(gray), zx.Binarizer.LocalAverage, True)
        else:
            barcodes = zx.read_barcodes(np.ascontiguousarray(gray), formats=getattr(zx.BarcodeFormat, fmt),
                                        try_rotate=not upright, try_downscale=fmt not in LINEAR, try_invert=False,
                                        text_mode=zx.TextMode.Plain)
        n = gray.shape[1]
        out = []
        for b in barcodes:
            p = b.position
            pts = [(pt.x, pt.y) for pt in (p.top_left, p.top_right, p.bottom_right, p.bottom_left)]
            if turned:  # back from the transposed-and-flipped region
                pts = [(y, n - 1 - x) for x, y in pts]
            xs = [x + offset[0] for x, _ in pts]
            ys = [y + offset[1] for _, y in pts]
            sym = Symbol(_fmt_name(b.format), _text(b), b.symbology_identifier in ("]C1", "]d2", "]Q3", "]e0"))
            out.append((sym, (min(xs), min(ys), max(xs), max(ys), sym.format)))
        return out

    def _full(self, zx: Any, gray: np.ndarray) -> list[Symbol]:
        self.stats.full += 1
        self._since_full = 0
        hits = self._read(zx, gray)
        self._boxes = [box for _, box in hits]
        return _unique(sym for sym, _ in hits)

    def decode(self, frame: Any) -> list[Symbol]:
        """The codes in this frame (each once)."""
        zx = _zx()
        gray = _to_gray(frame)
        self.stats.frames += 1
        thumb = self._thumbnail(gray)
        if self._thumb is not None and thumb.shape == self._thumb.shape \
                and int(np.abs(thumb - self._thumb).max()) < 14:
            self.stats.still += 1
            if not self._last and self.thorough_when_still and not self._thorough_done:
                self._thorough_done = True
                if int(thumb.max()) - int(thumb.min()) < FEATURELESS:  # a blank wall, a covered lens, the dark
                    return self._last
                self.stats.thorough += 1
                self._last = self._thorough(gray)
            return self._last
        self._thumb, self._thorough_done = thumb, False
        self._since_full += 1
        if self._boxes and self._since_full < self.full_every:
            result = self._regions(zx, gray)
            if result is not None:
                self._last = result
                return result
        self._last = self._full(zx, gray)
        return self._last

    def _thorough(self, gray: np.ndarray) -> list[Symbol]:
        """The thorough pass on a still frame: a frame up to SMALL_FRAME pixels whole; a bigger one label
        by label first (each bright quadrilateral cut out with a margin: a fraction of the work and of the
        frame-sized copies), then whole."""
        h, w = gray.shape
        if h * w <= SMALL_FRAME:
            return decode_image(gray, thorough=True)
        for quad in quadrilaterals(gray, limit=4, min_share=0.002):
            (x0, y0), (x1, y1) = quad.min(axis=0), quad.max(axis=0)
            if (x1 - x0) * (y1 - y0) > h * w / 2:  # the frame itself, not a label in it
                continue
            mx, my = (x1 - x0) * 0.1 + 8, (y1 - y0) * 0.1 + 8
            crop = gray[max(0, int(y0 - my)):min(h, int(y1 + my)), max(0, int(x0 - mx)):min(w, int(x1 + mx))]
            found = decode_image(crop, thorough=True)
            if found:
                return found
        return decode_image(gray, thorough=True)

    def _regions(self, zx: Any, gray: np.ndarray) -> list[Symbol] | None:
        """The codes read where they were last seen; None when one of them is lost there."""
        h, w = gray.shape
        hits: list[tuple[Symbol, tuple]] = []
        for x0, y0, x1, y1, fmt in self._boxes:
            mx, my = int((x1 - x0) * self.margin) + 24, int((y1 - y0) * self.margin) + 24
            ax, ay = max(0, x0 - mx), max(0, y0 - my)
            crop = gray[ay:min(h, y1 + my), ax:min(w, x1 + mx)]
            bw, bh = x1 - x0, y1 - y0
            if fmt in LINEAR and bh > 1.5 * bw:  # a vertical linear code: lay it along the rows
                got = self._read(zx, crop.T[:, ::-1], (ax, ay), fmt, turned=True, upright=True)
            else:
                got = self._read(zx, crop, (ax, ay), fmt, upright=fmt in LINEAR and bw > 1.5 * bh)
            if not got:
                return None
            hits += got
        self.stats.regions += 1
        self._boxes = [box for _, box in hits]
        return _unique(sym for sym, _ in hits)


def _unique(symbols: Any) -> list[Symbol]:
    out: list[Symbol] = []
    for sym in symbols:
        if sym not in out:
            out.append(sym)
    return out


def load_image(path: str) -> np.ndarray:
    """A picture file as a grayscale array (PNG, JPEG, WebP, BMP, TIFF, GIF); raises ValueError."""
    cv2 = need("cv2", "barcode decoding", "opencv-python-headless")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE) if data.size else None
    if image is None:
        try:
            with Image.open(path) as pic:
                image = np.asarray(pic.convert("L"))
        except (UnidentifiedImageError, OSError) as exc:
            raise ValueError(f"not an image this box can read: {exc}") from exc
    return image


NO_BARCODE = "no barcode found"


def pdf_pages(path: str, dpi: int = 300, max_pages: int = 20) -> list[np.ndarray]:
    """The pages of a PDF (a marketplace label) as grayscale pictures; raises ValueError."""
    pdfium = need("pypdfium2", "PDF decoding", "pypdfium2")
    with PDFIUM_LOCK:  # pdfium is not thread-safe
        try:
            pdf = pdfium.PdfDocument(path)
        except Exception as exc:  # PdfiumError
            raise ValueError(f"not a PDF this box can read: {exc}") from exc
        try:
            return [np.asarray(pdf[i].render(scale=dpi / 72, grayscale=True).to_pil().convert("L"))
                    for i in range(min(len(pdf), max_pages))]
        finally:
            pdf.close()


def decode_file(path: str) -> dict[str, Any]:
    """One file (a picture or a PDF) -> the JSON object the decode command prints for it."""
    result: dict[str, Any] = {"file": path, "symbols": []}
    try:
        with open(path, "rb") as fh:
            is_pdf = fh.read(5) == b"%PDF-"
        images = pdf_pages(path) if is_pdf else [load_image(path)]
    except FileNotFoundError:
        result["error"] = "file not found"
        return result
    except IsADirectoryError:
        result["error"] = "is a directory, not a file"
        return result
    except (OSError, ValueError) as exc:
        result["error"] = str(exc)
        return result
    symbols: list[Symbol] = []
    for image in images:
        symbols += [s for s in decode_image(image) if s not in symbols]
    result["symbols"] = [{"format": s.format, "text": s.text} for s in symbols]
    if not symbols:
        result["error"] = NO_BARCODE
    return result


def main(argv: list[str]) -> int:
    """`marketsync decode FILE...`: one JSON line per file. Exit 0 when every file could be read (a
    picture without a barcode is a result, `"symbols": []`), 1 when some file could not be read at all."""
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: marketsync decode FILE...\n\nprints one JSON line per file: "
              '{"file": ..., "symbols": [{"format": ..., "text": ...}]} (GS1 separators as \\u001d)')
        return 0 if argv else 2
    ok = True
    for path in argv:
        result = decode_file(path)
        ok = ok and result.get("error") in (None, NO_BARCODE)
        sys.stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    return 0 if ok else 1
