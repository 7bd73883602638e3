"""Readings of a running process from /proc, the figures the benchmark reports.

CPU time comes from the kernel's own accounting (utime + stime), which is far
steadier on a noisy two-core machine than wall-clock throughput.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["cpu_seconds", "open_fds", "status_kib", "tree_pids", "wait_until_quiet"]

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


def _idle_and_total() -> tuple[int, int]:
    """The machine's idle and total CPU ticks so far (/proc/stat; iowait counts as busy)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3], sum(fields[:8])  # user nice system idle iowait irq softirq steal (guests are in user)


def wait_until_quiet(*, idle_share: float = 0.9, window: float = 0.25, limit: float = 10.0) -> float:
    """Wait until the CPUs were idle ``idle_share`` of a ``window``, at most ``limit`` seconds; the seconds waited.

    A round that starts right after another server's (a pure twin's, a baseline's) would otherwise share the
    machine with what that server's load left running (a compaction, a replaced log cut back slice by slice,
    the kernel writing back its pages) and pay for it in its tail. Bounded: a machine busy with others' work
    is measured as it is.
    """
    started = time.monotonic()
    idle, total = _idle_and_total()
    while True:
        time.sleep(window)
        now_idle, now_total = _idle_and_total()
        if now_total == total or (now_idle - idle) / (now_total - total) >= idle_share:
            break
        if time.monotonic() - started >= limit:
            break
        idle, total = now_idle, now_total
    return time.monotonic() - started
