"""The ``tuco`` command: run the server, talk to one, inspect and repair a log file.

Exit codes scripts can rely on (README, "Command line"):

====  ==========================================================================
0     success
1     not found: the key, lease or token does not exist; the log has problems
      (verify, compact); the server is not healthy (``health``)
2     usage or configuration error (nothing was sent)
3     the server could not be reached (refused, reset, timed out)
4     a condition did not hold (``--if-match``, ``--create-only``: 412)
5     a watch start that is no longer retained (410)
6     unauthorized or forbidden (401, 403)
7     any other refusal by the server (400, 404 not_found, 413, 429, 503...)
====  ==========================================================================

The client commands run on :class:`tuco.client.Client`.
"""

from __future__ import annotations

import click

from tuco.cli._backup import snapshot
from tuco.cli._health import health
from tuco.cli._keys import delete, get, list_keys, put, watch
from tuco.cli._leases import lease, token
from tuco.cli._logfile import log
from tuco.cli._serve import serve
from tuco.cli._transfer import export, import_keys
from tuco.cli._txn import txn

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="tuco")
def main() -> None:
    """tuco: a dependable key-value store service.

    Shell completion: eval "$(_TUCO_COMPLETE=bash_source tuco)" (zsh_source, fish_source).
    """


_COMMANDS = (serve, health, get, put, delete, list_keys, watch, txn, lease, token, log, snapshot, export, import_keys)
for command in _COMMANDS:
    main.add_command(command)
