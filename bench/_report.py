"""Turning measured figures into targets met / not met, JSON and a Markdown report."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["evaluate_targets", "machine_facts", "markdown", "repo_commit", "write_json", "write_markdown"]

NOTES_MARKER = "<!-- Everything below this line is kept when run.py rewrites the file. -->"
Results = dict[str, Any]


def machine_facts() -> dict[str, Any]:
    """What the figures were measured on: they mean little without it."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    import os

    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "build": tuco_build(),
    }


def tuco_build() -> str:
    """Which build of tuco the servers run (``PYTHONPATH=build/compiled`` for the compiled one): its --version."""
    shown = subprocess.run([sys.executable, "-m", "tuco", "--version"], capture_output=True, text=True, check=False)
    return shown.stdout.strip() or f"unknown ({shown.stderr.strip()[-200:]})"


def repo_commit(repo: Path) -> str:
    """Short HEAD plus ``-dirty`` when the work tree has changes."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True)
    status = subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True)
    commit = head.stdout.strip() or "unknown"
    return commit + ("-dirty" if status.stdout.strip() else "")


@dataclass(frozen=True, slots=True)
class Target:
    """One promise about performance, checked against the figures of one run.

    ``limit`` is a number or, when the promise depends on this machine (the
    durable PUT p99 allows for the measured fsync p99), a function of the run.
    """

    name: str
    goal: str
    measure: Callable[[Results], float | None]
    limit: float | Callable[[Results], float]
    unit: str
    at_least: bool = False
    strict: bool = False

    def met(self, value: float, results: Results) -> bool:
        limit = self.limit(results) if callable(self.limit) else self.limit
        if self.at_least:
            return value >= limit
        return value < limit if self.strict else value <= limit


def _load(results: Results, name: str, field: str) -> float | None:
    scenario = results["scenarios"].get(name, {})
    value = scenario.get("median", {}).get(field)
    return None if value is None else float(value)


def _ratio(numerator: str, denominator: str, field: str = "rps") -> Callable[[Results], float | None]:
    """``numerator``'s figure over ``denominator``'s: paired if one ran beside the other, else of the two."""

    def measure(results: Results) -> float | None:
        paired_field = f"ratio_to_{denominator}" if field == "rps" else f"cpu_ratio_to_{denominator}"
        paired = _load(results, numerator, paired_field)
        if paired is not None:
            return paired
        own, base = _load(results, numerator, field), _load(results, denominator, field)
        return None if own is None or not base else own / base

    return measure


def _figure(name: str, field: str) -> Callable[[Results], float | None]:
    return lambda results: _load(results, name, field)


def _startup(field: str) -> Callable[[Results], float | None]:
    def measure(results: Results) -> float | None:
        value = results["scenarios"].get("startup", {}).get(field)
        return None if value is None else float(value)

    return measure


def _durable_p99_limit(results: Results) -> float:
    return 5.0 + float(results.get("fsync", {}).get("p99_ms", 0.0))


# The figures of the run at b0ec644 (bench/RESULTS.md before issue 15): the replay rate is measured against them.
BEFORE = "b0ec644"
REPLAY_BEFORE = 376_506
# The run at 106fe01 (bench/RESULTS.md before the compiled build): memory, log size and every p99 against them.
BEFORE_COMPILED = "106fe01"
RSS_PER_KEY_BEFORE = 269.2
LOG_PER_EVENT_BEFORE = 21.0
P99_TOLERANCE = 1.10  # a p99 is a tail of a few rounds: within 10 % of the pure build's, same run, is no regression


def _pure(name: str, field: str) -> Callable[[Results], float | None]:
    """The pure-Python twin's median ``field`` in scenario ``name`` (run.py --pure-twin)."""

    def measure(results: Results) -> float | None:
        value = results["scenarios"].get(name, {}).get("pure_median", {}).get(field)
        return None if value is None else float(value)

    return measure


def _pure_p99_limit(name: str) -> Callable[[Results], float]:
    return lambda results: (_pure(name, "p99_ms")(results) or 0.0) * P99_TOLERANCE


def _pure_rss_limit(results: Results) -> float:
    pure = results["scenarios"].get("startup", {}).get("pure", {}).get("rss_overhead_bytes_per_key")
    return float(pure) if pure is not None else RSS_PER_KEY_BEFORE


