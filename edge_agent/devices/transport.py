"""Byte pipes to printers: TCP 9100, a device or plain file (USB printer class, serial tty), pyserial,
pyusb, and a CUPS raw queue. Each writes a job in chunks (slow USB printers drop data sent in one
burst) and, where the link is two-way, answers a status query.

Every failure becomes `DeviceGone` (the printer is not there) or `PrinterError`, with a message fit
for a packer; a failed write leaves the job with the caller to send again.
"""

from __future__ import annotations

import os
import select
import shutil
import socket
import subprocess
import time
from typing import Any, Protocol

from edge_agent.devices.base import DeviceGone, PrinterError, need

DEFAULT_CHUNK = 4096


class Transport(Protocol):
    where: str

    def write(self, data: bytes) -> None: ...

    def query(self, request: bytes, timeout: float = 1.0) -> bytes | None: ...

    def close(self) -> None: ...


def write_chunked(transport: Transport, data: bytes, chunk: int = DEFAULT_CHUNK, pause: float = 0.0) -> None:
    """Write `data` in pieces of `chunk` bytes, with an optional pause between them."""
    for start in range(0, len(data), chunk):
        transport.write(data[start:start + chunk])
        if pause and start + chunk < len(data):
            time.sleep(pause)


class TcpTransport:
    """A raw socket printer port (JetDirect 9100). A new connection per job; status over the same."""

    def __init__(self, host: str, port: int = 9100, timeout: float = 5.0, settle_s: float = 0.25) -> None:
        self.host, self.port, self.timeout, self.settle_s = host, int(port), timeout, settle_s
        self.where = f"{host}:{port}"
        self._sock: socket.socket | None = None

    def _connect(self) -> socket.socket:
        if self._sock is None:
            try:
                self._sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            except OSError as exc:
                raise DeviceGone(f"printer at {self.where} is not reachable: {exc.strerror or exc}") from exc
        return self._sock

    def write(self, data: bytes) -> None:
        sock = self._connect()
        try:
            sock.sendall(data)
        except OSError as exc:
            self.close()
            raise DeviceGone(f"printer at {self.where} dropped the connection mid-job: {exc}") from exc

    def finish(self) -> None:
        """End the job: half-close, then give the printer `settle_s` to refuse it (a reset means the
        data did not all arrive). Printers that close their side answer at once; others keep the
        connection open and the wait runs out, which counts as taken."""
        sock = self._sock
        if sock is None:
            return
        try:
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(self.settle_s)
            try:
                sock.recv(1)
            except TimeoutError:
                pass
        except OSError as exc:
            raise DeviceGone(f"printer at {self.where} dropped the connection at the end of the job: {exc}") from exc
        finally:
            self.close()

    def query(self, request: bytes, timeout: float = 1.0) -> bytes | None:
        try:
            with socket.create_connection((self.host, self.port), timeout=timeout) as sock:
                sock.sendall(request)
                sock.settimeout(timeout)
                data = b""
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    try:
                        part = sock.recv(4096)
                    except TimeoutError:
                        break
                    if not part:
                        break
                    data += part
                    if data.count(b"\x03") >= 3 or len(data) >= 1 and request.startswith(b"\x1b!?"):
                        break
                return data or None
        except OSError as exc:
            raise DeviceGone(f"printer at {self.where} is not reachable: {exc.strerror or exc}") from exc

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


class FileTransport:
    """A device node (/dev/usb/lp0, /dev/ttyUSB0) or a plain file the job is appended to.

    Device nodes are written without blocking: a printer that stops taking data (switched off,
    paused, out of paper) makes the write wait at most `timeout` seconds, then fail, instead of
    hanging the print queue forever.
    """

    def __init__(self, path: str, must_exist: bool = True, timeout: float = 10.0) -> None:
        self.path = path
        self.where = path
        self.must_exist = must_exist
        self.timeout = timeout
        self._fd: int | None = None

    def _open(self) -> int:
        if self._fd is None:
            if self.must_exist and not os.path.exists(self.path):
                raise DeviceGone(f"printer device {self.path} is not there (unplugged or switched off?)")
            try:
                if self.must_exist:
                    flags = os.O_WRONLY | os.O_NONBLOCK
                else:
                    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
                self._fd = os.open(self.path, flags, 0o644)
            except PermissionError as exc:
                raise PrinterError(f"no permission to write to {self.path}: add the service user to the "
                                   f"'lp' (USB) or 'dialout' (serial) group") from exc
            except OSError as exc:
                raise DeviceGone(f"printer device {self.path} cannot be opened: {exc.strerror}") from exc
        return self._fd

    def write(self, data: bytes) -> None:
        fd = self._open()
        view = memoryview(data)
        deadline = time.monotonic() + self.timeout
        try:
            while view:
                try:
                    n = os.write(fd, view)
                except BlockingIOError:
                    n = 0
                if n:
                    view = view[n:]
                    deadline = time.monotonic() + self.timeout
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeviceGone(f"printer {self.path} stopped taking data for {self.timeout:g} s "
                                     f"(switched off, paused or out of paper?)")
                select.select([], [fd], [], min(left, 0.5))
        except OSError as exc:
            self.close()
            if isinstance(exc, DeviceGone):
                raise
            raise DeviceGone(f"printer device {self.path} failed mid-job: {exc.strerror}") from exc
        except DeviceGone:
            self.close()
            raise

    def query(self, request: bytes, timeout: float = 1.0) -> bytes | None:
        if not os.path.exists(self.path):
            raise DeviceGone(f"printer device {self.path} is not there (unplugged or switched off?)")
        if not self.must_exist:
            return None
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            os.write(fd, request)
            ready, _, _ = select.select([fd], [], [], timeout)
            return os.read(fd, 4096) if ready else None
        except OSError:
            return None
        finally:
            os.close(fd)

    def finish(self) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            try:
                os.close(self._fd)
            finally:
                self._fd = None


