"""Mirror the upstream's projects, versions and files into the database.

Two phases. The list phase decides what to fetch. It reads the root page and,
set-based, adds new packages, marks removed ones deleted and flags what
changed (``needs_sync``); or, when an XML-RPC changelog is configured and the
full list was read less than ``full_list_interval`` seconds ago, it flags only
the projects the changelog names since the last run (reading 930,000 names
every few minutes is most of an incremental run; the full list stays as the
safety net that notices what the changelog missed). The project phase fetches
the flagged pages in a thread pool and writes them from the main thread in
groups (GROUP_SIZE), one transaction and a fixed handful of statements per
group, so an interrupted run resumes where it stopped: ``needs_sync`` is
cleared only in the transaction that writes the project's data.
"""

from __future__ import annotations

import itertools
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import NamedTuple

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from packaging.version import InvalidVersion, Version
from psycopg2.extras import execute_values

from .config import Config
from .errors import UpstreamError
from .names import is_valid_name, normalize
from .upstream import ChangelogEntry, ProjectPage, Upstream, classify

BATCH = 10_000                # rows per INSERT of the project list
RESYNC_OLDEST = 1000          # known packages re-read per run when the upstream has no serials
PROGRESS_EVERY = 2.0          # seconds between progress messages
MAX_FAILURES_IN_A_ROW = 50    # project pages failing in a row before the run gives up
GROUP_SIZE = 100              # fetched projects written per transaction
GROUP_WAIT = 0.5              # seconds a fetched project waits for its group to fill
SYNC_SKIPS = (None, "binary-only", "yanked", "deleted")  # skip reasons sync owns
_cursor_ids = itertools.count(1)

# When the full list was last read (settings 'full_list_at'), as ISO 8601 UTC.
_SAVE_FULL_LIST_AT = (
    "INSERT INTO settings (key, value) VALUES ('full_list_at',"
    " to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'))"
    " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value"
)

Connection = psycopg2.extensions.connection
Cursor = psycopg2.extensions.cursor


@dataclass
class SyncSummary:
    """What a run did; ``errors`` holds one line per project that failed."""

    projects_seen: int = 0
    projects_synced: int = 0
    new_packages: int = 0
    new_versions: int = 0
    yanked: int = 0
    unyanked: int = 0
    deleted_versions: int = 0
    deleted_packages: int = 0
    binary_only: int = 0
    errors: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def __str__(self) -> str:
        return (
            f"sync: {self.projects_seen:,} projects seen, {self.projects_synced:,} synced, "
            f"{self.new_packages:,} new packages, {self.new_versions:,} new versions, "
            f"{self.yanked:,} yanked, {self.unyanked:,} unyanked, "
            f"{self.deleted_versions:,} versions deleted, "
            f"{self.deleted_packages:,} packages deleted, {self.binary_only:,} binary-only, "
            f"{len(self.errors):,} errors in {self.elapsed:.1f}s"
        )

    def add(self, other: SyncSummary) -> None:
        """Count a committed group's figures.

        A group counts into its own summary until it commits, so a rolled-back
        group leaves the totals right.
        """
        for f in fields(self):
            if f.name == "errors":
                self.errors.extend(other.errors)
            elif f.name != "elapsed":
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


class SyncInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sync; carries the summary of what was committed.

    Every group written before it stays; the group being written is rolled
    back and pages fetched but not yet written stay flagged for the next run.
    """

    def __init__(self, summary: SyncSummary) -> None:
        super().__init__("sync interrupted")
        self.summary = summary


class _Version(NamedTuple):
    released: datetime
    yanked: bool
    yanked_reason: str | None
    prerelease: bool
    deleted: bool
    skip_reason: str | None


class _Progress:
    """Calls ``progress`` at most every PROGRESS_EVERY seconds."""

    def __init__(self, fn: Callable[[str], None] | None) -> None:
        self.fn = fn
        self.last = time.monotonic()

    def say(self, msg: str) -> None:
        if self.fn:
            self.fn(msg)
        self.last = time.monotonic()

    def due(self) -> bool:
        return self.fn is not None and time.monotonic() - self.last >= PROGRESS_EVERY


def sync(
    conn: Connection,
    cfg: Config,
    names: list[str] | None = None,
    *,
    progress: Callable[[str], None] | None = None,
    upstream: Upstream | None = None,
    full_list: bool = False,
) -> SyncSummary:
    """Bring the database in line with the upstream: everything, or just ``names``.

    Raises UpstreamError when the project list cannot be read or a name is
    invalid (before anything is written); a failing project page is only
    recorded in ``summary.errors`` and stays flagged for the next run.
    ``full_list`` reads the whole project list even when the changelog would
    do (it is what notices deletions the changelog missed).
    """
    started = time.monotonic()
    summary = SyncSummary()
    named = _validate(names) if names else None
    up = upstream or Upstream(
        cfg.upstream_url(), timeout=cfg.http_timeout, retries=cfg.http_retries,
        xmlrpc_url=cfg.upstream_xmlrpc or None,
    )
    report = _Progress(progress)
    _fast_commits(conn, True)
    try:
        if named is None:
            if full_list or not _sync_changelog_only(conn, cfg, up, summary, report):
                _sync_list(conn, up, summary, report)
            total, targets = _pending(conn)
        else:
            summary.projects_seen = total = len(named)
            targets = iter(_named_targets(conn, named))
        _sync_projects(conn, cfg, up, targets, total, summary, report)
    except BaseException:
        if not conn.closed:
            conn.rollback()
        raise
    finally:
        summary.elapsed = time.monotonic() - started
        if upstream is None:
            up.close()
        _fast_commits(conn, False)
    return summary


def _fast_commits(conn: Connection, on: bool) -> None:
    """No fsync wait per group: a commit lost in a crash leaves its projects flagged."""
    if conn.closed:
        return
    try:
        with conn.cursor() as cur:
            cur.execute("SET synchronous_commit TO off" if on else "RESET synchronous_commit")
        conn.commit()
    except psycopg2.Error:
        if on:
            raise


def _validate(names: list[str]) -> list[tuple[str, str]]:
    """(normalized, as given) for each name, once; a bad name fails the whole run."""
    out: dict[str, str] = {}
    for name in names:
        if not is_valid_name(name):
            raise UpstreamError(f"sync: {name!r} is not a valid package name")
        out.setdefault(normalize(name), name)
    return list(out.items())


# ---------------------------------------------------------------- list phase


def _sync_list(conn: Connection, up: Upstream, summary: SyncSummary, report: _Progress) -> None:
    """Merge the upstream's project list into ``packages`` in one transaction."""
    report.say(f"sync: reading the project list from {up.url}")
    # Taken before the list: a change made while it is read is then after this serial,
    # and the next changelog run sees it.
    serial_before = up.last_serial() if up.xmlrpc_url else None
    plist = up.list_projects()
    valid = [n for n in plist.names if is_valid_name(n)]
    summary.projects_seen = len(valid)
    if len(valid) < len(plist.names):
        summary.errors.append(
            f"sync: ignored {len(plist.names) - len(valid):,} invalid names in the project list"
        )
    with conn.cursor() as cur:
        _check_list_size(cur, up.url, len(valid))
        _load_list(cur, valid, plist.serials, report)
        summary.new_packages += _merge_list(cur)
        summary.deleted_packages += _mark_missing(cur)
        if not plist.serials:
            _flag_oldest(cur)
        _apply_changelog(cur, up, plist.serial or serial_before)
        cur.execute(_SAVE_FULL_LIST_AT)
        cur.execute("SELECT count(*) FROM packages WHERE needs_sync")
        todo = cur.fetchone()[0]
    conn.commit()
    report.say(
        f"sync: {len(valid):,} projects listed, {summary.new_packages:,} new, "
        f"{summary.deleted_packages:,} gone, {todo:,} to sync"
    )


