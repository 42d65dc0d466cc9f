"""What the packers' page's live updates wait on: `Changes`, a version counter bumped on every change
the page should show (a scan, a task that arrived, a label printed, a device problem).

Each bump says what changed (`last`); a waiting stream wakes, compares versions and fetches the new
state. Nothing is queued: a stream that missed bumps simply sees the newest version.
"""

from __future__ import annotations

import threading
from typing import Any


class Changes:
    """A version counter the page's live updates wait on (server-sent events)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.version = 0
        self.last: dict[str, Any] = {}

    def bump(self, what: str, **info: Any) -> None:
        with self._cond:
            self.version += 1
            self.last = {"what": what, "version": self.version, **info}
            self._cond.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        with self._cond:
            self._cond.wait_for(lambda: self.version != seen, timeout=timeout)
            return self.version
