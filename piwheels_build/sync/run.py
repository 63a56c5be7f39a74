"""One sync run: the list phase (what to fetch), then the project phase (fetch and write)."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg2
import psycopg2.errors
import psycopg2.extensions

from ..config import Config
from ..errors import UpstreamError
from ..names import is_valid_name, normalize
from .backfill import fill as fill_requires_python
from .projectlist import named_targets, pending_projects, sync_changelog_only, sync_list
from .projects import sync_projects
from .summary import Progress, SyncProgress, SyncSummary
from .upstream import Upstream

Connection = psycopg2.extensions.connection


def sync(
    conn: Connection,
    cfg: Config,
    names: list[str] | None = None,
    *,
    progress: Callable[[SyncProgress], None] | None = None,
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
    report = Progress(progress)
    _fast_commits(conn, True)
    try:
        if named is None:
            if full_list or not sync_changelog_only(conn, cfg, up, summary, report):
                sync_list(conn, up, summary, report)
            total, targets = pending_projects(conn)
        else:
            summary.projects_seen = total = len(named)
            targets = iter(named_targets(conn, named))
        sync_projects(conn, cfg, up, targets, total, summary, report)
        # Versions synced before migration 0008 (a no-op once they are all evaluated).
        fill_requires_python(conn, summary, report)
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

