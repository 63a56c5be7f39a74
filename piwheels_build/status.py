"""What the farm is doing: a handful of aggregate queries, text or JSON."""

from __future__ import annotations

from typing import Any

_QUERIES = {
    "packages": "SELECT count(*), count(*) FILTER (WHERE deleted),"
                " count(*) FILTER (WHERE needs_sync) FROM packages",
    "versions": "SELECT count(*), count(*) FILTER (WHERE skip_reason IS NOT NULL) FROM versions",
    "skips": "SELECT skip_reason, count(*) FROM versions WHERE skip_reason IS NOT NULL"
             " GROUP BY 1 ORDER BY 1",
    "queue": "SELECT a.abi_tag, count(*) FILTER (WHERE q.package IS NOT NULL AND q.build_id IS NULL"
             "   AND (q.not_before IS NULL OR q.not_before <= now())),"
             " count(*) FILTER (WHERE q.build_id IS NOT NULL),"
             " count(*) FILTER (WHERE q.package IS NOT NULL AND q.build_id IS NULL"
             "   AND q.not_before > now())"
             " FROM abis a LEFT JOIN queue q USING (abi_tag) WHERE a.active"
             " GROUP BY a.abi_tag ORDER BY a.abi_tag",
    "builds": "SELECT status, count(*), coalesce(sum(duration), 0) FROM builds"
              " GROUP BY 1 ORDER BY 1",
    "files": "SELECT count(*), coalesce(sum(size) FILTER (WHERE alias_of IS NULL), 0) FROM files",
    "builders": "SELECT b.name, b.abi_tag, b.platform_tag, b.last_seen,"
                " count(x.build_id), count(x.build_id) FILTER (WHERE x.status = 'success')"
                " FROM builders b LEFT JOIN builds x USING (builder_id)"
                " GROUP BY b.builder_id ORDER BY b.name, b.abi_tag",
    "dirty": "SELECT count(*) FROM index_dirty",
}


def collect(conn) -> dict[str, Any]:
    """The farm's state as plain data (for `piwheels status --json`)."""
    out: dict[str, Any] = {}
    with conn.cursor() as cur:
        rows = {}
        for key, sql in _QUERIES.items():
            cur.execute(sql)
            rows[key] = cur.fetchall()
    conn.rollback()
    total, deleted, pending = rows["packages"][0]
    out["packages"] = {"total": total, "deleted": deleted, "needs_sync": pending}
    out["versions"] = {"total": rows["versions"][0][0], "skipped": rows["versions"][0][1],
                       "skip_reasons": {r: n for r, n in rows["skips"]}}
    out["queue"] = {abi: {"ready": r, "building": b, "waiting_retry": w}
                    for abi, r, b, w in rows["queue"] if abi}
    out["builds"] = {s: {"count": n, "seconds": round(float(t), 1)} for s, n, t in rows["builds"]}
    out["files"] = {"count": rows["files"][0][0], "bytes": int(rows["files"][0][1])}
    out["builders"] = [
        {"name": n, "abi": a, "platform": p, "last_seen": ls.isoformat(), "builds": c,
         "successes": ok}
        for n, a, p, ls, c, ok in rows["builders"]
    ]
    out["index_dirty"] = rows["dirty"][0][0]
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
        "queue:    " + (", ".join(f"{abi} {q['ready']:,} ready/{q['building']} building"
                                  f"/{q['waiting_retry']} retrying"
                                  for abi, q in s["queue"].items()) or "no active ABI yet"),
        f"index:    {s['index_dirty']:,} packages waiting to be written",
    ]
    for b in s["builders"]:
        lines.append(f"builder:  {b['name']} {b['abi']} {b['platform']}: {b['builds']:,} builds,"
                     f" {b['successes']:,} ok, last seen {b['last_seen'][:19]}")
    return "\n".join(lines)
