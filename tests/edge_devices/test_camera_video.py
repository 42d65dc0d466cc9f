"""Cameras and packing video, with video files generated here (cv2.VideoWriter, barcodes drawn in)
standing in for a USB camera or an RTSP stream, which this machine does not have. A camera that
disappears mid-order is played by a wrapper whose reads fail for a while (said where it is used)."""

from __future__ import annotations

import os
import time

import cv2
import numpy as np
import pytest

from edge_agent.barcodes import symbol_image
from edge_agent.devices import DeviceGone
from edge_agent.devices.camera import open_camera
from edge_agent.video import PackingRecorder, Retention, apply_retention

GS = "\x1d"
MARK = "0104600439931256215Ks1234" + GS + "91EE07" + GS + "92dGhpcyBpcyBhIHRlc3Q="


def make_video(path, frames=24, size=(640, 480), codes_from=4):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 12, size)
    assert writer.isOpened()
    dm = np.asarray(symbol_image("datamatrix", MARK, 6).convert("L"))
    bars = np.asarray(symbol_image("code128", "WB-ORDER-555", 2, 90).convert("L"))
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), 200, np.uint8)
        cv2.putText(frame, f"frame {i}", (20, 460), cv2.FONT_HERSHEY_SIMPLEX, 1, (40, 40, 40), 2)
        if i >= codes_from:
            y, x = 60, 60 + (i % 5) * 4  # the parcel moves a little
            frame[y - 24:y + dm.shape[0] + 24, x - 24:x + dm.shape[1] + 24] = 255
            frame[y:y + dm.shape[0], x:x + dm.shape[1]] = dm[:, :, None]
            frame[300 - 20:300 + bars.shape[0] + 20, 200 - 30:200 + bars.shape[1] + 30] = 255
            frame[300:300 + bars.shape[0], 200:200 + bars.shape[1]] = bars[:, :, None]
        writer.write(frame)
    writer.release()
    return path


def test_camera_reads_datamatrix_and_code128_from_video(tmp_path):
    cam = open_camera({"source": str(make_video(tmp_path / "parcel.mp4"))})
    found = list(cam.codes())
    assert sorted((s.format, s.text) for s in found) == [("Code128", "WB-ORDER-555"), ("DataMatrix", MARK)]
    assert cam.read_frame() is None  # end of the file
    cam.close()


def test_camera_gone_and_back(tmp_path):
    with pytest.raises(DeviceGone, match="not plugged in"):
        open_camera({"source": "/dev/video97"}).read_frame()
    import socket

    with socket.socket() as s:  # a port nobody listens on: the RTSP camera is off
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DeviceGone, match="cannot be opened"):
        open_camera({"source": f"rtsp://127.0.0.1:{port}/stream", "stream_timeout_s": 2}).read_frame()
    video = make_video(tmp_path / "cam.mp4", frames=6)
    moved = tmp_path / "away.mp4"
    cam = open_camera({"source": str(video), "reopen_s": 0})
    assert cam.read_frame() is not None
    cam.close()
    os.rename(video, moved)
    with pytest.raises(DeviceGone):
        cam.read_frame()
    os.rename(moved, video)  # back: the next read reopens it
    assert cam.read_frame() is not None
    cam.close()


class FlakyCamera:
    """Wraps a real file camera; reads fail with DeviceGone between `gone_from` and `gone_to` reads
    (a USB camera unplugged and plugged back mid-order)."""

    def __init__(self, camera, gone_from, gone_to):
        self.camera, self.gone_from, self.gone_to, self.reads = camera, gone_from, gone_to, 0

    def read_frame(self):
        self.reads += 1
        if self.gone_from <= self.reads < self.gone_to:
            raise DeviceGone("camera /dev/video0 stopped giving pictures (unplugged)")
        return self.camera.read_frame()


def test_packing_video_from_first_scan_to_label(tmp_path):
    cam = open_camera({"source": str(make_video(tmp_path / "desk.mp4", frames=12)), "loop": True})
    rec = PackingRecorder(FlakyCamera(cam, 4, 6), tmp_path / "videos", fps=25)
    rec.order_scanned("ORD-1")
    rec.order_scanned("ORD-1")  # later scans of the same order do not restart it
    time.sleep(1.0)
    done = rec.label_printed("ORD-1")
    assert done is not None and done.path.exists() and done.path.name.startswith("ORD-1_")
    assert done.gaps == 1 and done.frames >= 5
    assert not list((tmp_path / "videos").glob("*.part.mp4"))
    back = cv2.VideoCapture(str(done.path))
    ok, frame = back.read()
    back.release()
    assert ok
    # the burned-in caption: a black band with white text at the top left
    band = frame[:20, :200]
    assert band.mean() < 120 and band.max() > 150
    assert rec.label_printed("ORD-1") is None  # already stopped
    cam.close()


def test_retention_keeps_the_newest(tmp_path):
    now = time.time()
    for i in range(6):
        p = tmp_path / f"o{i}.mp4"
        p.write_bytes(b"x" * 1000)
        os.utime(p, (now - (6 - i) * 3600, now - (6 - i) * 3600))
    old = tmp_path / "ancient.mp4"
    old.write_bytes(b"x")
    os.utime(old, (now - 90 * 86400, now - 90 * 86400))
    deleted = apply_retention(tmp_path, Retention(max_files=4, max_bytes=3500, max_age_days=30), now=now)
    assert sorted(p.name for p in deleted) == ["ancient.mp4", "o0.mp4", "o1.mp4", "o2.mp4"]
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == ["o3.mp4", "o4.mp4", "o5.mp4"]


