"""Operator actions on the queue: facts, refresh, skip, requeue.

Idempotent, each says whether it changed anything, and each can run in
check mode (counts what it would change, changes nothing)."""

from __future__ import annotations

from typing import Any

from .. import db
from ..errors import AdminError

SKIP_REASON = "admin"


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


def _missing_queue_rows(cur, package: str | None = None, version: str | None = None) -> int:
    cur.execute("SELECT count(*) FROM wanted_builds w WHERE (%(p)s::text IS NULL OR "
                "w.package = %(p)s) AND (%(v)s::text IS NULL OR w.version = %(v)s) AND NOT "
                "EXISTS (SELECT 1 FROM queue q WHERE q.package = w.package AND "
                "q.version = w.version AND q.abi_tag = w.abi_tag)",
                {"p": package, "v": version})
    return cur.fetchone()[0]


def _stale_queue_rows(cur, package: str | None = None, version: str | None = None) -> int:
    cur.execute("SELECT count(*) FROM queue q WHERE q.build_id IS NULL AND "
                "(%(p)s::text IS NULL OR q.package = %(p)s) AND (%(v)s::text IS NULL OR "
                "q.version = %(v)s) AND NOT EXISTS (SELECT 1 FROM wanted_builds w WHERE "
                "w.package = q.package AND w.version = q.version AND w.abi_tag = q.abi_tag)",
                {"p": package, "v": version})
    return cur.fetchone()[0]


def refresh(dsn: str, check: bool = False) -> dict[str, Any]:
    """Bring the queue in line with the rules; changed if rows were added or dropped."""
    conn = _connect(dsn, autocommit=False)
    try:
        db.check_schema(conn)
        with conn.cursor() as cur:
            added, dropped = _missing_queue_rows(cur), _stale_queue_rows(cur)
            if not check and (added or dropped):
                cur.execute("SELECT refresh_queue()")
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


def _abi_row(cur, abi: str) -> None:
    cur.execute("SELECT 1 FROM abis WHERE abi_tag = %s", (abi,))
    if cur.fetchone() is None:
        raise AdminError(f"queue: unknown ABI {abi!r}; a builder registers it")


def _canonical_version(version: str | None) -> str | None:
    if version is None:
        return None
    from packaging.version import InvalidVersion, Version

    try:
        return str(Version(version))
    except InvalidVersion:
        return version


def skip(dsn: str, package: str, version: str | None = None, abi: str | None = None,
         note: str | None = None, state: str = "present", check: bool = False) -> dict[str, Any]:
    """Skip (or, with state=absent, unskip) a package, a version, or a version on one ABI."""
    from ..names import normalize

    pkg, ver = normalize(package), _canonical_version(version)
    if abi and ver is None:
        raise AdminError("queue: skipping for one ABI needs a version")
    conn = _connect(dsn, autocommit=False)
    changed = False
    try:
        db.check_schema(conn)
        with conn.cursor() as cur:
            _version_row(cur, pkg, ver)
            if abi:
                _abi_row(cur, abi)
                cur.execute("SELECT reason FROM abi_skips WHERE package = %s AND version = %s "
                            "AND abi_tag = %s", (pkg, ver, abi))
                row = cur.fetchone()
                if state == "present" and row is None:
                    changed = True
                    cur.execute("INSERT INTO abi_skips (package, version, abi_tag, reason, note)"
                                " VALUES (%s, %s, %s, 'admin', %s)", (pkg, ver, abi, note))
                elif state == "absent" and row is not None:
                    changed = True
                    cur.execute("DELETE FROM abi_skips WHERE package = %s AND version = %s AND "
                                "abi_tag = %s", (pkg, ver, abi))
            elif ver is not None:
                cur.execute("SELECT skip_reason FROM versions WHERE package = %s AND "
                            "version = %s", (pkg, ver))
                reason = cur.fetchone()[0]
                if state == "present" and reason is None:
                    changed = True
                    cur.execute("UPDATE versions SET skip_reason = 'admin', skip_note = %s "
                                "WHERE package = %s AND version = %s", (note, pkg, ver))
                elif state == "absent" and reason == SKIP_REASON:
                    changed = True
                    cur.execute("UPDATE versions SET skip_reason = NULL, skip_note = NULL "
                                "WHERE package = %s AND version = %s", (pkg, ver))
            else:
                cur.execute("SELECT skip_reason FROM packages WHERE package = %s", (pkg,))
                reason = cur.fetchone()[0]
                if state == "present" and reason is None:
                    changed = True
                    cur.execute("UPDATE packages SET skip_reason = %s WHERE package = %s",
                                (note or SKIP_REASON, pkg))
                elif state == "absent" and reason is not None:
                    changed = True
                    cur.execute("UPDATE packages SET skip_reason = NULL WHERE package = %s",
                                (pkg,))
            if changed:
                cur.execute("SELECT refresh_queue(%s, %s)", (pkg, ver))
                cur.execute("INSERT INTO index_dirty (package) VALUES (%s) "
                            "ON CONFLICT (package) DO UPDATE SET since = EXCLUDED.since",
                            (pkg,))
        if check:
            conn.rollback()
        else:
            conn.commit()
    finally:
        conn.close()
    return {"changed": changed, "package": pkg, "version": ver, "abi": abi}


