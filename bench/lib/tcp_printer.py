"""The label printer of the edge benches: a raw TCP 9100 printer on 127.0.0.1, in the bench's process.

Each connection is one job, read to its end; the printer keeps the bytes it received and, for every
job that is not a status query (~HS, ESC!? — 3 or 4 bytes), the time its last byte arrived, so a bench
can wait for the n-th label (`wait_for`). Used by bench/edge_scan_to_label.py and bench/edge_pi.py.
"""

from __future__ import annotations

import socket
import threading
import time


class TcpPrinter:
    """A raw 9100 label printer: `port` to print to, `bytes` received, `jobs` as (arrival time, size)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.bytes = 0
        self.jobs: list[tuple[float, int]] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                size = 0
                while part := conn.recv(65536):
                    size += len(part)
            with self.cond:
                self.bytes += size
                if size and size not in (3, 4):  # not a status query (~HS, ESC!?)
                    self.jobs.append((time.perf_counter(), size))
                    self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 10.0) -> float | None:
        """The arrival time of the n-th job (1-based), or None after `timeout`."""
        end = time.perf_counter() + timeout
        with self.cond:
            while len(self.jobs) < n:
                left = end - time.perf_counter()
                if left <= 0:
                    return None
                self.cond.wait(left)
            return self.jobs[n - 1][0]