class SerialTransport:
    """A serial printer through pyserial (RS-232 or USB CDC-ACM), with hardware flow control."""

    def __init__(self, device: str, baudrate: int = 9600, rtscts: bool = True, timeout: float = 2.0) -> None:
        self.device, self.baudrate, self.rtscts, self.timeout = device, int(baudrate), rtscts, timeout
        self.where = device
        self._port: Any = None

    def _open(self) -> Any:
        serial = need("serial", "serial printer", "pyserial")
        if self._port is None:
            try:
                self._port = serial.Serial(self.device, self.baudrate, rtscts=self.rtscts,
                                           timeout=self.timeout, write_timeout=self.timeout * 5)
            except serial.SerialException as exc:
                raise DeviceGone(f"serial printer {self.device} cannot be opened: {exc}") from exc
        return self._port

    def write(self, data: bytes) -> None:
        serial = need("serial", "serial printer", "pyserial")
        port = self._open()
        try:
            port.write(data)
            port.flush()
        except (serial.SerialException, OSError) as exc:
            self.close()
            raise DeviceGone(f"serial printer {self.device} failed mid-job: {exc}") from exc

    def query(self, request: bytes, timeout: float = 1.0) -> bytes | None:
        port = self._open()
        try:
            port.reset_input_buffer()
            port.write(request)
            port.timeout = timeout
            return port.read(256) or None
        except OSError as exc:
            self.close()
            raise DeviceGone(f"serial printer {self.device} is not answering: {exc}") from exc

    def finish(self) -> None:
        pass

    def close(self) -> None:
        if self._port is not None:
            try:
                self._port.close()
            finally:
                self._port = None


class UsbTransport:
    """A USB printer by vendor/product id through pyusb (when no kernel usblp device node exists)."""

    def __init__(self, vendor_id: int, product_id: int, timeout_ms: int = 5000) -> None:
        self.vendor_id, self.product_id, self.timeout_ms = vendor_id, product_id, timeout_ms
        self.where = f"usb {vendor_id:04x}:{product_id:04x}"
        self._dev: Any = None
        self._out: Any = None
        self._in: Any = None

    def _open(self) -> None:
        usb_core = need("usb.core", "USB printer", "pyusb")
        usb_util = need("usb.util", "USB printer", "pyusb")
        if self._dev is not None:
            return
        dev = usb_core.find(idVendor=self.vendor_id, idProduct=self.product_id)
        if dev is None:
            raise DeviceGone(f"USB printer {self.where} is not plugged in")
        try:
            if dev.is_kernel_driver_active(0):
                dev.detach_kernel_driver(0)
        except (NotImplementedError, usb_core.USBError):
            pass
        intf = dev.get_active_configuration()[(0, 0)]
        direction = usb_util.endpoint_direction
        self._out = usb_util.find_descriptor(
            intf, custom_match=lambda e: direction(e.bEndpointAddress) == usb_util.ENDPOINT_OUT)
        self._in = usb_util.find_descriptor(
            intf, custom_match=lambda e: direction(e.bEndpointAddress) == usb_util.ENDPOINT_IN)
        self._dev = dev

    def write(self, data: bytes) -> None:
        usb_core = need("usb.core", "USB printer", "pyusb")
        self._open()
        try:
            self._out.write(data, self.timeout_ms)
        except usb_core.USBError as exc:
            self.close()
            raise DeviceGone(f"USB printer {self.where} failed mid-job: {exc}") from exc

    def query(self, request: bytes, timeout: float = 1.0) -> bytes | None:
        self.write(request)
        if self._in is None:
            return None
        try:
            return bytes(self._in.read(256, int(timeout * 1000))) or None
        except Exception:
            return None

    def finish(self) -> None:
        pass

    def close(self) -> None:
        self._dev = self._out = self._in = None


class CupsTransport:
    """A CUPS queue set up as raw: the job goes through `lp -d QUEUE -o raw` untouched."""

    def __init__(self, queue: str, lp: str = "lp", lpstat: str = "lpstat") -> None:
        self.queue, self.lp, self.lpstat = queue, lp, lpstat
        self.where = f"CUPS queue {queue}"
        self._buffer = bytearray()

    def _tool(self, name: str) -> str:
        path = shutil.which(name)
        if not path:
            raise PrinterError(f"CUPS is not installed on this box ({name!r} not found); install the "
                               f"'cups-client' package or use a direct printer backend")
        return path

    def write(self, data: bytes) -> None:
        self._tool(self.lp)
        self._buffer += data

    def finish(self) -> None:
        data, self._buffer = bytes(self._buffer), bytearray()
        lp = self._tool(self.lp)
        try:
            proc = subprocess.run([lp, "-d", self.queue, "-o", "raw"], input=data, capture_output=True,
                                  timeout=30)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PrinterError(f"{self.where}: lp did not take the job: {exc}") from exc
        if proc.returncode != 0:
            message = proc.stderr.decode(errors="replace").strip() or f"exit status {proc.returncode}"
            raise DeviceGone(f"{self.where} refused the job: {message}")

    def query(self, request: bytes, timeout: float = 1.0) -> bytes | None:
        return None

    def queue_status(self) -> tuple[bool, str]:
        lpstat = self._tool(self.lpstat)
        try:
            proc = subprocess.run([lpstat, "-p", self.queue], capture_output=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"lpstat failed: {exc}"
        text = (proc.stdout or proc.stderr).decode(errors="replace").strip()
        online = proc.returncode == 0 and "disabled" not in text
        return online, text or f"lpstat exit status {proc.returncode}"

    def close(self) -> None:
        self._buffer = bytearray()
