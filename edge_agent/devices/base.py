"""The small driver contract every printer, scanner and camera backend keeps.

Owns the plain types the rest of the edge codes against: `PrinterProfile` (what a printer takes),
`PrintJob` (bytes in the printer's language, ready to send again if a send fails), `PrinterStatus`,
`ScanEvent`, and the two errors: `PrinterError` (a job could not be printed; the job is intact and can
be re-sent) and `DeviceGone` (a device disappeared; the caller keeps its state and retries later).
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

LANGUAGES = ("raster", "zpl", "tspl", "escpos")


class DeviceError(Exception):
    """Base class of every device problem; the message is meant for the packer's screen."""


class PrinterError(DeviceError):
    """A print job was not (completely) printed. The job is unchanged and can be sent again."""


class DeviceGone(DeviceError):
    """A device (printer, scanner, camera) disappeared: unplugged, powered off, unreachable."""


class MissingLibrary(DeviceError):
    """An optional library a backend needs is not installed (raised only when that backend is used)."""


def need(module: str, backend: str, package: str | None = None) -> Any:
    """Import an optional library for one backend, or raise a clear `MissingLibrary`."""
    try:
        # lazy: escpos, serial, evdev, OpenCV, zxing... are imported when the backend that needs them is used
        return importlib.import_module(module)
    except ImportError as exc:
        pkg = package or module
        raise MissingLibrary(
            f"the {backend} backend needs the Python package {pkg!r}, which is not installed "
            f"(install marketsync with the [edge] extra): {exc}"
        ) from exc


@dataclass(frozen=True)
class PrinterProfile:
    """What a printer takes: its language, resolution and the label size loaded in it."""

    language: str = "raster"
    dpi: int = 203
    width_mm: float = 58.0
    height_mm: float = 40.0
    name: str = "printer"

    @property
    def width_dots(self) -> int:
        return int(round(self.width_mm / 25.4 * self.dpi))

    @property
    def height_dots(self) -> int:
        return int(round(self.height_mm / 25.4 * self.dpi))

    @classmethod
    def from_config(cls, config: dict[str, Any] | PrinterProfile) -> PrinterProfile:
        if isinstance(config, PrinterProfile):
            return config
        language = str(config.get("language", "raster")).lower()
        if language not in LANGUAGES:
            raise PrinterError(f"unknown printer language {language!r}; expected one of {', '.join(LANGUAGES)}")
        dpi = int(config.get("dpi", 203))
        if dpi not in (152, 203, 300, 600):
            raise PrinterError(f"unsupported printer resolution {dpi} dpi; expected 203 or 300")
        width = float(config.get("width_mm", 58))
        height = float(config.get("height_mm", 40))
        if not (10 <= width <= 220 and 10 <= height <= 400):
            raise PrinterError(f"label size {width}x{height} mm is outside what a label printer takes")
        return cls(language=language, dpi=dpi, width_mm=width, height_mm=height,
                   name=str(config.get("name", "printer")))


@dataclass(frozen=True)
class PrintJob:
    """One label (or a few copies) in the printer's language, ready to send — and to send again.

    `payload` is every byte the printer receives. `raster` is the 1-bit image the job prints
    (a PIL image, width x height dots) when the job was rendered here; None for ZPL passed through.
    `key` is the print journal's name of the job ("" when printed outside the journal): a printer that
    writes files writes this job to `target(key)`.
    """

    language: str
    payload: bytes
    width_dots: int
    height_dots: int
    dpi: int
    description: str = ""
    raster: Any = None
    created: float = field(default_factory=time.time)
    key: str = ""

    def __len__(self) -> int:
        return len(self.payload)


@dataclass(frozen=True)
class PrinterStatus:
    """What the printer says about itself. `paper_out` is None when the printer cannot tell."""

    online: bool
    paper_out: bool | None
    detail: str


@dataclass(frozen=True)
class ScanEvent:
    """One scan: the decoded text (GS1 group separators kept as \\x1d), which station, which device."""

    station: str
    text: str
    source: str
    ts: float = field(default_factory=time.time)


class Printer(Protocol):
    """Every printer. One that writes files (the virtual one) also has `target(key) -> Path`: the file
    a job with that key is written to, whole or not at all, so the journal can tell whether it printed;
    of any other printer nobody can tell, after a crash mid-job, whether the label came out."""

    name: str
    profile: PrinterProfile

    def status(self) -> PrinterStatus: ...

    def send(self, job: PrintJob) -> None: ...

    def close(self) -> None: ...
