"""The naive parse loop that start-up replay is measured against: ``python bench/naive_replay.py LOG``.

What anyone would write in plain Python to load a tuco log of ordinary records (the format is in
docs/log-format.md) into a dict: read the file, then per record one ``struct`` unpack of its head, its CRC-32
checked, the key decoded, the value sliced and stored (or the key popped). No sequence checks, no revisions, no
torn-tail verdict, no bounded memory: less than tuco's replay does, which is why it is a fair bar. Prints the
records read and the seconds they took (reading the file included), as JSON.
"""

from __future__ import annotations

import json
import struct
import sys
import time
import zlib

HEADER_BYTES = 24  # the file header (magic, version, a reserved word, first sequence): skipped
HEAD = struct.Struct("<IIQBI")  # length, CRC-32, sequence, kind (1 put, 2 delete), key length
PUT = 1


def load(path: str) -> tuple[int, dict[str, bytes]]:
    """The records read and the dict they leave."""
    with open(path, "rb") as file:
        data = file.read()
    store: dict[str, bytes] = {}
    records = 0
    pos = HEADER_BYTES
    size = len(data)
    while pos < size:
        length, checksum, _sequence, kind, key_length = HEAD.unpack_from(data, pos)
        end = pos + 8 + length
        if zlib.crc32(data[pos + 8 : end]) != checksum:
            raise ValueError(f"checksum mismatch at offset {pos}")
        key_end = pos + HEAD.size + key_length
        key = data[pos + HEAD.size : key_end].decode()
        if kind == PUT:
            store[key] = data[key_end:end]
        else:
            store.pop(key, None)
        records += 1
        pos = end
    return records, store


def main() -> None:
    started = time.perf_counter()
    records, store = load(sys.argv[1])
    seconds = time.perf_counter() - started
    print(json.dumps({"records": records, "keys": len(store), "seconds": round(seconds, 4)}))


if __name__ == "__main__":
    main()
