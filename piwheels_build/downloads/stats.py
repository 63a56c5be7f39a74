"""The download figures the pages show, read through index probes (migration 0009)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

WINDOW = 30  # days of "last 30 days": today (UTC) and the 29 before
TOP = 10

Q_PROJECTS_30 = """
SELECT package, sum(downloads) FROM project_downloads_daily
WHERE package = ANY(%s) AND day > (now() AT TIME ZONE 'UTC')::date - 30
GROUP BY package
"""
Q_PROJECTS_ALL = "SELECT package, downloads FROM project_downloads WHERE package = ANY(%s)"
# By the files table's package (a probe of file_downloads per file of the batch).
Q_FILES = """
SELECT d.filename, d.downloads FROM files f JOIN file_downloads d ON d.filename = f.filename
WHERE f.package = ANY(%s)
"""
# Farm-wide: one row a day, summed.
Q_TOTALS = """
SELECT coalesce(sum(downloads), 0), coalesce(sum(unknown), 0),
       coalesce(sum(seconds_saved), 0),
       coalesce(sum(downloads) FILTER (
           WHERE day > (now() AT TIME ZONE 'UTC')::date - 30), 0)
FROM downloads_days
"""
Q_TOP = "SELECT package, downloads FROM project_downloads ORDER BY downloads DESC, package LIMIT %s"
Q_BY = """
SELECT dimension, value, sum(downloads) AS n,
       sum(downloads) FILTER (WHERE day > (now() AT TIME ZONE 'UTC')::date - 30) AS recent
FROM downloads_by GROUP BY dimension, value ORDER BY dimension, n DESC, value
"""


def make_stats_due(www: Path) -> None:
    """Make the next index run rewrite the stats and home pages (their totals changed):
    the writer rewrites them when ``stats.json`` is older than ``stats_interval``, so it
    is dated back to 1970. Nothing when there is none yet (the first run writes it)."""
    with contextlib.suppress(OSError):
        os.utime(Path(www) / "stats.json", (0, 0))


def project_counts(cur: Any, packages: list[str]) -> dict[str, dict[str, int]]:
    """{package: {"last_30_days": n, "all_time": n}} for a batch of packages (two index
    probes per package); a package never downloaded has no entry."""
    out: dict[str, dict[str, int]] = {}
    cur.execute(Q_PROJECTS_ALL, (packages,))
    for package, n in cur.fetchall():
        out[package] = {"last_30_days": 0, "all_time": int(n)}
    cur.execute(Q_PROJECTS_30, (packages,))
    for package, n in cur.fetchall():
        out.setdefault(package, {"last_30_days": 0, "all_time": 0})["last_30_days"] = int(n)
    return out


def file_counts(cur: Any, packages: list[str]) -> dict[str, int]:
    """{file name: downloads all time} of the files of a batch of packages (only files
    downloaded at least once)."""
    cur.execute(Q_FILES, (packages,))
    return {filename: int(n) for filename, n in cur.fetchall()}


def farm_downloads(cur: Any) -> dict[str, Any]:
    """The farm's downloads: all time and the last 30 days (of files the farm knows),
    of unknown files apart, the build time they saved in seconds (each download times
    its file's build's duration), the top projects all time, and per dimension the
    counts all time and in the last 30 days ([value, downloads], most first; a row a
    day and value summed)."""
    cur.execute(Q_TOTALS)
    total, unknown, saved, recent = cur.fetchone()
    cur.execute(Q_TOP, (TOP,))
    top = [{"name": p, "downloads": int(n)} for p, n in cur.fetchall()]
    cur.execute(Q_BY)
    by: dict[str, list[list[Any]]] = {}
    by_recent: dict[str, list[list[Any]]] = {}
    for dim, value, n, last in cur.fetchall():
        by.setdefault(dim, []).append([value, int(n)])
        if last:
            by_recent.setdefault(dim, []).append([value, int(last)])
    for rows in by_recent.values():
        rows.sort(key=lambda r: (-r[1], r[0]))
    return {"all_time": int(total), "last_30_days": int(recent), "unknown_files": int(unknown),
            "seconds_saved": round(float(saved), 1), "top": top, "by_all_time": by,
            "by_last_30_days": by_recent}