def requeue(dsn: str, package: str, version: str, abi: str | None = None, priority: int = 0,
            check: bool = False) -> dict[str, Any]:
    """An operator's rebuild: forget the failed attempts of a version (on one ABI or all),
    lift an admin or too-many-failures skip, and queue it again.

    A version that has a wheel for that ABI is not rebuilt (the store never
    replaces a published file); the history of the forgotten attempts goes.
    """
    from ..names import normalize

    pkg, ver = normalize(package), _canonical_version(version)
    conn = _connect(dsn, autocommit=False)
    forgotten = 0
    try:
        db.check_schema(conn)
        with conn.cursor() as cur:
            _version_row(cur, pkg, ver)
            if abi:
                _abi_row(cur, abi)
            cur.execute("DELETE FROM builds b WHERE b.package = %(p)s AND b.version = %(v)s "
                        "AND (%(a)s::text IS NULL OR b.abi_tag = %(a)s) "
                        "AND b.status NOT IN ('success', 'building') "
                        "AND NOT EXISTS (SELECT 1 FROM files f WHERE f.build_id = b.build_id)",
                        {"p": pkg, "v": ver, "a": abi})
            forgotten = cur.rowcount
            cur.execute("DELETE FROM abi_skips WHERE package = %(p)s AND version = %(v)s "
                        "AND (%(a)s::text IS NULL OR abi_tag = %(a)s)",
                        {"p": pkg, "v": ver, "a": abi})
            forgotten += cur.rowcount
            cur.execute("UPDATE versions SET skip_reason = NULL, skip_note = NULL "
                        "WHERE package = %s AND version = %s "
                        "AND skip_reason IN ('admin', 'too-many-failures')", (pkg, ver))
            forgotten += cur.rowcount
            cur.execute("DELETE FROM queue WHERE package = %(p)s AND version = %(v)s "
                        "AND build_id IS NULL AND not_before > now() "
                        "AND (%(a)s::text IS NULL OR abi_tag = %(a)s)",
                        {"p": pkg, "v": ver, "a": abi})
            forgotten += cur.rowcount
            cur.execute("SELECT refresh_queue(%s, %s)", (pkg, ver))
            added = cur.fetchone()[0]
            reprioritised = 0
            if priority:
                cur.execute("UPDATE queue SET priority = %(pr)s WHERE package = %(p)s AND "
                            "version = %(v)s AND (%(a)s::text IS NULL OR abi_tag = %(a)s) AND "
                            "priority <> %(pr)s", {"p": pkg, "v": ver, "a": abi, "pr": priority})
                reprioritised = cur.rowcount
            cur.execute("SELECT abi_tag FROM queue WHERE package = %(p)s AND version = %(v)s "
                        "AND (%(a)s::text IS NULL OR abi_tag = %(a)s) ORDER BY abi_tag",
                        {"p": pkg, "v": ver, "a": abi})
            queued = [r[0] for r in cur.fetchall()]
            if forgotten:
                cur.execute("INSERT INTO index_dirty (package) VALUES (%s) "
                            "ON CONFLICT (package) DO UPDATE SET since = EXCLUDED.since",
                            (pkg,))
        if check:
            conn.rollback()
        else:
            conn.commit()
    finally:
        conn.close()
    changed = bool(forgotten or added or reprioritised)
    return {"changed": changed, "package": pkg, "version": ver, "forgotten": forgotten,
            "added": added, "queued": queued}