def _check_list_size(cur: Cursor, url: str, listed: int) -> None:
    """Refuse a list that would mark most known packages deleted (a wrong URL, a bad mirror)."""
    cur.execute("SELECT count(*) FROM packages WHERE NOT deleted")
    known = cur.fetchone()[0]
    if known and (listed == 0 or (known >= 1000 and listed < known // 2)):
        raise UpstreamError(
            f"upstream: {url} lists {listed:,} projects but {known:,} are known; refusing to "
            "mark them deleted, check 'upstream' in the config"
        )


def _batches(rows: Iterable[tuple], size: int) -> Iterator[list[tuple]]:
    it = iter(rows)
    while batch := list(itertools.islice(it, size)):
        yield batch


def _load_list(cur: Cursor, names: list[str], serials: dict[str, int],
               report: _Progress) -> None:
    """The list into a temporary table, BATCH rows a statement."""
    cur.execute(
        "CREATE TEMP TABLE sync_list (name text NOT NULL, package text NOT NULL, serial bigint)"
        " ON COMMIT DROP"
    )
    rows = ((n, normalize(n), serials.get(n)) for n in names)
    done = 0
    for batch in _batches(rows, BATCH):
        execute_values(cur, "INSERT INTO sync_list VALUES %s", batch, page_size=BATCH)
        done += len(batch)
        if report.due():
            report.say(f"sync: loading the project list, {done:,}/{len(names):,}")
    cur.execute(
        "CREATE TEMP TABLE sync_pkgs ON COMMIT DROP AS"
        " SELECT package, min(name) AS name, max(serial) AS serial"
        " FROM sync_list GROUP BY package"
    )
    cur.execute("ANALYZE sync_list")
    cur.execute("ANALYZE sync_pkgs")


def _merge_list(cur: Cursor) -> int:
    """Insert new packages and spellings; flag changed serials and reappeared packages."""
    cur.execute(
        "INSERT INTO packages (package, display_name, upstream_serial)"
        " SELECT package, name, serial FROM sync_pkgs ON CONFLICT (package) DO NOTHING"
    )
    new = cur.rowcount
    cur.execute(
        "INSERT INTO package_names (name, package) SELECT s.name, s.package FROM sync_list s"
        " WHERE NOT EXISTS (SELECT 1 FROM package_names n WHERE n.name = s.name)"
        " ON CONFLICT (name) DO NOTHING"
    )
    cur.execute(
        """
        UPDATE packages p SET
            upstream_serial = coalesce(s.serial, p.upstream_serial),
            needs_sync = p.needs_sync OR p.deleted
                         OR (s.serial IS NOT NULL AND s.serial IS DISTINCT FROM p.upstream_serial),
            deleted = false,
            display_name = s.name
        FROM sync_pkgs s
        WHERE p.package = s.package
          AND (p.deleted OR p.display_name <> s.name
               OR (s.serial IS NOT NULL AND s.serial IS DISTINCT FROM p.upstream_serial))
        """
    )
    return new


def _mark_missing(cur: Cursor) -> int:
    """Packages the list no longer has are deleted; their queue rows go."""
    cur.execute(
        "UPDATE packages p SET deleted = true, needs_sync = false"
        " WHERE NOT p.deleted AND NOT EXISTS (SELECT 1 FROM sync_pkgs s"
        "                                     WHERE s.package = p.package)"
        " RETURNING p.package"
    )
    gone = [r[0] for r in cur.fetchall()]
    if gone:
        cur.execute("SELECT refresh_queue(p) FROM unnest(%s::text[]) AS p", (gone,))
        cur.execute(
            "INSERT INTO index_dirty (package) SELECT unnest(%s::text[]) "
            "ON CONFLICT (package) DO UPDATE SET since = EXCLUDED.since",
            (gone,),
        )
    return len(gone)


def _flag_oldest(cur: Cursor) -> None:
    """Without serials, re-read the longest-unsynced packages so yanks are seen eventually."""
    cur.execute(
        "UPDATE packages SET needs_sync = true WHERE package IN ("
        " SELECT package FROM packages WHERE NOT deleted AND NOT needs_sync"
        " ORDER BY synced_at NULLS FIRST, package LIMIT %s)",
        (RESYNC_OLDEST,),
    )


def _last_serial(cur: Cursor) -> int:
    """The changelog serial the last run got to, 0 when unknown."""
    cur.execute("SELECT value FROM settings WHERE key = 'upstream_serial'")
    row = cur.fetchone()
    return int(row[0]) if row and row[0].isdigit() else 0


def _apply_changelog(cur: Cursor, up: Upstream, list_serial: int | None) -> None:
    """With the full list: also flag the packages the changelog names since the last run.

    ``list_serial`` is the serial the list was served at (or one taken before
    it was read). A name the changelog has but the list had not (created while
    the list was read) is added, and a deleted package it names is flagged:
    its page decides. The next changelog-only run starts after the last entry.
    """
    if not up.xmlrpc_url:
        return
    last = _last_serial(cur)
    if last == 0:  # first run: every package is new anyway, just remember where we are
        _save_serial(cur, list_serial or up.last_serial())
        return
    entries = up.changelog_since(last)
    if not entries:
        back = _serial_went_back(up, last)
        if back is not None:  # the list just read is the truth; go on from the upstream's
            _save_serial(cur, back)
        return
    live, gone = _changelog_names(entries)
    _flag_named(cur, live, gone)
    _save_serial(cur, max(e.serial for e in entries))


def _serial_went_back(up: Upstream, last: int) -> int | None:
    """The upstream's serial when it is below the one we reached (another mirror, a
    restore): an empty changelog then means "blind", not "nothing new"."""
    current = up.last_serial()
    return current if current is not None and current < last else None


def _save_serial(cur: Cursor, serial: int | None) -> None:
    if serial:
        cur.execute(
            "INSERT INTO settings (key, value) VALUES ('upstream_serial', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (str(serial),),
        )


def _changelog_names(
    entries: list[ChangelogEntry],
) -> tuple[dict[str, tuple[str, int]], set[str]]:
    """What the changelog names: live projects, and the ones it says are gone.

    ``live`` maps each package whose latest entry is not a removal of the
    project to (its spelling, its latest serial); the other set holds removed
    projects and the old names of renamed ones (flagged only when known: their
    page will 404 and mark them deleted).
    """
    live: dict[str, tuple[str, int]] = {}
    gone: set[str] = set()
    for e in sorted(entries, key=lambda e: e.serial):
        if e.action.startswith("rename from "):
            old = e.action[len("rename from "):].strip()
            if is_valid_name(old):
                gone.add(normalize(old))
                live.pop(normalize(old), None)
        if not is_valid_name(e.name):
            continue
        package = normalize(e.name)
        if e.action == "remove project":
            gone.add(package)
            live.pop(package, None)
        else:
            gone.discard(package)
            live[package] = (e.name, e.serial)
    return live, gone


def _full_list_due(cur: Cursor, interval: int) -> bool:
    """True when the full list was never read, or ``interval`` seconds ago or more."""
    cur.execute("SELECT (SELECT value FROM settings WHERE key = 'full_list_at'), now()")
    value, now = cur.fetchone()
    try:
        at = datetime.fromisoformat(value) if value else None
    except ValueError:
        at = None
    if at is None:
        return True
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    age = (now - at).total_seconds()
    return not 0 <= age < interval  # a time in the future (clock moved back) counts as due


def _sync_changelog_only(conn: Connection, cfg: Config, up: Upstream, summary: SyncSummary,
                         report: _Progress) -> bool:
    """Flag only what the changelog names, when that is enough this run.

    Returns False, having written nothing, when the full list must be read:
    no changelog configured, ``full_list_interval`` is 0 or has passed since
    the last full read, no serial is known yet, or the changelog does not answer.
    """
    if not up.xmlrpc_url or cfg.full_list_interval <= 0:
        return False
    with conn.cursor() as cur:
        last = _last_serial(cur)
        due = _full_list_due(cur, cfg.full_list_interval)
    conn.commit()
    if last == 0 or due:
        return False
    report.say(f"sync: reading the changelog since serial {last:,}")
    entries = up.changelog_since(last)
    if entries is None:
        report.say("sync: the changelog did not answer; reading the full project list")
        return False
    if not entries:
        back = _serial_went_back(up, last)
        if back is not None:
            report.say(f"sync: the upstream's serial went back ({back:,} < {last:,});"
                       " reading the full project list")
            return False
    live, gone = _changelog_names(entries)
    with conn.cursor() as cur:
        new = _flag_named(cur, live, gone)
        if entries:
            _save_serial(cur, max(e.serial for e in entries))
        cur.execute("SELECT count(*) FROM packages WHERE needs_sync")
        todo = cur.fetchone()[0]
    conn.commit()
    summary.projects_seen = len(live) + len(gone)
    summary.new_packages += new
    report.say(
        f"sync: the changelog names {summary.projects_seen:,} projects, {new:,} new, "
        f"{todo:,} to sync (full list not due)"
    )
    return True


def _flag_named(cur: Cursor, live: dict[str, tuple[str, int]], gone: set[str]) -> int:
    """Add the live names not known yet and flag every named package; how many were new.

    A deleted package is flagged too, without being restored: its page decides.
    """
    new = 0
    if live:
        rows = [(p, name, serial) for p, (name, serial) in sorted(live.items())]
        added = execute_values(
            cur,
            "INSERT INTO packages (package, display_name, upstream_serial) VALUES %s"
            " ON CONFLICT (package) DO NOTHING RETURNING package",
            rows, page_size=BATCH, fetch=True,
        )
        new = len(added)
        execute_values(
            cur,
            "INSERT INTO package_names (name, package) VALUES %s ON CONFLICT (name) DO NOTHING",
            [(name, p) for p, name, _ in rows], page_size=BATCH,
        )
    flags = [(p, serial) for p, (_, serial) in live.items()] + [(p, None) for p in gone]
    if flags:
        execute_values(
            cur,
            "UPDATE packages p SET needs_sync = true,"
            " upstream_serial = greatest(p.upstream_serial, v.serial)"
            " FROM (VALUES %s) AS v(package, serial) WHERE p.package = v.package"
            " AND (v.serial IS NOT NULL OR NOT p.deleted)",  # removed, already deleted: skip
            sorted(flags), template="(%s, %s::bigint)", page_size=BATCH,
        )
    return new


def _pending(conn: Connection) -> tuple[int, Iterator[tuple[str, str]]]:
    """How many packages are flagged, and (package, display name) of each, recent first.

    A WITH HOLD cursor streams them across the group commits, so 930,000
    names never sit in this process at once. A deleted package is flagged
    only when the changelog named it again: its page says whether it is back.
    """
    where = "WHERE needs_sync"
    with conn.cursor() as cur:
        cur.execute(f"SELECT count(*) FROM packages {where}")
        total = cur.fetchone()[0]
    cur = conn.cursor(f"sync_pending_{next(_cursor_ids)}", withhold=True)
    cur.itersize = 5000
    cur.execute(f"SELECT package, display_name FROM packages {where}"
                " ORDER BY upstream_serial DESC NULLS LAST, package")
    conn.commit()
    return total, _drain(cur)


def _drain(cur: Cursor) -> Iterator[tuple[str, str]]:
    try:
        yield from cur
    finally:
        try:
            cur.close()
            cur.connection.commit()  # every project is committed or rolled back by now
        except psycopg2.Error:
            cur.connection.rollback()


def _named_targets(conn: Connection, named: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Named packages, asked for by their known upstream spelling when there is one."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT package, display_name FROM packages WHERE package = ANY(%s)",
            ([p for p, _ in named],),
        )
        known = dict(cur.fetchall())
    conn.commit()
    return [(p, known.get(p, given)) for p, given in named]


# ---------------------------------------------------------------- project phase


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


def _sync_projects(conn: Connection, cfg: Config, up: Upstream,
                   todo: Iterator[tuple[str, str]], total: int, summary: SyncSummary,
                   report: _Progress) -> None:
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
                report.say(line())
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
        report.say(line())


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
            files, groups = _group(package, f.page)
            rows = _plan_versions(package, groups, old_versions[package], skip_yanked, summary)
            new_files, gone_files = _plan_files(files, old_files[package])
            if rows or new_files or gone_files:
                changed.add(package)
            version_rows += rows
            file_rows += new_files
            stale += gone_files
        _write_versions(cur, version_rows)
        _write_files(cur, file_rows, stale)
        if found:
            execute_values(
                cur,
                "UPDATE packages p SET synced_serial = coalesce(v.serial, p.upstream_serial),"
                " synced_at = now(), deleted = false,"
                # A page older than the serial the list or changelog announced (a stale
                # cache in front of the upstream) leaves the package flagged for next run.
                " needs_sync = coalesce(v.serial < p.upstream_serial, false)"
                " FROM (VALUES %s) AS v(package, serial) WHERE p.package = v.package",
                [(p, f.page.serial) for p, f in sorted(found.items())],
                template="(%s, %s::bigint)", page_size=BATCH,
            )
        summary.projects_synced += len(found)
        if changed:
            _changed(cur, sorted(changed))


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
        cur.execute(
            "UPDATE packages SET deleted = true, needs_sync = false, synced_at = now()"
            " WHERE package = ANY(%s)",
            (gone,),
        )
    summary.projects_synced += len(gone)
    newly = {p for p in gone if not was_deleted[p]}
    summary.deleted_packages += len(newly)
    return newly


def _changed(cur: Cursor, packages: list[str]) -> None:
    """Refresh the queue of these packages and mark them for the index writer."""
    cur.execute("SELECT count(refresh_queue(p)) FROM unnest(%s::text[]) AS p", (packages,))
    cur.execute(
        "INSERT INTO index_dirty (package) SELECT unnest(%s::text[]) "
        "ON CONFLICT (package) DO UPDATE SET since = EXCLUDED.since", (packages,)
    )


def _ensure_packages(cur: Cursor, found: dict[str, _Fetched], was_deleted: dict[str, bool],
                     summary: SyncSummary) -> set[str]:
    """Insert the new packages, record spellings; the packages new or restored."""
    spelled = {p: f.page.name for p, f in found.items() if normalize(f.page.name) == p}
    new = [(p, spelled.get(p, p)) for p in sorted(found) if p not in was_deleted]
    if new:
        added = execute_values(
            cur,
            "INSERT INTO packages (package, display_name) VALUES %s"
            " ON CONFLICT (package) DO NOTHING RETURNING package",
            new, page_size=BATCH, fetch=True,
        )
        summary.new_packages += len(added)
    if spelled:
        execute_values(
            cur,
            "INSERT INTO package_names (name, package) VALUES %s ON CONFLICT DO NOTHING",
            sorted((name, p) for p, name in spelled.items()), page_size=BATCH,
        )
    return {p for p, _ in new} | {p for p in found if was_deleted.get(p)}


def _old_versions(cur: Cursor, packages: list[str]) -> dict[str, dict[str, _Version]]:
    out: dict[str, dict[str, _Version]] = defaultdict(dict)
    if packages:
        cur.execute(
            "SELECT package, version, released, yanked, yanked_reason, prerelease, deleted,"
            " skip_reason FROM versions WHERE package = ANY(%s)",
            (packages,),
        )
        for r in cur:
            out[r[0]][r[1]] = _Version(*r[2:])
    return out


def _old_files(cur: Cursor, packages: list[str]) -> dict[str, dict[str, tuple]]:
    out: dict[str, dict[str, tuple]] = defaultdict(dict)
    if packages:
        cur.execute(
            "SELECT filename, package, version, kind, url, sha256, size, requires_python,"
            " upload_time, yanked, yanked_reason FROM upstream_files WHERE package = ANY(%s)",
            (packages,),
        )
        for r in cur:
            out[r[1]][r[0]] = tuple(r)
    return out


def _group(package: str, page: ProjectPage) -> tuple[dict[str, tuple], dict[str, list[tuple]]]:
    """File rows by filename, and (kind, file) by version; unknown files are ignored."""
    files: dict[str, tuple] = {}
    groups: dict[str, list[tuple]] = {}
    for f in page.files:
        found = classify(f.filename, package)
        if found is None or f.filename in files:
            continue
        kind, version = found
        files[f.filename] = (
            f.filename, package, version, kind, f.url, f.sha256, f.size, f.requires_python,
            f.upload_time, f.yanked, f.yanked_reason if f.yanked else None,
        )
        groups.setdefault(version, []).append((kind, f))
    return files, groups


def _is_prerelease(version: str) -> bool:
    try:
        return Version(version).is_prerelease
    except InvalidVersion:
        return False


def _skip_reason(old: str | None, has_sdist: bool, yanked: bool, skip_yanked: bool) -> str | None:
    """Sync owns binary-only, yanked and deleted; an operator's reason is kept."""
    if old not in SYNC_SKIPS:
        return old
    if not has_sdist:
        return "binary-only"
    if yanked and skip_yanked:
        return "yanked"
    return None


def _plan_version(version: str, files: list[tuple], old: _Version | None,
                  skip_yanked: bool) -> _Version:
    """The row a version should have: released is its earliest upload, yanked if all files are."""
    times = [f.upload_time for _, f in files if f.upload_time is not None]
    if times:
        released = min(times)
    else:
        released = old.released if old else datetime.now(UTC)
    yanked = all(f.yanked for _, f in files)
    reason = next((f.yanked_reason for _, f in files if f.yanked_reason), None) if yanked else None
    has_sdist = any(kind == "sdist" for kind, _ in files)
    skip = _skip_reason(old.skip_reason if old else None, has_sdist, yanked, skip_yanked)
    return _Version(released, yanked, reason, _is_prerelease(version), False, skip)


def _count(old: _Version | None, new: _Version, summary: SyncSummary) -> None:
    if old is None:
        summary.new_versions += 1
    if new.yanked and not (old and old.yanked):
        summary.yanked += 1
    if old and old.yanked and not new.yanked:
        summary.unyanked += 1
    if new.skip_reason == "binary-only" and (old is None or old.skip_reason != "binary-only"):
        summary.binary_only += 1
    if new.deleted and not (old and old.deleted):
        summary.deleted_versions += 1


def _plan_versions(package: str, groups: dict[str, list[tuple]], old: dict[str, _Version],
                   skip_yanked: bool, summary: SyncSummary) -> list[tuple]:
    """The version rows that change: new or different ones, and the ones no longer listed."""
    rows = []
    for version, files in groups.items():
        new = _plan_version(version, files, old.get(version), skip_yanked)
        if new != old.get(version):
            _count(old.get(version), new, summary)
            rows.append((package, version, *new))
    for version, was in old.items():
        if version not in groups and not was.deleted:
            skip = "deleted" if was.skip_reason in SYNC_SKIPS else was.skip_reason
            new = was._replace(deleted=True, skip_reason=skip)
            _count(was, new, summary)
            rows.append((package, version, *new))
    return rows


def _plan_files(files: dict[str, tuple], old: dict[str, tuple]) -> tuple[list[tuple], list[str]]:
    """Rows of new or changed upstream files, and names of the ones no longer listed."""
    stale = [name for name in old if name not in files]
    rows = [row for name, row in files.items() if old.get(name) != row]
    return rows, stale


def _write_versions(cur: Cursor, rows: list[tuple]) -> None:
    if rows:
        execute_values(
            cur,
            "INSERT INTO versions (package, version, released, yanked, yanked_reason,"
            " prerelease, deleted, skip_reason) VALUES %s"
            " ON CONFLICT (package, version) DO UPDATE SET released = EXCLUDED.released,"
            " yanked = EXCLUDED.yanked, yanked_reason = EXCLUDED.yanked_reason,"
            " prerelease = EXCLUDED.prerelease, deleted = EXCLUDED.deleted,"
            " skip_reason = EXCLUDED.skip_reason",
            rows, page_size=BATCH,
        )


def _write_files(cur: Cursor, rows: list[tuple], stale: list[str]) -> None:
    """Delete the files no longer listed, then upsert the new or changed ones."""
    if stale:
        cur.execute("DELETE FROM upstream_files WHERE filename = ANY(%s)", (stale,))
    if rows:
        execute_values(
            cur,
            "INSERT INTO upstream_files (filename, package, version, kind, url, sha256, size,"
            " requires_python, upload_time, yanked, yanked_reason) VALUES %s"
            " ON CONFLICT (filename) DO UPDATE SET package = EXCLUDED.package,"
            " version = EXCLUDED.version, kind = EXCLUDED.kind, url = EXCLUDED.url,"
            " sha256 = EXCLUDED.sha256, size = EXCLUDED.size,"
            " requires_python = EXCLUDED.requires_python, upload_time = EXCLUDED.upload_time,"
            " yanked = EXCLUDED.yanked, yanked_reason = EXCLUDED.yanked_reason",
            rows, page_size=BATCH,
        )
