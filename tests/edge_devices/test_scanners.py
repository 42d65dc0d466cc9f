"""Scanners: the key-code decoder fed with recorded evdev events (real `evdev.InputEvent` records,
because this machine has no /dev/uinput to drive a virtual keyboard — the uinput variant runs where the
kernel allows it), serial scanners on pseudo-terminal pairs, and the virtual scanner."""

from __future__ import annotations

import os
import pty
import time

import evdev
import pytest

from edge_agent.devices import DeviceGone
from edge_agent.devices.scanners import (
    KEY,
    EvdevScanner,
    KeyDecoder,
    decode_events,
    fix_layout,
    open_scanner,
    open_scanners,
    wait_for,
)

GS = "\x1d"
US_KEYS = {**{c: (c.upper(), False) for c in "abcdefghijklmnopqrstuvwxyz0123456789"},
           **{c.upper(): (c.upper(), True) for c in "abcdefghijklmnopqrstuvwxyz"},
           "-": ("MINUS", False), "=": ("EQUAL", False), "+": ("EQUAL", True), "/": ("SLASH", False),
           ".": ("DOT", False), "_": ("MINUS", True), "!": ("1", True), "%": ("5", True), "&": ("7", True),
           "'": ("APOSTROPHE", False), '"': ("APOSTROPHE", True), "*": ("8", True), ":": ("SEMICOLON", True),
           "<": ("COMMA", True), ">": ("DOT", True), "?": ("SLASH", True), " ": ("SPACE", False)}


def ev(code, value, t=0.0):
    return evdev.InputEvent(int(t), int((t % 1) * 1e6), evdev.ecodes.EV_KEY, code, value)


def type_text(text, gs_as="ctrl]"):
    """The evdev events a US keyboard-wedge scanner sends for `text`, GS sent the given way, then Enter."""
    out = []

    def tap(name, shift=False, ctrl=False):
        if ctrl:
            out.append(ev(KEY["LEFTCTRL"], 1))
        if shift:
            out.append(ev(KEY["LEFTSHIFT"], 1))
        out.extend([ev(KEY[name], 1), ev(KEY[name], 0)])
        if shift:
            out.append(ev(KEY["LEFTSHIFT"], 0))
        if ctrl:
            out.append(ev(KEY["LEFTCTRL"], 0))
        out.append(evdev.InputEvent(0, 0, evdev.ecodes.EV_SYN, 0, 0))

    for ch in text:
        if ch == GS:
            if gs_as == "ctrl]":
                tap("RIGHTBRACE", ctrl=True)
            elif gs_as == "f8":
                tap("F8")
            elif gs_as == "alt0029":
                out.append(ev(KEY["LEFTALT"], 1))
                for d in "0029":
                    tap(f"KP{d}")
                out.append(ev(KEY["LEFTALT"], 0))
            continue
        name, shift = US_KEYS[ch]
        tap(name, shift)
    tap("ENTER")
    return out


MARK = "0104600439931256215Ks1234" + GS + "91EE07" + GS + "92dGhpcyBpcyBhIHRlc3Q="


@pytest.mark.parametrize("gs_as", ["ctrl]", "f8", "alt0029"])
def test_recorded_events_keep_gs1_separators(gs_as):
    events = type_text(MARK.replace("=", "+"), gs_as) + type_text("4601234567893")
    assert decode_events(events) == [MARK.replace("=", "+"), "4601234567893"]


def test_shift_caps_tab_backspace_and_substitutes():
    d = KeyDecoder("us", gs_substitutes=["<GS>"])
    events = type_text("Ab<GS>c")[:-3]  # drop Enter: end with Tab instead
    events += [ev(KEY["CAPSLOCK"], 1), ev(KEY["CAPSLOCK"], 0), ev(KEY["X"], 1), ev(KEY["X"], 0),
               ev(KEY["BACKSPACE"], 1), ev(KEY["Y"], 1), ev(KEY["Y"], 2), ev(KEY["TAB"], 1)]
    got = [t for e in events if (t := d.feed(e.type, e.code, e.value)) is not None]
    assert got == ["Ab" + GS + "cY"]


def test_russian_layout_and_layout_fix():
    keys = ["G", "H", "B", "D", "T", "N"]  # ЙЦУКЕН positions of "привет"
    events = [e for k in keys for e in (ev(KEY[k], 1), ev(KEY[k], 0))] + [ev(KEY["ENTER"], 1)]
    assert decode_events(events, layout="ru") == ["привет"]
    shifted = [ev(KEY["LEFTSHIFT"], 1), ev(KEY["Z"], 1), ev(KEY["LEFTSHIFT"], 0), ev(KEY["ENTER"], 1)]
    assert decode_events(shifted, layout="ru") == ["Я"]
    # a Latin code typed into a page while the OS layout was Russian
    assert fix_layout("Ыр1234") == "Sh1234"


def test_virtual_scanner_buffers_until_started():
    s = open_scanner({"kind": "virtual", "station": "pack-2"})
    s.feed("early")
    got = []
    s.start(got.append)
    s.feed("4601234567893")
    assert [(e.station, e.text) for e in got] == [("pack-2", "early"), ("pack-2", "4601234567893")]
    s.stop()


