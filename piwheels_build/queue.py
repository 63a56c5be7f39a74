"""The Python face of the queue's SQL functions (db/migrations/0002, 0004-0010).

The queue's rules live in SQL so that every path (sync, builders, operators)
applies the same ones; this module is the one place Python calls them. Each
function takes an open connection and leaves the transaction to the caller
(builders run in autocommit). The builder role may execute only the first
five (migration 0003: ``SECURITY DEFINER``, no table access); the others
are the master's: sync's and operators' changes to what is queued
(migration 0006).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

Connection = psycopg2.extensions.connection


@dataclass(frozen=True)
class Claim:
    """A build a builder claimed: what to build, from which sdist (``claim_build``'s row)."""

    build_id: int
    package: str
    version: str
    target: str              # "cp311-linux_armv7l": ABI-platform (migration 0010)
    sdist_filename: str
    sdist_url: str
    sdist_sha256: str | None


def register_builder(conn: Connection, name: str, abi_tag: str, platform_tag: str,
                     python_version: str, os_release: str) -> int:
    """Register (or find) this machine's builder for one interpreter; its builder_id.

    Its build target is ``ABI-PLATFORM`` ("cp311-linux_armv7l"); a new target
    becomes active and its queue is filled (``register_builder``). Raises
    psycopg2.Error for an invalid ABI or platform tag.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT register_builder(%s, %s, %s, %s, %s)",
                    (name, abi_tag, platform_tag, python_version, os_release))
        return cur.fetchone()[0]


def claim_build(conn: Connection, builder_id: int, lease_seconds: int) -> Claim | None:
    """Take the next queued build for the builder's target with a lease of ``lease_seconds``.

    None when nothing is queued (or everything queued waits for a retry time).
    """
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM claim_build(%s, %s)", (builder_id, lease_seconds))
        row = cur.fetchone()
    return Claim(*row) if row else None


def heartbeat_build(conn: Connection, build_id: int, lease_seconds: int) -> bool:
    """Renew a build's lease; False when the lease was lost (the build was taken back)."""
    with conn.cursor() as cur:
        cur.execute("SELECT heartbeat_build(%s, %s)", (build_id, lease_seconds))
        return bool(cur.fetchone()[0])


def finish_build(conn: Connection, build_id: int, status: str, duration: float,
                 log_gzip: bytes, log_size: int, log_truncated: bool,
                 files: list[dict[str, Any]]) -> bool:
    """Record a build's result, log (gzip bytes) and files; False if its lease was lost.

    ``files`` are the records of ``wheels.WheelInfo.record()`` plus metadata
    hash, dependencies and aliases. Queues the other build targets the result
    does not cover and marks the package for the index writer.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT finish_build(%s, %s, %s, %s, %s, %s, %s)",
                    (build_id, status, duration, psycopg2.Binary(log_gzip), log_size,
                     log_truncated, psycopg2.extras.Json(files)))
        return bool(cur.fetchone()[0])


def file_is_recorded(conn: Connection, filename: str) -> bool:
    """Whether the database records a file of this name (the store asks before replacing)."""
    with conn.cursor() as cur:
        cur.execute("SELECT file_is_recorded(%s)", (filename,))
        return bool(cur.fetchone()[0])


def expire_leases(conn: Connection) -> list[tuple[int, str, str, str]]:
    """Give back the builds whose lease ran out (a builder died): each is marked
    ``abandoned``, its queue row freed and its package marked for the index writer.

    The (build_id, package, version, target) released. ``claim_build`` does the
    same before every claim; the index writer and ``piwheels status`` call this so
    a dead builder's build does not show as building while no builder claims
    (migration 0007). The master's only: the builder role may not call it.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM expire_leases()")
        return [tuple(r) for r in cur.fetchall()]


def refresh_queue(conn: Connection, package: str | None = None,
                  version: str | None = None) -> None:
    """Bring the queue in line with the rules: everything, one package or one version."""
    with conn.cursor() as cur:
        if package is None:
            cur.execute("SELECT refresh_queue()")
        elif version is None:
            cur.execute("SELECT refresh_queue(%s)", (package,))
        else:
            cur.execute("SELECT refresh_queue(%s, %s)", (package, version))


def package_changed(conn: Connection, packages: list[str]) -> int:
    """Packages whose rows changed: refresh their queue rows and mark them for the
    index writer (``package_changed``); the queue rows added."""
    with conn.cursor() as cur:
        cur.execute("SELECT package_changed(%s::text[])", (packages,))
        return cur.fetchone()[0]


def skip_version(conn: Connection, package: str, version: str | None = None,
                 target: str | None = None, note: str | None = None) -> bool:
    """An operator's skip of a package, a version, or a version on some targets; False
    when it was skipped already (``skip_version``).

    ``target`` names a target ("cp311-linux_armv7l"), an ABI ("cp311": its targets on
    every platform) or a platform ("linux_armv7l"); psycopg2.Error when none matches.
    """
    with conn.cursor() as cur:
        cur.execute("SELECT skip_version(%s, %s, %s, %s)", (package, version, target, note))
        return bool(cur.fetchone()[0])


def unskip_version(conn: Connection, package: str, version: str | None = None,
                   target: str | None = None) -> bool:
    """Lift an operator's skip (``target`` as in skip_version); False when there was
    none to lift (``unskip_version``)."""
    with conn.cursor() as cur:
        cur.execute("SELECT unskip_version(%s, %s, %s)", (package, version, target))
        return bool(cur.fetchone()[0])


@dataclass(frozen=True)
class Requeued:
    """What ``requeue_version`` did: rows forgotten, queue rows added and given the
    priority, and the targets now queued (or building)."""

    forgotten: int
    added: int
    reprioritised: int
    queued: list[str]


def requeue_version(conn: Connection, package: str, version: str, target: str | None = None,
                    priority: int = 0) -> Requeued:
    """Forget a version's failed attempts and skips (on some targets, ``target`` as in
    skip_version, or all) and queue it again, with ``priority`` when not 0
    (``requeue_version``)."""
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM requeue_version(%s, %s, %s, %s)",
                    (package, version, target, priority or 0))
        forgotten, added, reprioritised, queued = cur.fetchone()
    return Requeued(forgotten, added, reprioritised, list(queued))
