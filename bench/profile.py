"""Profile tuco under a benchmark load: ``.venv/bin/python bench/profile.py --scenario get``.

Where the server's CPU goes per request is what to optimise, so this runs one
load scenario of run.py while sampling the server, then prints the functions
with the most samples: own time (the frame on top of the stack) and time
including callees. It uses py-spy when it is installed (sampling from outside,
so the server runs unmodified; ``.venv/bin/pip install py-spy``), otherwise
cProfile inside the server (slower, and it distorts cheap calls).
"""

from __future__ import annotations

import argparse
import collections
import pstats
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from _data import preload_http
from _scenarios import LOAD_SCENARIOS, base_env, server_command
from _server import OUT_DIR, ServerProcess, free_port
from _wrk import RoundResult, run_round


def _py_spy() -> str | None:
    return shutil.which("py-spy") or next(
        (str(p) for p in [Path(sys.executable).parent / "py-spy"] if p.exists()), None
    )


def _frame_name(frame: str, *, lines: bool) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py:123)``, or ``func (module.py)`` per function."""
    name, _, where = frame.partition(" (")
    if not where:
        return name
    where = where.rstrip(")").rsplit("/", 1)[-1]
    return f"{name} ({where if lines else where.split(':')[0]})"


def top_from_collapsed(path: Path, limit: int) -> str:
    """Own and inclusive sample shares per function from py-spy's collapsed-stack output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    own_lines: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame_name(f, lines=False) for f in stack.split(";")]
        # The first frame is the thread; the last is where the CPU was.
        total += count
        own[frames[-1]] += count
        own_lines[_frame_name(stack.split(";")[-1], lines=True)] += count
        for frame in set(frames[1:]):
            inclusive[frame] += count
    lines = [f"{total} samples", "", "own time, per function:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own.most_common(limit)]
    lines += ["", "own time, per line:"]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in own_lines.most_common(limit // 2)]
    lines += ["", "including callees:"]
    everywhere = [f for f, n in inclusive.items() if n == total]  # the entry point and the loop: no news
    for frame in everywhere:
        del inclusive[frame]
    lines += [f"  {n / total:6.1%}  {f}" for f, n in inclusive.most_common(limit)]
    return "\n".join(lines)


def _load(server: ServerProcess, scenario: str, seconds: float, box: list[RoundResult]) -> None:
    sc = next(s for s in LOAD_SCENARIOS if s.name == scenario)
    box.append(
        run_round(
            url=server.url,
            pid=server.pid,
            connections=sc.connections,
            seconds=seconds,
            keys=sc.keys,
            value_bytes=sc.value_bytes,
            put_percent=sc.put_percent,
        )
    )


def profile(scenario: str, seconds: float, limit: int, use_cprofile: bool, native: bool) -> str:
    sc = next(s for s in LOAD_SCENARIOS if s.name == scenario)
    spy = None if use_cprofile else _py_spy()
    stats_path = OUT_DIR / f"profile-{scenario}.{'txt' if spy else 'pstats'}"
    with tempfile.TemporaryDirectory(prefix="tuco-profile-") as tmp:
        port = free_port()
        argv = server_command(sc, port)  # [python, -m, module, ...] or [python, script, ...]
        if not spy:
            argv = [argv[0], "-m", "cProfile", "-o", str(stats_path), *argv[1:]]
        env = {} if sc.reference else {**base_env(port, Path(tmp)), **sc.env}
        with ServerProcess(f"profile-{scenario}", argv, env, port) as server:
            server.wait_ready()
            if not sc.reference:
                preload_http(server.url, sc.keys, sc.value_bytes)
            box: list[RoundResult] = []
            load = threading.Thread(target=_load, args=(server, scenario, seconds + 2, box))
            load.start()
            if spy:
                record = [spy, "record", "--pid", str(server.pid), "--duration", str(int(seconds))]
                record += ["--rate", "200", "--format", "raw", "--output", str(stats_path)]
                # Native frames show what the event loop and the kernel calls cost, but need
                # the target paused per sample; without them, sample without pausing it.
                record += ["--native"] if native else ["--nonblocking"]
                subprocess.run(record, capture_output=True, timeout=seconds + 60, check=True)
            load.join(seconds + 120)
            server.stop()
    header = f"{scenario} under load via {'py-spy' if spy else 'cProfile'}"
    if box:
        r = box[0]
        header += f": {r.rps:,.0f} req/s, {r.cpu_us_per_request:.1f} µs server CPU per request (while sampled)"
    if spy:
        return header + "\n" + top_from_collapsed(stats_path, limit)
    out = OUT_DIR / f"profile-{scenario}-top.txt"
    with out.open("w") as f:
        pstats.Stats(str(stats_path), stream=f).sort_stats("tottime").print_stats(limit)
    return header + "\n" + out.read_text()


def main() -> int:
    parser = argparse.ArgumentParser(description="Profile tuco under one benchmark scenario's load.")
    parser.add_argument("--scenario", default="get", choices=[s.name for s in LOAD_SCENARIOS])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--cprofile", action="store_true", help="use cProfile even if py-spy is installed")
    parser.add_argument("--native", action="store_true", help="py-spy: include C frames (uvloop, httptools, libc)")
    args = parser.parse_args()
    print(profile(args.scenario, args.seconds, args.top, args.cprofile, args.native))
    return 0


if __name__ == "__main__":
    sys.exit(main())
