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
tuco_source_key() {  # what a compiled build is made from: src/, the build hook, the build lock (and the files in $@)
  { find src \( -name '*.py' -o -name '*.pyi' -o -name '*.c' \) -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum;
    sha256sum pyproject.toml hatch_build.py requirements/build.lock "$@"; } | sha256sum | cut -c1-16
}
tuco_build_venv() {  # .venv/build: mypy (mypyc), setuptools and hatchling as pinned in requirements/build.lock
  local venv=.venv/build
  mkdir -p build
  exec 7>build/.lock-venv
  flock 7  # the x86_64 and the arm64 compiles may ask for it at once (scripts/test runs them side by side)
  if [ ! -x "$venv/bin/python" ] || [ requirements/build.lock -nt "$venv/.installed" ]; then
    echo "setting up $venv from requirements/build.lock ..." >&2
    rm -rf "$venv" && "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements/build.lock
    touch "$venv/.installed"
  fi
  exec 7>&-
}
tuco_compiled() {  # build/compiled: tuco's wheel as pip builds it (the request path compiled by mypyc), unpacked
  # Built again whenever src/, the build hook or the build lock change; run with PYTHONPATH=build/compiled.
  # Fails (status 1) where the wheel cannot be compiled: no C compiler or no Python headers.
  local venv=.venv/build key
  key=$(tuco_source_key)
  [ "$(cat build/compiled/.key 2>/dev/null)" = "$key" ] && return 0
  mkdir -p build
  exec 9>build/.lock
  flock 9  # two ./scripts/run started at once build it once
  if [ "$(cat build/compiled/.key 2>/dev/null)" != "$key" ]; then
    tuco_build_venv
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

# arm64 (AWS Lambda's Graviton) from this x86_64 Debian 12: Debian's cross compiler, and Debian bookworm's arm64
# Python 3.11 (headers, interpreter, standard library) unpacked into build/cross/arm64/sysroot, never installed
# (the machine's dpkg keeps its one architecture). qemu-user-static runs that Python for the tests.
tuco_apt_install() {  # $@: Debian packages, installed as scripts/test installs strace (as root, else with sudo)
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  local apt=($sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -y -q)
  "${apt[@]}" install --no-install-recommends "$@" >/dev/null 2>&1 \
    || { "${apt[@]}" update >/dev/null && "${apt[@]}" install --no-install-recommends "$@" >/dev/null; }
}
tuco_cross_toolchain() {  # the arm64 cross compiler (with "emulator": and qemu-aarch64-static); status 1 if missing
  if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || [ ! -f /usr/aarch64-linux-gnu/include/stdio.h ]; then
    echo "installing the arm64 cross compiler (Debian's gcc-aarch64-linux-gnu) ..." >&2
    tuco_apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross || true
    if ! command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || [ ! -f /usr/aarch64-linux-gnu/include/stdio.h ]; then
      echo "the arm64 cross compiler is missing and could not be installed:" \
        "apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross (as root)" >&2
      return 1
    fi
  fi
  if [ "${1:-}" = emulator ] && ! command -v qemu-aarch64-static >/dev/null 2>&1; then
    echo "installing the arm64 emulator (Debian's qemu-user-static) ..." >&2
    tuco_apt_install qemu-user-static || true
    if ! command -v qemu-aarch64-static >/dev/null 2>&1; then
      echo "the arm64 emulator is missing and could not be installed: apt-get install qemu-user-static (as root)" >&2
      return 1
    fi
  fi
}
tuco_arm64_sysroot() {  # build/cross/arm64/sysroot: Debian bookworm's arm64 python3.11, its libraries, its headers
  # Fetched once (about 20 MB, the .debs kept in build/cross/arm64/apt/archives) by an apt of its own: arm64 package
  # lists, an empty dpkg status, this machine's Debian mirror. Status 1, saying why, where they cannot be had.
  local dir="$PWD/build/cross/arm64" mirror security deb
  [ -f "$dir/sysroot/.complete" ] && return 0
  echo "fetching Debian bookworm's arm64 Python 3.11 into build/cross/arm64/sysroot ..." >&2
  mirror=$(awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$mirror" ] || mirror=$(awk '/^deb / && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  security=$(awk '/^URIs:/ && $2 ~ /security/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$security" ] \
    || security=$(awk '/^deb / && $3 == "bookworm-security" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  mkdir -p "$dir/apt/etc/apt/sources.list.d" "$dir/apt/etc/apt/preferences.d" "$dir/apt/lists/partial" \
    "$dir/apt/archives/partial"
  : >"$dir/apt/status"
  local signed="arch=arm64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg"
  printf 'deb [%s] %s %s main\n' \
    "$signed" "${mirror:-http://deb.debian.org/debian}" bookworm \
    "$signed" "${mirror:-http://deb.debian.org/debian}" bookworm-updates \
    "$signed" "${security:-http://deb.debian.org/debian-security}" bookworm-security >"$dir/apt/etc/apt/sources.list"
  printf '%s\n' "Dir \"$dir/apt/\";" "Dir::State::status \"$dir/apt/status\";" \
    "Dir::State::Lists \"$dir/apt/lists/\";" "Dir::Cache::Archives \"$dir/apt/archives/\";" \
    'APT::Architecture "arm64";' 'APT::Architectures "arm64";' 'APT::Install-Recommends "false";' \
    'APT::Sandbox::User "root";' >"$dir/apt/apt.conf"
  local apt=(env APT_CONFIG="$dir/apt/apt.conf" apt-get -q -y)
  # The interpreter and its standard library with what they need; the headers without theirs (the C library's).
  if ! { "${apt[@]}" update >"$dir/apt.log" 2>&1 \
         && "${apt[@]}" install --download-only python3.11-minimal libpython3.11-stdlib >>"$dir/apt.log" 2>&1 \
         && (cd "$dir/apt/archives" && "${apt[@]}" download libpython3.11-dev) >>"$dir/apt.log" 2>&1; }; then
    tail -n 5 "$dir/apt.log" >&2
    echo "could not fetch Debian's arm64 python3.11 packages (see build/cross/arm64/apt.log)" >&2
    return 1
  fi
  rm -rf "$dir/sysroot.new"
  mkdir -p "$dir/sysroot.new"
  for deb in "$dir"/apt/archives/*.deb; do
    dpkg-deb -x "$deb" "$dir/sysroot.new"
  done
  (cd "$dir/apt/archives" && ls -- *.deb) >"$dir/sysroot.new/.complete"  # which packages: part of the build's key
  rm -rf "$dir/sysroot" && mv "$dir/sysroot.new" "$dir/sysroot"
  rm -rf "$dir/apt/lists"  # 80 MB, fetched again by the next fetch's update anyway
}
tuco_cross_compiled() {  # build/compiled-arm64: the request path compiled for arm64 Linux by scripts/cross_compile.py
  # The tree scripts/package-serverless ships for arm64: tuco/ with the extensions beside their sources, mypyc's
  # shared library at the top. Built again whenever src/, the build hook, the build lock, the cross compiler or
  # the sysroot's packages change. Status 1, saying why, where the toolchain cannot be had or the compile fails.
  local version key
  version=$(.venv/bin/python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
  if [ "$version" != 3.11 ]; then
    echo "cross-compiling for arm64 needs Python 3.11 (Debian bookworm's arm64 python3.11); .venv is Python $version" >&2
    return 1
  fi
  tuco_cross_toolchain || return 1
  mkdir -p build
  exec 8>build/.lock-arm64  # its own lock: it may build beside tuco_compiled (build/.lock)
  flock 8
  tuco_arm64_sysroot || { exec 8>&-; return 1; }
  key=$( { tuco_source_key scripts/cross_compile.py build/cross/arm64/sysroot/.complete;
           aarch64-linux-gnu-gcc --version | sed -n 1p; } | sha256sum | cut -c1-16)
  if [ "$(cat build/compiled-arm64/.key 2>/dev/null)" != "$key" ]; then
    tuco_build_venv
    echo "cross-compiling tuco's request path for arm64 (about two and a half minutes, once per change of src/) ..." >&2
    rm -rf build/compiled-arm64.new build/compiled-arm64.new.partial
    if ! .venv/build/bin/python scripts/cross_compile.py --target aarch64-linux-gnu \
        --sysroot build/cross/arm64/sysroot --out build/compiled-arm64.new >build/compile-arm64.log 2>&1; then
      tail -n 5 build/compile-arm64.log >&2
      exec 8>&-
      return 1
    fi
    echo "$key" >build/compiled-arm64.new/.key
    rm -rf build/compiled-arm64 && mv build/compiled-arm64.new build/compiled-arm64
  fi
  exec 8>&-
}