def _desk_scanner(tmp_path):
    """A camera scanner of station pack-3 reading a 10-frame video file, started; (scanner, events got)."""
    from edge_agent.devices.scanners import open_scanner

    s = open_scanner({"kind": "camera", "source": str(make_video(tmp_path / "desk.mp4", frames=10)),
                      "station": "pack-3", "fps": 50})
    got = []
    s.start(got.append)
    return s, got


def test_camera_as_a_station_scanner(tmp_path):
    from edge_agent.devices.scanners import open_scanner, wait_for

    s, got = _desk_scanner(tmp_path)
    try:
        assert wait_for(lambda: len(got) >= 2)
        time.sleep(0.3)
    finally:
        s.stop()
    assert sorted((e.station, e.text) for e in got) == [("pack-3", MARK), ("pack-3", "WB-ORDER-555")]
    gone = open_scanner({"kind": "camera", "source": "/dev/video96", "station": "pack-4", "reopen_s": 0.05})
    errors = []
    gone.start(got.append, errors.append)
    try:
        assert wait_for(lambda: errors)
        assert isinstance(errors[0], DeviceGone) and len(errors) == 1
    finally:
        gone.stop()


def test_a_scanner_camera_lets_its_video_file_go_at_its_end(tmp_path):
    """Once a video file has ended nothing more comes from it: the scanner releases the capture (FFmpeg's
    decoder and its frame buffers, ~7 MB at 1280x720 on the Pi bench) instead of holding it until the site
    stops, and the camera keeps no frame of it."""
    from edge_agent.devices.scanners import wait_for

    s, got = _desk_scanner(tmp_path)
    try:
        assert wait_for(lambda: len(got) >= 2)
        assert wait_for(lambda: not s._thread.is_alive())  # the file ended
        assert s.camera._cap is None
        assert not [v for v in vars(s.camera).values() if isinstance(v, np.ndarray) and v.size >= 640 * 480]
    finally:
        s.stop()


def test_camera_and_packing_video_threads_give_way_to_scans(tmp_path):
    """On one core a scan's label must not wait for frames being decoded or encoded: the camera scanner's
    and the packing video's threads run at a background priority (a higher nice value, theirs only)."""
    from edge_agent.background import BACKGROUND_NICE, thread_nice
    from edge_agent.devices.scanners import open_scanner, wait_for

    video = str(make_video(tmp_path / "desk.mp4", frames=10))
    s = open_scanner({"kind": "camera", "source": video, "station": "pack-3", "fps": 5, "loop": True})
    rec = PackingRecorder(open_camera({"source": video, "loop": True}), tmp_path / "videos", fps=5)
    s.start(lambda _event: None)
    rec.order_scanned("o-1")
    try:
        scanner_tid, video_tid = s._thread.native_id, rec._thread.native_id
        assert wait_for(lambda: thread_nice(scanner_tid) == BACKGROUND_NICE)
        assert wait_for(lambda: thread_nice(video_tid) == BACKGROUND_NICE)
        assert thread_nice(None) == os.getpriority(os.PRIO_PROCESS, 0) < BACKGROUND_NICE  # the caller's stays
    finally:
        rec.label_printed("o-1")
        s.stop()


def test_a_scanner_camera_takes_the_brightness_plane_only(tmp_path):
    """A camera that only reads barcodes takes the frames' brightness as FFmpeg decoded them (no colour
    conversion, a third of the memory); a packing video's camera keeps its colours."""
    from edge_agent.devices.scanners import open_scanner

    video = str(make_video(tmp_path / "desk.mp4", frames=8))
    scanner = open_scanner({"kind": "camera", "source": video, "station": "pack-3"})
    colour = open_camera({"source": video})
    try:
        gray, bgr = scanner.camera.read_frame(), colour.read_frame()
        assert bgr.shape == (480, 640, 3) and gray.shape == (480, 640) and gray.dtype == np.uint8
        ref = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(int)
        assert np.abs(gray.astype(int) - (16 + ref * 219 / 255)).mean() < 3  # the same picture, video range
        assert sorted(s.text for s in scanner.camera.codes()) == [MARK, "WB-ORDER-555"]  # read from it
    finally:
        scanner.camera.close()
        colour.close()


def test_the_camera_scanner_decodes_no_new_frame_while_a_scan_is_served(tmp_path):
    """A nice value only weighs shares of the core: while a packer's scan and its label are served
    (`background.foreground`), the camera scanner starts no new frame; it goes on once the scan is done
    (or after GIVE_WAY_MAX_S, were a scan to hang)."""
    from edge_agent.background import foreground, give_way
    from edge_agent.devices.scanners import open_scanner, wait_for

    assert give_way() == 0.0  # nothing served: no wait
    video = str(make_video(tmp_path / "desk.mp4", frames=10))
    s = open_scanner({"kind": "camera", "source": video, "station": "pack-3", "fps": 50, "loop": True})
    with foreground():
        s.start(lambda _event: None)
        time.sleep(0.15)
        assert s.camera.frames == 0
    try:
        assert wait_for(lambda: s.camera.frames > 0)
    finally:
        s.stop()
