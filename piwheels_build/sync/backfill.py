"""Requires-Python for versions synced before migration 0008: evaluated by the next runs.

Sync writes each version it writes with its sdist's Requires-Python and the mask of
Python minors it excludes. Versions already in the database when 0008 arrived have
neither (``python_excluded IS NULL``, read as "no constraint"); a run walks them
after its project phase, BATCH at a time, each batch one transaction: read the
sdists' specifiers (an index walk of ``versions_python_pending``), compute the masks
here (SQL cannot parse PEP 440), write them with ``fill_requires_python``, which
refreshes the queue of the versions that now exclude an active ABI. A run
interrupted keeps every batch it committed; the next one goes on from there.
"""

from __future__ import annotations

import time

import psycopg2.extensions

from .. import requirespython
from ..db import writes
from .summary import Progress, SyncInterrupted, SyncSummary

BATCH = 5000                  # versions per transaction

Connection = psycopg2.extensions.connection

# The sdist claim_build would pick (a .tar.gz first, then by name), through
# upstream_files_version; none for a version without one.
Q_PENDING = """
SELECT v.package, v.version,
       (SELECT f.requires_python FROM upstream_files f
        WHERE f.package = v.package AND f.version = v.version AND f.kind = 'sdist'
        ORDER BY (f.filename LIKE '%%.tar.gz') DESC, f.filename LIMIT 1)
FROM versions v
WHERE v.python_excluded IS NULL AND (v.package, v.version) > (%s, %s)
ORDER BY v.package, v.version
LIMIT %s
"""


def pending(conn: Connection) -> int:
    """Versions whose Requires-Python is not evaluated yet (0 once filled)."""
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM versions WHERE python_excluded IS NULL")
        n = cur.fetchone()[0]
    conn.rollback()   # a read: nothing to commit
    return n


def fill(conn: Connection, summary: SyncSummary, report: Progress,
         batch: int = BATCH) -> int:
    """Evaluate every pending version, ``batch`` per transaction, with progress lines
    (stage ``requires-python``); the versions written. Counts invalid specifiers (which
    exclude nothing) in ``summary.invalid_requires_python``."""
    total = pending(conn)
    if not total:
        return 0
    done, started = 0, time.monotonic()
    after = ("", "")

    def line() -> str:
        rate = done / max(time.monotonic() - started, 1e-6)
        return (f"sync: Requires-Python of versions synced before migration 0008: "
                f"{done:,}/{total:,} evaluated, {rate:,.0f}/s")

    report.say(line(), "requires-python", done, total)
    try:
        while True:
            done, after = _one_batch(conn, summary, after, batch, done)
            if after is None:
                break
            if report.due():
                report.say(line(), "requires-python", done, total)
    except KeyboardInterrupt:
        if not conn.closed:
            conn.rollback()
        raise SyncInterrupted(summary) from None
    report.say(line(), "requires-python", done, total)
    return summary.requires_python_filled


def _one_batch(conn: Connection, summary: SyncSummary, after: tuple[str, str], batch: int,
               done: int) -> tuple[int, tuple[str, str] | None]:
    """One transaction: the next ``batch`` pending versions after ``after``, evaluated and
    written. (versions walked so far, the last key; None when none were left)."""
    with conn.cursor() as cur:
        cur.execute(Q_PENDING, (*after, batch))
        rows = cur.fetchall()
        if not rows:
            conn.commit()
            return done, None
        out = []
        for package, version, spec in rows:
            spec = spec.strip() or None if spec else None
            if not requirespython.is_valid(spec):
                summary.invalid_requires_python += 1
            out.append((package, version, spec, requirespython.excluded_mask(spec)))
        summary.requires_python_filled += writes.fill_requires_python(cur, out)
    conn.commit()
    return done + len(rows), rows[-1][:2]