def _pure_heap_limit(results: Results) -> float:
    """The pure twin's heap per key, plus the measurement's resolution: the larger spread of either build's starts."""
    startup = results["scenarios"].get("startup", {})
    pure = startup.get("pure", {})
    if pure.get("heap_slope_bytes_per_key") is None:
        return float("nan")
    resolution = max(startup.get("heap_slope_resolution_bytes", 0.0), pure.get("heap_slope_resolution_bytes", 0.0))
    return float(pure["heap_slope_bytes_per_key"]) + float(resolution)


TARGETS = [
    Target("GET throughput vs ceiling", "≥ 75%", _ratio("get", "ceiling"), 0.75, "ratio", at_least=True),
    Target("server CPU per GET vs ceiling's", "≤ 1.4x", _ratio("get", "ceiling", "cpu_us_per_request"), 1.4, "x"),
    Target("relaxed PUT throughput vs ceiling", "≥ 50%", _ratio("put_relaxed", "ceiling"), 0.5, "ratio", True),
    Target(
        "server CPU per relaxed PUT vs ceiling's",
        "≤ 2x",
        _ratio("put_relaxed", "ceiling", "cpu_us_per_request"),
        2.0,
        "x",
    ),
    Target("durable PUT vs relaxed PUT throughput", "≥ 70%", _ratio("put_durable", "put_relaxed"), 0.7, "ratio", True),
    Target("durable PUT p99", "≤ 5 ms + fsync p99", _figure("put_durable", "p99_ms"), _durable_p99_limit, "ms"),
    Target("90/10 mix throughput vs ceiling", "≥ 60%", _ratio("mix", "ceiling"), 0.6, "ratio", at_least=True),
    Target("64 KiB durable PUT p99, 64 connections", "≤ 20 ms", _figure("put_64k", "p99_ms"), 20, "ms"),
    Target(
        "tuco's ASGI app vs a bare ASGI app, GET under uvicorn",
        "≥ 80%",
        _ratio("asgi_get", "asgi_bare"),
        0.8,
        "ratio",
        at_least=True,
    ),
    Target(
        "start-up replay vs the naive parse loop (bench/naive_replay.py), same run",
        "≥ 1.5x",
        _startup("replay_vs_naive"),
        1.5,
        "x",
        at_least=True,
    ),
    Target(
        "start-up replay rate (no regression)",
        f"≥ {REPLAY_BEFORE:,} events/s ({BEFORE})",
        _startup("replay_events_per_second"),
        REPLAY_BEFORE,
        "events/s",
        at_least=True,
    ),
    Target(
        "RSS per key beyond key+value, 1M keys (no regression)",
        f"≤ the pure build's, same run ({RSS_PER_KEY_BEFORE:.1f} B at {BEFORE_COMPILED})",
        _startup("rss_overhead_bytes_per_key"),
        _pure_rss_limit,
        "B",
    ),
    Target(
        "heap (RssAnon) per key beyond key+value, 500k to 1M keys (no regression)",
        "≤ the pure build's, same run, + the spread between starts",
        _startup("heap_slope_bytes_per_key"),
        _pure_heap_limit,
        "B",
    ),
    Target(
        "log bytes per event beyond key+value (no regression)",
        f"≤ {LOG_PER_EVENT_BEFORE:.1f} B ({BEFORE_COMPILED})",
        _startup("log_overhead_bytes_per_event"),
        LOG_PER_EVENT_BEFORE,
        "B",
    ),
]


def p99_targets(results: Results) -> list[Target]:
    """One per scenario run beside its pure-Python twin: the compiled build's p99 no worse than the pure one's."""
    return [
        Target(
            f"{name} p99 vs the pure build, same run (no regression)",
            f"≤ pure p99 x {P99_TOLERANCE:.2f}",
            _figure(name, "p99_ms"),
            _pure_p99_limit(name),
            "ms",
        )
        for name, scenario in results["scenarios"].items()
        if "pure_median" in scenario
    ]


def _format(value: float, unit: str) -> str:
    if unit == "ratio":
        return f"{value:.0%}"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "events/s":
        return f"{value:,.0f} events/s"
    if unit in ("s", "ms"):
        return f"{value:,.3g} {unit}" if value < 100 else f"{value:,.0f} {unit}"
    return f"{value:,.1f} {unit}"


