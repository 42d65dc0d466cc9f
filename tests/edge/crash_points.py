"""Run `marketsync edge serve` with its print worker held at one instant of printing a label, so a test
can SIGKILL the real process exactly there (what a power cut does at that instant):

    python crash_points.py INSTANT NTH MARKER edge serve --config edge.toml

INSTANT is one of
- before_write: the printer was handed the job, not one byte went yet;
- during_write: half of the label's bytes went — into the virtual printer's file being written, or to
  the python-escpos File device standing in for a physical printer;
- after_write: every byte went (the virtual printer's file is there under its own name), the print
  journal not told yet.
The NTH job sent reaches the instant: the worker writes MARKER and waits there for ever (the rest of
the process goes on); the test kills the process. Nothing here changes what is printed."""

from __future__ import annotations

import builtins
import os
import sys
import threading
from pathlib import Path
from typing import Any

INSTANTS = ("before_write", "during_write", "after_write")


def install(instant: str, nth: int, marker: Path) -> None:
    from escpos.printer import File

    from edge_agent.devices import printers

    if instant not in INSTANTS:
        raise SystemExit(f"unknown instant {instant!r}; expected one of {', '.join(INSTANTS)}")
    sent = {"jobs": 0}

    def held(what: str) -> None:
        marker.write_text(what, encoding="utf-8")
        threading.Event().wait()  # for ever: the test kills the process here

    def this_job() -> bool:
        return sent["jobs"] == nth

    for cls in (printers.VirtualPrinter, printers.EscposPrinter, printers.RawPrinter):
        def send(self: Any, job: Any, _send: Any = cls.send) -> None:
            sent["jobs"] += 1
            if instant == "before_write" and this_job():
                held(instant)
            _send(self, job)
            if instant == "after_write" and this_job():
                held(instant)
        cls.send = send

    if instant != "during_write":
        return
    real_write, real_open, real_raw = os.write, builtins.open, File._raw

    def half_then_hold(write: Any, data: Any) -> None:
        write(bytes(data[:max(1, len(data) // 2)]))
        held(instant)

    def os_write(fd: int, data: Any) -> int:  # the virtual printer's own write of its .part file
        if this_job() and os.readlink(f"/proc/self/fd/{fd}").endswith(".part"):
            half_then_hold(lambda b: real_write(fd, b), data)
        return real_write(fd, data)

    class HalfFile:  # a .part file written through open() (as PIL's Image.save does)
        def __init__(self, f: Any) -> None:
            self._f = f

        def write(self, data: Any) -> int:
            if this_job():
                half_then_hold(self._f.write, data)
            return self._f.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self._f, name)

        def __enter__(self) -> Any:
            return self

        def __exit__(self, *exc: Any) -> None:
            self._f.close()

    def open_(file: Any, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and str(file).endswith(".part") and "w" in mode:
            return HalfFile(f)
        return f

    def raw(self: Any, msg: bytes) -> None:  # python-escpos's File device: bytes to the printer
        if this_job():
            half_then_hold(lambda b: real_raw(self, b), msg)
        real_raw(self, msg)

    os.write, builtins.open, File._raw = os_write, open_, raw


if __name__ == "__main__":
    install(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
    from marketsync.cli import main

    raise SystemExit(main(sys.argv[4:]))
