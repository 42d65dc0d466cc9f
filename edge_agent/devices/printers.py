"""Label printers behind one small contract: `status()`, `send(job)`, `close()`.

Owns `open_printer(config)` and the backends:
- `virtual`: draws each job from its bytes to a PNG in `out_dir` (demo and tests), written atomically
  and named by the job's key, so the print journal can tell after a crash whether a job printed;
- `zpl_tcp|zpl_usb|zpl_serial|tspl_tcp|tspl_usb|tspl_serial|cups|file`: raw bytes over a transport,
  status from ZPL `~HS` / TSPL `ESC !?` where the printer answers;
- `escpos_usb|escpos_network|escpos_serial|escpos_file`: python-escpos devices, status by DLE EOT.
A job in another language, or larger than the loaded label, is refused before a byte is sent.
A send that fails raises PrinterError; the job is untouched and `send` can be called again.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from PIL import Image

from edge_agent.devices.base import (
    DeviceError,
    DeviceGone,
    PrinterError,
    PrinterProfile,
    PrinterStatus,
    PrintJob,
    need,
)
from edge_agent.devices.encoders import escpos_to_image, tspl_to_image
from edge_agent.devices.transport import (
    DEFAULT_CHUNK,
    CupsTransport,
    FileTransport,
    SerialTransport,
    TcpTransport,
    UsbTransport,
    write_chunked,
)
from edge_agent.devices.zpl_render import render_zpl

log = logging.getLogger(__name__)

KINDS = (
    "virtual", "escpos_usb", "escpos_network", "escpos_serial", "escpos_file", "zpl_tcp", "zpl_usb",
    "zpl_serial", "tspl_tcp", "tspl_usb", "tspl_serial", "cups", "file",
)


def check_job(job: PrintJob, profile: PrinterProfile, name: str) -> None:
    """Refuse a job this printer cannot take, before anything is sent."""
    if job.language != profile.language:
        raise PrinterError(f"printer {name} speaks {profile.language.upper()}, but this label was made "
                           f"for {job.language.upper()}: prepare it for this printer")
    if not job.payload:
        raise PrinterError(f"printer {name}: the label is empty")
    if job.width_dots > profile.width_dots + 2 or job.height_dots > profile.height_dots + 2:
        raise PrinterError(
            f"printer {name} has {profile.width_mm:g}x{profile.height_mm:g} mm labels loaded; this label is "
            f"{job.width_dots}x{job.height_dots} dots, larger than {profile.width_dots}x{profile.height_dots}")


def parse_zpl_host_status(reply: bytes) -> PrinterStatus:
    """The answer to ZPL `~HS`: three STX..ETX strings; paper-out and pause in the first, head-up in the second."""
    parts = [p.split(b"\x03", 1)[0].decode("ascii", "replace") for p in reply.split(b"\x02")[1:]]
    if len(parts) < 2:
        return PrinterStatus(True, None, f"printer answered ~HS with something unexpected: {reply[:40]!r}")
    first, second = parts[0].split(","), parts[1].split(",")
    paper_out = first[1:2] == ["1"]
    paused = first[2:3] == ["1"]
    head_up = second[2:3] == ["1"]
    problems = [w for w, flag in (("paper out", paper_out), ("paused", paused), ("head open", head_up)) if flag]
    return PrinterStatus(online=not (paused or head_up), paper_out=paper_out, detail=", ".join(problems) or "ready")


def parse_tspl_status(reply: bytes) -> PrinterStatus:
    """The one-byte answer to TSPL `ESC !?`."""
    if not reply:
        return PrinterStatus(True, None, "printer did not report its status")
    b = reply[0]
    names = {0x01: "head open", 0x02: "paper jam", 0x04: "paper out", 0x08: "ribbon out", 0x10: "paused",
             0x80: "error"}
    problems = [text for bit, text in names.items() if b & bit]
    return PrinterStatus(online=not (b & 0x9B), paper_out=bool(b & 0x04), detail=", ".join(problems) or "ready")


class RawPrinter:
    """ZPL, TSPL or any raw-language printer reached through a byte transport."""

    def __init__(self, name: str, profile: PrinterProfile, transport: Any, chunk: int = DEFAULT_CHUNK,
                 pause: float = 0.0) -> None:
        self.name, self.profile, self.transport = name, profile, transport
        self.chunk, self.pause = chunk, pause
        self._lock = threading.Lock()

    def status(self) -> PrinterStatus:
        try:
            if isinstance(self.transport, CupsTransport):
                online, text = self.transport.queue_status()
                return PrinterStatus(online, None, text)
            if isinstance(self.transport, FileTransport) and not self.transport.must_exist:
                folder = os.path.dirname(os.path.abspath(self.transport.path))
                ok = os.access(folder, os.W_OK)
                return PrinterStatus(ok, None, "file is writable" if ok else f"cannot write to {folder}")
            if self.profile.language == "zpl":
                reply = self.transport.query(b"~HS", timeout=1.0)
                if reply:
                    return parse_zpl_host_status(reply)
            elif self.profile.language == "tspl":
                reply = self.transport.query(b"\x1b!?", timeout=1.0)
                if reply:
                    return parse_tspl_status(reply)
            return PrinterStatus(True, None, f"{self.transport.where} is there; it does not report paper")
        except DeviceError as exc:
            return PrinterStatus(False, None, str(exc))

    def send(self, job: PrintJob) -> None:
        check_job(job, self.profile, self.name)
        with self._lock:
            try:
                write_chunked(self.transport, job.payload, self.chunk, self.pause)
                self.transport.finish()
            except DeviceGone as exc:
                self.transport.close()
                raise PrinterError(f"printer {self.name}: {exc}; the label was kept and will print "
                                   f"when the printer is back") from exc
            except PrinterError:
                self.transport.close()
                raise

    def close(self) -> None:
        self.transport.close()


class EscposPrinter:
    """An ESC/POS printer through python-escpos (Usb, Network, Serial, File device classes)."""

    def __init__(self, name: str, profile: PrinterProfile, make_device: Any, where: str,
                 chunk: int = DEFAULT_CHUNK, pause: float = 0.0) -> None:
        self.name, self.profile, self.where = name, profile, where
        self._make_device = make_device
        self._device: Any = None
        self.chunk, self.pause = chunk, pause
        self._lock = threading.Lock()

    def _dev(self) -> Any:
        if self._device is None:
            try:
                self._device = self._make_device()
                if hasattr(self._device, "open") and getattr(self._device, "_device", True) is False:
                    self._device.open()
            except DeviceError:
                raise
            except Exception as exc:  # python-escpos raises many types for a missing device
                self._device = None
                raise DeviceGone(f"ESC/POS printer {self.where} is not there: {exc}") from exc
        return self._device

    def status(self) -> PrinterStatus:
        try:
            dev = self._dev()
        except DeviceError as exc:
            return PrinterStatus(False, None, str(exc))
        try:
            online_reply = dev.query_status(_escpos_const("RT_STATUS_ONLINE"))
        except Exception:
            online_reply = b""
        if not online_reply:
            return PrinterStatus(True, None, f"{self.where}: the printer does not answer status queries")
        online = not (online_reply[0] & 8)
        try:
            paper = dev.paper_status()
        except Exception:
            paper = None
        paper_out = None if paper is None else paper == 0
        detail = "ready" if online and not paper_out else ", ".join(
            t for t, f in (("offline (cover open or error)", not online), ("paper out", paper_out)) if f)
        if paper == 1:
            detail += " (paper near end)"
        return PrinterStatus(online, paper_out, detail)

    def send(self, job: PrintJob) -> None:
        check_job(job, self.profile, self.name)
        with self._lock:
            try:
                dev = self._dev()
                data = job.payload
                for start in range(0, len(data), self.chunk):
                    dev._raw(data[start:start + self.chunk])
                    if self.pause:
                        time.sleep(self.pause)
                flush = getattr(dev, "flush", None)
                if callable(flush):
                    flush()
            except Exception as exc:
                self.close()
                raise PrinterError(f"printer {self.name} ({self.where}) failed mid-job: {exc}; the label was "
                                   f"kept and will print when the printer is back") from exc

    def close(self) -> None:
        dev, self._device = self._device, None
        if dev is not None:
            try:
                dev.close()
            except Exception:
                pass


def _escpos_const(name: str) -> Any:
    return getattr(need("escpos.constants", "ESC/POS", "python-escpos"), name)


class VirtualPrinter:
    """Prints to PNG files: each job is drawn from the bytes it would send, so what you see is what a
    real printer of that language would print. `unplug()` / `plug()` play a cable being pulled.

    A file appears whole or not at all: it is written to `<name>.part` in the same folder, flushed to
    disk and renamed. A job with a `key` (the print journal's name for it) is written to `target(key)`,
    so after a crash the journal can tell whether it printed by looking for that file. Stale `.part`
    files of a write cut short by a crash are removed when the printer is opened."""

    def __init__(self, name: str, profile: PrinterProfile, out_dir: str | os.PathLike) -> None:
        self.name, self.profile = name, profile
        self.out_dir = Path(out_dir)
        self.plugged = True
        self.paper_out = False
        self.printed: list[Path] = []
        self._lock = threading.Lock()
        self._seq = 0
        remove_stale_parts(self.out_dir)

    def unplug(self) -> None:
        self.plugged = False

    def plug(self) -> None:
        self.plugged = True

    def status(self) -> PrinterStatus:
        if not self.plugged:
            return PrinterStatus(False, None, f"virtual printer {self.name} is unplugged")
        if self.paper_out:
            return PrinterStatus(True, True, "paper out")
        return PrinterStatus(True, False, f"ready, printing to {self.out_dir}")

    def target(self, key: str) -> Path:
        """The file the job named `key` is printed to: there once it printed, absent until then."""
        return self.out_dir / f"{safe_name(key)}.png"

    def render(self, job: PrintJob) -> Any:
        """The label this job prints, as a 1-bit PIL image."""
        if job.language == "zpl":
            return render_zpl(job.payload, self.profile)
        if job.language == "tspl":
            return tspl_to_image(job.payload, self.profile)
        if job.language == "escpos":
            return escpos_to_image(job.payload, self.profile)
        try:
            return Image.open(io.BytesIO(job.payload)).convert("1")
        except Exception as exc:
            raise PrinterError(f"printer {self.name}: the raster label is not an image: {exc}") from exc

    def send(self, job: PrintJob) -> None:
        check_job(job, self.profile, self.name)
        if not self.plugged:
            raise PrinterError(f"printer {self.name} is unplugged; the label was kept and will print "
                               f"when the printer is back")
        if self.paper_out:
            raise PrinterError(f"printer {self.name} is out of paper; load labels and the job will print")
        buf = io.BytesIO()
        self.render(job).save(buf, format="PNG", dpi=(self.profile.dpi, self.profile.dpi))
        with self._lock:
            try:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                path = self.target(job.key) if job.key else self._next_path()
                write_file_atomically(path, buf.getvalue())
            except OSError as exc:
                raise PrinterError(f"virtual printer {self.name} cannot write to {self.out_dir}: {exc}") from exc
            self.printed.append(path)

    def _next_path(self) -> Path:
        """A new file for a job the journal did not name (the printer used on its own)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        while True:
            self._seq += 1
            path = self.out_dir / f"{stamp}-{self._seq:04d}-{safe_name(self.name)}.png"
            if not path.exists():
                return path

    @property
    def last_png(self) -> Path | None:
        return self.printed[-1] if self.printed else None

    def close(self) -> None:
        pass


PART = ".part"  # the suffix of a file being written; renamed to its own name once whole


def safe_name(text: str) -> str:
    """`text` as a file name: letters, digits, '-', '_' and '.' kept, anything else '_'."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)[:120] or "job"


def write_file_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that the file is there whole or not at all, even across a power cut:
    a temporary file in the same folder, flushed to disk (fsync), renamed, and the folder flushed."""
    tmp = path.with_name(path.name + PART)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX: the directory entry is flushed with the folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass  # a file system that cannot flush a folder (some network mounts): the rename still stands
    finally:
        os.close(fd)


def remove_stale_parts(folder: Path) -> list[Path]:
    """Remove the `.part` files a write cut short (by a crash or a power cut) left in `folder`."""
    removed = []
    if folder.is_dir():
        for part in folder.glob(f"*{PART}"):
            try:
                part.unlink()
            except OSError:
                continue
            removed.append(part)
    if removed:
        log.warning("removed %d unfinished file(s) a crash left in %s", len(removed), folder)
    return removed


def _int_id(value: Any) -> int:
    return int(value, 16) if isinstance(value, str) else int(value)


def open_printer(config: dict[str, Any]) -> Any:
    """A printer from its config (TOML table). Nothing is opened until the first status() or send().

    width_mm/height_mm are the label loaded (for an ESC/POS receipt printer: the printable width,
    48 mm on 58 mm paper, 72 mm on 80 mm paper).

    Keys: kind, name, language, dpi, width_mm, height_mm, and per kind: out_dir (virtual, file: path),
    host/port (tcp, network), device (serial, usb device node, escpos_file), baudrate, vendor_id/product_id
    (usb through pyusb), queue (cups), chunk_bytes and chunk_pause_ms (slow USB printers), timeout_s and
    settle_s (tcp: how long to wait for the printer to refuse a job after the last byte).
    """
    kind = str(config.get("kind", "virtual"))
    if kind not in KINDS:
        raise PrinterError(f"unknown printer kind {kind!r}; expected one of {', '.join(KINDS)}")
    defaults = {"escpos": "escpos", "zpl": "zpl", "tspl": "tspl"}
    prefix = kind.split("_", 1)[0]
    conf = dict(config)
    if prefix in defaults:
        conf.setdefault("language", defaults[prefix])
        if conf["language"] != defaults[prefix]:
            raise PrinterError(f"printer kind {kind} speaks {defaults[prefix]}, not {conf['language']}")
    profile = PrinterProfile.from_config(conf)
    name = profile.name
    chunk = int(conf.get("chunk_bytes", DEFAULT_CHUNK))
    pause = float(conf.get("chunk_pause_ms", 0)) / 1000.0
    if kind == "virtual":
        return VirtualPrinter(name, profile, conf.get("out_dir", "var/printed"))
    if prefix == "escpos":
        return _open_escpos(kind, name, profile, conf, chunk, pause)
    if kind in ("zpl_tcp", "tspl_tcp"):
        transport: Any = TcpTransport(str(conf.get("host", "127.0.0.1")), int(conf.get("port", 9100)),
                                      float(conf.get("timeout_s", 5.0)), float(conf.get("settle_s", 0.25)))
    elif kind in ("zpl_usb", "tspl_usb"):
        if "vendor_id" in conf:
            transport = UsbTransport(_int_id(conf["vendor_id"]), _int_id(conf["product_id"]))
        else:
            transport = FileTransport(str(conf.get("device", "/dev/usb/lp0")), timeout=float(conf.get("timeout_s", 10)))
        chunk = int(conf.get("chunk_bytes", 1024))
    elif kind in ("zpl_serial", "tspl_serial"):
        transport = SerialTransport(str(conf.get("device", "/dev/ttyUSB0")), int(conf.get("baudrate", 9600)),
                                    bool(conf.get("rtscts", True)))
    elif kind == "cups":
        if "queue" not in conf:
            raise PrinterError("a cups printer needs 'queue' (the name of a raw CUPS queue)")
        transport = CupsTransport(str(conf["queue"]))
    else:  # file
        transport = FileTransport(str(conf.get("path", conf.get("device", "label.out"))),
                                  must_exist=str(conf.get("path", "")).startswith("/dev/"))
    return RawPrinter(name, profile, transport, chunk, pause)


def _open_escpos(kind: str, name: str, profile: PrinterProfile, conf: dict[str, Any], chunk: int,
                 pause: float) -> EscposPrinter:
    if "device_object" in conf:  # an already made python-escpos device (tests use escpos's Dummy)
        obj = conf["device_object"]
        return EscposPrinter(name, profile, lambda: obj, f"{type(obj).__name__} device", chunk, pause)

    def make() -> Any:
        printer = need("escpos.printer", f"{kind} printer", "python-escpos")
        if kind == "escpos_usb":
            need("usb.core", "escpos_usb printer", "pyusb")
            return printer.Usb(_int_id(conf["vendor_id"]), _int_id(conf["product_id"]),
                               timeout=int(conf.get("timeout_ms", 5000)))
        if kind == "escpos_network":
            return printer.Network(str(conf["host"]), port=int(conf.get("port", 9100)),
                                   timeout=float(conf.get("timeout_s", 5)))
        if kind == "escpos_serial":
            return printer.Serial(str(conf.get("device", "/dev/ttyUSB0")),
                                  baudrate=int(conf.get("baudrate", 9600)))
        path = str(conf.get("device", conf.get("path", "/dev/usb/lp0")))
        if path.startswith("/dev/") and not os.path.exists(path):
            raise DeviceGone(f"printer device {path} is not there (unplugged or switched off?)")
        return printer.File(path)

    where = {"escpos_usb": lambda: f"usb {conf.get('vendor_id')}:{conf.get('product_id')}",
             "escpos_network": lambda: f"{conf.get('host')}:{conf.get('port', 9100)}"}.get(
        kind, lambda: str(conf.get("device", conf.get("path", ""))))()
    if kind == "escpos_usb" and ("vendor_id" not in conf or "product_id" not in conf):
        raise PrinterError("an escpos_usb printer needs vendor_id and product_id")
    if kind == "escpos_network" and "host" not in conf:
        raise PrinterError("an escpos_network printer needs host")
    return EscposPrinter(name, profile, make, where, chunk, pause)
