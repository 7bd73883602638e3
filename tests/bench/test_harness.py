"""The benchmark harness's scenarios and its targets table, checked on figures made up for the purpose."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.append(str(BENCH))  # last: bench/profile.py must not shadow the standard library's profile

# bench/ is scripts, not a package (nor type-checked): its modules are looked up by name.
_report: Any = importlib.import_module("_report")
_scenarios: Any = importlib.import_module("_scenarios")
_proc: Any = importlib.import_module("_proc")


def _results(**scenarios: dict[str, Any]) -> dict[str, Any]:
    return {"scenarios": scenarios, "fsync": {"p99_ms": 0.5}}


def _load_scenario(title: str, median: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A load scenario's result as run.py writes it: 9,000 req/s, 64 connections of 64-byte values, 50 MiB at peak."""
    figures = {"rps": 9_000.0, "p50_ms": 1.0, "p99_ms": 2.0, "max_ms": 3.0, "cpu_us_per_request": 30.0, "errors": {}}
    scenario = {"kind": "load", "title": title, "connections": 64, "value_bytes": 64, "peak_rss_kib": 51_200}
    return {**scenario, "median": {**figures, **median}, **fields}


def _rows(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["target"]: row for row in _report.evaluate_targets(results)}


def test_the_asgi_scenarios_run_under_uvicorn_with_httptools_and_uvloop() -> None:
    """asgi_bare serves bench/asgi_bare.py and asgi_get tuco.asgi:app, each with the same uvicorn flags."""
    by_name = {s.name: s for s in _scenarios.LOAD_SCENARIOS}
    bare = _scenarios.server_command(by_name["asgi_bare"], 8123)
    tuco = _scenarios.server_command(by_name["asgi_get"], 8123)
    flags = ["-m", "uvicorn", "--http", "httptools", "--loop", "uvloop", "--no-access-log", "--log-level", "warning"]
    flags += ["--host", "127.0.0.1", "--port", "8123"]
    assert bare[1:] == [*flags, "--app-dir", str(BENCH), "asgi_bare:app"]
    assert tuco[1:] == [*flags, "tuco.asgi:app"]
    assert (by_name["asgi_get"].baseline, by_name["asgi_put"].baseline) == ("asgi_bare", "asgi_bare")
    assert by_name["asgi_put"].env == {"TUCO_LOG_SYNC": "everysec"}
    assert by_name["asgi_bare"].reference and not by_name["asgi_get"].reference
    assert by_name["asgi_get"].quick


def test_the_asgi_target_takes_the_paired_ratio() -> None:
    """tuco's ASGI app is judged by its ratio to the bare app in paired rounds, not by the two scenarios' medians."""
    results = _results(
        asgi_bare={"median": {"rps": 10_000.0}},
        asgi_get={"median": {"rps": 9_000.0, "ratio_to_asgi_bare": 0.79}},
    )
    row = _rows(results)["tuco's ASGI app vs a bare ASGI app, GET under uvicorn"]
    assert (row["figure"], row["shown"], row["verdict"]) == (0.79, "79%", "NOT met")


def test_without_pairing_the_ratio_is_of_the_two_scenarios() -> None:
    """Measured apart, the ASGI ratio is asgi_get's req/s over asgi_bare's."""
    results = _results(asgi_bare={"median": {"rps": 10_000.0}}, asgi_get={"median": {"rps": 8_000.0}})
    row = _rows(results)["tuco's ASGI app vs a bare ASGI app, GET under uvicorn"]
    assert (row["figure"], row["verdict"]) == (0.8, "met")


def test_cpu_targets_compare_with_the_ceiling_paired() -> None:
    """CPU per GET is met at 1.4x the ceiling's; CPU per relaxed PUT is NOT met above 2x; both shown as factors."""
    results = _results(
        ceiling={"median": {"rps": 50_000.0, "cpu_us_per_request": 10.0}},
        get={"median": {"rps": 40_000.0, "cpu_us_per_request": 15.0, "cpu_ratio_to_ceiling": 1.4}},
        put_relaxed={"median": {"rps": 30_000.0, "cpu_us_per_request": 21.0}},
    )
    rows = _rows(results)
    get, put = rows["server CPU per GET vs ceiling's"], rows["server CPU per relaxed PUT vs ceiling's"]
    assert (get["figure"], get["shown"], get["verdict"]) == (1.4, "1.40x", "met")
    assert (put["figure"], put["shown"], put["verdict"]) == (2.1, "2.10x", "NOT met")
    assert rows["GET throughput vs ceiling"]["figure"] == 0.8


