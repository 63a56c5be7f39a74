#!/usr/bin/env bash
# The fleet test: real systemd hosts (systemd-nspawn, scripts/lab.sh) for a
# master + webserver, a bookworm builder (Python 3.11), a trixie builder
# (Python 3.13) and a client; molecule converges playbooks/site.yml, checks
# idempotence, runs a build wave from a test upstream served from the
# controller side of the bridge, and verifies with testinfra. Also
# ansible-lint, the modules' unit tests and one light molecule scenario per
# role that runs alone (client, common, master). Exits non-zero on any failure.
#
#   bash scripts/fleet-test.sh            (as root; Debian 12)
#   PIWHEELS_KEEP_LAB=1 bash scripts/fleet-test.sh   keep the hosts afterwards
#   PIWHEELS_ROLE_SCENARIOS="master" bash scripts/fleet-test.sh
#                                     only these per-role scenarios ("" for none)
#
# Caches: .cache/lab/rootfs-*.tar.zst (keyed by their package lists),
# .cache/lab/wheels-deps (dependency wheels), .cache/fixture-wheels.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export PIWHEELS_LAB_DIR="${PIWHEELS_LAB_DIR:-/run/piwheels-lab}"
export PIWHEELS_ROOT="$ROOT"
START=$SECONDS
step() { echo "fleet-test: [$((SECONDS - START))s] $*" >&2; }

[ "$(id -u)" = 0 ] || { echo "fleet-test: run as root (nspawn, netns, overlayfs)" >&2; exit 2; }

step "packages"
need=()
for pair in systemd-nspawn:systemd-container debootstrap:debootstrap nc:netcat-openbsd \
            zstd:zstd pg_config:libpq-dev gcc:gcc ssh:openssh-client ip:iproute2; do
    command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || bash scripts/setup.sh
if ! .venv/bin/python -c "import molecule, testinfra, fabric, ansiblelint" 2>/dev/null; then
    .venv/bin/pip install -q -e '.[test,fleet]'
fi
export PATH="$ROOT/.venv/bin:$PATH"

FIXTURES="$ROOT/.cache/fixture-wheels"
if ! ls "$FIXTURES"/setuptools-*.whl "$FIXTURES"/wheel-*.whl >/dev/null 2>&1; then
    mkdir -p "$FIXTURES"
    python -m pip download -q --only-binary :all: --no-deps -d "$FIXTURES" \
        "setuptools==84.2.1" "wheel==0.45.1"
fi
export PIWHEELS_FIXTURE_WHEELS="$FIXTURES"

cleanup() {
    local rc=$?
    if [ -z "${PIWHEELS_KEEP_LAB:-}" ]; then
        # molecule's destroy does this; this is the safety net for a failure before it.
        if [ -f "$PIWHEELS_LAB_DIR/upstream.pid" ]; then
            kill "$(cat "$PIWHEELS_LAB_DIR/upstream.pid")" 2>/dev/null || true
            rm -f "$PIWHEELS_LAB_DIR/upstream.pid"
        fi
        bash scripts/lab.sh down >/dev/null 2>&1 || true
    fi
    step "done (exit $rc)"
}
trap cleanup EXIT

step "root file systems (cached) and the wheelhouse"
bash scripts/lab.sh rootfs bookworm >/dev/null &
p1=$!
bash scripts/lab.sh rootfs trixie >/dev/null &
p2=$!
bash scripts/fleet-wheelhouse.sh .cache/lab/wheelhouse 2>/dev/null
wait "$p1"
wait "$p2"

step "ansible-lint"
ansible-lint --format=pep8 -q playbooks/ roles/ inventory/ molecule/

step "module unit tests"
# Found by name: tests/ is being split into sub-packages (issue 14).
mapfile -t unit < <(find tests -name test_ansible_modules.py -o -name test_admin.py | sort)
[ ${#unit[@]} -eq 2 ] || { echo "fleet-test: module tests not found (${unit[*]})" >&2; exit 1; }
python -m pytest -q -p no:cacheprovider "${unit[@]}"

# One light scenario per role that runs alone (molecule/client, common,
# master: the master with the webserver on one host); the builder role needs a
# master, so the fleet scenario is its test.
for scenario in ${PIWHEELS_ROLE_SCENARIOS-client common master}; do
    step "molecule test -s $scenario"
    molecule test -s "$scenario"
done

step "molecule test -s fleet"
if [ -n "${PIWHEELS_KEEP_LAB:-}" ]; then
    molecule test -s fleet --destroy=never
else
    molecule test -s fleet
fi
