"""The list phase: the upstream's full project list or its XML-RPC changelog,
merged set-based into ``packages``, flagging what changed (``needs_sync``)."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from ..config import Config
from ..db import writes
from ..errors import UpstreamError
from ..names import is_valid_name, normalize
from .simpleapi import ChangelogEntry
from .summary import Progress, SyncSummary
from .upstream import Upstream

BATCH = 10_000                # rows per INSERT of the project list


RESYNC_OLDEST = 1000          # known packages re-read per run when the upstream has no serials


_cursor_ids = itertools.count(1)


Connection = psycopg2.extensions.connection


Cursor = psycopg2.extensions.cursor


def sync_list(conn: Connection, up: Upstream, summary: SyncSummary, report: Progress) -> None:
    """Merge the upstream's project list into ``packages`` in one transaction."""
    report.say(f"sync: reading the project list from {up.url}", "list")
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
        # New packages and spellings, changed serials flagged, the ones gone deleted
        # (queue and pages updated), the oldest re-read without serials, time noted.
        new, gone = writes.merge_project_list(cur, 0 if plist.serials else RESYNC_OLDEST)
        summary.new_packages += new
        summary.deleted_packages += gone
        _apply_changelog(cur, up, plist.serial or serial_before)
        cur.execute("SELECT count(*) FROM packages WHERE needs_sync")
        todo = cur.fetchone()[0]
    conn.commit()
    report.say(
        f"sync: {len(valid):,} projects listed, {summary.new_packages:,} new, "
        f"{summary.deleted_packages:,} gone, {todo:,} to sync", "listed", len(valid), todo
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
               report: Progress) -> None:
    """The list into the transaction's staging table, BATCH rows a statement."""
    rows = ((n, normalize(n), serials.get(n)) for n in names)
    done = 0
    for batch in _batches(rows, BATCH):
        writes.load_project_list(cur, batch)
        done += len(batch)
        if report.due():
            report.say(f"sync: loading the project list, {done:,}/{len(names):,}", "list",
                       done, len(names))


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
    entries = _forward(up.changelog_since(last), last)
    if not entries:
        # The upstream's serial may have gone back (a restore, another mirror): the
        # list just read is the truth, but the saved serial never moves backwards.
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
    """Remember the changelog serial reached; never a lower one than already saved."""
    if serial and serial > _last_serial(cur):
        writes.set_setting(cur, "upstream_serial", str(serial))


def _forward(entries: list[ChangelogEntry] | None, last: int) -> list[ChangelogEntry] | None:
    """The entries after ``last``: a changelog that answers older serials went backwards."""
    return None if entries is None else [e for e in entries if e.serial > last]


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


def sync_changelog_only(conn: Connection, cfg: Config, up: Upstream, summary: SyncSummary,
                         report: Progress) -> bool:
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
    report.say(f"sync: reading the changelog since serial {last:,}", "changelog")
    answered = up.changelog_since(last)
    entries = _forward(answered, last)
    if entries is None:
        report.say("sync: the changelog did not answer; reading the full project list", "list")
        return False
    if answered and not entries:
        top = max(e.serial for e in answered)
        report.say(f"sync: the changelog went backwards (serials up to {top:,} after "
                   f"{last:,}); reading the full project list", "list")
        return False
    if not entries:
        back = _serial_went_back(up, last)
        if back is not None:
            report.say(f"sync: the upstream's serial went back ({back:,} < {last:,});"
                       " reading the full project list", "list")
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
        f"{todo:,} to sync (full list not due)", "changelog-read", summary.projects_seen, todo
    )
    return True


def _flag_named(cur: Cursor, live: dict[str, tuple[str, int]], gone: set[str]) -> int:
    """Add the live names not known yet and flag every named package; how many were new.

    A deleted package is flagged too, without being restored: its page decides.
    """
    rows = [(p, name, serial) for p, (name, serial) in sorted(live.items())]
    return writes.flag_named(cur, rows, sorted(gone))


def pending_projects(conn: Connection) -> tuple[int, Iterator[tuple[str, str]]]:
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


def named_targets(conn: Connection, named: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Named packages, asked for by their known upstream spelling when there is one."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT package, display_name FROM packages WHERE package = ANY(%s)",
            ([p for p, _ in named],),
        )
        known = dict(cur.fetchall())
    conn.commit()
    return [(p, known.get(p, given)) for p, given in named]