def test_latency_targets_allow_for_the_disk() -> None:
    """Durable PUT p99 is allowed 5 ms plus the disk's fsync p99; the 64 KiB PUT p99 20 ms."""
    results = _results(
        put_durable={"median": {"rps": 7_000.0, "p99_ms": 5.5}},
        put_relaxed={"median": {"rps": 10_000.0}},
        put_64k={"median": {"rps": 3_000.0, "p99_ms": 20.5}},
    )
    rows = _rows(results)
    assert rows["durable PUT p99"]["verdict"] == "met"
    assert rows["durable PUT vs relaxed PUT throughput"]["verdict"] == "met"
    assert rows["64 KiB durable PUT p99, 64 connections"]["verdict"] == "NOT met"


def test_no_regression_targets_compare_with_earlier_runs_or_the_pure_twin() -> None:
    """Replay rate against b0ec644, log bytes per event against 106fe01; memory per key against the pure-Python
    twin of the same run when there is one, else 106fe01's: each met at its bar and not a step past it."""
    at = {
        "replay_events_per_second": 376_506,
        "rss_overhead_bytes_per_key": 269.2,
        "log_overhead_bytes_per_event": 21.0,
    }
    worse = {
        "replay_events_per_second": 376_505,
        "rss_overhead_bytes_per_key": 269.3,
        "log_overhead_bytes_per_event": 21.1,
    }
    names = [
        "start-up replay rate (no regression)",
        "RSS per key beyond key+value, 1M keys (no regression)",
        "log bytes per event beyond key+value (no regression)",
    ]
    assert [_rows(_results(startup=at))[n]["verdict"] for n in names] == ["met"] * 3
    assert [_rows(_results(startup=worse))[n]["verdict"] for n in names] == ["NOT met"] * 3
    assert [_rows(_results())[n]["verdict"] for n in names] == ["not measured"] * 3
    twin = {"pure": {"rss_overhead_bytes_per_key": 250.0}}
    assert _rows(_results(startup={**at, **twin}))[names[1]]["verdict"] == "NOT met"
    assert _rows(_results(startup={**at, "rss_overhead_bytes_per_key": 250.0, **twin}))[names[1]]["verdict"] == "met"


def test_replay_against_the_naive_loop_is_paired_round_by_round() -> None:
    """Each round's naive loop over its own replay, the median of those: a machine that drifts between rounds
    pairs slow with slow. The ratio of the two medians (1.5 here) would pair round 3's replay with round 1's loop."""
    rounds = [
        {"replay": {"seconds": 1.0}, "naive": {"seconds": 1.6}},
        {"replay": {"seconds": 2.0}, "naive": {"seconds": 3.2}},
        {"replay": {"seconds": 1.2}, "naive": {"seconds": 1.8}},
        {"replay": None, "naive": {"seconds": 9.0}},  # a round whose server logged no replay: left out
    ]
    assert _scenarios.paired_replay_ratio(rounds) == 1.6


def test_the_naive_loop_runs_under_the_start_up_servers_malloc_settings() -> None:
    """Both sides of the replay ratio with one malloc: its mmap threshold pinned as the servers' is."""
    assert _scenarios.STARTUP_MALLOC == {"MALLOC_MMAP_THRESHOLD_": "131072"}
    env = _scenarios.naive_env()
    assert env["MALLOC_MMAP_THRESHOLD_"] == "131072"
    assert env["PATH"] == os.environ["PATH"]  # otherwise the caller's environment


def test_replay_is_measured_against_the_naive_loop_and_each_p99_against_the_pure_twin() -> None:
    """Replay at 1.5x the naive loop is met, a step below is not; a scenario with a pure twin gets a p99 row
    met up to 1.10x the twin's p99; a scenario without one gets none."""
    name = "start-up replay vs the naive parse loop (bench/naive_replay.py), same run"
    assert _rows(_results(startup={"replay_vs_naive": 1.5}))[name]["verdict"] == "met"
    assert _rows(_results(startup={"replay_vs_naive": 1.49}))[name]["verdict"] == "NOT met"
    results = _results(
        get={"median": {"rps": 1.0, "p99_ms": 1.1}, "pure_median": {"rps": 1.0, "p99_ms": 1.0}},
        put_relaxed={"median": {"rps": 1.0, "p99_ms": 2.21}, "pure_median": {"rps": 1.0, "p99_ms": 2.0}},
        mix={"median": {"rps": 1.0, "p99_ms": 9.0}},
    )
    rows = _rows(results)
    assert rows["get p99 vs the pure build, same run (no regression)"]["verdict"] == "met"
    assert rows["put_relaxed p99 vs the pure build, same run (no regression)"]["verdict"] == "NOT met"
    assert not [row for row in rows if row.startswith("mix p99")]


