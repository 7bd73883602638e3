"""Driving load with wrk, and measuring the server's CPU over exactly that window."""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _proc import cpu_seconds, wait_until_quiet

__all__ = ["WRK_DIR", "RoundResult", "ensure_wrk", "run_round"]

WRK_DIR = Path(__file__).resolve().parent / "wrk"


def ensure_wrk() -> str:
    """Path of wrk, installing Debian's package if it is missing (the harness runs as root)."""
    found = shutil.which("wrk")
    if found:
        return found
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, capture_output=True, timeout=300).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=300, check=True)
        subprocess.run(install, capture_output=True, timeout=300, check=True)
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed and apt-get could not install it")
    return found


@dataclass(frozen=True, slots=True)
class RoundResult:
    """One measured wrk run against one server."""

    requests: int
    seconds: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]
    cpu_us_per_request: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse_summary(stdout: str) -> dict[str, Any]:
    """The BENCH_JSON line printed by the scripts' ``done()``."""
    for line in stdout.splitlines():
        if line.startswith("BENCH_JSON "):
            summary: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
            return summary
    raise RuntimeError(f"wrk printed no summary:\n{stdout[-2000:]}")


def run_round(
    *,
    url: str,
    pid: int,
    connections: int,
    seconds: float,
    keys: int,
    value_bytes: int,
    put_percent: int = 0,
    header: str = "",
) -> RoundResult:
    """Run wrk once, on a quiet machine, and read the server's CPU time right before and right after.

    One wrk thread: on two cores, wrk gets one and the server the other.
    """
    argv = [
        ensure_wrk(),
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "5s",
        *(["-H", header] if header else []),
        "-s",
        str(WRK_DIR / "keys.lua"),
        url,
        "--",
        str(keys),
        str(value_bytes),
        str(put_percent),
    ]
    wait_until_quiet()  # not on what the server before this round left running
    cpu_before = cpu_seconds(pid)
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    cpu_after = cpu_seconds(pid)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr.strip()}")
    summary = _parse_summary(done.stdout)
    requests = int(summary["requests"])
    elapsed = summary["duration_us"] / 1e6
    lat = summary["latency_us"]
    return RoundResult(
        requests=requests,
        seconds=round(elapsed, 3),
        rps=round(requests / elapsed, 1) if elapsed else 0.0,
        p50_ms=lat["p50"] / 1000,
        p90_ms=lat["p90"] / 1000,
        p99_ms=lat["p99"] / 1000,
        max_ms=lat["max"] / 1000,
        errors=summary["errors"],
        cpu_us_per_request=round((cpu_after - cpu_before) * 1e6 / requests, 2) if requests else 0.0,
    )
