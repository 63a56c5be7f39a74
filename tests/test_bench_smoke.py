"""Every bench/ script runs in --quick mode and prints its figures and the machine.

Smoke tests only: no figure is compared with a threshold (the machine is
shared); the real numbers come from full runs, see docs/benchmarks.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"

# bench script -> figures its --quick run must print
EXPECTED = {
    "queue_scale.py": ["refresh_full_initial_s", "refresh_package", "next_100k_from_queue",
                       "queue_per_target", "claim", "finish", "plans",
                       "claim_is_index_probe"],
    "dispatch.py": ["builds_per_s", "pgbench_tps", "ratio_builds_to_pgbench",
                    "before_0004_builds_per_s"],
    "index_scale.py": ["full_s", "full_peak_rss_mib", "incremental", "collect_stats",
                       "incremental_root_rewrites", "root_write_s"],
    "builds.py": ["plain_wall_s", "packages", "rounds"],
    "serving.py": ["page_json_bytes", "piwheels_pip_install_s", "piwheels_nagle_pip_install_s"],
    "sync_scale.py": ["first_list_phase_s", "first_project_rate_per_s", "first_peak_rss_mib",
                      "incremental_s", "incremental_changelog_s",
                      "incremental_changelog_peak_rss_mib", "changelog_run_root_requests",
                      "ratio_changelog_to_full_list_incremental"],
    "freshness.py": ["median_installable_s", "median_sync_s", "median_queue_wait_s"],
    "requires_python.py": ["fill_versions_per_s", "ratio_refresh_full_noop_rule_to_norule",
                           "refresh_full_noop_with_masks_rows", "claim", "plans"],
    "downloads.py": ["first_read_lines_per_s", "rerun_nothing_new_ms",
                     "service_poll_nothing_new_median_ms", "batch_1000_counts_ms",
                     "farm_downloads_ms", "mark_download_pages_ms", "tables"],
    "pages.py": ["pages_compared_equal", "ratio_simple_new_to_old", "ratio_project_new_to_old",
                 "ratio_both_pages_new_to_old", "full_write_added_s"],
}


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_bench_quick(script: str, tmp_path: Path) -> None:
    out_json = tmp_path / "figures.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, str(BENCH / script), "--quick", "--json",
                           str(out_json)], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for key in ("cpu", "cores", "ram_gib", "postgresql", "python", "date"):
        assert f"machine: {key}: " in proc.stdout, key
    data = json.loads(out_json.read_text())
    assert data["quick"] is True
    for key in EXPECTED[script]:
        assert key in data["figures"], (key, sorted(data["figures"]))
        assert f"figure: {key} = " in proc.stdout
    if script == "queue_scale.py":
        # The claim is one index scan on queue_next; a no-op refresh changes nothing.
        assert data["figures"]["claim_is_index_probe"] is True
        assert data["figures"]["refresh_full_noop_rows"] == 0
    if script == "requires_python.py":
        # 0010's view with and without the Requires-Python rule agree with no mask set;
        # the fill leaves the queue in line.
        assert data["figures"]["views_rows_changed"] == 0
        assert data["figures"]["refresh_full_noop_with_masks_rows"] == 0
    # The throwaway cluster is gone: no temporary directory left behind.
    assert "kept /" not in proc.stdout


def test_queue_scale_compare_quick(tmp_path: Path) -> None:
    """--compare: both target layouts in one run, the claim an index probe in each."""
    out_json = tmp_path / "figures.json"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run([sys.executable, str(BENCH / "queue_scale.py"), "--quick",
                           "--compare", "--json", str(out_json)], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    f = json.loads(out_json.read_text())["figures"]
    for layout, n in (("abis", 5), ("targets", 6)):
        assert len(f[f"{layout}_targets"]) == n
        assert len(f[f"{layout}_queue_per_target"]) == n
        assert f[f"{layout}_claim_is_index_probe"] is True
        assert f[f"{layout}_refresh_full_noop_rows"] == 0
        assert f[f"{layout}_claim"]["n"] > 0
    # With three platforms abi3 covers one: more is queued per version.
    assert f["targets_queue_rows_per_version"] > f["abis_queue_rows_per_version"]
    for key in ("ratio_claim_p50_targets_to_abis", "ratio_claim_p99_targets_to_abis",
                "claim_requirement_met"):
        assert key in f, key
    assert "kept /" not in proc.stdout
