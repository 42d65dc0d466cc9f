"""Where a bench's CPU went, read from /proc (Linux): one process's CPU seconds, the whole box's busy and idle
time, and every process's CPU summed into named groups, so a figure can be read against what the box had
left to give (a bench simulating hundreds of sites on the same 2 cores as the system it measures)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def box_s() -> tuple[float, float]:
    """(busy, idle) CPU seconds of the whole box since boot, all cores (idle includes waiting for I/O)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / CLK_TCK, idle / CLK_TCK


def processes() -> dict[int, tuple[str, int, float]]:
    """Every process now: pid -> (command name, process group, CPU seconds so far)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            text = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[int(entry)] = (name, int(fields[2]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


class Split:
    """CPU seconds by group between `start()` and `stop()`, and the box's busy share meanwhile. `group` names
    the group of a process from (pid, command name, process group), or None for "other". A process that
    ended in between loses what it used since the start (its group reads low); one started in between counts
    whole."""

    def __init__(self, group: Callable[[int, str, int], str | None]) -> None:
        self.group = group
        self.before: dict[int, float] = {}
        self.box0 = (0.0, 0.0)
        self.by_group: dict[str, float] = {}
        self.busy_s = self.idle_s = 0.0

    def start(self) -> None:
        self.before = {pid: cpu for pid, (_, _, cpu) in processes().items()}
        self.box0 = box_s()

    def stop(self) -> None:
        busy, idle = box_s()
        self.busy_s, self.idle_s = busy - self.box0[0], idle - self.box0[1]
        self.by_group = {}
        for pid, (name, pgid, cpu) in processes().items():
            key = self.group(pid, name, pgid) or "other"
            self.by_group[key] = self.by_group.get(key, 0.0) + cpu - self.before.get(pid, 0.0)

    @property
    def busy_pct(self) -> float:
        """The box's busy share of all its cores meanwhile, in %."""
        return 100.0 * self.busy_s / max(self.busy_s + self.idle_s, 1e-9)

    def line(self) -> str:
        parts = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(self.by_group.items(), key=lambda kv: -kv[1]))
        return f"box busy {self.busy_pct:.0f} % of {os.cpu_count()} cores ({self.idle_s:.1f} CPU-s idle); {parts}"
