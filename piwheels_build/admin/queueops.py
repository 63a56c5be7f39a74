"""Operator actions on the queue: facts, refresh, skip, requeue.

Idempotent, each says whether it changed anything, and each can run in
check mode (counts what it would change, changes nothing)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from .. import db, queue
from ..errors import AdminError


def _connect(dsn: str, autocommit: bool = True):
    return db.connect(dsn, autocommit=autocommit)


def queue_facts(dsn: str) -> dict[str, Any]:
    from .. import status

    conn = _connect(dsn, autocommit=False)
    try:
        db.check_schema(conn)
        return status.collect(conn)
    finally:
        conn.close()


def _queue_drift(cur) -> tuple[int, int]:
    """(rows ``refresh_queue()`` would add, unclaimed rows it would drop)."""
    cur.execute(
        "SELECT (SELECT count(*) FROM wanted_builds w WHERE NOT EXISTS ("
        "          SELECT 1 FROM queue q WHERE q.package = w.package"
        "          AND q.version = w.version AND q.target = w.target)),"
        "       (SELECT count(*) FROM queue q WHERE q.build_id IS NULL AND NOT EXISTS ("
        "          SELECT 1 FROM wanted_builds w WHERE w.package = q.package"
        "          AND w.version = q.version AND w.target = q.target))"
    )
    added, dropped = cur.fetchone()
    return added, dropped


def refresh(dsn: str, check: bool = False) -> dict[str, Any]:
    """Bring the queue in line with the rules; changed if rows were added or dropped."""
    conn = _connect(dsn, autocommit=False)
    try:
        db.check_schema(conn)
        with conn.cursor() as cur:
            added, dropped = _queue_drift(cur)
        if not check and (added or dropped):
            queue.refresh_queue(conn)
        conn.commit()
    finally:
        conn.close()
    return {"changed": bool(added or dropped), "added": added, "dropped": dropped}


def _version_row(cur, package: str, version: str | None) -> None:
    from ..names import normalize

    cur.execute("SELECT 1 FROM packages WHERE package = %s", (normalize(package),))
    if cur.fetchone() is None:
        raise AdminError(f"queue: unknown package {package!r}; sync it first")
    if version is not None:
        cur.execute("SELECT 1 FROM versions WHERE package = %s AND version = %s",
                    (normalize(package), version))
        if cur.fetchone() is None:
            raise AdminError(f"queue: unknown version {package} {version}")


def _target_rows(cur, target: str) -> None:
    cur.execute("SELECT cardinality(targets_named(%s))", (target,))
    if not cur.fetchone()[0]:
        raise AdminError(f"queue: no build target is named {target!r} (a target such as "
                         "cp311-linux_armv7l, an ABI or a platform); a builder registers it")


def _canonical_version(version: str | None) -> str | None:
    if version is None:
        return None
    from packaging.version import Version

    try:
        return str(Version(version))
    except ValueError:  # InvalidVersion, or a number past int()'s 4300 digits
        return version


@contextlib.contextmanager
def _on_version(dsn: str, pkg: str, ver: str | None, target: str | None,
                check: bool) -> Iterator[Any]:
    """A connection for one operator action on a known package/version/target; committed
    at the end, or rolled back in check mode (which then only says what would change)."""
    conn = _connect(dsn, autocommit=False)
    try:
        db.check_schema(conn)
        with conn.cursor() as cur:
            _version_row(cur, pkg, ver)
            if target:
                _target_rows(cur, target)
        yield conn
        if check:
            conn.rollback()
        else:
            conn.commit()
    finally:
        conn.close()


def skip(dsn: str, package: str, version: str | None = None, target: str | None = None,
         note: str | None = None, state: str = "present", check: bool = False) -> dict[str, Any]:
    """Skip (or, with state=absent, unskip) a package, a version, or a version on some
    targets: ``target`` names a target ("cp311-linux_armv7l"), an ABI ("cp311", its
    targets on every platform) or a platform ("linux_armv7l")."""
    from ..names import normalize

    pkg, ver = normalize(package), _canonical_version(version)
    if target and ver is None:
        raise AdminError("queue: skipping on a build target needs a version")
    with _on_version(dsn, pkg, ver, target, check) as conn:
        changed = False
        if state == "present":
            changed = queue.skip_version(conn, pkg, ver, target, note)
        elif state == "absent":
            changed = queue.unskip_version(conn, pkg, ver, target)
    return {"changed": changed, "package": pkg, "version": ver, "target": target}


def requeue(dsn: str, package: str, version: str, target: str | None = None,
            priority: int = 0, check: bool = False) -> dict[str, Any]:
    """An operator's rebuild: forget the failed attempts of a version (on some targets,
    named as in skip(), or all), lift an admin or too-many-failures skip, and queue it
    again.

    A version that has a wheel for that target is not rebuilt (the store never
    replaces a published file); the history of the forgotten attempts goes.
    """
    from ..names import normalize

    pkg, ver = normalize(package), _canonical_version(version)
    with _on_version(dsn, pkg, ver, target, check) as conn:
        done = queue.requeue_version(conn, pkg, ver, target, priority)
    changed = bool(done.forgotten or done.added or done.reprioritised)
    return {"changed": changed, "package": pkg, "version": ver, "forgotten": done.forgotten,
            "added": done.added, "queued": done.queued}
