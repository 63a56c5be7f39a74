#!/usr/bin/env bash
# Run the full benchmarks one at a time (the machine may be shared: never two at
# once), each with its log and JSON figures under .cache/bench/. Extra
# arguments (e.g. --quick) go to every script. Names on the command line after
# "--" pick which ones:  bash bench/run_all.sh -- dispatch index_scale
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
ARGS=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do ARGS+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
NAMES=("$@")
[ ${#NAMES[@]} -eq 0 ] && NAMES=(queue_scale requires_python dispatch builds build_steps serving sync_scale freshness pages index_scale downloads)
mkdir -p .cache/bench/logs .cache/bench/results
for name in "${NAMES[@]}"; do
    echo "run_all: $name $(date -u +%H:%M:%S)"
    .venv/bin/python "bench/$name.py" "${ARGS[@]}" --json ".cache/bench/results/$name.json" \
        > ".cache/bench/logs/$name.log" 2>&1
    echo "run_all: $name exit $? $(date -u +%H:%M:%S)"
done