def test_a_paired_asgi_row_names_its_baseline() -> None:
    """The load table shows a scenario paired with asgi_bare as a bold share of asgi_bare."""
    sc = _load_scenario("tuco's ASGI app under uvicorn, GET", {"ratio_to_asgi_bare": 0.85}, baseline="asgi_bare")
    lines = _report._load_table(_results(asgi_get=sc))
    assert lines[2] == (
        "| asgi_get: tuco's ASGI app under uvicorn, GET | 64 | 64 B | 9,000 | **85%** of asgi_bare (paired) "
        "| 1.00 | 2.00 | 3.0 | 30.0 | 50 | 0 |"
    )


def test_the_heap_per_key_is_judged_against_the_pure_twins_heap() -> None:
    """RssAnon per key: met at the pure twin's figure, not a tenth of a byte past it (no spread measured), or up to
    the larger spread of either build's starts; no twin, no pass."""
    name = "heap (RssAnon) per key beyond key+value, 500k to 1M keys (no regression)"
    twin = {"pure": {"heap_slope_bytes_per_key": 270.4}}
    assert _rows(_results(startup={"heap_slope_bytes_per_key": 270.4, **twin}))[name]["verdict"] == "met"
    assert _rows(_results(startup={"heap_slope_bytes_per_key": 270.5, **twin}))[name]["verdict"] == "NOT met"
    assert _rows(_results(startup={"heap_slope_bytes_per_key": 1.0}))[name]["verdict"] == "NOT met"
    rounds = [{"heap_kib": 400_000, "half_heap_kib": 200_000}, {"heap_kib": 400_100, "half_heap_kib": 199_000}]
    assert _scenarios.heap_slope(rounds, 1_000_000) == round(200_550 * 1024 / 500_000 - 116, 1) == 294.7
    assert _scenarios.heap_resolution(rounds, 1_000_000) == round(100 * 1024 / 500_000, 2) == 0.2
    # Within the spread of either build's starts a difference is not one: 270.7 is met against 270.4 + 0.3.
    spread = {"heap_slope_resolution_bytes": 0.3}
    twin = {"pure": {"heap_slope_bytes_per_key": 270.4, "heap_slope_resolution_bytes": 0.1}}
    assert _rows(_results(startup={"heap_slope_bytes_per_key": 270.7, **spread, **twin}))[name]["verdict"] == "met"
    assert _rows(_results(startup={"heap_slope_bytes_per_key": 270.8, **spread, **twin}))[name]["verdict"] == "NOT met"
    assert _rows(_results())[name]["verdict"] == "not measured"


def test_the_404s_of_the_absent_keys_scenario_are_not_errors_but_any_other_error_is() -> None:
    """get_miss expects a 404 for every GET (wrk counts them as status errors); its other errors still show."""
    scenario = next(s for s in _scenarios.LOAD_SCENARIOS if s.name == "get_miss")
    assert (scenario.preloaded, scenario.put_percent) == (False, 0)
    errors = {"connect": 0, "read": 2, "write": 0, "status": 270_000, "timeout": 1}
    sc = _load_scenario("GET of absent keys (404)", {"errors": errors})
    missing = _report._load_table(_results(get_miss={**sc, "preloaded": False}))[2]
    assert missing.endswith("| 50 | 3 |"), missing
    present = _report._load_table(_results(get={**sc, "preloaded": True}))[2]
    assert present.endswith("| 50 | 270003 |"), present


def test_a_round_waits_for_the_machine_to_be_quiet_but_not_forever() -> None:
    """wait_until_quiet returns after one window once the CPUs were idle enough, and after its limit if never."""
    wait_until_quiet = _proc.wait_until_quiet
    assert wait_until_quiet(idle_share=0.0, window=0.05, limit=5.0) < 1.0  # any machine is that idle
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # one core never idle: at most half
    try:
        waited = wait_until_quiet(idle_share=0.99, window=0.05, limit=0.5)
    finally:
        busy.kill()
        busy.wait()
    assert 0.5 <= waited < 1.5
