"""A durable print spool: a label is written to disk before it is sent and removed only once the
printer took every byte, so an unplugged printer, a paper-out or a restart of the box loses nothing.

Owns `PrintSpool(folder, printer)`: `submit(job, key)` (print now or keep for later; a second submit
with the same key is not printed twice while the first is waiting), `pending()`, `retry()` (send what
is waiting, oldest first; call it when the printer reports online again, or on a timer).
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


@dataclass(frozen=True)
class SpoolResult:
    key: str
    printed: bool
    message: str


def _safe(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)[:120] or "job"


class PrintSpool:
    def __init__(self, folder: str | os.PathLike, printer: Any) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.printer = printer
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def _paths(self, key: str) -> tuple[Path, Path]:
        base = self.folder / _safe(key)
        return base.with_suffix(".job"), base.with_suffix(".json")

    def submit(self, job: PrintJob, key: str) -> SpoolResult:
        """Keep the job on disk, then try to print everything waiting (this job last)."""
        data_path, meta_path = self._paths(key)
        with self._lock:
            if not data_path.exists():
                tmp = data_path.with_suffix(".job.part")
                tmp.write_bytes(job.payload)
                os.replace(tmp, data_path)
                meta = {"key": key, "language": job.language, "width_dots": job.width_dots,
                        "height_dots": job.height_dots, "dpi": job.dpi, "description": job.description,
                        "queued": time.time()}
                meta_path.write_text(json.dumps(meta), encoding="utf-8")
        results = self.retry()
        for result in results:
            if result.key == key:
                return result
        return SpoolResult(key, False, self.last_error or "waiting for the printer")

    def pending(self) -> list[str]:
        metas = []
        for meta_path in self.folder.glob("*.json"):
            try:
                meta = json.loads(meta_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            metas.append((meta.get("queued", 0), meta["key"]))
        return [key for _, key in sorted(metas)]

    def _load(self, key: str) -> PrintJob:
        data_path, meta_path = self._paths(key)
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        return PrintJob(meta["language"], data_path.read_bytes(), meta["width_dots"], meta["height_dots"],
                        meta["dpi"], meta.get("description", ""))

    def retry(self) -> list[SpoolResult]:
        """Send what is waiting, oldest first; stop at the first failure (the printer is not back)."""
        results = []
        with self._lock:
            for key in self.pending():
                try:
                    job = self._load(key)
                    self.printer.send(job)
                except DeviceError as exc:
                    self.last_error = str(exc)
                    results.append(SpoolResult(key, False, str(exc)))
                    break
                for path in self._paths(key):
                    path.unlink(missing_ok=True)
                self.last_error = None
                results.append(SpoolResult(key, True, "printed"))
        return results
