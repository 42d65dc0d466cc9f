"""Packing video: the seller's proof in a dispute with a marketplace.

Owns `PackingRecorder`: recording starts at the first scan of an order (`order_scanned`) and stops
when its label prints (`label_printed`); every frame has the order number and the time burned in.
Files are `<order>_<start time>.mp4` in `out_dir`, written as `.part.mp4` and renamed when complete, and
kept under a `Retention` limit (max files, max bytes, max age; the oldest go first). A camera that
disappears mid-order leaves a gap, not a lost file: recording resumes when frames come back.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_agent.background import background_thread
from edge_agent.devices.base import DeviceError, need

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retention:
    max_files: int = 2000
    max_bytes: int = 20 * 1024**3
    max_age_days: float = 60.0


@dataclass(frozen=True)
class Recording:
    order_id: str
    path: Path
    frames: int
    started: float
    stopped: float
    gaps: int


def _part(path: Path) -> Path:
    """Where a video is written until it is complete (OpenCV picks the container by the extension)."""
    return path.with_name(path.stem + ".part.mp4")


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in text)[:80] or "order"


def apply_retention(folder: Path, retention: Retention, now: float | None = None, keep: Path | None = None) -> list[Path]:
    """Delete the oldest videos until the folder is within the limits; returns what was deleted."""
    now = time.time() if now is None else now
    files = sorted((p for p in folder.glob("*.mp4") if p.is_file() and not p.name.endswith(".part.mp4")),
                   key=lambda p: p.stat().st_mtime)
    deleted: list[Path] = []
    for path in list(files):
        if path != keep and now - path.stat().st_mtime > retention.max_age_days * 86400:
            path.unlink(missing_ok=True)
            files.remove(path)
            deleted.append(path)
    total = sum(p.stat().st_size for p in files)
    for path in list(files):
        if len(files) <= retention.max_files and total <= retention.max_bytes:
            break
        if path == keep:
            continue
        total -= path.stat().st_size
        path.unlink(missing_ok=True)
        files.remove(path)
        deleted.append(path)
    return deleted


class PackingRecorder:
    """Records one order at a time per packing station from a camera (anything with read_frame())."""

    def __init__(self, camera: Any, out_dir: str | os.PathLike, fps: float = 10.0,
                 retention: Retention | None = None, station: str = "pack-1") -> None:
        self.camera = camera
        self.out_dir = Path(out_dir)
        self.fps = fps
        self.retention = retention or Retention()
        self.station = station
        self.order_id: str | None = None
        self.last_error: str | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {}

    @property
    def recording(self) -> bool:
        return self.order_id is not None

    def order_scanned(self, order_id: str) -> None:
        """A scan belonging to `order_id`: the first one starts its video (a different order's scan
        finishes the previous video first, so no two orders share a file)."""
        with self._lock:
            if self.order_id == order_id:
                return
        if self.order_id is not None:
            self.label_printed(self.order_id)
        self._start(order_id)

    def _start(self, order_id: str) -> None:
        need("cv2", "packing video", "opencv-python-headless")
        self.out_dir.mkdir(parents=True, exist_ok=True)
        started = time.time()
        path = self.out_dir / f"{_safe(order_id)}_{time.strftime('%Y%m%d-%H%M%S', time.localtime(started))}.mp4"
        with self._lock:
            self.order_id = order_id
            self._state = {"path": path, "frames": 0, "gaps": 0, "started": started, "writer": None}
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name=f"video-{order_id}", daemon=True)
            self._thread.start()

    def label_printed(self, order_id: str) -> Recording | None:
        """The order's label printed: finish its video. None if it was not recording that order."""
        with self._lock:
            if self.order_id != order_id:
                return None
            thread = self._thread
        self._stop.set()
        if thread is not None:
            thread.join(timeout=10)
        with self._lock:
            state, self.order_id, self._thread = self._state, None, None
        writer = state.get("writer")
        path: Path = state["path"]
        part = _part(path)
        if writer is not None:
            writer.release()
        if state["frames"] == 0:
            part.unlink(missing_ok=True)
            self.last_error = self.last_error or "the camera gave no pictures for this order"
            return None
        os.replace(part, path)
        apply_retention(self.out_dir, self.retention, keep=path)
        return Recording(order_id, path, state["frames"], state["started"], time.time(), state["gaps"])

    def close(self) -> None:
        """The site stops: the video being recorded is finished as it stands (the pictures so far are
        the seller's proof) and its thread ends, so nothing keeps reading the camera."""
        if self.order_id is not None:
            self.label_printed(self.order_id)
        self._stop.set()

    def _overlay(self, frame: np.ndarray, order_id: str) -> np.ndarray:
        cv2 = need("cv2", "packing video")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        text = f"Order {order_id}  {stamp}  {self.station}"
        scale = max(0.5, frame.shape[1] / 1280)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)
        cv2.rectangle(frame, (0, 0), (tw + 16, th + base + 16), (0, 0, 0), -1)
        cv2.putText(frame, text, (8, th + 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 2, cv2.LINE_AA)
        return frame

    def _run(self) -> None:
        background_thread()  # encoding video gives way to the page's scans and the labels they print
        cv2 = need("cv2", "packing video")
        state = self._state
        order_id = self.order_id or ""
        part = _part(state["path"])
        size: tuple[int, int] | None = None
        interval = 1.0 / self.fps
        gone = False
        while not self._stop.is_set():
            tick = time.monotonic()
            try:
                frame = self.camera.read_frame()
            except DeviceError as exc:
                if not gone:
                    state["gaps"] += 1
                    self.last_error = str(exc)
                    log.warning("packing video of order %s: %s", order_id, exc)
                gone = True
                self._stop.wait(0.2)
                continue
            if frame is None:  # end of a video file: nothing more to record
                self._stop.wait(interval)
                continue
            gone, self.last_error = False, None  # pictures again: the problem is over
            if frame.ndim == 2:
                frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
            if size is None:
                size = (frame.shape[1], frame.shape[0])
                writer = cv2.VideoWriter(str(part), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, size)
                if not writer.isOpened():
                    self.last_error = f"cannot write video to {part}"
                    return
                state["writer"] = writer
            elif (frame.shape[1], frame.shape[0]) != size:
                frame = cv2.resize(frame, size)
            state["writer"].write(self._overlay(frame.copy(), order_id))
            state["frames"] += 1
            self._stop.wait(max(0.0, interval - (time.monotonic() - tick)))
