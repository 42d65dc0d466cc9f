"""Work that must never keep a packer waiting, on a box with one or few cores.

Owns `background_thread()`: the calling thread gives way to the rest of the agent by a higher nice
value (Linux keeps one per thread), so a scan sent from the page and the print worker that sends its
label run first, and the threads marked so — the camera scanners decoding frames, the packing video,
the labels rendered ahead — take the time left over. On an idle box they still get the whole core
(a nice value only weighs threads that want the CPU at the same time). Only the thread's own value
is raised (an unprivileged process can never lower it back), and never lowered where the process
was started nicer than this already.

Owns `foreground()` and `give_way()` too: a nice value weighs the threads' shares of the core, but a
frame already being decoded keeps the core for its slice and takes turns at the GIL with the scan; so
while a packer's scan is served (the page's request and the label it prints) the background threads
that call `give_way()` between their pieces of work start no new one (a camera skips to the next frame
after it, at most `GIVE_WAY_MAX_S` later).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("marketsync.edge")
BACKGROUND_NICE = 10  # scheduler weight ~1/10 of a normal thread's: a request waiting for the core goes first
GIVE_WAY_MAX_S = 0.25  # the longest a background thread waits for the packers' work in `give_way`
_foreground = 0  # packers' pieces of work being served now
_served = threading.Condition()


def thread_nice(tid: int | None = None) -> int:
    """The nice value of a thread of this process (the calling one when `tid` is None)."""
    return os.getpriority(os.PRIO_PROCESS, tid if tid is not None else threading.get_native_id())


def background_thread(nice: int = BACKGROUND_NICE) -> bool:
    """Make the calling thread background work (nice `nice`); False where the system does not allow it."""
    try:
        tid = threading.get_native_id()
        if thread_nice(tid) < nice:
            os.setpriority(os.PRIO_PROCESS, tid, nice)
        return True
    except (OSError, AttributeError) as exc:  # not Linux, or a sandbox that refuses it: only slower scans
        log.debug("background thread keeps its priority: %s", exc)
        return False


@contextmanager
def foreground() -> Iterator[None]:
    """A piece of work a packer waits for (a scan and its label): `give_way()` waits while it runs."""
    global _foreground
    with _served:
        _foreground += 1
    try:
        yield
    finally:
        with _served:
            _foreground -= 1
            if not _foreground:
                _served.notify_all()


def give_way(max_wait: float = GIVE_WAY_MAX_S) -> float:
    """Between two pieces of background work: wait while a packer's work is served (at most `max_wait`).
    Returns the seconds waited."""
    with _served:
        if not _foreground:
            return 0.0
        t0 = time.monotonic()
        _served.wait_for(lambda: not _foreground, max_wait)
        return time.monotonic() - t0
