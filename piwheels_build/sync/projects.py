"""The project phase: fetch flagged project pages in threads, write them in groups."""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import NamedTuple

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from .. import queue
from ..config import Config
from ..db import writes
from ..errors import UpstreamError
from ..names import normalize
from .diff import VersionRow, group_files, plan_files, plan_versions
from .simpleapi import ProjectPage
from .summary import Progress, SyncInterrupted, SyncSummary
from .upstream import Upstream

MAX_FAILURES_IN_A_ROW = 50    # project pages failing in a row before the run gives up


GROUP_SIZE = 100              # fetched projects written per transaction


GROUP_WAIT = 0.5              # seconds a fetched project waits for its group to fill


Connection = psycopg2.extensions.connection


Cursor = psycopg2.extensions.cursor


def _fetch(up: Upstream, name: str) -> ProjectPage | UpstreamError | None:
    """Runs in a worker thread: HTTP only, never the database."""
    try:
        return up.project(name)
    except UpstreamError as e:
        return e


class _Fetched(NamedTuple):
    """A project page fetched and waiting for its group's transaction (None: a 404)."""

    package: str
    name: str
    page: ProjectPage | None


def sync_projects(conn: Connection, cfg: Config, up: Upstream,
                   todo: Iterator[tuple[str, str]], total: int, summary: SyncSummary,
                   report: Progress) -> None:
    """Fetch pages in threads; write them here, GROUP_SIZE to a transaction.

    A group is written when it is full, when nothing is left to fetch, or
    when its first page has waited GROUP_WAIT seconds, so a small or slow
    sync is not held back. Fetching goes on in the threads during a write.
    """
    done, failures, started = 0, 0, time.monotonic()
    workers = max(1, cfg.sync_workers)
    window = workers * 4 + GROUP_SIZE  # enough in flight to keep the threads busy while writing
    pool = ThreadPoolExecutor(workers, thread_name_prefix="sync")
    pending: dict[Future, tuple[str, str]] = {}
    group: list[_Fetched] = []
    group_since = 0.0

    def fill() -> None:
        for package, name in itertools.islice(todo, max(0, window - len(pending))):
            pending[pool.submit(_fetch, up, name)] = (package, name)

    def flush() -> None:
        nonlocal done
        if group:
            _write_group(conn, cfg, group, summary)
            done += len(group)
            group.clear()

    def line() -> str:
        rate = done / max(time.monotonic() - started, 1e-6)
        return (f"sync: {done:,}/{total:,} projects, {summary.new_versions:,} new versions, "
                f"{len(summary.errors):,} errors, {rate:,.0f}/s")

    try:
        fill()
        while pending or group:
            timeout = 1.0
            if group:
                timeout = max(0.0, group_since + GROUP_WAIT - time.monotonic())
            finished, _ = wait(pending, timeout=timeout, return_when=FIRST_COMPLETED)
            for fut in finished:
                package, name = pending.pop(fut)
                result = fut.result()
                if isinstance(result, UpstreamError):
                    summary.errors.append(str(result))
                    done += 1
                    failures += 1
                    continue
                if not group:
                    group_since = time.monotonic()
                group.append(_Fetched(package, name, result))
                failures = 0
            if failures >= MAX_FAILURES_IN_A_ROW:
                flush()
                summary.errors.append(
                    f"sync: stopped after {failures} project pages failed in a row; "
                    "the upstream may be down, run sync again later"
                )
                break
            fill()
            if group and (len(group) >= GROUP_SIZE or not pending
                          or time.monotonic() - group_since >= GROUP_WAIT):
                flush()
            if report.due():
                report.say(line(), "projects", done, total)
    except KeyboardInterrupt:
        if not conn.closed:
            conn.rollback()
        raise SyncInterrupted(summary) from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        close = getattr(todo, "close", None)
        if close:
            close()
    if total:
        report.say(line(), "projects", done, total)


# Errors that a page's own content can cause (a number out of range, a NUL
# byte, one file name on two projects' pages); anything else is the database's.
_PAGE_ERRORS = (psycopg2.DataError, psycopg2.IntegrityError,
                psycopg2.errors.CardinalityViolation, psycopg2.errors.ProgramLimitExceeded,
                ValueError)


def _write_group(conn: Connection, cfg: Config, group: list[_Fetched],
                 summary: SyncSummary) -> None:
    """Write the group in one transaction; if the database refuses it, each project alone.

    Figures reach ``summary`` only once committed. A project the database
    refuses on its own is one error line and stays flagged.
    """
    delta = SyncSummary()
    try:
        _apply_group(conn, cfg, group, delta)
        conn.commit()
    except _PAGE_ERRORS as e:
        conn.rollback()
        if len(group) > 1:
            for item in group:
                _write_group(conn, cfg, [item], summary)
            return
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        summary.errors.append(f"sync: {group[0].name}: the database refused its page ({first})")
        return
    except BaseException:
        if not conn.closed:
            conn.rollback()
        raise
    summary.add(delta)


