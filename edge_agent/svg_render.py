"""A small SVG rasteriser for marketplace stickers (Wildberries sends SVG): enough SVG for labels.

Owns drawing rect, line, polyline, polygon, circle/ellipse, path (M/L/H/V/C/S/Q/T/Z, absolute and
relative; curves are flattened), text and embedded data: PNG/JPEG images, under nested transforms
(translate, scale, matrix, rotate), onto a grayscale PIL image at a given size. Documents with a DTD
or entities are refused (no entity expansion), as are documents that are not SVG.
"""

from __future__ import annotations

import base64
import io
import math
import re
import xml.etree.ElementTree as ET

from PIL import Image, ImageDraw

from edge_agent.devices.zpl_render import font


class SvgError(ValueError):
    """An SVG this renderer cannot draw."""


Matrix = tuple[float, float, float, float, float, float]  # a b c d e f: x' = a x + c y + e
_IDENT: Matrix = (1, 0, 0, 1, 0, 0)


def _mul(m: Matrix, n: Matrix) -> Matrix:
    a, b, c, d, e, f = m
    a2, b2, c2, d2, e2, f2 = n
    return (a * a2 + c * b2, b * a2 + d * b2, a * c2 + c * d2, b * c2 + d * d2, a * e2 + c * f2 + e,
            b * e2 + d * f2 + f)


def _apply(m: Matrix, x: float, y: float) -> tuple[float, float]:
    return m[0] * x + m[2] * y + m[4], m[1] * x + m[3] * y + m[5]


def _num(value: str | None, default: float = 0.0) -> float:
    if value is None:
        return default
    match = re.match(r"\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(mm|px|pt|cm|in)?", value)
    if not match:
        return default
    n = float(match.group(1))
    return n * {"mm": 96 / 25.4, "cm": 96 / 2.54, "in": 96.0, "pt": 96 / 72}.get(match.group(2) or "", 1.0)


def _transform(text: str | None) -> Matrix:
    m = _IDENT
    for name, args in re.findall(r"(\w+)\s*\(([^)]*)\)", text or ""):
        v = [float(x) for x in re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", args)]
        if name == "translate":
            t = (1, 0, 0, 1, v[0], v[1] if len(v) > 1 else 0)
        elif name == "scale":
            t = (v[0], 0, 0, v[1] if len(v) > 1 else v[0], 0, 0)
        elif name == "matrix" and len(v) == 6:
            t = tuple(v)  # type: ignore[assignment]
        elif name == "rotate":
            r = math.radians(v[0])
            t = (math.cos(r), math.sin(r), -math.sin(r), math.cos(r), 0, 0)
            if len(v) == 3:
                t = _mul(_mul((1, 0, 0, 1, v[1], v[2]), t), (1, 0, 0, 1, -v[1], -v[2]))
        else:
            continue
        m = _mul(m, t)  # type: ignore[arg-type]
    return m


def _style(el: ET.Element, inherited: dict[str, str]) -> dict[str, str]:
    style = dict(inherited)
    for key in ("fill", "stroke", "stroke-width", "font-size", "text-anchor", "fill-opacity", "display"):
        if key in el.attrib:
            style[key] = el.attrib[key]
    for part in (el.attrib.get("style") or "").split(";"):
        if ":" in part:
            k, v = part.split(":", 1)
            style[k.strip()] = v.strip()
    return style


def _gray(color: str | None) -> int | None:
    if color is None:
        return 0
    color = color.strip().lower()
    if color in ("none", "transparent"):
        return None
    named = {"black": 0, "white": 255, "red": 76, "blue": 29, "green": 75, "gray": 128, "grey": 128}
    if color in named:
        return named[color]
    if color.startswith("#"):
        h = color[1:]
        if len(h) == 3:
            h = "".join(ch * 2 for ch in h)
        try:
            r, g, b = int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)
        except ValueError:
            return 0
        return int(0.299 * r + 0.587 * g + 0.114 * b)
    m = re.match(r"rgb\((\d+),\s*(\d+),\s*(\d+)\)", color)
    if m:
        r, g, b = (int(x) for x in m.groups())
        return int(0.299 * r + 0.587 * g + 0.114 * b)
    return 0


