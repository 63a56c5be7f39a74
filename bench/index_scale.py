"""The static index at PyPI's scale: a full write, incremental updates after builds, memory.

A synthetic farm (bench/_synth.py: 1,000,000 packages, 5,000,000 versions,
~5,300,000 wheels; the queue of 2,000 packages filled) in a throwaway cluster,
then:

- ``write_index(full=True)`` into an empty ``www/``: time, pages and files,
  peak resident memory of this process, disk used;
- 30 single-package updates (--updates N): a build is claimed and finished (a wheel
  recorded, the package marked dirty), then ``write_index()`` (incremental,
  with the default ``stats_interval`` of ``piwheels index --watch``: the stats
  page is fresh from the full write, so it is not recounted, and the default
  ``root_interval``, so a package's first wheel does not rewrite the root at
  once) is timed: p50,
  p99, peak memory; one of them profiled with cProfile; ``collect_stats``
  (what every incremental write ran before the stats page was throttled) is
  timed on its own, and an incremental write with ``stats_interval = 0`` (the
  old behaviour) once for comparison in the same run; the root page
  (every listed name) is written once on its own (``root_write_s``).

    .venv/bin/python bench/index_scale.py            # 1M packages / 5M versions
    .venv/bin/python bench/index_scale.py --quick    # 3k / 15k
"""

from __future__ import annotations

import cProfile
import io
import json
import os
import pstats
import time
from pathlib import Path

import _common
import _synth
from _common import Cluster, Report, peak_rss_mib, reset_peak_rss, rss_mib, summary_ms, timed

from piwheels_build import index as indexmod
from piwheels_build.config import Config

STATS_INTERVAL = Config().stats_interval  # what `piwheels index --watch` uses by default
ROOT_INTERVAL = Config().root_interval


def tree_size(path: Path) -> tuple[int, int]:
    """(files, bytes on disk) under path."""
    n = size = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                st = os.lstat(os.path.join(root, f))
            except FileNotFoundError:
                continue
            n += 1
            size += st.st_blocks * 512
    return n, size


def one_build(cur, builder_id: int, i: int) -> str | None:
    """Claim and finish one no-op build; returns its package."""
    cur.execute("SELECT * FROM claim_build(%s, 300)", (builder_id,))
    claim = cur.fetchone()
    if claim is None:
        return None
    build_id, package, version, target = claim[:4]
    abi, plat = target.split("-", 1)
    mod = package.replace("-", "_")
    files = [{"filename": f"{mod}-{version}-{abi}-{abi}-{plat}.whl", "python_tag": abi,
              "abi_tag": abi, "platform_tag": plat, "size": 12345,
              "sha256": "ab" * 32, "requires_python": ">=3.7", "metadata_sha256": "cd" * 32,
              "dependencies": [{"tool": "pip", "dependency": "six"}]}]
    cur.execute("SELECT finish_build(%s, 'success', 1.0, %s, 3, false, %s)",
                (build_id, b"log", json.dumps(files)))
    cur.fetchone()
    return package


