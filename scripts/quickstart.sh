#!/usr/bin/env bash
# The main job on one machine: set up, start a project-local PostgreSQL
# cluster, sync a few real packages from the upstream pip is configured with,
# build them for every interpreter found, write the index and serve it.
#
#   PIWHEELS_PACKAGES  packages to sync (default: pure and C-extension ones)
#   PIWHEELS_BATCH     builds in this wave (default: 4 per package)
#   PIWHEELS_NO_SERVE  set to 1 (or pass --no-serve) to exit after the wave
#   PIWHEELS_PORT      port to serve on (default 8000)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NO_SERVE="${PIWHEELS_NO_SERVE:-0}"
for arg in "$@"; do
    case "$arg" in
        --no-serve) NO_SERVE=1 ;;
        *) echo "quickstart: unknown option $arg (only --no-serve)" >&2; exit 2 ;;
    esac
done
bash "$ROOT/scripts/setup.sh"

FARM="$ROOT/.farm"
mkdir -p "$FARM"
chmod 755 "$FARM"
DSN="$("$ROOT/.venv/bin/python" -m piwheels_build.db.localdb start "$FARM/pg")"
export PIWHEELS_CONFIG="$FARM/piwheels.toml"
if [ ! -f "$PIWHEELS_CONFIG" ]; then
    cat > "$PIWHEELS_CONFIG" <<TOML
# Written by scripts/quickstart.sh; see docs/configuration.md for every key.
# No 'upstream' key: the index pip is configured with is used.
database = "$DSN"
www = "www"
build_timeout = 900
# piwheels serve logs each answer here; piwheels downloads counts the wheels in it.
serve_access_log = "access.log"
access_logs = ["access.log"]
TOML
fi
PW="$ROOT/.venv/bin/piwheels"
PACKAGES=(${PIWHEELS_PACKAGES:-six idna markupsafe simplejson})
"$PW" initdb
"$PW" sync "${PACKAGES[@]}"
"$PW" build --batch "${PIWHEELS_BATCH:-$((4 * ${#PACKAGES[@]}))}"
"$PW" index --full
"$PW" status
# The packages of this wave that this machine's python3 can install from the index
# (a wheel whose tags it supports): what the printed pip line names.
INSTALLABLE="$("$ROOT/.venv/bin/python" - "$FARM/www/simple" "${PACKAGES[@]}" <<'PY'
import sys
from pathlib import Path

from packaging.tags import sys_tags
from packaging.utils import canonicalize_name, parse_wheel_filename

simple, names = Path(sys.argv[1]), sys.argv[2:]
supported = set(sys_tags())
print(" ".join(name for name in names if any(
    supported & set(parse_wheel_filename(w.name)[3])
    for w in (simple / canonicalize_name(name)).glob("*.whl"))))
PY
)"
URL="http://127.0.0.1:${PIWHEELS_PORT:-8000}/simple/"
if [ -n "$INSTALLABLE" ]; then
    echo "quickstart: once the index is served, try: pip install --index-url $URL $INSTALLABLE"
else
    echo "quickstart: none of ${PACKAGES[*]} has a wheel for this machine's python3 yet" \
         "(a larger PIWHEELS_BATCH builds more)"
fi
if [ "$NO_SERVE" = 1 ]; then
    echo "quickstart: wave done; index in $FARM/www (serve it with: PIWHEELS_CONFIG=$PIWHEELS_CONFIG $PW serve)"
    exit 0
fi
exec "$PW" serve --port "${PIWHEELS_PORT:-8000}"
