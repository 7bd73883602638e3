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
tuco_compiled() {  # build/compiled: tuco's wheel as pip builds it (the request path compiled by mypyc), unpacked
  # Built again whenever src/, the build hook or the build lock change; run with PYTHONPATH=build/compiled.
  # Fails (status 1) where the wheel cannot be compiled: no C compiler or no Python headers.
  local venv=.venv/build key
  key=$( { find src -name '*.py' -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum;
           sha256sum pyproject.toml hatch_build.py requirements/build.lock; } | sha256sum | cut -c1-16)
  [ "$(cat build/compiled/.key 2>/dev/null)" = "$key" ] && return 0
  mkdir -p build
  exec 9>build/.lock
  flock 9  # two ./scripts/run started at once build it once
  if [ "$(cat build/compiled/.key 2>/dev/null)" != "$key" ]; then
    if [ ! -x "$venv/bin/python" ] || [ requirements/build.lock -nt "$venv/.installed" ]; then
      echo "setting up $venv from requirements/build.lock ..." >&2
      rm -rf "$venv" && "$PYTHON" -m venv "$venv"
      "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements/build.lock
      touch "$venv/.installed"
    fi
    echo "compiling tuco's request path with mypyc (about two minutes, once per change of src/) ..." >&2
    rm -rf build/wheel build/compiled.new
    if ! TUCO_BUILD=compiled "$venv/bin/python" -m pip wheel --quiet --disable-pip-version-check --no-build-isolation \
        --no-deps --wheel-dir build/wheel . >build/compile.log 2>&1; then
      tail -n 5 build/compile.log >&2
      exec 9>&-
      return 1
    fi
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-index \
      --target build/compiled.new build/wheel/tuco-*.whl
    echo "$key" >build/compiled.new/.key
    rm -rf build/compiled && mv build/compiled.new build/compiled
  fi
  exec 9>&-
}