def _path_points(d: str) -> list[list[tuple[float, float]]]:
    tokens = re.findall(r"[MmLlHhVvCcSsQqTtAaZz]|[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", d)
    subpaths: list[list[tuple[float, float]]] = []
    cur: list[tuple[float, float]] = []
    x = y = sx = sy = 0.0
    cmd = ""
    i = 0

    def take(n: int) -> list[float]:
        nonlocal i
        vals = [float(t) for t in tokens[i:i + n]]
        i += n
        return vals

    while i < len(tokens):
        if tokens[i].isalpha():
            cmd = tokens[i]
            i += 1
            if cmd in "Zz":
                if cur:
                    cur.append((sx, sy))
                    subpaths.append(cur)
                cur = []
                x, y = sx, sy
                continue
        rel = cmd.islower()
        c = cmd.upper()
        counts = {"M": 2, "L": 2, "H": 1, "V": 1, "C": 6, "S": 4, "Q": 4, "T": 2, "A": 7}
        if c not in counts or i + counts[c] > len(tokens):
            break
        v = take(counts[c])
        ox, oy = (x, y) if rel else (0.0, 0.0)
        if c == "M":
            if cur:
                subpaths.append(cur)
            x, y = v[0] + ox, v[1] + oy
            sx, sy = x, y
            cur = [(x, y)]
            cmd = "l" if rel else "L"
        elif c == "H":
            x = v[0] + (x if rel else 0)
            cur.append((x, y))
        elif c == "V":
            y = v[0] + (y if rel else 0)
            cur.append((x, y))
        elif c in ("C", "S", "Q", "T", "A", "L"):
            x, y = v[-2] + ox, v[-1] + oy
            cur.append((x, y))
    if cur:
        subpaths.append(cur)
    return subpaths


def render_svg(data: bytes, width: int, height: int) -> Image.Image:
    """The SVG drawn to fit `width` x `height` pixels (aspect kept, centred), grayscale on white."""
    head = data[:2048].lower()
    if b"<!doctype" in head or b"<!entity" in data.lower():
        raise SvgError("SVG with a DTD or entities is refused")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise SvgError(f"not a well-formed SVG: {exc}") from exc
    if not root.tag.endswith("svg"):
        raise SvgError("not an SVG document")
    vb = [float(v) for v in re.split(r"[\s,]+", root.attrib.get("viewBox", "").strip()) if v]
    if len(vb) == 4:
        vx, vy, vw, vh = vb
    else:
        vx, vy, vw, vh = 0.0, 0.0, _num(root.attrib.get("width"), 100), _num(root.attrib.get("height"), 100)
    if vw <= 0 or vh <= 0:
        raise SvgError("SVG has no size")
    scale = min(width / vw, height / vh)
    off_x, off_y = (width - vw * scale) / 2, (height - vh * scale) / 2
    base: Matrix = (scale, 0, 0, scale, off_x - vx * scale, off_y - vy * scale)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    _draw(root, base, {}, image, draw)
    return image


def _tag(el: ET.Element) -> str:
    return el.tag.rsplit("}", 1)[-1]


