"""Cameras: frames from a V4L2 device, a video file or an RTSP stream (OpenCV), barcodes from frames.

Owns `open_camera(config)` and `Camera`: `read_frame()` (a BGR numpy array, or the brightness plane
for a scanner's camera where that is cheaper; None at the end of a file), `read_codes()` (the barcodes
of the next frame, DataMatrix included, by zxing-cpp through `decode.FrameDecoder`: regions of the last
codes, still frames skipped, a still hard picture read thoroughly once) and `codes()` (an iterator of new codes, each reported once until it leaves the picture). A device or
stream that stops giving frames raises `DeviceGone`; the next read tries to reopen it, so the camera
comes back by itself when it is plugged in again or the stream returns. `CameraScanner` makes a
camera a station's scanner (scanner kind "camera").
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from edge_agent.background import background_thread, give_way
from edge_agent.decode import FrameDecoder, Symbol, decode_image
from edge_agent.devices.base import DeviceError, DeviceGone, ScanEvent, need

_USERINFO = re.compile(r"^([a-z][a-z0-9+.-]*://)[^/@]*@", re.IGNORECASE)


def redacted(source: str | int) -> str:
    """A camera's source fit for messages, logs and the page: an RTSP/HTTP URL loses its user:password@."""
    return _USERINFO.sub(r"\1***@", str(source))


class Camera:
    """One capture source. `source`: "/dev/video0" or 0 (device), a file path, or an rtsp:// URL."""

    def __init__(self, source: str | int, width: int | None = None, height: int | None = None,
                 loop: bool = False, reopen_s: float = 2.0, thorough: bool = False,
                 stream_timeout_s: float = 5.0, gray: bool = False) -> None:
        self.source = source
        self.gray = gray  # a scanner's camera: the brightness plane is all decoding needs (see _luma_only)
        self.name = redacted(source)  # what messages say: never the stream's password
        self.stream_timeout_s = stream_timeout_s
        self.width, self.height, self.loop = width, height, loop
        self.reopen_s, self.thorough = reopen_s, thorough
        self._cap: Any = None
        self._lock = threading.Lock()
        self._last_open_try = 0.0
        self.frames = 0  # (no frame is kept once read: the reader holds it as long as it needs it)
        self.decoder = FrameDecoder()

    def decode(self, frame: np.ndarray) -> list[Symbol]:
        """The codes of one frame of this camera: the thorough pass on every frame when configured so,
        else the frame decoder's fast path (regions of the last codes, still frames skipped)."""
        return decode_image(frame, thorough=True) if self.thorough else self.decoder.decode(frame)

    @property
    def is_file(self) -> bool:
        return isinstance(self.source, str) and not self.source.startswith(("/dev/", "rtsp://", "rtsps://",
                                                                              "http://", "https://"))

    def _open(self) -> Any:
        cv2 = need("cv2", "camera", "opencv-python-headless")
        if self._cap is not None:
            return self._cap
        source = self.source
        if isinstance(source, str) and source.isdigit():
            source = int(source)
        if self.is_file and not os.path.exists(str(source)):
            raise DeviceGone(f"camera video file {self.name} does not exist")
        if isinstance(source, str) and source.startswith("/dev/") and not os.path.exists(source):
            raise DeviceGone(f"camera {self.name} is not plugged in")
        if isinstance(source, str) and "://" in source:  # a stream: never wait forever for it
            ms = int(self.stream_timeout_s * 1000)
            cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG,
                                   [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        else:
            cap = cv2.VideoCapture(source)
        if not cap.isOpened():
            cap.release()
            raise DeviceGone(f"camera {self.name} cannot be opened (unplugged, busy or stream down)")
        if self.width and self.height:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.height)
        if self.gray:
            _luma_only(cv2, cap)
        self._cap = cap
        return cap

    def read_frame(self) -> np.ndarray | None:
        """The next frame (BGR). None at the end of a video file. Raises DeviceGone if the camera is gone."""
        with self._lock:
            if self._cap is None:
                now = time.monotonic()
                if self._last_open_try and now - self._last_open_try < self.reopen_s and not self.is_file:
                    raise DeviceGone(f"camera {self.name} is gone; retrying every {self.reopen_s:g} s")
                self._last_open_try = now
            cap = self._open()
            ok, frame = cap.read()
            if not ok and self.is_file and self.loop:
                cap.set(need("cv2", "camera").CAP_PROP_POS_FRAMES, 0)
                ok, frame = cap.read()
            if not ok:
                if self.is_file:
                    return None
                self._release()
                raise DeviceGone(f"camera {self.name} stopped giving pictures (unplugged or stream lost)")
            self.frames += 1
            return frame

    def read_codes(self) -> list[Symbol]:
        """The barcodes in the next frame ([] at the end of a file)."""
        frame = self.read_frame()
        return [] if frame is None else self.decode(frame)

    def codes(self, max_frames: int | None = None) -> Iterator[Symbol]:
        """New codes as they appear; a code still in view is not repeated. Stops at the end of a file."""
        seen: set[tuple[str, str]] = set()
        n = 0
        while max_frames is None or n < max_frames:
            frame = self.read_frame()
            if frame is None:
                return
            n += 1
            now = {(s.format, s.text): s for s in self.decode(frame)}
            for key, sym in now.items():
                if key not in seen:
                    yield sym
            seen = set(now)

    def _release(self) -> None:
        if self._cap is not None:
            try:
                self._cap.release()
            finally:
                self._cap = None

    def close(self) -> None:
        with self._lock:
            self._release()


