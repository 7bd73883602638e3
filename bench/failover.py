"""Fail PostgreSQL over again and again under load: ``.venv/bin/python bench/failover.py``.

The long run of the suite's failover test (``tests/e2e/test_pg_failover.py``),
bounded in time: a primary with a synchronous standby of its own (temporary
folders, free loopback ports, run as the ``postgres`` user; see
``tests/fix_ha.py``), two or more tuco replicas on its multi-host URL, writers
(CAS and plain) and readers on each, and ``--rounds`` failovers mid-burst
(SIGKILL of the primary, ``--outage`` seconds without any primary, promotion
of the standby, a new standby built). Then it checks what the suite checks:
every acknowledged write in the database at the revision it was answered with,
sequences 1..head each once, no value written twice, replicas converged on the
new primary's state, the consistent operations linearizable, default reads
within the staleness bound; and prints the time from each promotion to the
first write acknowledged from the new primary (median, max) and to the last
write that was waiting across it. Exit code 1 if any check fails.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.process import TucoProcess
from tests.fix_ha import Burst, FailoverReport, HaCluster, check_database, drive_failovers
from tests.lincheck import check_history, check_stale_reads

STALENESS_BOUND = 5.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="failovers (default 30)")
    parser.add_argument("--seconds", type=float, default=600, help="stop starting failovers after this (600)")
    parser.add_argument("--replicas", type=int, default=2, help="tuco replicas (default 2)")
    parser.add_argument("--writers", type=int, default=16, help="clients, spread over the replicas (16)")
    parser.add_argument("--keys", type=int, default=8, help="keys they share (8)")
    parser.add_argument("--outage", type=float, default=0.0, help="seconds without a primary before promotion")
    parser.add_argument("--write-timeout", type=float, default=30.0, help="TUCO_DATABASE_WRITE_TIMEOUT_SECONDS")
    args = parser.parse_args()

    cluster = HaCluster()
    replicas: list[TucoProcess] = []
    work = Path(tempfile.mkdtemp(prefix="tuco-failover-bench-"))
    try:
        cluster.start()
        url = cluster.create_database("tuco")
        for n in range(args.replicas):
            env = {
                "TUCO_LOG_BACKEND": "postgres",
                "TUCO_DATABASE_URL": url,
                "TUCO_DATA_DIR": f"/nonexistent/{n}",
                "TUCO_DATABASE_WRITE_TIMEOUT_SECONDS": str(args.write_timeout),
                "TUCO_POLL_INTERVAL_SECONDS": "0.1",
            }
            replicas.append(TucoProcess(env, cwd=work).start())
        burst = Burst([r.url for r in replicas], writers=args.writers, keys=args.keys)

        async def run() -> FailoverReport:
            failovers = drive_failovers(
                cluster,
                burst,
                args.rounds,
                flowing=200,
                outage=args.outage,
                seconds=args.seconds,
                progress=lambda line: print(line, flush=True),
            )
            return (await asyncio.gather(burst.run(), failovers))[1]

        report = asyncio.run(run())
        failures = [f"error answer: {e}" for e in burst.history.errors]
        state = asyncio.run(check_database(url, burst))  # raises on a lost, duplicated or missing write
        head = int(cluster.query("SELECT sequence FROM tuco_head", database="tuco"))
        for replica in replicas:
            with replica.client() as http:
                for _ in range(500):
                    if http.get("/readyz").json()["log"]["last_sequence"] == head:
                        break
                    time.sleep(0.02)
                for n in range(args.keys):
                    response = http.get(f"/v1/key/k{n}")
                    if (response.content if response.status_code == 200 else None) != state.get(f"k{n}"):
                        failures.append(f"replica {replica.port} holds another k{n} than the database")
        ops = burst.history.resolved()
        started = time.monotonic()
        verdict = check_history(ops)
        checked = time.monotonic() - started
        if not verdict.ok:
            failures.append(f"not linearizable on {verdict.key}: {verdict.explanation}")
        failures += check_stale_reads(ops, STALENESS_BOUND)
        unknown = sum(1 for op in ops if op.outcome == "unknown")
        print(
            f"{len(ops)} operations, {burst.acknowledged_writes()} writes acknowledged, {unknown} unknown; "
            f"head {head}; linearizability checked in {checked:.1f} s over {verdict.keys} keys"
        )
        print(report.summary(burst))
        for failure in failures:
            print("FAILED:", failure)
        print("all checks passed" if not failures else f"{len(failures)} checks failed")
        return 1 if failures else 0
    finally:
        for replica in replicas:
            replica.stop_quietly()
        cluster.close()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
