"""Mirror the upstream's projects, versions and files into the database.

Two phases. The list phase reads the root page once and, set-based, adds new
packages, marks removed ones deleted and flags what changed (``needs_sync``).
The project phase fetches the flagged pages in a thread pool and writes each
project in its own transaction from the main thread, so an interrupted run
resumes where it stopped: ``needs_sync`` is cleared only with the project.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

import psycopg2
import psycopg2.extensions
from packaging.version import InvalidVersion, Version
from psycopg2.extras import execute_values

from .config import Config
from .errors import UpstreamError
from .names import is_valid_name, normalize
from .upstream import ProjectPage, Upstream, classify

BATCH = 10_000                # rows per INSERT of the project list
RESYNC_OLDEST = 1000          # known packages re-read per run when the upstream has no serials
PROGRESS_EVERY = 2.0          # seconds between progress messages
MAX_FAILURES_IN_A_ROW = 50    # project pages failing in a row before the run gives up
SYNC_SKIPS = (None, "binary-only", "yanked", "deleted")  # skip reasons sync owns
_cursor_ids = itertools.count(1)

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


class SyncInterrupted(KeyboardInterrupt):
    """Ctrl-C during a sync, after committing every finished project; carries the summary."""

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
) -> SyncSummary:
    """Bring the database in line with the upstream: everything, or just ``names``.

    Raises UpstreamError when the project list cannot be read or a name is
    invalid (before anything is written); a failing project page is only
    recorded in ``summary.errors`` and stays flagged for the next run.
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
    """No fsync wait per project: a commit lost in a crash leaves that project flagged."""
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
        _apply_changelog(cur, up, plist.serial)
        cur.execute("SELECT count(*) FROM packages WHERE needs_sync AND NOT deleted")
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


def _apply_changelog(cur: Cursor, up: Upstream, list_serial: int | None) -> None:
    """Flag the packages the upstream's changelog names since the last run."""
    if not up.xmlrpc_url:
        return
    cur.execute("SELECT value FROM settings WHERE key = 'upstream_serial'")
    row = cur.fetchone()
    last = int(row[0]) if row and row[0].isdigit() else 0
    if last == 0:  # first run: every package is new anyway, just remember where we are
        _save_serial(cur, up.last_serial() or list_serial)
        return
    entries = up.changelog_since(last)
    if not entries:
        return
    names = set()
    for e in entries:
        names.add(normalize(e.name))
        if e.action.startswith("rename from "):
            names.add(normalize(e.action[len("rename from "):].strip()))
    cur.execute(
        "UPDATE packages SET needs_sync = true WHERE package = ANY(%s) AND NOT needs_sync",
        (sorted(names),),
    )
    _save_serial(cur, max(e.serial for e in entries))


def _save_serial(cur: Cursor, serial: int | None) -> None:
    if serial:
        cur.execute(
            "INSERT INTO settings (key, value) VALUES ('upstream_serial', %s)"
            " ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            (str(serial),),
        )


def _pending(conn: Connection) -> tuple[int, Iterator[tuple[str, str]]]:
    """How many packages are flagged, and (package, display name) of each, recent first.

    A WITH HOLD cursor streams them across the per-project commits, so 930,000
    names never sit in this process at once.
    """
    where = "WHERE needs_sync AND NOT deleted"
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


def _sync_projects(conn: Connection, cfg: Config, up: Upstream,
                   todo: Iterator[tuple[str, str]], total: int, summary: SyncSummary,
                   report: _Progress) -> None:
    """Fetch pages in threads, write each project in its own transaction here."""
    done, failures, started = 0, 0, time.monotonic()
    workers = max(1, cfg.sync_workers)
    pool = ThreadPoolExecutor(workers, thread_name_prefix="sync")
    pending: dict[Future, tuple[str, str]] = {}

    def fill() -> None:
        for package, name in itertools.islice(todo, max(0, workers * 4 - len(pending))):
            pending[pool.submit(_fetch, up, name)] = (package, name)

    def line() -> str:
        rate = done / max(time.monotonic() - started, 1e-6)
        return (f"sync: {done:,}/{total:,} projects, {summary.new_versions:,} new versions, "
                f"{len(summary.errors):,} errors, {rate:,.0f}/s")

    try:
        fill()
        while pending:
            finished, _ = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for fut in finished:
                package, name = pending.pop(fut)
                ok = _handle(conn, cfg, package, name, fut.result(), summary)
                done += 1
                failures = 0 if ok else failures + 1
            if failures >= MAX_FAILURES_IN_A_ROW:
                summary.errors.append(
                    f"sync: stopped after {failures} project pages failed in a row; "
                    "the upstream may be down, run sync again later"
                )
                break
            fill()
            if report.due():
                report.say(line())
    except KeyboardInterrupt:
        conn.rollback()
        raise SyncInterrupted(summary) from None
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        close = getattr(todo, "close", None)
        if close:
            close()
    if total:
        report.say(line())


