"""Barcode decoding for images and camera frames, and `marketsync decode FILE...`.

Owns `decode_image(array)` (zxing-cpp over several passes: as is, then other binarizers, then scaled
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


def decode_image(image: Any, thorough: bool = True) -> list[Symbol]:
    """Every barcode in a picture (numpy gray/BGR array or PIL image), each once.

    `thorough=False` is the camera's fast path: one pass per frame. The thorough path adds passes that
    rescue hard pictures: other binarizers, upscaled small images, a sharpened copy, a mirrored copy.
    """
    zx = _zx()
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("L"))
    gray = _to_gray(image)
    found: dict[tuple[str, str], Symbol] = {}

    def run(img: np.ndarray, binarizer: Any, fast: bool = False) -> None:
        for b in _read(zx, img, binarizer, fast):
            text = _text(b)
            key = (_fmt_name(b.format), text)
            if key not in found:
                found[key] = Symbol(key[0], text, b.symbology_identifier in ("]C1", "]d2", "]Q3", "]e0"))

    run(gray, zx.Binarizer.LocalAverage, fast=not thorough)
    if found or not thorough:
        return list(found.values())
    cv2 = need("cv2", "barcode decoding", "opencv-python-headless")
    passes = [
        lambda: run(gray, zx.Binarizer.GlobalHistogram),
        lambda: run(np.ascontiguousarray(gray[:, ::-1]), zx.Binarizer.LocalAverage),
    ]
    h, w = gray.shape[:2]
    if max(h, w) < 1200:
        big = cv2.resize(gray, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        passes += [lambda: run(big, zx.Binarizer.LocalAverage), lambda: run(big, zx.Binarizer.GlobalHistogram)]
    blur = cv2.GaussianBlur(gray, (0, 0), 2.0)
    sharp = cv2.addWeighted(gray, 2.0, blur, -1.0, 0)
    passes += [lambda: run(sharp, zx.Binarizer.LocalAverage)]
    clahe = cv2.createCLAHE(clipLimit=3.0, tileGridSize=(8, 8)).apply(gray)
    passes += [lambda: run(clahe, zx.Binarizer.LocalAverage), lambda: run(clahe, zx.Binarizer.GlobalHistogram)]
    for scale in (0.5, 0.75):
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        passes.append(lambda small=small: run(small, zx.Binarizer.LocalAverage))
    for step in passes:
        step()
        if found:
            break
    return list(found.values())


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
