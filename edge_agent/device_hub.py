"""The box's devices as the site uses them: the label printer, the scanners bound to stations, and the
cameras that film packing; and the problems with them that the packers' page shows.

`DeviceHub` opens them from the site's config (a scanner or camera that fails is reported, never
fatal: scans can be typed on the page), hands each scan to the site, and runs the packing video: an
order's recording starts at its first scan at the station and ends when its label prints.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from edge_agent.changes import Changes
from edge_agent.config import EdgeConfig
from edge_agent.devices.camera import open_camera
from edge_agent.devices.printers import open_printer
from edge_agent.devices.scanners import open_scanner
from edge_agent.video import PackingRecorder, Retention

log = logging.getLogger("marketsync.edge")

OnScan = Callable[..., None]


class DeviceHub:
    """The devices one site opened, and what the page is to be told about them."""

    def __init__(self, cfg: EdgeConfig, changes: Changes) -> None:
        self.cfg = cfg
        self.changes = changes
        self.printer: Any = None
        self.scanners: list[Any] = []
        self.recorders: dict[str, PackingRecorder] = {}  # station -> its packing video
        self.device_problems: dict[str, str] = {}

    # -- opening and closing -------------------------------------------------------------------

    def open(self, on_scan: OnScan) -> None:
        """Open the printer (with the label stock of the config), the scanners and the cameras."""
        printer_cfg = self.cfg.printer.as_dict()
        for key, value in self.cfg.label_profile.as_dict().items():
            printer_cfg.setdefault(key, value)
        self.printer = open_printer(printer_cfg)
        for scfg in (sc.as_dict() for sc in self.cfg.scanners):
            scanner = open_scanner(scfg)
            scanner.start(on_scan, self._scanner_error(str(scfg.get("station", "?"))))
            self.scanners.append(scanner)
        for ccfg in (c.as_dict() for c in self.cfg.cameras):
            self._open_camera(ccfg)

    def add_scanner(self, scanner: Any, on_scan: OnScan) -> None:
        """One more scanner (e.g. a virtual one fed by code): started now, stopped with the others."""
        scanner.start(on_scan)
        self.scanners.append(scanner)

    def stop_scanners(self) -> None:
        for s in self.scanners:
            with contextlib.suppress(Exception):
                s.stop()

    def stop_recorders(self) -> None:
        """Finish the packing videos being recorded and let the cameras go."""
        for rec in self.recorders.values():
            with contextlib.suppress(Exception):
                rec.close()
            with contextlib.suppress(Exception):
                rec.camera.close()

    def close_printer(self) -> None:
        if self.printer is not None:
            with contextlib.suppress(Exception):
                self.printer.close()

    def _scanner_error(self, st: str) -> Callable[[Exception], None]:
        def on_error(exc: Exception) -> None:
            self.device_problems[f"scanner:{st}"] = f"сканер места {st}: {exc}. Сканы можно вводить на странице"
            self.changes.bump("device")

        return on_error

    def scanner_reads(self, station: str) -> None:
        """A scan came from the station's scanner: whatever was said about it is over."""
        self.device_problems.pop(f"scanner:{station}", None)

    def _open_camera(self, ccfg: dict[str, Any]) -> None:
        """Packing video for one station; a camera that cannot open is reported, never fatal."""
        st = str(ccfg.get("station", self.cfg.stations[0]))
        try:
            retention = Retention(max_files=int(ccfg.get("max_files", 2000)),
                                  max_bytes=int(float(ccfg.get("max_gb", 20)) * 1024**3),
                                  max_age_days=float(ccfg.get("retention_days", 60)))
            self.recorders[st] = PackingRecorder(open_camera(ccfg), f"{self.cfg.video_dir}/{st}",
                                                 fps=float(ccfg.get("fps", 10)), retention=retention, station=st)
        except Exception as exc:
            self.device_problems[st] = f"камера места {st}: {exc}"
            log.warning("camera of %s: %s", st, exc)

    # -- packing video -------------------------------------------------------------------------

    def films(self, station: str) -> bool:
        """Whether a camera records packing at this station."""
        return station in self.recorders

    def order_scanned(self, station: str, order_id: str) -> None:
        """An order's scan at the station: its packing video starts (or goes on)."""
        rec = self.recorders.get(station)
        if rec is None:
            return
        try:
            rec.order_scanned(order_id)
            self.device_problems.pop(station, None)
        except Exception as exc:
            self.device_problems[station] = f"камера места {station}: {exc}"

    def label_printed(self, order_id: str) -> None:
        """The order's label printed: its packing video ends."""
        for st, rec in self.recorders.items():
            try:
                rec.label_printed(order_id)
            except Exception as exc:
                self.device_problems[st] = f"камера места {st}: {exc}"

    # -- what the page shows -------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Device problems the page shows: scanners and cameras that failed, and a packing video that
        lost its camera while recording (the seller's proof for that order is missing)."""
        out = dict(self.device_problems)
        for st, rec in self.recorders.items():
            if rec.last_error and st not in out:
                out[st] = f"камера места {st}: видео упаковки не пишется — {rec.last_error}"
        return sorted(out.values())