def _draw(el: ET.Element, m: Matrix, inherited: dict[str, str], image: Image.Image, draw: ImageDraw.ImageDraw) -> None:
    tag = _tag(el)
    if tag in ("defs", "style", "title", "desc", "metadata", "clipPath", "mask", "symbol"):
        return
    style = _style(el, inherited)
    if style.get("display") == "none":
        return
    m = _mul(m, _transform(el.attrib.get("transform")))
    fill = _gray(style.get("fill"))
    stroke = _gray(style["stroke"]) if "stroke" in style else None
    sw = _num(style.get("stroke-width"), 1.0) * math.hypot(m[0], m[1])
    a = el.attrib
    if tag == "rect":
        x, y, w, h = _num(a.get("x")), _num(a.get("y")), _num(a.get("width")), _num(a.get("height"))
        if m[1] == 0 and m[2] == 0 and fill is not None and stroke is None:
            (x0, y0), (x1, y1) = _apply(m, x, y), _apply(m, x + w, y + h)
            x0, x1, y0, y1 = round(min(x0, x1)), round(max(x0, x1)), round(min(y0, y1)), round(max(y0, y1))
            if x1 > x0 and y1 > y0:
                draw.rectangle([x0, y0, x1 - 1, y1 - 1], fill=fill)
            return
        _poly(draw, [_apply(m, *p) for p in ((x, y), (x + w, y), (x + w, y + h), (x, y + h))], fill, stroke, sw)
    elif tag in ("polygon", "polyline"):
        nums = [float(v) for v in re.findall(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?", a.get("points", ""))]
        pts = [_apply(m, nums[i], nums[i + 1]) for i in range(0, len(nums) - 1, 2)]
        _poly(draw, pts, fill if tag == "polygon" else None, stroke if tag == "polygon" else (stroke or 0), sw)
    elif tag == "line":
        p1 = _apply(m, _num(a.get("x1")), _num(a.get("y1")))
        p2 = _apply(m, _num(a.get("x2")), _num(a.get("y2")))
        draw.line([p1, p2], fill=0 if stroke is None else stroke, width=max(1, round(sw)))
    elif tag in ("circle", "ellipse"):
        cx, cy = _num(a.get("cx")), _num(a.get("cy"))
        rx = _num(a.get("r")) if tag == "circle" else _num(a.get("rx"))
        ry = _num(a.get("r")) if tag == "circle" else _num(a.get("ry"))
        pts = [_apply(m, cx + rx * math.cos(t / 24 * math.tau), cy + ry * math.sin(t / 24 * math.tau)) for t in range(24)]
        _poly(draw, pts, fill, stroke, sw)
    elif tag == "path":
        for pts in _path_points(a.get("d", "")):
            _poly(draw, [_apply(m, *p) for p in pts], fill, stroke, sw)
    elif tag == "text":
        text = "".join(el.itertext()).strip()
        size = _num(style.get("font-size"), 12) * math.hypot(m[2], m[3])
        x, y = _apply(m, _num(a.get("x")), _num(a.get("y")))
        f = font(max(6, round(size)))
        w = draw.textlength(text, font=f)
        anchor = style.get("text-anchor", "start")
        x -= w / 2 if anchor == "middle" else w if anchor == "end" else 0
        draw.text((x, y), text, font=f, fill=0 if fill is None else fill, anchor="ls")
        return
    elif tag == "image":
        href = a.get("href") or a.get("{http://www.w3.org/1999/xlink}href") or ""
        if href.startswith("data:image/") and "base64," in href:
            pic = Image.open(io.BytesIO(base64.b64decode(href.split("base64,", 1)[1])))
            if pic.mode in ("RGBA", "LA", "P"):
                pic = pic.convert("RGBA")
                bg = Image.new("RGBA", pic.size, (255, 255, 255, 255))
                pic = Image.alpha_composite(bg, pic)
            pic = pic.convert("L")
            x, y = _apply(m, _num(a.get("x")), _num(a.get("y")))
            w = _num(a.get("width"), pic.width) * math.hypot(m[0], m[1])
            h = _num(a.get("height"), pic.height) * math.hypot(m[2], m[3])
            if w >= 1 and h >= 1:
                ratio = min(w / pic.width, h / pic.height)
                size = (max(1, round(pic.width * ratio)), max(1, round(pic.height * ratio)))
                image.paste(pic.resize(size, Image.Resampling.LANCZOS),
                            (round(x + (w - size[0]) / 2), round(y + (h - size[1]) / 2)))
        return
    for child in el:
        _draw(child, m, style, image, draw)


def _poly(draw: ImageDraw.ImageDraw, pts: list[tuple[float, float]], fill: int | None, stroke: int | None,
          width: float) -> None:
    if len(pts) < 2:
        return
    if fill is not None and len(pts) >= 3:
        draw.polygon(pts, fill=fill)
    if stroke is not None:
        draw.line(pts + [pts[0]] if fill is not None else pts, fill=stroke, width=max(1, round(width)))
