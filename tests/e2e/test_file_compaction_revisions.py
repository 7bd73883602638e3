"""A real server compacting online, then SIGKILLed and restarted, keeps every key's revisions."""

from __future__ import annotations

import subprocess
import sys
from ast import literal_eval
from collections.abc import Callable
from pathlib import Path

from tests.e2e.keys import key_path
from tests.e2e.process import TucoProcess

StartTuco = Callable[..., TucoProcess]
Revisions = dict[str, tuple[bytes, int, int, int]]  # key -> (value, create_revision, mod_revision, version)


def dumped_entries(log: Path) -> tuple[Revisions, int]:
    """Every live key's value and revisions, and the last sequence, as `tuco log dump` prints them."""
    result = subprocess.run(
        [sys.executable, "-m", "tuco", "log", "dump", str(log)], capture_output=True, text=True, timeout=60, check=True
    )
    entries: Revisions = {}
    last = 0
    for line in result.stdout.splitlines():
        fields = line.split("\t")
        sequence, type_, key = int(fields[0]), fields[1], literal_eval(fields[2])
        last = sequence
        if type_ == "DELETE":
            entries.pop(key, None)
            continue
        created = int(fields[4].removeprefix("create_revision="))
        entries[key] = (literal_eval(fields[3]), created, sequence, int(fields[5].removeprefix("version=")))
    return entries, last


def test_revisions_survive_online_compactions_a_sigkill_and_a_restart(tuco: StartTuco, tmp_path: Path) -> None:
    """Writes racing online compactions, then SIGKILL: a restart has every key's revisions as they were served."""
    data = tmp_path / "data"
    server = tuco(data_dir=data, TUCO_LOG_COMPACT_MIN_BYTES="4096")
    model: Revisions = {}
    sequence = 0
    with server.client() as http:
        for round_ in range(40):
            for n in range(12):
                key = f"key {n}"
                sequence += 1
                if n % 5 == round_ % 5:
                    assert http.delete(key_path(key)).status_code == 200
                    model.pop(key, None)
                    continue
                value = b"round %d " % round_ * 20
                assert http.put(key_path(key), content=value).status_code == 201
                old = model.get(key)
                model[key] = (value, old[1], sequence, old[3] + 1) if old else (value, sequence, sequence, 1)
    compactions = sum(event.get("event") == "log_compacted" for event in server.events())
    assert compactions >= 2, server.output()
    server.kill()

    log = data / "tuco.log"
    assert log.read_bytes()[8:12] == b"\x02\x00\x00\x00"  # compacted: format version 2
    assert dumped_entries(log) == (model, sequence)
    restarted = tuco(data_dir=data)
    with restarted.client() as http:
        for key, (value, *_) in model.items():
            response = http.get(key_path(key))
            assert (response.status_code, response.content) == (200, value)
        assert restarted.wait_for("replay_finished")["keys"] == len(model)
        assert http.put(key_path("after"), content=b"1").status_code == 201
    assert restarted.terminate() == 0
    assert dumped_entries(log) == ({**model, "after": (b"1", sequence + 1, sequence + 1, 1)}, sequence + 1)
