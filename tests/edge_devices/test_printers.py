"""Printer backends against stand-ins for hardware this machine does not have: a local TCP server on
127.0.0.1 plays a ZPL/TSPL/ESC-POS network printer (port 9100), a pseudo-terminal plays a serial
printer, python-escpos's Dummy and File backends play USB/file ESC/POS printers. Every printed job is
also decoded back from the virtual printer's raster where the test prints a label."""

from __future__ import annotations

import dataclasses
import os
import pty
import socket

import pytest

from edge_agent.devices import DeviceGone, MissingLibrary, PrinterError
from edge_agent.devices.base import need
from edge_agent.devices.encoders import escpos_to_image
from edge_agent.devices.printers import RawPrinter, open_printer, parse_tspl_status, parse_zpl_host_status
from edge_agent.devices.spool import PrintSpool
from edge_agent.devices.transport import CupsTransport, write_chunked
from edge_agent.labels import own_label, prepare_label

ZPL_HS_PAPER_OUT = b"\x02030,1,0,0464,000,0,0,0,000,0,0,0\x03\r\n\x02000,0,0,0,0,2,6,0,00000000,1,000\x03\r\n\x021234,0\x03\r\n"


def zpl_tcp(port, **extra):
    return open_printer({"kind": "zpl_tcp", "name": "zebra", "host": "127.0.0.1", "port": port, "timeout_s": 2, **extra})


def test_zpl_over_tcp_sends_every_byte_and_reads_status(make, tcp_printer):
    tcp_printer.status_reply = ZPL_HS_PAPER_OUT
    p = zpl_tcp(tcp_printer.port)
    job = prepare_label(make.wb_zpl("WB100200300"), "zpl", p.profile)
    p.send(job)
    st = p.status()
    assert st.paper_out is True and "paper out" in st.detail
    assert tcp_printer.jobs == [job.payload]


def test_zpl_status_parsing_head_open_and_ready():
    ready = b"\x02030,0,0,0464,000,0,0,0,000,0,0,0\x03\x02000,0,0,0,0,2,6,0,00000000,1,000\x03\x021234,0\x03"
    head = b"\x02030,0,0,0464,000,0,0,0,000,0,0,0\x03\x02000,0,1,0,0,2,6,0,00000000,1,000\x03\x021234,0\x03"
    assert parse_zpl_host_status(ready).online and parse_zpl_host_status(ready).paper_out is False
    assert not parse_zpl_host_status(head).online and "head open" in parse_zpl_host_status(head).detail
    assert parse_tspl_status(b"\x04").paper_out is True
    assert parse_tspl_status(b"\x00").online and parse_tspl_status(b"\x00").detail == "ready"


def test_printer_unplugged_mid_job_then_back_prints_whole_label(make, tmp_path):
    """The 'printer' drops the connection after 1 KB; the job fails with a clear error, stays in the spool,
    survives a restart of the spool, and prints whole once a working printer listens on the port again."""
    dropping = make.TcpPrinter(drop_after=1024)
    port = dropping.port
    p = open_printer({"kind": "zpl_tcp", "name": "zebra", "host": "127.0.0.1", "port": port, "timeout_s": 2,
                      "chunk_bytes": 256})
    job = own_label("box", "BOX-77", "Коробка 1 из 2", {"language": "zpl", "name": "zebra"})
    assert len(job.payload) > 1024
    spool = PrintSpool(tmp_path / "spool", p)
    try:
        with pytest.raises(PrinterError, match="will print when the printer is back"):
            p.send(job)
        result = spool.submit(job, "order-77")
        assert not result.printed and "zebra" in result.message
    finally:
        dropping.close()
    assert spool.pending() == ["order-77"]
    spool.submit(job, "order-77")  # a second click does not queue it twice
    assert spool.pending() == ["order-77"]
    assert dropping.jobs == []
    spool2 = PrintSpool(tmp_path / "spool", p)  # the box restarted: the job is still there
    with pytest.raises(DeviceGone):
        p.transport.query(b"~HS", timeout=0.5)  # nobody listens now: the printer is gone
    assert not p.status().online
    back = make.TcpPrinter(port=port)
    try:
        results = spool2.retry()
        assert [r.printed for r in results] == [True]
        assert spool2.pending() == []
        assert back.jobs == [job.payload]
    finally:
        back.close()


