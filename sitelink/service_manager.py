"""Telling systemd how a marketsync service is doing (the sd_notify protocol), for both services.

It lives in sitelink because sitelink is the one package the cloud and the edge both install; it knows
nothing of MQTT. `notify("READY=1")` is a no-op returning False when not run under systemd.
`watchdog_interval()` is how often to send WATCHDOG=1: a third of the unit's WatchdogSec.
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send state lines (e.g. "READY=1\\nSTATUS=serving") to $NOTIFY_SOCKET."""
    addr = os.environ.get("NOTIFY_SOCKET")
    if not addr:
        return False
    if addr.startswith("@"):
        addr = "\0" + addr[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(addr)
            s.sendall(state.encode())
        return True
    except OSError:
        return False


def watchdog_interval(default: float = 5.0) -> float:
    usec = os.environ.get("WATCHDOG_USEC")
    if usec and usec.isdigit() and int(usec) > 0:
        return max(0.5, int(usec) / 1e6 / 3)
    return default