def _handle(conn: Connection, cfg: Config, package: str, name: str,
            result: ProjectPage | UpstreamError | None, summary: SyncSummary) -> bool:
    """Write one fetched project; False if it failed (it stays flagged)."""
    if isinstance(result, UpstreamError):
        summary.errors.append(str(result))
        return False
    try:
        if result is None:
            found = _gone(conn, package, name, summary)
        else:
            _apply_page(conn, cfg, package, result, summary)
            found = True
        conn.commit()
    except BaseException:
        conn.rollback()
        raise
    summary.projects_synced += found
    return True


def _gone(conn: Connection, package: str, name: str, summary: SyncSummary) -> bool:
    """A 404: a known package is deleted; an unknown one is an error for the caller."""
    with conn.cursor() as cur:
        cur.execute("SELECT deleted FROM packages WHERE package = %s FOR UPDATE", (package,))
        row = cur.fetchone()
        if row is None:
            summary.errors.append(f"sync: {name} not found upstream")
            return False
        cur.execute(
            "UPDATE packages SET deleted = true, needs_sync = false, synced_at = now()"
            " WHERE package = %s",
            (package,),
        )
        if not row[0]:
            summary.deleted_packages += 1
            _changed(cur, package)
    return True


def _changed(cur: Cursor, package: str) -> None:
    cur.execute("SELECT refresh_queue(%s)", (package,))
    cur.execute(
        "INSERT INTO index_dirty (package) VALUES (%s) "
        "ON CONFLICT (package) DO UPDATE SET since = EXCLUDED.since", (package,)
    )


def _ensure_package(cur: Cursor, package: str, page: ProjectPage,
                    summary: SyncSummary) -> bool:
    """Insert the package if new, record its spelling; True if it was new or deleted."""
    spelled = page.name if normalize(page.name) == package else None
    cur.execute(
        "INSERT INTO packages (package, display_name) VALUES (%s, %s)"
        " ON CONFLICT (package) DO NOTHING",
        (package, spelled or package),
    )
    if cur.rowcount:
        summary.new_packages += 1
        changed = True
    else:
        cur.execute("SELECT deleted FROM packages WHERE package = %s FOR UPDATE", (package,))
        changed = cur.fetchone()[0]
    if spelled:
        cur.execute(
            "INSERT INTO package_names (name, package) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (spelled, package),
        )
    return changed


def _apply_page(conn: Connection, cfg: Config, package: str, page: ProjectPage,
                summary: SyncSummary) -> None:
    """Upsert the page's versions and files, mark the missing ones, refresh the queue."""
    with conn.cursor() as cur:
        changed = _ensure_package(cur, package, page, summary)
        files, groups = _group(package, page)
        changed |= _write_versions(cur, package, groups, cfg.yanked == "skip", summary)
        changed |= _write_files(cur, package, files)
        cur.execute(
            "UPDATE packages SET synced_serial = coalesce(%s, upstream_serial),"
            " synced_at = now(), needs_sync = false, deleted = false WHERE package = %s",
            (page.serial, package),
        )
        if changed:
            _changed(cur, package)


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


def _write_versions(cur: Cursor, package: str, groups: dict[str, list[tuple]],
                    skip_yanked: bool, summary: SyncSummary) -> bool:
    """Upsert the versions that changed; True if any did."""
    cur.execute(
        "SELECT version, released, yanked, yanked_reason, prerelease, deleted, skip_reason"
        " FROM versions WHERE package = %s",
        (package,),
    )
    old = {r[0]: _Version(*r[1:]) for r in cur.fetchall()}
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
    if rows:
        execute_values(
            cur,
            "INSERT INTO versions (package, version, released, yanked, yanked_reason,"
            " prerelease, deleted, skip_reason) VALUES %s"
            " ON CONFLICT (package, version) DO UPDATE SET released = EXCLUDED.released,"
            " yanked = EXCLUDED.yanked, yanked_reason = EXCLUDED.yanked_reason,"
            " prerelease = EXCLUDED.prerelease, deleted = EXCLUDED.deleted,"
            " skip_reason = EXCLUDED.skip_reason",
            rows,
        )
    return bool(rows)


def _write_files(cur: Cursor, package: str, files: dict[str, tuple]) -> bool:
    """Upsert new or changed upstream files, delete the ones no longer listed."""
    cur.execute(
        "SELECT filename, package, version, kind, url, sha256, size, requires_python,"
        " upload_time, yanked, yanked_reason FROM upstream_files WHERE package = %s",
        (package,),
    )
    old = {r[0]: tuple(r) for r in cur.fetchall()}
    stale = [name for name in old if name not in files]
    rows = [row for name, row in files.items() if old.get(name) != row]
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
            rows,
        )
    return bool(stale or rows)

