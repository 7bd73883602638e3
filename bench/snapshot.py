"""Online snapshot and restore at scale: ``.venv/bin/python bench/snapshot.py`` (issue 26, acceptance 2).

    .venv/bin/python bench/snapshot.py                        # 1,000,000 keys of 1 KiB
    .venv/bin/python bench/snapshot.py --keys 100000 --seconds 3

1. A seed snapshot of ``--keys`` keys of ``--value-bytes`` is written with the encoder and restored into a
   new file log (``tuco snapshot restore --data-dir``): the restore time of that size.
2. ``tuco serve`` starts on it (``TUCO_LOG_SYNC=everysec`` unless ``--sync always``; no store bound).
3. ``--writers`` threads PUT values of the same size to random keys for ``--seconds``: writes/s without a snapshot.
4. The same writers run while ``GET /v1/snapshot`` streams to a file at full speed: the snapshot's time, writes/s
   during it, and the server's peak RSS over its RSS just before (VmRSS sampled every 10 ms).
5. The saved snapshot is verified and restored again: its keys, revision and restore time (and, with
   ``--database-url URL`` of an empty database, the time of a PostgreSQL restore).

Prints one JSON object. Throughput figures of a shared two-core machine are for comparison side by side,
not absolutes; the RSS delta is the figure the design bounds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from _proc import status_kib
from _server import ServerProcess, free_port, tuco_command
from tuco.core.snapshot import KeyRecord, SnapshotDecoder, SnapshotEncoder


def _seed(path: Path, keys: int, value_bytes: int) -> None:
    """Write a snapshot of ``keys`` keys, streaming (the bench never holds the state)."""
    encoder = SnapshotEncoder(keys, int(time.time() * 1000))
    value = os.urandom(value_bytes)
    with path.open("wb") as out:
        out.write(encoder.header())
        batch = []
        for n in range(keys):
            batch.append(encoder.key(KeyRecord(f"k/{n:07d}", value, n + 1, n + 1, 1)))
            if len(batch) == 4096:
                out.write(b"".join(batch))
                batch.clear()
        out.write(b"".join(batch) + encoder.trailer())


def _restore(snapshot: Path, data_dir: Path) -> float:
    started = time.perf_counter()
    command = [sys.executable, "-m", "tuco", "snapshot", "restore", str(snapshot), "--data-dir", str(data_dir)]
    subprocess.run(command, check=True, capture_output=True)
    return round(time.perf_counter() - started, 2)


def _writers(
    url: str, count: int, keys: int, value: bytes, stop: threading.Event, done: list[int]
) -> list[threading.Thread]:
    def write(seed: int) -> None:
        rng = random.Random(seed)
        n = 0
        with httpx.Client(base_url=url, timeout=60) as client:
            while not stop.is_set():
                client.put(f"/v1/key/k%2F{rng.randrange(keys):07d}", content=value)
                n += 1
        done.append(n)

    threads = [threading.Thread(target=write, args=(seed,)) for seed in range(count)]
    for thread in threads:
        thread.start()
    return threads


def _write_rate(url: str, args: argparse.Namespace, value: bytes, during: Any = None) -> tuple[float, Any]:
    """Writes/s of the writers for ``--seconds`` (or while ``during()`` runs), and what ``during`` returned."""
    stop = threading.Event()
    done: list[int] = []
    started = time.perf_counter()
    threads = _writers(url, args.writers, args.keys, value, stop, done)
    result = during() if during is not None else time.sleep(args.seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return round(sum(done) / (time.perf_counter() - started)), result


def run(args: argparse.Namespace) -> dict[str, Any]:
    value = os.urandom(args.value_bytes)
    with tempfile.TemporaryDirectory(prefix="tuco-snapshot-bench-") as tmp:
        root = Path(tmp)
        seed = root / "seed.snap"
        _seed(seed, args.keys, args.value_bytes)
        restore_seed = _restore(seed, root / "data")
        seed.unlink()
        port = free_port()
        env = {
            "TUCO_PORT": str(port),
            "TUCO_DATA_DIR": str(root / "data"),
            "TUCO_LOG_SYNC": args.sync,
            "TUCO_MAX_STORE_BYTES": "0",
            "TUCO_MAX_STORE_KEYS": "0",
            "TUCO_LOG_LEVEL": "warning",
        }
        with ServerProcess("snapshot", tuco_command(), env, port) as server:
            started = time.perf_counter()
            server.wait_ready(timeout=900)
            replay = round(time.perf_counter() - started, 2)
            with httpx.Client(base_url=server.url, timeout=60) as client:
                client.get("/v1/keys", params={"limit": 1})  # the sorted key index, built once for any listing
            without, _ = _write_rate(server.url, args, value)
            saved = root / "saved.snap"
            baseline = status_kib(server.pid, "VmRSS")
            peak = [baseline]
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.is_set():
                    peak[0] = max(peak[0], status_kib(server.pid, "VmRSS"))
                    time.sleep(0.01)

            def snapshot() -> float:
                sampler = threading.Thread(target=sample)
                sampler.start()
                began = time.perf_counter()
                with (
                    httpx.Client(base_url=server.url, timeout=600) as client,
                    saved.open("wb") as out,
                    client.stream("GET", "/v1/snapshot") as stream,
                ):
                    for chunk in stream.iter_raw(1 << 20):
                        out.write(chunk)
                took = time.perf_counter() - began
                sampling.set()
                sampler.join()
                return round(took, 2)

            during, took = _write_rate(server.url, args, value, snapshot)
            server.check_alive()
        decoder = SnapshotDecoder()
        with saved.open("rb") as file:
            while chunk := file.read(1 << 20):
                decoder.feed(chunk)
        summary = decoder.finish()
        restore_saved = _restore(saved, root / "restored")
        restore_pg = None
        if args.database_url:
            started_pg = time.perf_counter()
            command = [
                sys.executable,
                "-m",
                "tuco",
                "snapshot",
                "restore",
                str(saved),
                "--database-url",
                args.database_url,
            ]
            subprocess.run(command, check=True, capture_output=True)
            restore_pg = round(time.perf_counter() - started_pg, 2)
    return {
        "keys": args.keys,
        "value_bytes": args.value_bytes,
        "sync": args.sync,
        "writers": args.writers,
        "restore_seed_s": restore_seed,
        "replay_s": replay,
        "snapshot_s": took,
        "snapshot_bytes": summary.bytes,
        "snapshot_keys": summary.keys,
        "snapshot_revision": summary.revision,
        "rss_baseline_mib": round(baseline / 1024),
        "rss_extra_mib": round((peak[0] - baseline) / 1024, 1),
        "writes_per_s_without": without,
        "writes_per_s_during": during,
        "restore_saved_s": restore_saved,
        "restore_postgres_s": restore_pg,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--value-bytes", type=int, default=1024)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0, help="how long writes run without a snapshot")
    parser.add_argument("--sync", choices=("everysec", "always"), default="everysec")
    parser.add_argument("--database-url", help="also restore the saved snapshot into this empty PostgreSQL database")
    print(json.dumps(run(parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
