#!/usr/bin/env bash
# One-off setup for the benchmarks: the only bench/ step that talks to the
# package registry (like `pip download`). Everything is saved under
# .cache/bench/ and the benchmarks then serve it from 127.0.0.1.
#
#   bash bench/fetch_fixtures.sh
#
# - .cache/bench/simple-root.json or .html: the upstream's project list (its
#   root page as it answers it, ~930,000 names) for bench/sync_scale.py;
# - .cache/bench/sdists/: sdists of the packages bench/builds.py builds;
# - .cache/bench/wheels/: build requirements those sdists name (setuptools,
#   wheel), served by the benchmarks' local upstream.
# The upstream is the index pip is configured with (no host name written here).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY=.venv/bin/python
OUT=.cache/bench
mkdir -p "$OUT/sdists" "$OUT/wheels"

# Packages of bench/builds.py: pure and C-extension ones that build with
# setuptools alone and need no system library. Keep in sync with builds.py.
PACKAGES=(six==1.17.0 certifi==2025.4.26 pycparser==2.22 docopt==0.6.2 toml==0.10.2
          wcwidth==0.2.13 markupsafe==3.0.2 simplejson==3.20.1 wrapt==1.17.2
          psutil==7.0.0)

UPSTREAM="$($PY -c 'from piwheels_build.pipconfig import default_upstream; print(default_upstream())')"
echo "fetch_fixtures: upstream is the index pip is configured with"

if [ ! -s "$OUT/simple-root.json" ] && [ ! -s "$OUT/simple-root.html" ]; then
    echo "fetch_fixtures: project list -> $OUT/simple-root.{json,html}"
    $PY - "$UPSTREAM" "$OUT/simple-root" <<'EOF'
import os, sys, requests
url, dest = sys.argv[1], sys.argv[2]
accept = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2,"
          " text/html;q=0.01")
r = requests.get(url, headers={"Accept": accept}, timeout=600)
r.raise_for_status()
dest += ".json" if "json" in r.headers.get("Content-Type", "") else ".html"
with open(dest + ".tmp", "wb") as f:
    f.write(r.content)
os.replace(dest + ".tmp", dest)
print(f"fetch_fixtures: {dest}: {len(r.content) / 2**20:.1f} MiB")
EOF
fi

echo "fetch_fixtures: sdists -> $OUT/sdists"
PIP_CONFIG_FILE=/dev/null $PY -m pip download -q --no-binary :all: --no-deps \
    --index-url "$UPSTREAM" -d "$OUT/sdists" "${PACKAGES[@]}"
echo "fetch_fixtures: build requirements -> $OUT/wheels"
PIP_CONFIG_FILE=/dev/null $PY -m pip download -q --only-binary :all: --no-deps \
    --index-url "$UPSTREAM" -d "$OUT/wheels" "setuptools==84.2.1" "wheel==0.45.1"  # wheel>=0.46 needs packaging
ls -1 "$OUT/sdists" "$OUT/wheels"
