#!/usr/bin/env bash
# Build the wheelhouse the fleet installs piwheels_build from when hosts
# have no index (piwheels_wheelhouse): this checkout's wheel plus its
# dependencies' wheels for every CPython the fleet runs (cp311 for
# bookworm, cp313 for trixie by default). psycopg2 is built from source, so
# the controller needs pg_config and a compiler (libpq-dev, gcc) and one
# interpreter of each version.
#
#   scripts/fleet-wheelhouse.sh DIR [VERSION ...]     (default: 3.11 3.13)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:?usage: fleet-wheelhouse.sh DIR [VERSION ...]}"
shift
VERSIONS=("$@")
[ ${#VERSIONS[@]} -gt 0 ] || VERSIONS=(3.11 3.13)
CACHE="$ROOT/.cache/lab/wheels-deps"
# The dependencies pyproject.toml declares; the cache is keyed by that list.
mapfile -t DEPS < <("$ROOT/.venv/bin/python" -c 'import sys, tomllib
print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
    "$ROOT/pyproject.toml")
KEY="$(printf '%s\n' "${DEPS[@]}" | sha256sum | cut -c1-12)"

find_python() {
    local v="$1" c
    for c in "$(command -v "python$v" || true)" /usr/bin/python"$v" \
             /root/.pyenv/versions/"$v".*/bin/python "$HOME"/.pyenv/versions/"$v".*/bin/python; do
        [ -n "$c" ] && [ -x "$c" ] && "$c" -m pip --version >/dev/null 2>&1 && { echo "$c"; return; }
    done
    return 1
}

command -v pg_config >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q libpq-dev >/dev/null
mkdir -p "$DEST" "$CACHE"
for v in "${VERSIONS[@]}"; do
    tag="cp${v/./}"
    dir="$CACHE/$tag-$KEY"
    if [ ! -f "$dir/.complete" ]; then
        py="$(find_python "$v")" || { echo "wheelhouse: no Python $v with pip here" >&2; exit 2; }
        echo "wheelhouse: dependencies for $tag with $py: ${DEPS[*]}" >&2
        rm -rf "$dir.tmp"
        "$py" -m pip wheel -q --disable-pip-version-check -w "$dir.tmp" "${DEPS[@]}"
        touch "$dir.tmp/.complete"
        rm -rf "$dir" && mv "$dir.tmp" "$dir"
    fi
    cp -p "$dir"/*.whl "$DEST"/
done
# This checkout's code, reproducibly (same sources, same bytes: no reinstall).
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
SOURCE_DATE_EPOCH=1700000000 "$ROOT/.venv/bin/python" -m pip wheel -q --no-deps \
    --disable-pip-version-check --no-build-isolation -w "$tmp" "$ROOT" 2>/dev/null \
  || SOURCE_DATE_EPOCH=1700000000 "$ROOT/.venv/bin/python" -m pip wheel -q --no-deps \
    --disable-pip-version-check -w "$tmp" "$ROOT"
rm -f "$DEST"/piwheels_build-*.whl
cp "$tmp"/piwheels_build-*.whl "$DEST"/
ls "$DEST" >&2