def test_tspl_over_tcp_and_serial_pty(make, tcp_printer, tmp_path):
    tcp_printer.status_reply = b"\x00"
    p = open_printer({"kind": "tspl_tcp", "host": "127.0.0.1", "port": tcp_printer.port, "timeout_s": 2})
    job = prepare_label(make.wb_png("TSPL-1"), "png", p.profile)
    p.send(job)
    assert tcp_printer.jobs == [job.payload] and job.payload.startswith(b"SIZE 58 mm,40 mm")
    assert p.status().detail == "ready"
    master, slave = pty.openpty()
    try:
        sp = open_printer({"kind": "tspl_serial", "device": os.ttyname(slave), "rtscts": False, "baudrate": 115200})
        reader = _Drain(master)
        sp.send(job)
        sp.close()
        assert reader.wait_for(len(job.payload)) == job.payload
    finally:
        os.close(master)
        os.close(slave)


class _Drain:
    """Reads the master side of a pty in a thread (a serial printer's input)."""

    def __init__(self, fd):
        import threading

        self.fd, self.data = fd, b""
        self.t = threading.Thread(target=self._run, daemon=True)
        self.t.start()

    def _run(self):
        import select

        while True:
            r, _, _ = select.select([self.fd], [], [], 5)
            if not r:
                return
            try:
                part = os.read(self.fd, 65536)
            except OSError:
                return
            if not part:
                return
            self.data += part

    def wait_for(self, n, timeout=5.0):
        import time

        end = time.monotonic() + timeout
        while len(self.data) < n and time.monotonic() < end:
            time.sleep(0.01)
        return self.data


def test_escpos_dummy_file_and_network(make, tcp_printer, tmp_path):
    from escpos.printer import Dummy

    dummy = Dummy()
    p = open_printer({"kind": "escpos_usb", "name": "receipt", "device_object": dummy, "chunk_bytes": 512})
    job = prepare_label(make.wb_png("ESCPOS-42"), "png", p.profile)
    p.send(job)
    assert dummy.output == job.payload
    image = escpos_to_image(dummy.output, p.profile)
    import numpy as np
    import zxingcpp

    assert [b.text for b in zxingcpp.read_barcodes(np.asarray(image.convert("L")))] == ["ESCPOS-42"]
    st = p.status()
    assert st.online and st.paper_out is None  # a Dummy cannot answer DLE EOT

    out = tmp_path / "escpos.bin"
    out.write_bytes(b"")
    pf = open_printer({"kind": "escpos_file", "device": str(out)})
    pf.send(job)
    pf.close()
    assert out.read_bytes() == job.payload

    pn = open_printer({"kind": "escpos_network", "host": "127.0.0.1", "port": tcp_printer.port})
    pn.send(job)
    pn.close()
    import time

    for _ in range(200):
        if tcp_printer.jobs:
            break
        time.sleep(0.01)
    assert tcp_printer.jobs == [job.payload]


def test_missing_device_gives_clear_errors(tmp_path):
    p = open_printer({"kind": "zpl_usb", "device": str(tmp_path / "no-such-lp0")})
    job = own_label("item", "4601234567893", "", p.profile)
    with pytest.raises(PrinterError, match="not there"):
        p.send(job)
    assert not p.status().online
    pe = open_printer({"kind": "escpos_file", "device": "/dev/usb/lp-missing"})
    with pytest.raises(PrinterError, match="not there"):
        pe.send(prepare_label(own_label("item", "ABC", "", {"language": "raster"}).payload, "png", pe.profile))
    with pytest.raises(PrinterError, match="unknown printer kind"):
        open_printer({"kind": "laser"})
    with pytest.raises(PrinterError, match="speaks zpl, not escpos"):
        open_printer({"kind": "zpl_tcp", "language": "escpos"})
    # connecting to a closed port: the printer is switched off
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    off = zpl_tcp(free)
    with pytest.raises(PrinterError, match="not reachable"):
        off.send(job if job.language == "zpl" else own_label("item", "1", "", off.profile))


