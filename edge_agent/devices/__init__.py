"""The box's devices: label printers, barcode scanners and cameras, behind small contracts.

`open_printer(config)`, `open_scanner(config)`, `open_camera(config)` build a device from its TOML
table; the errors a packer may see are `PrinterError` and `DeviceGone` (both `DeviceError`).
Optional libraries are imported only when a backend that needs them is used.
"""

from typing import Any

from edge_agent.devices.base import (
    DeviceError,
    DeviceGone,
    MissingLibrary,
    PrinterError,
    PrinterProfile,
    PrinterStatus,
    PrintJob,
    ScanEvent,
)
from edge_agent.devices.printers import open_printer


def open_scanner(config: dict[str, Any]) -> Any:
    """A scanner (evdev, serial, camera or virtual) from its config; see scanners.open_scanner."""
    from edge_agent.devices.scanners import open_scanner as _open

    return _open(config)


def open_camera(config: dict[str, Any]) -> Any:
    """A camera (device, video file, RTSP URL) from its config; OpenCV is imported only here."""
    from edge_agent.devices.camera import open_camera as _open

    return _open(config)


__all__ = [
    "DeviceError", "DeviceGone", "MissingLibrary", "PrinterError", "PrinterProfile", "PrinterStatus",
    "PrintJob", "ScanEvent", "open_camera", "open_printer", "open_scanner",
]
