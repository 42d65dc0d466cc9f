"""The box's devices: label printers, barcode scanners and cameras, behind small contracts.

`printers.open_printer(config)`, `scanners.open_scanner(config)`, `camera.open_camera(config)` build a
device from its TOML table; the errors a packer may see are `PrinterError` and `DeviceGone` (both
`DeviceError`, from `base`, re-exported here). Optional libraries (python-escpos, pyserial, evdev,
OpenCV, zxing-cpp) are imported only when a backend that needs them is used (`base.need`).

This package's own import stays light on purpose: `base` is imported by modules outside it (labels,
barcodes, decoding, video), so the package must not import its backends, which import those modules.
"""

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

__all__ = [
    "DeviceError", "DeviceGone", "MissingLibrary", "PrinterError", "PrinterProfile", "PrinterStatus",
    "PrintJob", "ScanEvent",
]
