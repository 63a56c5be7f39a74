#!/usr/bin/env bash
# Everything a fresh Debian machine needs, installed only when missing:
# PostgreSQL server binaries, a compiler and headers (to build psycopg2 and
# wheels), the system Python with venv and pip, faketime (a builder whose clock
# is off, tests/faults/test_builder_clock.py), sshfs with fuse3 and the OpenSSH
# sftp-server (a real sshfs store that the store-fault tests cut and slow down,
# tests/faults/test_store_faults.py), and the project in .venv.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
APT_PACKAGES=(postgresql libpq-dev build-essential python3-dev python3-venv python3-pip
              bubblewrap netcat-openbsd faketime sshfs fuse3 openssh-sftp-server)

missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Builds run as this unprivileged user when the builder runs as root.
if [ "$(id -u)" -eq 0 ] && ! id piwheels-build >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
        piwheels-build
fi

PY=/usr/bin/python3
[ -x "$PY" ] || PY="$(command -v python3)"
if [ ! -x "$ROOT/.venv/bin/python" ]; then
    echo "setup: creating $ROOT/.venv" >&2
    "$PY" -m venv "$ROOT/.venv"
fi
EXTRAS="${PIWHEELS_EXTRAS:-test}"
stamp="$ROOT/.venv/.piwheels-installed-${EXTRAS//,/-}"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
    echo "setup: installing piwheels-build into .venv" >&2
    "$ROOT/.venv/bin/python" -m pip install -q --upgrade pip >/dev/null
    "$ROOT/.venv/bin/python" -m pip install -q -e "$ROOT[$EXTRAS]"
    touch "$stamp"
fi