def _apply_group(conn: Connection, cfg: Config, group: list[_Fetched],
                 summary: SyncSummary) -> None:
    """Upsert the group's packages, versions and files, mark 404s deleted, refresh the queue.

    A fixed handful of statements whatever the group's size: rows are read
    and written per table for the whole group, never per project.
    """
    items = {f.package: f for f in group}      # one entry per package, the last one wins
    packages = sorted(items)
    found = {p: f for p, f in items.items() if f.page is not None}
    skip_yanked = cfg.yanked == "skip"
    with conn.cursor() as cur:
        cur.execute("SELECT package, deleted FROM packages WHERE package = ANY(%s)"
                    " ORDER BY package FOR UPDATE", (packages,))
        was_deleted = dict(cur.fetchall())
        changed = _gone_in_group(cur, items, was_deleted, summary)
        changed |= _ensure_packages(cur, found, was_deleted, summary)
        old_versions = _old_versions(cur, sorted(found))
        old_files = _old_files(cur, sorted(found))
        version_rows: list[tuple] = []
        file_rows: list[tuple] = []
        stale: list[str] = []
        for package, f in found.items():
            files, groups = group_files(package, f.page)
            partial = f.page.partial
            if partial:
                summary.errors.append(f"sync: {f.name}: the upstream page has malformed file "
                                      "entries; kept the versions it does not list")
            rows = plan_versions(package, groups, old_versions[package], skip_yanked, summary,
                                 partial=partial)
            new_files, gone_files = plan_files(files, old_files[package], partial=partial)
            if rows or new_files or gone_files:
                changed.add(package)
            version_rows += rows
            file_rows += new_files
            stale += gone_files
        writes.write_versions(cur, version_rows)
        writes.write_upstream_files(cur, file_rows, stale)
        if found:
            # A partial page stays flagged: the next run reads it again.
            writes.packages_synced(cur, [(p, f.page.serial) for p, f in sorted(found.items())
                                         if not f.page.partial])
        summary.projects_synced += len(found)
        if changed:
            queue.package_changed(conn, sorted(changed))


def _gone_in_group(cur: Cursor, items: dict[str, _Fetched], was_deleted: dict[str, bool],
                   summary: SyncSummary) -> set[str]:
    """404s: a known package is deleted; an unknown one is an error. Returns the changed."""
    gone = []
    for package, f in sorted(items.items()):
        if f.page is not None:
            continue
        if package not in was_deleted:
            summary.errors.append(f"sync: {f.name} not found upstream")
        else:
            gone.append(package)
    if gone:
        writes.packages_not_found(cur, gone)
    summary.projects_synced += len(gone)
    newly = {p for p in gone if not was_deleted[p]}
    summary.deleted_packages += len(newly)
    return newly


def _ensure_packages(cur: Cursor, found: dict[str, _Fetched], was_deleted: dict[str, bool],
                     summary: SyncSummary) -> set[str]:
    """Insert the new packages, record spellings; the packages new or restored."""
    spelled = {p: f.page.name for p, f in found.items() if normalize(f.page.name) == p}
    new = [(p, spelled.get(p, p)) for p in sorted(found) if p not in was_deleted]
    if new:
        summary.new_packages += writes.add_packages(cur, [(p, name, None) for p, name in new])
    if spelled:
        writes.add_package_names(cur, sorted((name, p) for p, name in spelled.items()))
    return {p for p, _ in new} | {p for p in found if was_deleted.get(p)}


def _rows_of(cur: Cursor, sql: str, packages: list[str]) -> list[tuple]:
    """The rows of ``sql`` (one ``= ANY(%s)`` over ``packages``); none when there are none."""
    if not packages:
        return []
    cur.execute(sql, (packages,))
    return cur.fetchall()


def _old_versions(cur: Cursor, packages: list[str]) -> dict[str, dict[str, VersionRow]]:
    out: dict[str, dict[str, VersionRow]] = defaultdict(dict)
    for r in _rows_of(cur, "SELECT package, version, released, yanked, yanked_reason,"
                           " prerelease, deleted, skip_reason, requires_python,"
                           " python_excluded FROM versions WHERE package = ANY(%s)", packages):
        out[r[0]][r[1]] = VersionRow(*r[2:])
    return out


def _old_files(cur: Cursor, packages: list[str]) -> dict[str, dict[str, tuple]]:
    out: dict[str, dict[str, tuple]] = defaultdict(dict)
    for r in _rows_of(cur, "SELECT filename, package, version, kind, url, sha256, size,"
                           " requires_python, upload_time, yanked, yanked_reason"
                           " FROM upstream_files WHERE package = ANY(%s)", packages):
        out[r[1]][r[0]] = tuple(r)
    return out
