"""Sync at PyPI's scale: a first sync of ~930,000 projects, then 1,000 changed ones.

The project list is the upstream's real root page, saved once by
``bench/fetch_fixtures.sh`` in ``.cache/bench/`` (without it: a synthetic
930,000-name list, and the output says so). A fake upstream process
(bench/_listserver.py) serves it from 127.0.0.1 as PEP 691 JSON with
per-project serials, and makes up each project page (one sdist).

- First sync (``piwheels_build.sync.sync``): the list phase (read, load,
  merge 930,000 names) is timed in full; the project phase (pages fetched in
  threads, written in groups of up to 100 projects a transaction) is timed
  over the first 20,000 projects or so (1,000
  with ``--quick``) and the whole first sync extrapolated from its rate.
  Peak resident memory of this process over the run.
- Then every package is taken as synced, 1,000 projects get a new version
  and serial upstream, and a full ``sync`` run is timed: re-reading the list
  and syncing the 1,000 (the full-list incremental run).
- Then the same with the XML-RPC changelog (``upstream_xmlrpc``, served by
  the fake upstream too) and the full list not due (``full_list_interval``):
  a setup run reads the list once more and records the changelog serial,
  another 1,000 projects change, and the changelog-only incremental run is
  timed. The fake upstream counts its root-page requests: that run must make
  none. After both runs every changed project must have its new version in
  the database, or the benchmark fails.
- The ceiling of the project phase: the same number of project pages
  fetched and parsed by ``Upstream.project`` in ``sync_workers`` threads,
  with no database work; the ratio of the two rates.
- The saved HTML root page (when that is what the upstream answered) is also
  parsed by ``Upstream.list_projects`` alone: time and memory.

    bash bench/fetch_fixtures.sh      # once
    .venv/bin/python bench/sync_scale.py
    .venv/bin/python bench/sync_scale.py --quick   # 10,000 synthetic names, 200 changed
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _common
import requests
from _common import CACHE, Cluster, Report, peak_rss_mib, reset_peak_rss, rss_mib

from piwheels_build import config as configmod
from piwheels_build.sync import SyncInterrupted, SyncProgress, sync
from piwheels_build.sync.upstream import Upstream

SYNTHETIC = 930_000


class Stop(Exception):
    pass


def top_statements(conn, report: Report, title: str) -> None:
    """Where the server's time went (pg_stat_statements), then reset."""
    with conn.cursor() as cur:
        cur.execute("SELECT round(total_exec_time::numeric, 0), calls,"
                    " round((total_exec_time / greatest(calls, 1))::numeric, 3),"
                    " regexp_replace(query, '\\s+', ' ', 'g')"
                    " FROM pg_stat_statements WHERE query !~* 'pg_stat_statements'"
                    " ORDER BY total_exec_time DESC LIMIT 8")
        rows = cur.fetchall()
        cur.execute("SELECT pg_stat_statements_reset()")
    conn.commit()
    print(f"---- pg_stat_statements: {title} (total ms, calls, ms/call, statement)")
    for total, calls, per, q in rows:
        print(f"    {total:>9} {calls:>8} {per:>8}  {q[:110]}")
    report.add(f"top_statements_{title.replace(' ', '_')}",
               [{"total_ms": float(t), "calls": c, "ms_per_call": float(p), "query": q[:200]}
                for t, c, p, q in rows[:5]])