def test_two_serial_scanners_each_bound_to_its_station_and_unplug_reported():
    pairs = [pty.openpty() for _ in range(2)]
    group = open_scanners([{"kind": "serial", "device": os.ttyname(slave), "station": f"pack-{i + 1}"}
                           for i, (_, slave) in enumerate(pairs)])
    got, errors = [], []
    group.start(got.append, errors.append)
    try:
        assert wait_for(lambda: all(s.online for s in group.scanners))
        os.write(pairs[0][0], MARK.encode() + b"\r\n")
        os.write(pairs[1][0], b"4601234567893\r")
        os.write(pairs[1][0], "Привет\r\n".encode())
        assert wait_for(lambda: len(got) == 3)
        assert sorted((e.station, e.text) for e in got) == [
            ("pack-1", MARK), ("pack-2", "4601234567893"), ("pack-2", "Привет")]
        # unplug the first scanner: its reader reports DeviceGone, the other keeps working
        os.close(pairs[0][0])
        os.close(pairs[0][1])
        assert wait_for(lambda: errors, timeout=5)
        assert isinstance(errors[0], DeviceGone) and "pack-1" in str(errors[0])
        os.write(pairs[1][0], b"AFTER\n")
        assert wait_for(lambda: any(e.text == "AFTER" for e in got))
    finally:
        group.stop()
        for master, slave in pairs[1:]:
            os.close(master)
            os.close(slave)


def test_evdev_scanner_missing_device_reports_gone():
    s = EvdevScanner("/dev/input/event-does-not-exist", "pack-1")
    s.retry_s = 0.05
    errors = []
    s.start(lambda e: None, errors.append)
    try:
        assert wait_for(lambda: errors)
        assert isinstance(errors[0], DeviceGone) and "not plugged in" in str(errors[0])
    finally:
        s.stop()


@pytest.mark.skipif(not os.access("/dev/uinput", os.W_OK),
                    reason="no writable /dev/uinput on this machine: the kernel does not let us create a "
                           "virtual keyboard; the recorded-event tests cover the decoder")
def test_uinput_virtual_keyboard_end_to_end():
    from evdev import UInput

    with UInput(name="marketsync-test-scanner") as ui:
        time.sleep(0.3)
        s = open_scanner({"kind": "evdev", "device": ui.device.path, "station": "pack-9"})
        got = []
        s.start(got.append)
        try:
            assert wait_for(lambda: s.online)
            for e in type_text(MARK.replace("=", "+")):
                ui.write(e.type, e.code, e.value)
            ui.syn()
            assert wait_for(lambda: got)
            assert got[0].text == MARK.replace("=", "+") and got[0].station == "pack-9"
        finally:
            s.stop()


class FakeInputDevice:
    """Stands in for evdev.InputDevice (no /dev/input here): a pipe makes its fd readable, `read()`
    hands out recorded events, and unplugging makes reads fail as the kernel does (ENODEV)."""

    plugged: dict = {}

    def __init__(self, path):
        if path not in FakeInputDevice.plugged:
            raise FileNotFoundError(2, "No such file or directory", path)
        self.path, self.name = path, "Honeywell scanner"
        self.queue = FakeInputDevice.plugged[path]
        self.grabbed = False
        self.queue["device"] = self

    @property
    def fd(self):
        return self.queue["r"]

    def grab(self):
        self.grabbed = True

    def ungrab(self):
        self.grabbed = False

    def read(self):
        os.read(self.queue["r"], 1)
        if self.queue.get("gone"):
            raise OSError(19, "No such device")
        return [self.queue["events"].pop(0)]

    def close(self):
        pass


def _plug(path):
    r, w = os.pipe()
    FakeInputDevice.plugged[path] = {"r": r, "w": w, "events": []}
    return FakeInputDevice.plugged[path]


def _type(q, events):
    for e in events:
        q["events"].append(e)
        os.write(q["w"], b"e")


def test_evdev_scanners_grab_bind_stations_and_survive_unplug(monkeypatch):
    monkeypatch.setattr(evdev, "InputDevice", FakeInputDevice)
    q1, q2 = _plug("/dev/input/by-id/scanner-1"), _plug("/dev/input/by-id/scanner-2")
    group = open_scanners([
        {"kind": "evdev", "device": "/dev/input/by-id/scanner-1", "station": "pack-1"},
        {"kind": "evdev", "device": "/dev/input/by-id/scanner-2", "station": "pack-2", "layout": "ru"},
    ])
    for s in group.scanners:
        s.retry_s = 0.05
    got, errors = [], []
    group.start(got.append, errors.append)
    try:
        assert wait_for(lambda: all(s.online for s in group.scanners))
        assert q1["device"].grabbed and q2["device"].grabbed
        _type(q1, type_text(MARK.replace("=", "+"), "f8"))
        _type(q2, [ev(KEY["G"], 1), ev(KEY["G"], 0), ev(KEY["ENTER"], 1)])
        assert wait_for(lambda: len(got) == 2)
        assert sorted((e.station, e.text) for e in got) == [("pack-1", MARK.replace("=", "+")), ("pack-2", "п")]
        # scanner 1 unplugged mid-scan: the half scan is dropped, the error reported once
        _type(q1, type_text("HALF")[:4])
        q1["gone"] = True
        del FakeInputDevice.plugged["/dev/input/by-id/scanner-1"]
        os.write(q1["w"], b"e")
        assert wait_for(lambda: errors)
        assert isinstance(errors[0], DeviceGone) and "pack-1" in str(errors[0])
        # plugged back in: it reads again without a restart
        q1b = _plug("/dev/input/by-id/scanner-1")
        assert wait_for(lambda: group.scanners[0].online and q1b.get("device") is not None)
        _type(q1b, type_text("4601234567893"))
        assert wait_for(lambda: len(got) == 3)
        assert (got[-1].station, got[-1].text) == ("pack-1", "4601234567893")
        assert len(errors) == 1
    finally:
        group.stop()
        for q in list(FakeInputDevice.plugged.values()) + [q1]:
            for fd in (q["r"], q["w"]):
                try:
                    os.close(fd)
                except OSError:
                    pass
        FakeInputDevice.plugged.clear()
