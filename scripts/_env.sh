# Sourced by the other scripts: make .venv with the pinned dependencies, once per change of the lock files.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "tuco needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
  exit 2
fi
tuco_setup() {  # $1: runtime or dev
  local lock="requirements/$1.lock" stamp=".venv/.installed-$1"
  if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
  fi
  if [ ! -f "$stamp" ] || [ "$lock" -nt "$stamp" ] || [ requirements/runtime.lock -nt "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setting up .venv from $lock ..." >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --require-hashes -r "$lock"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
    touch "$stamp"
  fi
}
