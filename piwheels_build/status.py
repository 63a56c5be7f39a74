"""What the farm is doing: its numbers, counted in one place (``farm_stats``, migration
0006) for `piwheels status`, the Ansible queue facts and the stats page."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg2
import psycopg2.errors

from . import queue
from .diskspace import human


def farm_stats(cur: Any, detail: bool = True) -> dict[str, Any]:
    """The farm's numbers as ``farm_stats`` returns them, with times as datetimes.

    ``detail`` adds the counts that sort whole tables (versions attempted and
    built, packages with files); without it they are 0.
    """
    cur.execute("SELECT farm_stats(%s)", (detail,))
    stats = cur.fetchone()[0]
    for b in stats["builders"]:
        b["last_seen"] = datetime.fromisoformat(b["last_seen"])
    return stats


def expire_leases(conn) -> int:
    """Builds whose lease ran out (their builder died) marked ``abandoned`` first,
    so a dead build never counts as building (migration 0007). A role that may
    not (``piwheels_web``) just counts; the next claim or index run sweeps them.
    Commits (or rolls back) on ``conn``; the number of builds released."""
    try:
        released = queue.expire_leases(conn)
    except psycopg2.errors.InsufficientPrivilege:
        conn.rollback()
        return 0
    conn.commit()
    return len(released)


def collect(conn) -> dict[str, Any]:
    """The farm's state as plain data (for `piwheels status --json`)."""
    expire_leases(conn)
    with conn.cursor() as cur:
        s = farm_stats(cur, detail=False)
    conn.rollback()
    versions = s["versions"]
    skips = {v["skip_reason"]: v["count"] for v in versions if v["skip_reason"] is not None}
    return {
        "packages": {k: s["packages"][k] for k in ("total", "deleted", "needs_sync")},
        "versions": {"total": sum(v["count"] for v in versions),
                     "skipped": sum(skips.values()), "skip_reasons": skips},
        # Per active build target (ABI-platform), ordered numerically (farm_stats).
        "queue": {q["target"]: {"ready": q["ready"], "building": q["building"],
                                "waiting_retry": q["waiting_retry"]}
                  for q in s["queue"] if q["active"]},
        "builds": {b["status"]: {"count": b["count"], "seconds": round(float(b["seconds"]), 1)}
                   for b in s["builds"]},
        "files": {"count": s["files"]["count"], "bytes": int(s["files"]["bytes"])},
        "builders": [
            {"name": b["name"], "target": b["target"], "abi": b["abi"],
             "platform": b["platform"],
             "last_seen": b["last_seen"].isoformat(), "builds": b["builds"],
             "successes": b["successes"]}
            for b in s["builders"]
        ],
        # Versions whose Requires-Python rules an active target out (never queued for it, not
        # failures; builds that found it in the sdist count as 'not-for-python' in builds),
        # and versions not evaluated yet (migration 0008: the next sync run fills them).
        "not_for_python": {r["target"]: r["versions"] for r in s.get("not_for_python", [])},
        "requires_python_pending": s.get("requires_python_pending", 0),
        "index_dirty": s["index_dirty"],
    }


def _python_lines(s: dict[str, Any]) -> list[str]:
    """What Requires-Python keeps off the queue: apart from failures, none when nothing."""
    excluded = {t: n for t, n in s.get("not_for_python", {}).items() if n}
    pending = s.get("requires_python_pending", 0)
    out = []
    if excluded:
        out.append("python:   not for their Python (Requires-Python, not queued): "
                    + ", ".join(f"{t} {n:,} versions" for t, n in excluded.items()))
    if pending:
        out.append(f"python:   {pending:,} versions' Requires-Python not evaluated yet "
                   "(the next sync run does it)")
    return out


def render(s: dict[str, Any]) -> str:
    """The same, for people."""
    p, v = s["packages"], s["versions"]
    lines = [
        f"packages: {p['total']:,} ({p['deleted']:,} deleted, {p['needs_sync']:,} to sync)",
        f"versions: {v['total']:,} ({v['skipped']:,} skipped"
        + "".join(f", {n:,} {r}" for r, n in v["skip_reasons"].items()) + ")",
        f"files:    {s['files']['count']:,} ({s['files']['bytes'] / 1e6:,.1f} MB)",
        "builds:   " + (", ".join(f"{d['count']:,} {st}" for st, d in s["builds"].items())
                        or "none yet"),
        "queue:    " + (", ".join(f"{t} {q['ready']:,} ready/{q['building']} building"
                                  f"/{q['waiting_retry']} retrying"
                                  for t, q in s["queue"].items())
                        or "no active build target yet"),
        f"index:    {s['index_dirty']:,} packages waiting to be written",
    ]
    lines[4:4] = _python_lines(s)
    if "store" in s:  # the master's www/ (diskspace.status, added by the CLI)
        st = s["store"]
        if st["free_bytes"] is not None:
            lines.append(f"store:    {human(st['free_bytes'])} free of {human(st['total_bytes'])}"
                         f" on {st['path']}")
        if st["warning"]:
            lines.append(f"warning:  {st['warning']}")
    for b in s["builders"]:
        lines.append(f"builder:  {b['name']} {b['target']}: {b['builds']:,} builds,"
                     f" {b['successes']:,} ok, last seen {b['last_seen'][:19]}")
    return "\n".join(lines)