def test_cups_absent_gives_clear_error():
    t = CupsTransport("labels", lp="lp-not-installed-here", lpstat="lpstat-not-installed-here")
    p = RawPrinter("cups", open_printer({"kind": "virtual"}).profile, t)
    job = own_label("item", "4601234567893", "", p.profile)
    with pytest.raises(PrinterError, match="CUPS is not installed"):
        p.send(job)
    assert not p.status().online and "CUPS is not installed" in p.status().detail


def test_file_printer_and_chunked_writes(tmp_path):
    path = tmp_path / "out.zpl"
    p = open_printer({"kind": "file", "language": "zpl", "path": str(path)})
    job = own_label("datamatrix", "0104600439931256215abcdef\x1d93dGVzdA==", "", p.profile)
    p.send(job)
    assert path.read_bytes() == job.payload and p.status().online

    class Recorder:
        where = "recorder"

        def __init__(self):
            self.writes = []

        def write(self, data):
            self.writes.append(data)

    rec = Recorder()
    write_chunked(rec, b"x" * 5000, chunk=1024)
    assert [len(w) for w in rec.writes] == [1024, 1024, 1024, 1024, 904]


def test_optional_library_missing_is_clear():
    with pytest.raises(MissingLibrary, match="needs the Python package 'pyfakeusb'"):
        need("pyfakeusb_not_installed", "USB printer", "pyfakeusb")


def test_virtual_printer_unplug_and_paper_out(make, tmp_path):
    p = open_printer({"kind": "virtual", "name": "v", "out_dir": str(tmp_path)})
    job = prepare_label(make.wb_png("V-1"), "png", p.profile)
    p.unplug()
    assert not p.status().online
    with pytest.raises(PrinterError, match="unplugged"):
        p.send(job)
    p.plug()
    p.paper_out = True
    assert p.status().paper_out
    with pytest.raises(PrinterError, match="out of paper"):
        p.send(job)
    p.paper_out = False
    p.send(job)
    assert make.decode_png(p.last_png) == ["V-1"]


def test_escpos_network_status_by_dle_eot():
    """A TCP stand-in for an ESC/POS network printer answering DLE EOT 1 (online) and DLE EOT 4 (paper)."""
    import threading

    state = {"paper_out": False}
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(0.05)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(0.2)
                while not stop.is_set():
                    try:
                        data = conn.recv(64)
                    except TimeoutError:
                        continue
                    except OSError:
                        break
                    if not data:
                        break
                    if data.endswith(b"\x10\x04\x01"):
                        conn.sendall(b"\x16")
                    elif data.endswith(b"\x10\x04\x04"):
                        conn.sendall(b"\x72" if state["paper_out"] else b"\x12")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    try:
        p = open_printer({"kind": "escpos_network", "host": "127.0.0.1", "port": srv.getsockname()[1]})
        st = p.status()
        assert st.online and st.paper_out is False and st.detail == "ready"
        state["paper_out"] = True
        st = p.status()
        assert st.paper_out is True and "paper out" in st.detail
        p.close()
    finally:
        stop.set()
        t.join(timeout=5)
        srv.close()


def test_zpl_made_for_203_dpi_scaled_on_300_dpi_printer(make, tmp_path):
    p = open_printer({"kind": "virtual", "language": "zpl", "dpi": 300, "out_dir": str(tmp_path)})
    job = prepare_label(make.wb_zpl("WB300"), "zpl", p.profile)
    assert b"^MUd,200,300" in job.payload
    p.send(job)
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(p.last_png).convert("L")) < 128
    cols = np.where(img.any(axis=0))[0]
    assert cols.max() - cols.min() > 0.9 * p.profile.width_dots  # the frame spans the label, not 2/3 of it
    assert make.decode_png(p.last_png) == ["WB300"]


