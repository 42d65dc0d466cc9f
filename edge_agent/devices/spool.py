"""A durable print spool: a label is written to disk before it is sent and removed only once the
printer took every byte, so an unplugged printer, a paper-out or a restart of the box loses nothing —
and a job the box died in the middle of sending is never sent again on its own.

Owns `PrintSpool(folder, printer)`: `submit(job, key)` (print now or keep for later; a second submit
with the same key is not printed twice while the first is waiting), `pending()`, `retry()` (send what
is waiting, oldest first; call it when the printer reports online again, or on a timer), `asked()` and
`resolve(key, printed)` (a job that was being sent when the box stopped: nobody knows whether it came
out, so a person looks and says). Each file is written whole or not at all (`write_file_atomically`);
a job's `.sending` file, written before its first byte goes, is the spool's intent record.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_agent.devices.base import DeviceError, PrintJob
from edge_agent.devices.printers import remove_stale_parts, safe_name, write_file_atomically


@dataclass(frozen=True)
class SpoolResult:
    key: str
    printed: bool
    message: str


class PrintSpool:
    def __init__(self, folder: str | os.PathLike, printer: Any) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(self.folder)  # a write a crash cut short: its job was never accepted
        self.printer = printer
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def _paths(self, key: str) -> tuple[Path, Path, Path]:
        base = self.folder / safe_name(key)
        return base.with_suffix(".job"), base.with_suffix(".json"), base.with_suffix(".sending")

    def submit(self, job: PrintJob, key: str) -> SpoolResult:
        """Keep the job on disk, then try to print everything waiting (this job last)."""
        data_path, meta_path, _ = self._paths(key)
        with self._lock:
            if not meta_path.exists():  # the metadata, written last, is what makes the job count
                write_file_atomically(data_path, job.payload)
                meta = {"key": key, "language": job.language, "width_dots": job.width_dots,
                        "height_dots": job.height_dots, "dpi": job.dpi, "description": job.description,
                        "queued": time.time()}
                write_file_atomically(meta_path, json.dumps(meta).encode("utf-8"))
        results = self.retry()
        for result in results:
            if result.key == key:
                return result
        return SpoolResult(key, False, self.last_error or "waiting for the printer")

    def _jobs(self) -> list[tuple[float, str]]:
        metas = []
        for meta_path in self.folder.glob("*.json"):
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            metas.append((meta.get("queued", 0), meta["key"]))
        return sorted(metas)

    def pending(self) -> list[str]:
        """The jobs waiting to be sent, oldest first (not those the box died sending: see `asked`)."""
        return [key for _, key in self._jobs() if not self._paths(key)[2].exists()]

    def asked(self) -> list[str]:
        """The jobs that were being sent when the box stopped: printed or not, nobody knows."""
        return [key for _, key in self._jobs() if self._paths(key)[2].exists()]

    def resolve(self, key: str, printed: bool) -> None:
        """A person looked at the printer: it printed (the job is done) or not (it waits to be sent again)."""
        data_path, meta_path, sending = self._paths(key)
        with self._lock:
            if printed:
                for path in (meta_path, data_path):
                    path.unlink(missing_ok=True)
            sending.unlink(missing_ok=True)

    def _load(self, key: str) -> PrintJob:
        data_path, meta_path, _ = self._paths(key)
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return PrintJob(meta["language"], data_path.read_bytes(), meta["width_dots"], meta["height_dots"],
                        meta["dpi"], meta.get("description", ""), key=key)

    def retry(self) -> list[SpoolResult]:
        """Send what is waiting, oldest first; stop at the first failure (the printer is not back)."""
        results = []
        with self._lock:
            for key in self.pending():
                data_path, meta_path, sending = self._paths(key)
                job = self._load(key)
                write_file_atomically(sending, b"")  # from here a crash leaves a job someone is asked about
                try:
                    self.printer.send(job)
                except DeviceError as exc:  # the printer said it did not take it: it can be sent again
                    sending.unlink(missing_ok=True)
                    self.last_error = str(exc)
                    results.append(SpoolResult(key, False, str(exc)))
                    break
                for path in (meta_path, data_path, sending):
                    path.unlink(missing_ok=True)
                self.last_error = None
                results.append(SpoolResult(key, True, "printed"))
        return results
