#!/usr/bin/env bash
# Set up everything and run the whole test suite (unit, real PostgreSQL,
# end-to-end builds with real pip and uv). Extra arguments go to pytest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# The fleet extra (ansible, molecule, testinfra, fabric) is needed by the
# Ansible module tests.
PIWHEELS_EXTRAS=test,fleet bash "$ROOT/scripts/setup.sh"
cd "$ROOT"
# Build requirements the tests' local upstream index serves to pip (the tests
# themselves never leave loopback).
FIXTURES="$ROOT/.cache/fixture-wheels"
if ! ls "$FIXTURES"/setuptools-*.whl "$FIXTURES"/wheel-*.whl >/dev/null 2>&1; then
    mkdir -p "$FIXTURES"
    .venv/bin/python -m pip download -q --only-binary :all: --no-deps -d "$FIXTURES" \
        "setuptools==84.2.1" "wheel==0.45.1"
fi
export PIWHEELS_FIXTURE_WHEELS="$FIXTURES"
.venv/bin/ruff check .
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
    echo "test: pytest collected no tests" >&2
fi
exit "$rc"