def test_slow_usb_printer_survives_chunks_and_a_stalled_one_fails_cleanly(make, tmp_path):
    """A FIFO stands in for /dev/usb/lp0: one reader takes 512 bytes every few ms (a slow USB
    printer), another stops reading (a printer switched off: its buffer fills and never drains)."""
    import threading
    import time

    fifo = tmp_path / "lp0"
    os.mkfifo(fifo)
    p = open_printer({"kind": "zpl_usb", "device": str(fifo), "chunk_bytes": 512, "timeout_s": 0.5})
    job = prepare_label(make.wb_png("SLOW-USB-1"), "png", {"language": "zpl"})
    big = job.payload * 600  # ~200 KB, more than a pipe buffer holds: the writer must wait for the printer
    received = bytearray()

    def slow_reader():
        fd = os.open(fifo, os.O_RDONLY)
        try:
            while chunk := os.read(fd, 512):
                received.extend(chunk)
                time.sleep(0.0005)
        finally:
            os.close(fd)

    t = threading.Thread(target=slow_reader, daemon=True)
    t.start()
    time.sleep(0.05)
    from edge_agent.devices.base import PrintJob

    p.send(PrintJob("zpl", big, job.width_dots, job.height_dots, job.dpi))
    t.join(timeout=10)
    assert bytes(received) == big

    stalled = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read
    try:
        with pytest.raises(PrinterError, match="stopped taking data"):
            p.send(PrintJob("zpl", big, job.width_dots, job.height_dots, job.dpi))
    finally:
        os.close(stalled)
    with pytest.raises(PrinterError, match="cannot be opened"):  # nobody at the other end: ENXIO
        p.send(job)


def test_the_virtual_printer_writes_a_label_whole_under_its_jobs_name_and_clears_what_a_crash_left(make, tmp_path):
    """A file named by the job's key appears whole (written beside it as .part, flushed, renamed), so a
    restart can tell the job printed; the half-written .part of a crash is removed when the printer opens."""
    (tmp_path / "20261206-101010-job7-o-1.png.part").write_bytes(b"\x89PNG half")
    p = open_printer({"kind": "virtual", "name": "v", "out_dir": str(tmp_path)})
    assert list(tmp_path.glob("*.part")) == []
    job = prepare_label(make.wb_png("V-2"), "png", p.profile)
    key = "20261206-101011-job8-o-2"
    assert not p.target(key).exists()
    p.send(dataclasses.replace(job, key=key))
    assert p.last_png == p.target(key) == tmp_path / f"{key}.png"
    assert make.decode_png(p.target(key)) == ["V-2"] and list(tmp_path.glob("*.part")) == []
    p.send(job)  # a job no journal named: a file of its own, the first one untouched
    assert len(list(tmp_path.glob("*.png"))) == 2 and make.decode_png(p.last_png) == ["V-2"]


class _PowerCut(BaseException):
    """What the spool sees of the box dying mid-send: nothing after this line runs."""


def test_a_spool_job_the_box_died_sending_is_asked_about_never_resent_on_its_own(make, tmp_path):
    sent: list[bytes] = []

    class Printer:
        name, die = "p", True

        def send(self, job):
            if self.die:
                raise _PowerCut
            sent.append(job.payload)

    printer = Printer()
    job = own_label("box", "BOX-1", "", {"language": "zpl", "name": "p"})
    with pytest.raises(_PowerCut):
        PrintSpool(tmp_path / "spool", printer).submit(job, "order-1")
    (tmp_path / "spool" / "order-2.job.part").write_bytes(b"^XA half")  # a submit a crash cut short
    printer.die = False
    spool = PrintSpool(tmp_path / "spool", printer)  # the box restarted
    assert list((tmp_path / "spool").glob("*.part")) == []
    assert (spool.pending(), spool.asked()) == ([], ["order-1"])
    assert spool.retry() == [] and sent == []  # not sent again on its own
    spool.resolve("order-1", printed=False)  # the packer looked: it did not come out
    assert [r.printed for r in spool.retry()] == [True] and sent == [job.payload]
    assert (spool.pending(), spool.asked()) == ([], [])
