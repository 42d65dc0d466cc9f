"""Child processes the demo (and the integration tests) start: a service that announces itself.

Every marketsync service prints, as its first stdout line, one JSON object saying where it listens
(`{"marketplace","url","credentials"}` for a sandbox, `{"role","url",...}` for the cloud and the edge).
`Service.start` runs the command in its own process group, waits for that line, and sends the rest of
its output to a log file. `Service.stop` ends the whole group: SIGTERM, then SIGKILL after a grace
period, so nothing is left running even when a child started children of its own.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any


class ServiceFailed(RuntimeError):
    """A service exited or stayed silent before announcing itself; the message carries its log tail."""


@dataclass
class Service:
    name: str
    argv: list[str]
    log_path: Path
    env: dict[str, str] | None = None
    cwd: str | None = None
    announcement: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen | None = None
    _pump: threading.Thread | None = None

    def start(self, timeout: float = 60.0) -> dict[str, Any]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 - closed by the pump thread
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        if self.env:
            env.update(self.env)
        self.proc = subprocess.Popen(
            self.argv,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.cwd,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = _read_line(self.proc.stdout, timeout)
        if not line:
            code = self.proc.poll()
            self.stop()
            raise ServiceFailed(
                f"{self.name} did not start ({'exited with ' + str(code) if code is not None else 'no answer'}"
                f" in {timeout:.0f}s); its log {self.log_path}:\n{tail(self.log_path)}"
            )
        try:
            self.announcement = json.loads(line)
        except json.JSONDecodeError:
            self.stop()
            raise ServiceFailed(f"{self.name} announced something that is not JSON: {line[:200]!r}") from None
        self._pump = threading.Thread(target=_pump, args=(self.proc.stdout, log), daemon=True)
        self._pump.start()
        return self.announcement

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        """Stop the service's whole process group; return its exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # children that outlived their parent (same session) go too
        _signal_group(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _read_line(stream: IO[bytes], timeout: float) -> str:
    sel = selectors.DefaultSelector()
    sel.register(stream, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    fd = stream.fileno()
    while time.monotonic() < deadline:
        if not sel.select(timeout=max(0.0, deadline - time.monotonic())):
            continue
        chunk = os.read(fd, 1)
        if not chunk:
            break
        if chunk == b"\n":
            if buf.strip():
                return buf.decode("utf-8", "replace").strip()
            continue
        buf += chunk
    sel.close()
    return ""


def _pump(stream: IO[bytes], log: IO[bytes]) -> None:
    try:
        for chunk in iter(lambda: stream.read1(65536) if hasattr(stream, "read1") else stream.read(65536), b""):
            log.write(chunk)
    except (OSError, ValueError):
        pass
    finally:
        log.close()


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text("utf-8", "replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def marketsync_argv(*args: str) -> list[str]:
    """The command line that runs `marketsync ARGS` with this very interpreter."""
    return [sys.executable, "-m", "marketsync.cli", *args]


def subprocess_run(argv: list[str], timeout: float = 300.0) -> subprocess.CompletedProcess:
    """Run a one-shot command to completion, capturing its output as text."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
