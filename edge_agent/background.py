"""Work that must never keep a packer waiting, on a box with one or few cores.

Owns `background_thread()`: the calling thread gives way to the rest of the agent by a higher nice
value (Linux keeps one per thread), so a scan sent from the page and the print worker that sends its
label run first, and the threads marked so — the camera scanners decoding frames, the packing video,
the labels rendered ahead — take the time left over. On an idle box they still get the whole core
(a nice value only weighs threads that want the CPU at the same time). Only the thread's own value
is raised (an unprivileged process can never lower it back), and never lowered where the process
was started nicer than this already.
"""

from __future__ import annotations

import logging
import os
import threading

log = logging.getLogger("marketsync.edge")
BACKGROUND_NICE = 10  # scheduler weight ~1/10 of a normal thread's: a request waiting for the core goes first


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
