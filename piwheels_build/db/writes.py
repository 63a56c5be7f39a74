"""The Python face of the master's write functions (db/migrations/0006, 0008, 0009).

Every write that sync and the index writer make is one of these SQL
functions; this module is the one place Python calls them, one wrapper per
function (the queue's, operators' included, are in ``piwheels_build.queue``).
Each takes an open cursor and leaves the transaction to the caller. Rows go
as one array per column, so a group of any size is one statement.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime

import psycopg2.extensions

Cursor = psycopg2.extensions.cursor


def _columns(rows: Sequence[tuple], width: int) -> list[list]:
    """Rows as one list per column (``width`` empty lists for no rows)."""
    return [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


def set_setting(cur: Cursor, key: str, value: str) -> bool:
    """Store one setting (``set_setting``); True when its value changed."""
    cur.execute("SELECT set_setting(%s, %s)", (key, str(value)))
    return bool(cur.fetchone()[0])


# The index writer ----------------------------------------------------------

def take_dirty_batch(cur: Cursor, since: datetime, limit: int) -> list[str]:
    """Take up to ``limit`` packages marked dirty at or before ``since``, sorted.

    They are unmarked in the caller's transaction (``take_dirty_batch``): a
    rollback marks them again.
    """
    cur.execute("SELECT take_dirty_batch(%s, %s)", (since, limit))
    return sorted(r[0] for r in cur.fetchall())


def clear_dirty(cur: Cursor, packages: list[str]) -> None:
    """Unmark packages whose pages are being written (``clear_dirty``)."""
    cur.execute("SELECT clear_dirty(%s::text[])", (packages,))


def redirty(cur: Cursor, packages: list[str]) -> None:
    """Mark packages with a build in flight for the next run (``redirty``)."""
    cur.execute("SELECT redirty(%s::text[])", (packages,))


# Sync: the list phase ------------------------------------------------------

def add_packages(cur: Cursor, rows: Sequence[tuple[str, str, int | None]]) -> int:
    """New packages from (package, display name, serial) rows; how many were added."""
    packages, names, serials = _columns(rows, 3)
    cur.execute("SELECT count(*) FROM add_packages(%s::text[], %s::text[], %s::bigint[])",
                (packages, names, serials))
    return cur.fetchone()[0]


def add_package_names(cur: Cursor, rows: Sequence[tuple[str, str]]) -> None:
    """Spellings seen upstream, (name, package) rows (``add_package_names``)."""
    names, packages = _columns(rows, 2)
    cur.execute("SELECT add_package_names(%s::text[], %s::text[])", (names, packages))


def flag_named(cur: Cursor, live: Sequence[tuple[str, str, int]], gone: Sequence[str]) -> int:
    """Add and flag what a changelog names; (package, name, serial) live, packages gone.

    Returns how many packages were new (``flag_named``).
    """
    packages, names, serials = _columns(live, 3)
    cur.execute("SELECT flag_named(%s::text[], %s::text[], %s::bigint[], %s::text[])",
                (packages, names, serials, list(gone)))
    return cur.fetchone()[0]


def load_project_list(cur: Cursor, rows: Sequence[tuple[str, str, int | None]]) -> None:
    """One batch of (name, package, serial) of the full list (``load_project_list``)."""
    names, packages, serials = _columns(rows, 3)
    cur.execute("SELECT load_project_list(%s::text[], %s::text[], %s::bigint[])",
                (names, packages, serials))


def merge_project_list(cur: Cursor, resync_oldest: int = 0) -> tuple[int, int]:
    """Merge the loaded list into ``packages``; (new, gone) counts (``merge_project_list``)."""
    cur.execute("SELECT * FROM merge_project_list(%s)", (resync_oldest,))
    new, gone = cur.fetchone()
    return new, gone


# Sync: a group of project pages -------------------------------------------

def packages_not_found(cur: Cursor, packages: list[str]) -> None:
    """Known packages whose page answered 404 are deleted (``packages_not_found``)."""
    cur.execute("SELECT packages_not_found(%s::text[])", (packages,))


def packages_synced(cur: Cursor, rows: Sequence[tuple[str, int | None]]) -> None:
    """Pages written: (package, serial of the page) rows (``packages_synced``)."""
    packages, serials = _columns(rows, 2)
    cur.execute("SELECT packages_synced(%s::text[], %s::bigint[])", (packages, serials))


def write_versions(cur: Cursor, rows: Sequence[tuple]) -> None:
    """New or changed version rows: (package, version, released, yanked, yanked_reason,
    prerelease, deleted, skip_reason, requires_python, python_excluded) (``write_versions``;
    the last two: the sdist's specifier and ``requirespython.excluded_mask`` of it)."""
    if rows:
        cur.execute("SELECT write_versions(%s::text[], %s::text[], %s::timestamptz[],"
                    " %s::boolean[], %s::text[], %s::boolean[], %s::boolean[], %s::text[],"
                    " %s::text[], %s::bigint[])",
                    _columns(rows, 10))


def fill_requires_python(cur: Cursor, rows: Sequence[tuple[str, str, str | None, int]]) -> int:
    """Versions not evaluated yet: (package, version, specifier, mask) rows; only rows
    still unevaluated are written, the queue refreshed where an active ABI is now ruled
    out (``fill_requires_python``, migration 0008). How many were written."""
    if not rows:
        return 0
    cur.execute("SELECT fill_requires_python(%s::text[], %s::text[], %s::text[],"
                " %s::bigint[])", _columns(rows, 4))
    return cur.fetchone()[0]


def write_upstream_files(cur: Cursor, rows: Sequence[tuple], stale: list[str]) -> None:
    """Drop the ``stale`` file names, write the new or changed rows: (filename, package,
    version, kind, url, sha256, size, requires_python, upload_time, yanked,
    yanked_reason) (``write_upstream_files``)."""
    if rows or stale:
        cur.execute("SELECT write_upstream_files(%s::text[], %s::text[], %s::text[],"
                    " %s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[],"
                    " %s::text[], %s::timestamptz[], %s::boolean[], %s::text[])",
                    (stale, *_columns(rows, 11)))


# Downloads (migration 0009) ----------------------------------------------

def record_downloads(cur: Cursor, fingerprint: str, path: str, device: int, inode: int,
                     start: int, position: int, tail: str, lines: int, bad_lines: int,
                     files: Mapping[tuple[date, str], int],
                     dims: Mapping[tuple[date, str, str], int]) -> dict | None:
    """Add one stretch of an access log (``record_downloads``): ``files`` counts per
    (UTC day, file name), ``dims`` per (day, dimension, value); the log keyed by
    ``fingerprint`` moves from byte ``start`` to ``position``, ``tail`` the sha256 of
    the (up to) 256 bytes before it. ``{"packages": [the
    projects whose counts changed], "unknown": downloads of files not recorded}``, or
    None (nothing written) when the log's stored position is not ``start``: another
    reader got there first."""
    f_rows = [(d, name, n) for (d, name), n in files.items()]
    d_rows = [(d, dim, value, n) for (d, dim, value), n in dims.items()]
    days, names, counts = _columns(f_rows, 3)
    ddays, dimensions, values, dcounts = _columns(d_rows, 4)
    cur.execute("SELECT record_downloads(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::date[],"
                " %s::text[], %s::bigint[], %s::date[], %s::text[], %s::text[], %s::bigint[])",
                (fingerprint, path, device, inode, start, position, tail, lines, bad_lines,
                 days, names, counts, ddays, dimensions, values, dcounts))
    return cur.fetchone()[0]


def mark_dirty(cur: Cursor, packages: list[str]) -> None:
    """Mark packages for the index writer (``mark_dirty``)."""
    cur.execute("SELECT mark_dirty(%s::text[])", (packages,))


def mark_download_pages(cur: Cursor, today: date) -> int:
    """Mark the projects downloaded yesterday or on the day that just left the 30-day
    window (``mark_download_pages``); how many."""
    cur.execute("SELECT mark_download_pages(%s)", (today,))
    return cur.fetchone()[0]
