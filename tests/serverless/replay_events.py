"""Run by a clean interpreter (``python -I -S``) inside an unpacked archive: answer events, print timings as JSON.

Argument: the unpacked directory. Reads a JSON list of events on stdin; prints one JSON object:
the answers, the seconds from the start of the import to the first answer (cold start), each
warm invocation's seconds, where tuco and asyncpg were imported from, and the CPU the interpreter runs for
(``aarch64`` under qemu for the arm64 archive).
"""

import json
import platform
import sys
import time

started = time.perf_counter()
sys.path.insert(0, sys.argv[1])
events = json.loads(sys.stdin.read())

from tuco import serverless  # noqa: E402  (timed: the import is part of the cold start)

answers = []
seconds = []
for event in events:
    began = time.perf_counter()
    answers.append(serverless.handler(event, None))
    seconds.append(time.perf_counter() - began)
    if len(answers) == 1:
        cold = time.perf_counter() - started

import asyncpg  # noqa: E402

from tuco._build import build  # noqa: E402

print(
    "RESULT",
    json.dumps(
        {
            "answers": answers,
            "cold_start_seconds": cold,
            "import_seconds": cold - seconds[0],
            "warm_seconds": seconds[1:],
            "tuco_file": serverless.__file__,
            "asyncpg_file": asyncpg.__file__,
            "build": build(),
            "service_file": sys.modules["tuco.service"].__file__,
            "path": sys.path,
            "machine": platform.machine(),
        }
    ),
)
