"""Readings of a running process from /proc, the figures the benchmark reports.

CPU time comes from the kernel's own accounting (utime + stime), which is far
steadier on a noisy two-core machine than wall-clock throughput.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cpu_seconds", "open_fds", "status_kib", "tree_pids"]

_TICK = os.sysconf("SC_CLK_TCK")


def tree_pids(pid: int) -> list[int]:
    """The process and all its descendants, so a server that forks workers is counted whole."""
    pids = [pid]
    i = 0
    while i < len(pids):
        for task in Path(f"/proc/{pids[i]}/task").glob("*/children"):
            try:
                pids.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
        i += 1
    return pids


def _own_cpu_ticks(pid: int) -> int:
    """utime + stime of one process, in clock ticks (fields 14 and 15 of stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces; fields restart after its ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by the process tree rooted at ``pid``."""
    total = 0
    for p in tree_pids(pid):
        try:
            total += _own_cpu_ticks(p)
        except (OSError, ValueError):
            continue
    return total / _TICK


def status_kib(pid: int, field: str) -> int:
    """A ``kB`` field of /proc/<pid>/status, such as VmRSS or VmHWM."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(f"{field} not in /proc/{pid}/status")


def open_fds(pid: int) -> int:
    """Number of open file descriptors of the process."""
    return len(os.listdir(f"/proc/{pid}/fd"))