# FFmpeg's pixel formats (as OpenCV's fourcc) whose first plane is the picture's brightness, one byte a pixel
LUMA_FIRST = frozenset({"I420", "IYUV", "YV12", "NV12", "NV21", "J420", "Y800", "GREY", "422P", "444P"})


def _luma_only(cv2: Any, cap: Any) -> bool:
    """Frames of a video file or stream as their brightness plane, taken as FFmpeg decoded it: no colour
    conversion (~3 ms a 1280x720 frame on one core) and a third of the memory per frame (0.9 MB, not 2.7
    MB in BGR). Only where the decoded format puts the brightness first (the planar YUV of files and
    streams); a V4L2 device, or any other format, keeps giving BGR. The values are video range (16-235)."""
    if cap.getBackendName() != "FFMPEG":
        return False
    fourcc = int(cap.get(cv2.CAP_PROP_CODEC_PIXEL_FORMAT)).to_bytes(4, "little").decode("latin-1")
    return fourcc in LUMA_FIRST and bool(cap.set(cv2.CAP_PROP_CONVERT_RGB, 0))


def open_camera(config: dict[str, Any], gray: bool = False) -> Camera:
    """A camera from its config: source (device path or index, file, rtsp:// URL), width, height,
    loop (replay a file), reopen_s, thorough (slower decoding that reads harder pictures),
    stream_timeout_s (an RTSP/HTTP stream that does not answer within it counts as gone). `gray`: frames as
    their brightness only where that is cheaper (a camera that only reads barcodes; see `_luma_only`)."""
    if "source" not in config:
        raise DeviceError("a camera needs 'source' (/dev/video0, a video file or an rtsp:// URL)")
    return Camera(config["source"], config.get("width"), config.get("height"), bool(config.get("loop", False)),
                  float(config.get("reopen_s", 2.0)), bool(config.get("thorough", False)),
                  float(config.get("stream_timeout_s", 5.0)), gray)


class CameraScanner:
    """A camera used as a scanner at a station: each code that comes into view is one ScanEvent (a
    code staying in view is not repeated). Same start/stop/on_error contract as the other scanners."""

    def __init__(self, camera: Camera, station: str, fps: float = 10.0) -> None:
        self.camera, self.station, self.fps = camera, station, fps
        self.source = camera.name
        self.online = False
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_scan: Any, on_error: Any = None) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(on_scan, on_error), daemon=True,
                                        name=f"camera-scanner-{self.station}")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        self.camera.close()

    def _run(self, on_scan: Any, on_error: Any) -> None:
        background_thread()  # decoding frames gives way to the page's scans and the labels they print
        seen: set[tuple[str, str]] = set()
        reported = False
        interval = 1.0 / self.fps if self.fps > 0 else 0.0
        while not self._stop.is_set():
            give_way()  # a packer's scan being served goes first: no new frame is decoded meanwhile
            tick = time.monotonic()
            try:
                frame = self.camera.read_frame()
            except DeviceError as exc:
                self.online, self.last_error = False, str(exc)
                if not reported and on_error is not None:
                    on_error(exc)
                reported = True
                self._stop.wait(max(0.2, self.camera.reopen_s))
                continue
            if frame is None:  # the end of a video file: nothing more will come, let FFmpeg's decoder go (its
                self.online = False  # frame buffers, ~7 MB for a 1280x720 file, were kept until the site stopped)
                self.camera.close()
                return
            self.online, reported = True, False
            now = {(s.format, s.text) for s in self.camera.decode(frame)}
            for fmt_text in sorted(now - seen):
                on_scan(ScanEvent(self.station, fmt_text[1], f"camera {self.source}"))
            seen = now
            self._stop.wait(max(0.0, interval - (time.monotonic() - tick)))
