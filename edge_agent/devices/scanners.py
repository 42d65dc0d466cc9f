"""Barcode scanners: evdev keyboard wedges, serial (CDC-ACM) scanners and a virtual one.

Owns `open_scanner(config)` / `open_scanners(configs)`, the key-code decoder (`KeyDecoder`: Shift,
Caps Lock, US and Russian layouts, Enter/Tab end a scan) and the GS1 group separator: scanners send
ASCII 29 as Ctrl+], as F8, as Alt+0029 on the keypad, or as a configured replacement string; all of
them become "\\x1d" in `ScanEvent.text`. A scanner that disappears is reported through `on_error`
(a `DeviceGone`) and reopened when it returns; a half-typed scan is dropped, never half-delivered.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from edge_agent.devices.base import DeviceError, DeviceGone, ScanEvent, need
from edge_agent.devices.camera import CameraScanner, open_camera

log = logging.getLogger(__name__)
GS = "\x1d"
EV_KEY = 1

# Linux input key codes (linux/input-event-codes.h), the ones a keyboard-wedge scanner types.
KEY = {
    "ESC": 1, "1": 2, "2": 3, "3": 4, "4": 5, "5": 6, "6": 7, "7": 8, "8": 9, "9": 10, "0": 11,
    "MINUS": 12, "EQUAL": 13, "BACKSPACE": 14, "TAB": 15, "Q": 16, "W": 17, "E": 18, "R": 19, "T": 20,
    "Y": 21, "U": 22, "I": 23, "O": 24, "P": 25, "LEFTBRACE": 26, "RIGHTBRACE": 27, "ENTER": 28,
    "LEFTCTRL": 29, "A": 30, "S": 31, "D": 32, "F": 33, "G": 34, "H": 35, "J": 36, "K": 37, "L": 38,
    "SEMICOLON": 39, "APOSTROPHE": 40, "GRAVE": 41, "LEFTSHIFT": 42, "BACKSLASH": 43, "Z": 44, "X": 45,
    "C": 46, "V": 47, "B": 48, "N": 49, "M": 50, "COMMA": 51, "DOT": 52, "SLASH": 53, "RIGHTSHIFT": 54,
    "KPASTERISK": 55, "LEFTALT": 56, "SPACE": 57, "CAPSLOCK": 58, "F1": 59, "F2": 60, "F3": 61, "F4": 62,
    "F5": 63, "F6": 64, "F7": 65, "F8": 66, "F9": 67, "F10": 68, "KP7": 71, "KP8": 72, "KP9": 73,
    "KPMINUS": 74, "KP4": 75, "KP5": 76, "KP6": 77, "KPPLUS": 78, "KP1": 79, "KP2": 80, "KP3": 81,
    "KP0": 82, "KPDOT": 83, "F11": 87, "F12": 88, "KPENTER": 96, "RIGHTCTRL": 97, "KPSLASH": 98,
    "RIGHTALT": 100,
}
_KP_DIGITS = {KEY[f"KP{d}"]: str(d) for d in range(10)}
_SHIFTS = {KEY["LEFTSHIFT"], KEY["RIGHTSHIFT"]}
_CTRLS = {KEY["LEFTCTRL"], KEY["RIGHTCTRL"]}
_ALTS = {KEY["LEFTALT"], KEY["RIGHTALT"]}


def _layout(rows: list[tuple[str, str, str]]) -> dict[int, tuple[str, str]]:
    table: dict[int, tuple[str, str]] = {}
    for keys, plain, shifted in rows:
        for name, p, s in zip(keys.split(), plain, shifted, strict=True):
            table[KEY[name]] = (p, s)
    table[KEY["SPACE"]] = (" ", " ")
    for code, digit in _KP_DIGITS.items():
        table[code] = (digit, digit)
    table.update({KEY["KPMINUS"]: ("-", "-"), KEY["KPPLUS"]: ("+", "+"), KEY["KPASTERISK"]: ("*", "*"),
                  KEY["KPSLASH"]: ("/", "/")})
    return table


_NUMROW = "1 2 3 4 5 6 7 8 9 0 MINUS EQUAL"
_ROW1 = "Q W E R T Y U I O P LEFTBRACE RIGHTBRACE"
_ROW2 = "A S D F G H J K L SEMICOLON APOSTROPHE"
_ROW3 = "Z X C V B N M COMMA DOT SLASH"

LAYOUTS: dict[str, dict[int, tuple[str, str]]] = {
    "us": _layout([
        (_NUMROW, "1234567890-=", "!@#$%^&*()_+"), (_ROW1, "qwertyuiop[]", "QWERTYUIOP{}"),
        (_ROW2, "asdfghjkl;'", 'ASDFGHJKL:"'), (_ROW3, "zxcvbnm,./", "ZXCVBNM<>?"),
        ("GRAVE BACKSLASH", "`\\", "~|"),
    ]),
    "ru": _layout([
        (_NUMROW, "1234567890-=", '!"№;%:?*()_+'), (_ROW1, "йцукенгшщзхъ", "ЙЦУКЕНГШЩЗХЪ"),
        (_ROW2, "фывапролджэ", "ФЫВАПРОЛДЖЭ"), (_ROW3, "ячсмитьбю.", "ЯЧСМИТЬБЮ,"),
        ("GRAVE BACKSLASH", "ё\\", "Ё/"),
    ]),
}
_CTRL_CHARS = {KEY["LEFTBRACE"]: "\x1b", KEY["BACKSLASH"]: "\x1c", KEY["RIGHTBRACE"]: GS, KEY["6"]: "\x1e",
               KEY["MINUS"]: "\x1f"}

_US, _RU = LAYOUTS["us"], LAYOUTS["ru"]
_RU_TO_US = {ru[i]: us[i] for code, us in _US.items() if code in _RU for ru in [_RU[code]] for i in (0, 1)}


def fix_layout(text: str) -> str:
    """Text a scanner typed into a page while the Russian layout was active -> what it meant (US keys).

    For the packers' page, where a browser receives the scanner's keystrokes through the OS layout.
    """
    return "".join(_RU_TO_US.get(ch, ch) for ch in text)


class KeyDecoder:
    """Key events -> scans. Feed (type, code, value) triples; `feed` returns the text when a scan ends."""

    def __init__(self, layout: str = "us", gs_keys: Iterable[str] = ("F8",), gs_substitutes: Iterable[str] = (),
                 end_keys: Iterable[str] = ("ENTER", "KPENTER", "TAB")) -> None:
        if layout not in LAYOUTS:
            raise DeviceError(f"unknown scanner keyboard layout {layout!r}; expected one of {', '.join(LAYOUTS)}")
        self.table = LAYOUTS[layout]
        self.gs_codes = {KEY[k.upper().removeprefix("KEY_")] for k in gs_keys}
        self.end_codes = {KEY[k.upper().removeprefix("KEY_")] for k in end_keys}
        self.gs_substitutes = [s for s in gs_substitutes if s]
        self.reset()

    def reset(self) -> None:
        self.buffer: list[str] = []
        self.shift = self.ctrl = self.alt = False
        self.caps = False
        self.alt_digits = ""

    def feed(self, ev_type: int, code: int, value: int) -> str | None:
        if ev_type != EV_KEY:
            return None
        if code in _SHIFTS:
            self.shift = value != 0
            return None
        if code in _CTRLS:
            self.ctrl = value != 0
            return None
        if code in _ALTS:
            self.alt = value != 0
            if value == 0 and self.alt_digits:
                self.buffer.append(chr(int(self.alt_digits) % 256))
                self.alt_digits = ""
            return None
        if value != 1:  # key up or autorepeat
            return None
        if code == KEY["CAPSLOCK"]:
            self.caps = not self.caps
            return None
        if self.alt and code in _KP_DIGITS:
            self.alt_digits += _KP_DIGITS[code]
            return None
        if code in self.end_codes:
            text = "".join(self.buffer)
            self.buffer = []
            for sub in self.gs_substitutes:
                text = text.replace(sub, GS)
            return text or None
        if code in self.gs_codes:
            self.buffer.append(GS)
            return None
        if code == KEY["BACKSPACE"]:
            if self.buffer:
                self.buffer.pop()
            return None
        if self.ctrl:
            if code in _CTRL_CHARS:
                self.buffer.append(_CTRL_CHARS[code])
            elif code in _US and _US[code][0].isalpha():
                self.buffer.append(chr(ord(_US[code][0]) - 96))
            return None
        pair = self.table.get(code)
        if pair is None:
            return None
        ch = pair[1] if self.shift else pair[0]
        if self.caps and ch.isalpha():
            ch = ch.swapcase()
        self.buffer.append(ch)
        return None


def decode_events(events: Iterable[Any], layout: str = "us", **options: Any) -> list[str]:
    """Recorded evdev events (anything with .type/.code/.value) -> the scans they type."""
    decoder = KeyDecoder(layout, **options)
    out = []
    for ev in events:
        text = decoder.feed(ev.type, ev.code, ev.value)
        if text is not None:
            out.append(text)
    return out


OnScan = Callable[[ScanEvent], None]
OnError = Callable[[DeviceError], None]


class _Base:
    def __init__(self, station: str, source: str) -> None:
        self.station, self.source = station, source
        self.on_scan: OnScan | None = None
        self.on_error: OnError | None = None
        self.online = False
        self.last_error: str | None = None

    def _emit(self, text: str) -> None:
        if self.on_scan is not None and text:
            try:
                self.on_scan(ScanEvent(self.station, text, self.source))
            except Exception:  # a handler bug must not kill the reader
                log.exception("scan handler failed for %r", text)

    def _error(self, exc: DeviceError) -> None:
        self.online = False
        self.last_error = str(exc)
        log.warning("%s", exc)
        if self.on_error is not None:
            try:
                self.on_error(exc)
            except Exception:
                log.exception("scanner error handler failed")


class VirtualScanner(_Base):
    """A scanner fed by code: `feed(text)` delivers a scan (the demo feeds it from the page or a file)."""

    def __init__(self, station: str = "pack-1", source: str = "virtual") -> None:
        super().__init__(station, source)
        self._pending: list[str] = []

    def start(self, on_scan: OnScan, on_error: OnError | None = None) -> None:
        self.on_scan, self.on_error, self.online = on_scan, on_error, True
        pending, self._pending = self._pending, []
        for text in pending:
            self._emit(text)

    def feed(self, text: str) -> None:
        if self.on_scan is None:
            self._pending.append(text)
        else:
            self._emit(text)

    def stop(self) -> None:
        self.on_scan, self.online = None, False


class _ThreadScanner(_Base):
    retry_s = 1.0

    def __init__(self, station: str, source: str) -> None:
        super().__init__(station, source)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = os.pipe()

    def start(self, on_scan: OnScan, on_error: OnError | None = None) -> None:
        self.on_scan, self.on_error = on_scan, on_error
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"scanner-{self.station}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        self._wake_r = self._wake_w = -1

    def _run(self) -> None:
        reported = False
        while not self._stop.is_set():
            try:
                self._session()
                reported = False
            except DeviceError as exc:
                if not reported:
                    self._error(exc)
                    reported = True
            self._stop.wait(self.retry_s)

    def _session(self) -> None:
        raise NotImplementedError


class EvdevScanner(_ThreadScanner):
    """A keyboard-wedge scanner read straight from /dev/input/event*, grabbed so its keystrokes do not
    also type into the console or a browser. `device` is a path, or `name:<text>` to match a name."""

    def __init__(self, device: str, station: str, layout: str = "us", grab: bool = True, **options: Any) -> None:
        super().__init__(station, device)
        self.device, self.grab, self.layout = device, grab, layout
        self.decoder = KeyDecoder(layout, **options)

    def _find(self) -> str:
        if not self.device.startswith("name:"):
            return self.device
        evdev = need("evdev", "evdev scanner")
        wanted = self.device[5:].lower()
        for path in evdev.list_devices():
            try:
                if wanted in evdev.InputDevice(path).name.lower():
                    return path
            except OSError:
                continue
        raise DeviceGone(f"no input device named like {wanted!r} (scanner unplugged?)")

    def _session(self) -> None:
        evdev = need("evdev", "evdev scanner")
        path = self._find()
        try:
            dev = evdev.InputDevice(path)
        except FileNotFoundError as exc:
            raise DeviceGone(f"scanner {path} of station {self.station} is not plugged in") from exc
        except PermissionError as exc:
            raise DeviceError(f"no permission to read scanner {path}: add the service user to the 'input' group") from exc
        except OSError as exc:
            raise DeviceGone(f"scanner {path} cannot be opened: {exc}") from exc
        try:
            if self.grab:
                try:
                    dev.grab()
                except OSError as exc:
                    raise DeviceError(f"scanner {path} is held by another program: {exc}") from exc
            self.decoder.reset()
            self.online, self.last_error = True, None
            while not self._stop.is_set():
                ready, _, _ = select.select([dev.fd, self._wake_r], [], [], 1.0)
                if self._wake_r in ready or self._stop.is_set():
                    return
                if dev.fd not in ready:
                    continue
                try:
                    events = list(dev.read())
                except BlockingIOError:
                    continue
                except OSError as exc:
                    raise DeviceGone(f"scanner {path} of station {self.station} was unplugged") from exc
                for ev in events:
                    text = self.decoder.feed(ev.type, ev.code, ev.value)
                    if text is not None:
                        self._emit(text)
        finally:
            self.online = False
            try:
                if self.grab:
                    dev.ungrab()
            except OSError:
                pass
            try:
                dev.close()
            except OSError:
                pass


class SerialScanner(_ThreadScanner):
    """A scanner in serial mode (USB CDC-ACM, /dev/ttyACM0): each scan is one line ending CR and/or LF.
    Bytes are kept as sent, so GS (0x1D) stays in the text; the line is decoded as UTF-8 (Latin-1 if not)."""

    def __init__(self, device: str, station: str, baudrate: int = 9600, gs_substitutes: Iterable[str] = ()) -> None:
        super().__init__(station, device)
        self.device, self.baudrate = device, int(baudrate)
        self.gs_substitutes = [s for s in gs_substitutes if s]

    def _session(self) -> None:
        serial = need("serial", "serial scanner", "pyserial")
        try:
            port = serial.Serial(self.device, self.baudrate, timeout=0.2)
        except (serial.SerialException, OSError) as exc:
            raise DeviceGone(f"serial scanner {self.device} of station {self.station} is not there: {exc}") from exc
        self.online, self.last_error = True, None
        buffer = b""
        try:
            while not self._stop.is_set():
                try:
                    chunk = port.read(256)
                except (serial.SerialException, OSError) as exc:
                    raise DeviceGone(f"serial scanner {self.device} of station {self.station} was unplugged") from exc
                if not chunk:
                    continue
                buffer += chunk
                while True:
                    cut = min((i for i in (buffer.find(b"\r"), buffer.find(b"\n")) if i >= 0), default=-1)
                    if cut < 0:
                        break
                    line, buffer = buffer[:cut], buffer[cut + 1:]
                    if line:
                        self._emit(self._text(line))
        finally:
            self.online = False
            try:
                port.close()
            except Exception:
                pass

    def _text(self, line: bytes) -> str:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            text = line.decode("latin-1")
        for sub in self.gs_substitutes:
            text = text.replace(sub, GS)
        return text


class ScannerGroup:
    """Several scanners started and stopped together, each bound to its own station."""

    def __init__(self, scanners: list[Any]) -> None:
        self.scanners = scanners

    def start(self, on_scan: OnScan, on_error: OnError | None = None) -> None:
        for scanner in self.scanners:
            scanner.start(on_scan, on_error)

    def stop(self) -> None:
        for scanner in self.scanners:
            scanner.stop()


def open_scanner(config: dict[str, Any]) -> Any:
    """A scanner from its config: kind (evdev|serial|camera|virtual), device, station, layout (us|ru),
    gs_keys (default ["F8"]), gs_substitutes (strings the scanner sends for GS, e.g. "<GS>"),
    baudrate (serial), grab (evdev, default true); a camera takes open_camera's keys and fps."""
    kind = str(config.get("kind", "virtual"))
    station = str(config.get("station", "pack-1"))
    subs = list(config.get("gs_substitutes", []))
    if kind == "virtual":
        return VirtualScanner(station, str(config.get("device", "virtual")))
    if kind == "evdev":
        if "device" not in config:
            raise DeviceError("an evdev scanner needs 'device' (/dev/input/by-id/... or name:<part of name>)")
        return EvdevScanner(str(config["device"]), station, str(config.get("layout", "us")),
                            bool(config.get("grab", True)), gs_keys=config.get("gs_keys", ("F8",)),
                            gs_substitutes=subs)
    if kind == "camera":
        return CameraScanner(open_camera(config, gray=True), station, float(config.get("fps", 10)))
    if kind == "serial":
        return SerialScanner(str(config.get("device", "/dev/ttyACM0")), station,
                             int(config.get("baudrate", 9600)), subs)
    raise DeviceError(f"unknown scanner kind {kind!r}; expected evdev, serial, camera or virtual")


def open_scanners(configs: Iterable[dict[str, Any]]) -> ScannerGroup:
    return ScannerGroup([open_scanner(c) for c in configs])


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll `predicate` until true or `timeout` seconds pass (tests and the demo)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()
