"""Benchmark tuco against a minimal reference server: ``.venv/bin/python bench/run.py``.

Writes bench/out/results.json and rewrites bench/RESULTS.md. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import shlex
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _data import fsync_latency
from _report import evaluate_targets, machine_facts, repo_commit, write_json, write_markdown
from _scenarios import LOAD_SCENARIOS, Settings, run_load, run_startup
from _server import BENCH_DIR, OUT_DIR
from _wrk import ensure_wrk

SPECIAL = ["startup", "fsync"]
QUICK_SPECIAL = ["startup", "fsync"]


def _parse_args(argv: list[str]) -> argparse.Namespace:
    all_names = [s.name for s in LOAD_SCENARIOS] + SPECIAL
    parser = argparse.ArgumentParser(description="Benchmark tuco; results in bench/out/ and bench/RESULTS.md.")
    parser.add_argument("--quick", action="store_true", help="smoke check: 1 round of 2 s, main scenarios only")
    parser.add_argument("--scenarios", help=f"comma-separated subset of: {','.join(all_names)}")
    parser.add_argument("--rounds", type=int, help="measured rounds per scenario (default 3, quick 1)")
    parser.add_argument("--duration", type=float, help="seconds per round (default 10, quick 2)")
    parser.add_argument("--no-markdown", action="store_true", help="leave bench/RESULTS.md alone")
    parser.add_argument(
        "--pure-twin",
        action="store_true",
        help="beside each tuco server, the same on the pure-Python build, round by round (run with "
        "PYTHONPATH=build/compiled for the compiled one)",
    )
    parser.add_argument("--by", default="", help="startup: attribute every record of the log to this principal")
    args = parser.parse_args(argv)
    if args.scenarios:
        chosen = [n.strip() for n in args.scenarios.split(",") if n.strip()]
        unknown = sorted(set(chosen) - set(all_names))
        if unknown:
            parser.error(f"unknown scenarios {unknown}; choose from {all_names}")
        args.names = chosen
    elif args.quick:
        args.names = [s.name for s in LOAD_SCENARIOS if s.quick] + QUICK_SPECIAL
    else:
        args.names = all_names
    return args


def _settings(args: argparse.Namespace) -> Settings:
    rounds = args.rounds or (1 if args.quick else 3)
    seconds = args.duration or (2.0 if args.quick else 10.0)
    return Settings(rounds=rounds, seconds=seconds, warmup=1.0 if args.quick else 2.0, pure_twin=args.pure_twin)


def _runner(name: str, settings: Settings, fsync: dict[str, Any], by: str = "") -> Callable[[], dict[str, Any]]:
    if name == "startup":
        return lambda: run_startup(settings, by=by)
    if name == "fsync":

        def measure_fsync() -> dict[str, Any]:
            with tempfile.TemporaryDirectory(prefix="tuco-bench-fsync-") as tmp:
                fsync.update(fsync_latency(Path(tmp)))
            return {"kind": "fsync", "title": "disk fsync latency", **fsync}

        return measure_fsync
    scenario = next(s for s in LOAD_SCENARIOS if s.name == name)
    return lambda: run_load(scenario, settings)


def _run_one(name: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a scenario; a failure is recorded rather than ending the whole benchmark."""
    started = time.perf_counter()
    print(f"[bench] {name} ...", flush=True)
    try:
        result = run()
    except Exception as exc:
        detail = "".join(traceback.format_exception(exc))
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"[bench] {name} FAILED: {detail}", file=sys.stderr, flush=True)
        scenario = next((s for s in LOAD_SCENARIOS if s.name == name), None)
        result = {"kind": "load" if scenario else name, "title": scenario.title if scenario else name}
        if scenario:
            result |= {"connections": scenario.connections, "value_bytes": scenario.value_bytes}
        if scenario and scenario.postgres:
            result["skipped"] = f"PostgreSQL backend not available: {first}"
        else:
            result["error"] = f"{type(exc).__name__}: {first}"
        result["error_detail"] = detail
    took = time.perf_counter() - started
    summary = result.get("median", {}).get("rps")
    print(f"[bench] {name} done in {took:.0f} s" + (f": {summary:,.0f} req/s" if summary else ""), flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(sys.argv[1:] if argv is None else argv)
    settings = _settings(args)
    if set(args.names) - set(SPECIAL):  # startup and fsync need no load generator
        ensure_wrk()
    repo = BENCH_DIR.parent
    results: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "bench/run.py", *map(shlex.quote, sys.argv[1:])]),
        "commit": repo_commit(repo),
        "started_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_facts(),
        "settings": {"rounds": settings.rounds, "seconds": settings.seconds, "warmup": settings.warmup},
        "fsync": {},
        "scenarios": {},
    }
    # fsync first: the durable-PUT target is stated relative to it.
    for name in sorted(args.names, key=lambda n: n != "fsync"):
        results["scenarios"][name] = _run_one(name, _runner(name, settings, results["fsync"], args.by))
    results["targets"] = evaluate_targets(results)
    write_json(results, OUT_DIR / "results.json")
    if not args.no_markdown:
        write_markdown(results, BENCH_DIR / "RESULTS.md")
    for row in results["targets"]:
        print(f"  {row['verdict']:>12}  {row['target']}: {row.get('shown', '—')} (goal {row['goal']})")
    print(f"[bench] wrote {OUT_DIR / 'results.json'}" + ("" if args.no_markdown else " and bench/RESULTS.md"))
    failed = [n for n, s in results["scenarios"].items() if "error" in s]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