def _sample_names(port: int, n: int) -> list[str]:
    """n project names from the fake upstream's list."""
    r = requests.get(f"http://127.0.0.1:{port}/simple/", timeout=300)
    projects = r.json()["projects"]
    step = max(1, len(projects) // n)
    return [p["name"] for p in projects[::step][:n]]


def _stats(port: int) -> dict[str, int]:
    """Requests the fake upstream has served so far (root, pages, xmlrpc)."""
    return requests.get(f"http://127.0.0.1:{port}/_stats", timeout=30).json()


def _bump(port: int, n: int, offset: int) -> list[tuple[str, str]]:
    """n projects get a new version upstream; (package, new version) of each."""
    r = requests.post(f"http://127.0.0.1:{port}/_bump?n={n}&offset={offset}", timeout=300)
    r.raise_for_status()
    return [(p, v) for p, v in r.json()]


def _check_synced(conn, bumped: list[tuple[str, str]], run: str) -> None:
    """Every changed project has its new version and is no longer flagged, or fail."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM versions v JOIN packages p USING (package)"
                    " JOIN unnest(%s::text[], %s::text[]) AS b(package, version)"
                    "   ON b.package = v.package AND b.version = v.version"
                    " WHERE NOT v.deleted AND NOT p.needs_sync",
                    ([p for p, _ in bumped], [v for _, v in bumped]))
        found = cur.fetchone()[0]
    conn.rollback()
    if not bumped or found != len(bumped):
        raise SystemExit(f"sync_scale: {run}: only {found:,} of the {len(bumped):,} changed "
                         "projects have their new version in the database")


def _settle() -> None:
    """Give freed memory back (gc, malloc_trim) so a phase's peak RSS is its own."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def main() -> None:
    ap = _common.parser(__doc__.split("\n\n")[0])
    ap.add_argument("--projects", type=int, default=None,
                    help="project pages to sync in the first sync before extrapolating")
    ap.add_argument("--changed", type=int, default=None, help="default 1,000 (--quick: 200)")
    args = ap.parse_args()
    report = Report("sync_scale", args)
    args.changed = args.changed or (200 if args.quick else 1000)
    n_projects = args.projects or (1_000 if args.quick else 20_000)
    saved = [p for p in (CACHE / "simple-root.json", CACHE / "simple-root.html") if p.exists()]
    if args.quick:
        source = "synthetic:10000"
    elif saved:
        source = str(saved[0])
    else:
        source = f"synthetic:{SYNTHETIC}"
        report.note("no saved project list (run bench/fetch_fixtures.sh): using a synthetic "
                    f"list of {SYNTHETIC:,} names")

    server = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_listserver.py")),
                               source], stdout=subprocess.PIPE, text=True)
    try:
        port, n_names = (int(x) for x in server.stdout.readline().split())
        url = f"http://127.0.0.1:{port}/simple/"
        with Cluster(report, keep=args.keep,
                     extra_conf="shared_preload_libraries = 'pg_stat_statements'\n") as cluster:
            report.add("list_source", Path(source).name if "/" in source else source)
            report.add("names_listed", n_names)
            cfg = configmod.from_dict({"database": cluster.dsn, "upstream": url})
            conn = cluster.connect()
            with conn.cursor() as cur:
                cur.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.commit()

            # -- first sync ------------------------------------------------------------------
            marks: dict[str, float] = {}

            def progress(event: SyncProgress) -> None:
                now = time.perf_counter()
                if event.stage == "listed":
                    marks["listed"] = now
                    report.log(str(event))
                if event.stage == "projects":
                    marks["done"], marks["at"] = event.done, now
                    if event.done >= n_projects and event.total > n_projects:
                        raise KeyboardInterrupt  # enough: sync commits what it finished

            base = rss_mib()
            reset_peak_rss()
            t0 = time.perf_counter()
            try:
                summary = sync(conn, cfg, progress=progress)
                complete = True
            except SyncInterrupted as e:
                summary, complete = e.summary, False
            t_end = time.perf_counter()
            report.add("first_rss_before_mib", round(base, 1), "MiB")
            report.add("first_peak_rss_mib", round(peak_rss_mib(), 1), "MiB")
            t_list = marks.get("listed", t0) - t0
            report.add("first_list_phase_s", round(t_list, 1), "s")
            report.add("first_projects_listed", summary.projects_seen)
            report.add("first_new_packages", summary.new_packages)
            synced = summary.projects_synced
            phase = t_end - marks.get("listed", t0)
            rate = synced / phase if phase > 0 else 0.0
            report.add("first_projects_synced", synced)
            report.add("first_project_phase_s", round(phase, 1), "s")
            report.add("first_project_rate_per_s", round(rate, 1), "/s")
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM packages WHERE NOT deleted")
                packages = cur.fetchone()[0]
            conn.rollback()
            if complete:
                report.add("first_sync_s", round(t_end - t0, 1), "s")
            else:
                est = t_list + packages / rate if rate else float("nan")
                report.add("first_sync_extrapolated_s", round(est, 0), "s")
                report.add("first_sync_extrapolated_h", round(est / 3600, 2), "h")
                report.note(f"first sync stopped after {synced:,} of {packages:,} projects; "
                            "the total is the list phase plus the rest at the measured rate")
            if summary.errors:
                report.note(f"first sync: {len(summary.errors)} errors, e.g. "
                            f"{summary.errors[0][:150]}")

            top_statements(conn, report, "first sync")

            # -- every package synced; 1,000 change upstream ------------------------------------
            with conn.cursor() as cur:
                cur.execute("UPDATE packages SET needs_sync = false, synced_at = now(),"
                            " synced_serial = upstream_serial WHERE needs_sync")
            conn.commit()
            bumped = _bump(port, args.changed, 0)
            marks.clear()
            _settle()
            report.add("incremental_rss_before_mib", round(rss_mib(), 1), "MiB")
            reset_peak_rss()
            before = _stats(port)
            t0 = time.perf_counter()
            summary = sync(conn, cfg,
                           progress=lambda e: progress(e) if e.stage == "listed" else None)
            t_end = time.perf_counter()
            t_full_list = t_end - t0
            report.add("incremental_s", round(t_full_list, 2), "s")
            report.add("incremental_list_phase_s", round(marks.get("listed", t0) - t0, 2), "s")
            report.add("incremental_projects_synced", summary.projects_synced)
            report.add("incremental_new_versions", summary.new_versions)
            report.add("incremental_peak_rss_mib", round(peak_rss_mib(), 1), "MiB")
            report.add("full_list_run_root_requests", _stats(port)["root"] - before["root"])
            _check_synced(conn, bumped, "full-list incremental run")

            # -- the same with the changelog, the full list not due ---------------------------
            # Setup, not timed: a full-list run with the changelog configured records the
            # changelog serial (what a farm with upstream_xmlrpc has after any run) and the
            # time of the full read; nothing changed upstream since the run above.
            cfg_rpc = configmod.from_dict({
                "database": cluster.dsn, "upstream": url,
                "upstream_xmlrpc": f"http://127.0.0.1:{port}/pypi",
                "full_list_interval": 86400,
            })
            summary = sync(conn, cfg_rpc, full_list=True)
            if summary.projects_synced:
                report.note(f"changelog setup run synced {summary.projects_synced:,} projects")
            bumped = _bump(port, args.changed, 1)  # another set of projects
            said: list[str] = []

            def heard(event: SyncProgress) -> None:
                if event.stage in ("changelog-read", "listed"):
                    marks["listed"] = time.perf_counter()
                    said.append(str(event))
                    report.log(str(event))

            marks.clear()
            _settle()
            report.add("incremental_changelog_rss_before_mib", round(rss_mib(), 1), "MiB")
            reset_peak_rss()
            before = _stats(port)
            t0 = time.perf_counter()
            summary = sync(conn, cfg_rpc, progress=heard)
            t_end = time.perf_counter()
            after = _stats(port)
            t_changelog = t_end - t0
            report.add("incremental_changelog_s", round(t_changelog, 2), "s")
            report.add("incremental_changelog_list_phase_s",
                       round(marks.get("listed", t0) - t0, 2), "s")
            report.add("incremental_changelog_projects_synced", summary.projects_synced)
            report.add("incremental_changelog_new_versions", summary.new_versions)
            report.add("incremental_changelog_peak_rss_mib", round(peak_rss_mib(), 1), "MiB")
            report.add("changelog_run_root_requests", after["root"] - before["root"])
            report.add("changelog_run_xmlrpc_requests", after["xmlrpc"] - before["xmlrpc"])
            report.add("ratio_changelog_to_full_list_incremental",
                       round(t_changelog / t_full_list, 3) if t_full_list else None)
            if after["root"] != before["root"]:
                raise SystemExit("sync_scale: the changelog run read the full project list "
                                 f"({after['root'] - before['root']} root requests; {said})")
            _check_synced(conn, bumped, "changelog-only incremental run")
            if summary.errors:
                report.note(f"changelog run: {len(summary.errors)} errors, e.g. "
                            f"{summary.errors[0][:150]}")
            conn.close()

            # -- the ceiling of the project phase: the same pages fetched and parsed only -----
            names = [n for n in _sample_names(port, n_projects)]
            with Upstream(url) as up, ThreadPoolExecutor(cfg.sync_workers) as pool:
                t0 = time.perf_counter()
                pages = sum(1 for p in pool.map(up.project, names) if p is not None)
                fetch = time.perf_counter() - t0
            report.add("fetch_only_rate_per_s", round(pages / fetch, 1), "/s")
            report.add("ratio_project_phase_to_fetch_only",
                       round(rate / (pages / fetch), 3) if pages else None)

            # -- the saved HTML page, parsed alone ---------------------------------------------
            if source.endswith(".html"):
                reset_peak_rss()
                t0 = time.perf_counter()
                with Upstream(f"http://127.0.0.1:{port}/html/") as up:
                    plist = up.list_projects()
                report.add("html_list_parse_s", round(time.perf_counter() - t0, 1), "s")
                report.add("html_list_names", len(plist.names))
                report.add("html_list_peak_rss_mib", round(peak_rss_mib(), 1), "MiB")
    finally:
        server.terminate()
        server.wait(timeout=30)
    report.finish()


if __name__ == "__main__":
    main()