def main() -> None:
    ap = _common.parser(__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, default=None,
                    help="packages (versions: five times); default 1,000,000")
    ap.add_argument("--updates", type=int, default=None, help="incremental updates to time")
    args = ap.parse_args()
    packages = args.scale or (3_000 if args.quick else 1_000_000)
    # At full scale one incremental write takes seconds (see collect_stats), so 30 samples.
    n_updates = args.updates or (10 if args.quick else 30)
    report = Report("index_scale", args)

    with Cluster(report, keep=args.keep) as cluster:
        conn = cluster.connect()
        _synth.generate(conn, packages, packages * 5, report)
        conn.autocommit = True
        with conn.cursor() as cur:
            # The queue of a sample of packages only (the full refresh is queue_scale's figure):
            # the builds the incremental updates claim come from it.
            with timed() as t:
                cur.execute("SELECT sum(refresh_queue(bench_pkg(i)))"
                            " FROM generate_series(1, %s, %s) i",
                            (packages, max(1, packages // 2000)))
            report.log(f"queue filled: {cur.fetchone()[0]:,} rows in {t[0]:.1f}s")
            cur.execute("VACUUM ANALYZE queue")
            cur.execute("SELECT register_builder('bench', 'cp37', 'linux_armv7l', '3.7')")
            builder = cur.fetchone()[0]
        c = _synth.counts(conn)
        report.add("packages", c["packages"])
        report.add("versions", c["versions"])
        report.add("files", c["files"])
        report.add("builds", c["builds"])
        conn.autocommit = False

        www = cluster.tmp / "www"
        # -- full ---------------------------------------------------------------------------
        base = rss_mib()
        reset_peak_rss()
        last = [time.monotonic()]

        def progress(msg: str) -> None:
            if time.monotonic() - last[0] > 30:
                report.log(msg)
                last[0] = time.monotonic()

        with timed() as t:
            summary = indexmod.write_index(conn, www, full=True, progress=progress)
        report.log(str(summary))
        report.add("full_s", round(t[0], 1), "s")
        report.add("full_packages_written", summary.packages_written)
        report.add("full_files_linked", summary.files_linked)
        report.add("full_project_pages", summary.projects_written)
        report.add("full_packages_per_s", round(summary.packages_written / t[0], 1), "/s")
        report.add("full_peak_rss_mib", round(peak_rss_mib(), 1), "MiB")
        report.add("full_rss_before_mib", round(base, 1), "MiB")
        n_files, n_bytes = tree_size(www)
        report.add("www_files", n_files)
        report.add("www_disk_mib", round(n_bytes / 2**20, 1), "MiB")
        root = (www / "simple" / "index.html").stat().st_size
        report.add("root_index_html_kib", round(root / 1024, 1), "KiB")

        # -- incremental ------------------------------------------------------------------------
        conn.autocommit = True
        cur = conn.cursor()
        conn.autocommit = False
        lat, reset_peak = [], reset_peak_rss()
        profiled = None
        roots = 0  # updates that rewrote the root: none within root_interval
        for i in range(n_updates):
            conn.autocommit = True
            pkg = one_build(cur, builder, i)
            conn.autocommit = False
            if pkg is None:
                report.note("queue empty")
                break
            if i == n_updates // 2:
                prof = cProfile.Profile()
                prof.enable()
            with timed() as t:
                s = indexmod.write_index(conn, www, stats_interval=STATS_INTERVAL,
                                         root_interval=ROOT_INTERVAL)
            if i == n_updates // 2:
                prof.disable()
                profiled = prof
            lat.append(t[0])
            roots += int(s.root_written)
            if s.packages_written != 1:
                report.note(f"update {i}: {s.packages_written} packages written (expected 1)")
        report.add("incremental", summary_ms(lat))
        report.add("incremental_root_rewrites", roots)
        # The root alone, as a run writes it once root_interval has passed.
        (www / "simple" / indexmod.ROOT_STALE).touch()
        with timed() as t:
            s = indexmod.write_index(conn, www, stats_interval=STATS_INTERVAL, root_interval=0)
        if s.root_written:
            report.add("root_write_s", round(t[0], 3), "s")
        if lat:
            conn.autocommit = True
            pkg = one_build(cur, builder, n_updates)
            conn.autocommit = False
            with timed() as t:
                s = indexmod.write_index(conn, www, stats_interval=0)
            report.add("incremental_with_stats_s", round(t[0], 3), "s")
        if reset_peak:
            report.add("incremental_peak_rss_mib", round(peak_rss_mib(), 1), "MiB")

        # Where an incremental write's time goes.
        stats_lat = []
        for _ in range(5 if not args.quick else 3):
            with conn.cursor() as c2, timed() as t:
                indexmod.collect_stats(c2)
            conn.rollback()
            stats_lat.append(t[0])
        report.add("collect_stats", summary_ms(stats_lat))
        p50_inc, p50_stats = _common.pct(lat, 50), _common.pct(stats_lat, 50)
        report.add("ratio_stats_to_incremental", round(p50_stats / p50_inc, 1))
        if profiled is not None:
            buf = io.StringIO()
            pstats.Stats(profiled, stream=buf).sort_stats("cumulative").print_stats(18)
            print("---- cProfile of one incremental write_index (cumulative)")
            for line in buf.getvalue().splitlines():
                if line.strip():
                    print("    " + line)
            print("----", flush=True)
        conn.close()
    report.finish()


if __name__ == "__main__":
    main()