def evaluate_targets(results: Results) -> list[dict[str, Any]]:
    """Each target with its measured figure and met / not met / not measured."""
    rows = []
    for target in TARGETS + p99_targets(results):
        value = target.measure(results)
        row: dict[str, Any] = {"target": target.name, "goal": target.goal, "figure": None, "verdict": "not measured"}
        if value is not None:
            row["figure"] = round(value, 4)
            row["shown"] = _format(value, target.unit)
            row["verdict"] = "met" if target.met(value, results) else "NOT met"
        rows.append(row)
    return rows


def _load_table(results: Results) -> list[str]:
    ceiling = _load(results, "ceiling", "rps")
    lines = [
        "| scenario | conns | value | req/s | vs ceiling | p50 ms | p99 ms | max ms | CPU µs/req | peak RSS MiB "
        "| errors |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, sc in results["scenarios"].items():
        if sc.get("kind") != "load":
            continue
        if "median" not in sc:
            lines.append(f"| {name}: {sc['title']} | {sc['connections']} | {sc['value_bytes']} B | — | | | | | | | |")
            continue
        m = sc["median"]
        ratio = f"{m['rps'] / ceiling:.0%}" if ceiling else "—"
        baseline = sc.get("baseline")
        paired = m.get(f"ratio_to_{baseline}") if baseline else None
        if paired is not None:
            ratio = (
                f"**{paired:.0%}** (paired)" if baseline == "ceiling" else f"**{paired:.0%}** of {baseline} (paired)"
            )
        # wrk counts every answer of 400 and above as a status error: a scenario of absent keys expects 404s.
        expected = {"status"} if sc.get("preloaded") is False else set()
        errors = sum(count for kind, count in m["errors"].items() if kind not in expected)
        lines.append(
            f"| {name}: {sc['title']} | {sc['connections']} | {sc['value_bytes']:,} B | {m['rps']:,.0f} | {ratio} "
            f"| {m['p50_ms']:.2f} | {m['p99_ms']:.2f} | {m['max_ms']:.1f} | {m['cpu_us_per_request']:.1f} "
            f"| {sc['peak_rss_kib'] / 1024:.0f} | {errors} |"
        )
    return lines


def _pure_lines(results: Results) -> list[str]:
    """The compiled build against its pure-Python twin, round by round in the same run (run.py --pure-twin)."""
    rows = [(n, sc) for n, sc in results["scenarios"].items() if "pure_median" in sc and "median" in sc]
    if not rows:
        return []
    lines = [
        "",
        "**The compiled build against the pure-Python one** (each scenario's pure twin measured in the round "
        "right before the compiled server's, same load):",
        "",
        "| scenario | req/s compiled | req/s pure | compiled / pure | CPU µs/req compiled | pure | p99 ms compiled "
        "| pure |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, sc in rows:
        m, pm = sc["median"], sc["pure_median"]
        lines.append(
            f"| {name} | {m['rps']:,.0f} | {pm['rps']:,.0f} | {m['rps'] / pm['rps']:.2f} "
            f"| {m['cpu_us_per_request']:.1f} | {pm['cpu_us_per_request']:.1f} "
            f"| {m['p99_ms']:.2f} | {pm['p99_ms']:.2f} |"
        )
    st = results["scenarios"].get("startup", {})
    pure = st.get("pure")
    if pure and pure.get("replay_seconds") and st.get("replay_seconds"):
        lines.append(
            f"| startup replay, 1M events | {st['events'] / st['replay_seconds']:,.0f} events/s "
            f"| {st['events'] / pure['replay_seconds']:,.0f} events/s "
            f"| {pure['replay_seconds'] / st['replay_seconds']:.2f} | | | | |"
        )
        lines.append(
            f"| RSS per key beyond key+value | {st['rss_overhead_bytes_per_key']:.0f} B "
            f"| {pure['rss_overhead_bytes_per_key']:.0f} B | | | | | |"
        )
        if "heap_overhead_bytes_per_key" in st and "heap_overhead_bytes_per_key" in pure:
            lines.append(
                f"| heap (RssAnon) per key beyond key+value | {st['heap_overhead_bytes_per_key']:.1f} B "
                f"| {pure['heap_overhead_bytes_per_key']:.1f} B | | | | | |"
            )
        if "heap_slope_bytes_per_key" in st and "heap_slope_bytes_per_key" in pure:
            lines.append(
                f"| heap per key beyond key+value, 500k to 1M keys | {st['heap_slope_bytes_per_key']:.1f} B "
                f"| {pure['heap_slope_bytes_per_key']:.1f} B | | | | | |"
            )
    return lines


def _startup_lines(results: Results) -> list[str]:
    st = results["scenarios"].get("startup")
    if not st or "ready_seconds" not in st:
        return []
    replay = st.get("replay_events_per_second")
    return [
        "",
        f"**Start-up and footprint** ({st['events']:,} PUTs of distinct 16-byte keys with 100-byte values, "
        f"log written directly; median of {len(st['rounds'])} starts):",
        "",
        "| figure | value |",
        "|---|--:|",
        f"| spawn to `GET /readyz` = 200 | {st['ready_seconds']:.2f} s ({st['ready_events_per_second']:,} events/s) |",
        f"| replay as logged by the server | {st.get('replay_seconds', '—')} s "
        f"({f'{replay:,}' if replay else '—'} events/s) |",
        f"| the naive parse loop (bench/naive_replay.py), same log | {st.get('naive_seconds', '—')} s "
        f"({st.get('naive_events_per_second', 0):,} events/s) |",
        f"| RSS empty → loaded | {st['empty_rss_kib'] / 1024:.0f} MiB → {st['rss_kib'] / 1024:.0f} MiB |",
        f"| RSS per key beyond its 116 key+value bytes | {st['rss_overhead_bytes_per_key']:.0f} B |",
        *(
            [
                f"| heap (RssAnon) empty → loaded | {st['empty_heap_kib'] / 1024:.0f} MiB → "
                f"{st['heap_kib'] / 1024:.0f} MiB |",
                f"| heap per key beyond its 116 key+value bytes | {st['heap_overhead_bytes_per_key']:.1f} B |",
                *(
                    [f"| the same, from 500k to 1M keys | {st['heap_slope_bytes_per_key']:.1f} B |"]
                    if "heap_slope_bytes_per_key" in st
                    else []
                ),
            ]
            if "heap_overhead_bytes_per_key" in st
            else []
        ),
        f"| log size | {st['log_bytes']:,} B |",
        f"| log bytes per event beyond key+value | {st['log_overhead_bytes_per_event']:.1f} B |",
    ]


def markdown(results: Results) -> str:
    """The report committed as bench/RESULTS.md."""
    m, fs = results["machine"], results.get("fsync", {})
    lines = [
        "# Benchmark results",
        "",
        f"- **Command:** `{results['command']}`",
        f"- **Commit:** `{results['commit']}`, measured {results['started_at']}",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}",
        f"- **Build:** `{m.get('build', 'not recorded')}`",
        f"- **Rounds:** median of {results['settings']['rounds']} x {results['settings']['seconds']:g} s "
        f"(after {results['settings']['warmup']:g} s warm-up), wrk 1 thread, `--timeout 5s`",
    ]
    if fs:
        lines.append(
            f"- **Disk fsync** (4 KiB append + fdatasync, {fs['count']} times): p50 {fs['p50_ms']:.2f} ms, "
            f"p99 {fs['p99_ms']:.2f} ms, max {fs['max_ms']:.2f} ms"
        )
    lines += ["", "## Throughput and latency", "", *_load_table(results), *_startup_lines(results)]
    lines += _pure_lines(results)
    problems = [(n, s) for n, s in results["scenarios"].items() if "error" in s or "skipped" in s]
    if problems:
        lines += ["", "**Not measured:**", ""]
        lines += [f"- {n}: {s.get('skipped') or s.get('error')}" for n, s in problems]
    lines += ["", "## Targets", "", "| target | goal | figure | verdict |", "|---|---|--:|---|"]
    for row in results["targets"]:
        lines.append(f"| {row['target']} | {row['goal']} | {row.get('shown', '—')} | {row['verdict']} |")
    return "\n".join(lines) + "\n"


def write_json(results: Results, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def write_markdown(results: Results, path: Path) -> None:
    """Rewrite the generated part of ``path``, keeping hand-written notes after the marker."""
    notes = ""
    if path.exists():
        old = path.read_text()
        if NOTES_MARKER in old:
            notes = old[old.index(NOTES_MARKER) :]
    path.write_text(markdown(results) + "\n" + (notes or NOTES_MARKER + "\n"))
