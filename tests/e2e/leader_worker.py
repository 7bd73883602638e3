"""A campaigner for the election tests: ``python -m tests.e2e.leader_worker URL NAME VALUE TTL``.

It prints ``leader TOKEN`` once it leads, then answers each line of standard input with
``act`` if it still leads at that moment, or ``lost`` if it no longer surely does.
"""

from __future__ import annotations

import sys

from tuco.client import Client


def main() -> None:
    url, name, value, ttl = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    with Client(url) as client, client.session(ttl=ttl) as session:
        election = session.election(name)
        print(f"leader {election.campaign(value)}", flush=True)
        for _ in sys.stdin:
            print("act" if election.is_leader() else "lost", flush=True)


if __name__ == "__main__":
    main()
