"""What the index shows, read from the database: a batch of packages with one
query per table, a project page's data as plain JSON-able dicts, the farm's statistics."""

from __future__ import annotations

import zlib
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from packaging.version import InvalidVersion, Version

from ..downloads.stats import farm_downloads, file_counts, project_counts
from ..names import abi_version
from ..requirespython import excludes, is_valid
from ..status import farm_stats

BATCH = 1000


LOG_LIMIT = 64 << 20  # bytes of a decompressed log we publish at most


FAILED = ("failed", "timeout", "out-of-memory", "missing-build-dependency", "infrastructure")


def version_key(version: str) -> tuple:
    """PEP 440 order; versions PEP 440 rejects sort first, as text."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def iso_time(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def gunzip_capped(data: bytes, limit: int = LOG_LIMIT) -> bytes:
    """A stored log, decompressed with a cap (the builder is not trusted with our disk)."""
    d = zlib.decompressobj(wbits=47)  # gzip or zlib header
    try:
        out = d.decompress(data, limit)
    except zlib.error:
        return data[:limit]
    if d.unconsumed_tail:
        out += f"\n[piwheels: log cut at {limit} bytes]\n".encode()
    return out


def _covers(f: Any, target: Any) -> bool:
    """Whether a wheel installs on a build target (a ``targets`` row): a pure wheel on
    every one; else only on the target's platform, for its own ABI, or as abi3 built
    for cp3X on cp3Y >= cp3X (migration 0010's rules)."""
    if f.abi_tag == "none":
        return True
    if target.platform_tag not in f.platform_tag.split("."):
        return False
    if f.abi_tag == target.abi_tag:
        return True
    if f.abi_tag == "abi3":
        built = abi_version(f.python_tag)
        return built is not None and built <= (target.py_major, target.py_minor)
    return False


Q_FULL_BATCH = """
SELECT p.package FROM packages p
WHERE p.package > %s AND EXISTS (SELECT 1 FROM files f WHERE f.package = p.package)
ORDER BY p.package LIMIT %s
"""


Q_BATCH = {
    "packages": "SELECT package, display_name, skip_reason, deleted FROM packages"
                " WHERE package = ANY(%s)",
    "versions": "SELECT package, version, released, yanked, yanked_reason, prerelease, deleted,"
                " skip_reason, skip_note, requires_python, python_excluded FROM versions"
                " WHERE package = ANY(%s)",
    "builds": "SELECT b.build_id, b.package, b.version, b.target, b.status, b.started_at,"
              " b.finished_at, b.duration, bu.name AS builder,"
              " EXISTS (SELECT 1 FROM build_logs l WHERE l.build_id = b.build_id) AS has_log"
              " FROM builds b JOIN builders bu ON bu.builder_id = b.builder_id"
              " WHERE b.package = ANY(%s) ORDER BY b.build_id",
    "files": "SELECT filename, build_id, package, version, python_tag, abi_tag, platform_tag,"
             " size, sha256, requires_python, metadata_sha256, alias_of, alias_note,"
             " created_at"
             " FROM files WHERE package = ANY(%s) ORDER BY package, filename",
    "deps": "SELECT d.filename, d.tool, d.dependency FROM dependencies d"
            " JOIN files f ON f.filename = d.filename WHERE f.package = ANY(%s)"
            " ORDER BY d.filename, d.tool, d.dependency",
    "queue": "SELECT package, version, target, attempts, build_id, not_before FROM queue"
             " WHERE package = ANY(%s)",
    "skips": "SELECT package, version, target, reason, note FROM target_skips"
             " WHERE package = ANY(%s)",
}


Q_LISTED = """
SELECT p.package FROM packages p
WHERE NOT p.deleted AND EXISTS (
    SELECT 1 FROM files f JOIN versions v ON v.package = f.package AND v.version = f.version
    WHERE f.package = p.package AND NOT v.deleted)
ORDER BY p.package
"""


Q_UNLISTED = """
SELECT n.name FROM unnest(%s::text[]) AS n(name)
WHERE NOT EXISTS (
    SELECT 1 FROM files f
    JOIN versions v ON v.package = f.package AND v.version = f.version
    JOIN packages p ON p.package = f.package
    WHERE f.package = n.name AND NOT v.deleted AND NOT p.deleted)
"""


Q_UNKNOWN = """
SELECT n.name FROM unnest(%s::text[]) AS n(name)
WHERE NOT EXISTS (SELECT 1 FROM packages p WHERE p.package = n.name)
"""


class Batch:
    """Everything the pages of a batch of packages need, fetched with one query per table."""

    def __init__(self, cur: Any, packages: list[str]) -> None:
        rows = {}
        for key, sql in Q_BATCH.items():
            cur.execute(sql, (packages,))
            rows[key] = cur.fetchall()
        self.packages = {r.package: r for r in rows["packages"]}
        self.versions = group_by(rows["versions"], "package")
        self.builds = group_by(rows["builds"], "package")
        self.files = group_by(rows["files"], "package")
        self.deps: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for r in rows["deps"]:
            self.deps[r.filename][r.tool].append(r.dependency)
        self.queue = {(r.package, r.version, r.target): r for r in rows["queue"]}
        self.skips = {(r.package, r.version, r.target): r for r in rows["skips"]}
        self.downloads = project_counts(cur, packages)
        self.file_downloads = file_counts(cur, packages)

    def listed_files(self, package: str) -> list[Any]:
        """Files the simple index links: not of a deleted package or version."""
        info = self.packages.get(package)
        if info is None or info.deleted:
            return []
        versions = {v.version: v for v in self.versions.get(package, [])}
        out = [f for f in self.files.get(package, [])
               if f.version in versions and not versions[f.version].deleted]
        return sorted(out, key=lambda f: (version_key(f.version), f.filename))

    def building(self) -> list[str]:
        """Packages with a build in flight: its finish may not be visible to us yet."""
        return sorted({b.package for rows in self.builds.values() for b in rows
                       if b.status == "building"})


def group_by(rows: Iterable[Any], attr: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        out[getattr(r, attr)].append(r)
    return out


def _file_entry(f: Any, batch: Batch, builds: dict[int, Any]) -> dict[str, Any]:
    b = builds.get(f.build_id)
    deps = batch.deps.get(f.filename, {})
    return {
        "filename": f.filename,
        "url": f"../../simple/{quote(f.package)}/{quote(f.filename)}",
        "sha256": f.sha256,
        "size": f.size,
        "python_tag": f.python_tag,
        "abi_tag": f.abi_tag,
        "platform_tag": f.platform_tag,
        "requires_python": f.requires_python,
        "alias_of": f.alias_of,
        "alias_note": f.alias_note,  # why it has no alias (an armv7l wheel with v7 code)
        "uploaded": iso_time(f.created_at),
        "build_id": f.build_id,
        "builder": b.builder if b else None,
        "duration": b.duration if b else None,
        "downloads": batch.file_downloads.get(f.filename, 0),
        "dependencies": {tool: list(deps.get(tool, [])) for tool in ("apt", "pip", "lib")},
    }


def _build_entry(b: Any | None) -> dict[str, Any] | None:
    if b is None:
        return None
    return {"build_id": b.build_id, "status": b.status, "builder": b.builder,
            "duration": b.duration, "started": iso_time(b.started_at),
            "finished": iso_time(b.finished_at),
            "log": f"../../logs/{b.build_id}.txt" if b.has_log else None}


def _target_cell(package: str, version: str, target: Any, files: list[Any],
                 builds: list[Any], batch: Batch, skip: str | None,
                 requires_python: tuple[str | None, int | None] = (None, None)
                 ) -> dict[str, Any]:
    """Status of one version on one build target (a ``targets`` row): built, building,
    queued, skipped, failed, ..., or not-for-python (its sdist's ``requires_python``
    (specifier, mask) rules the target's Python out: never queued, no failure; or a
    build found it in the sdist's PKG-INFO)."""
    key = (package, version, target.target)
    pyver = (target.py_major, target.py_minor)
    covering = [f.filename for f in files if _covers(f, target)]
    finished = [b for b in builds if b.status not in ("building", "abandoned")]
    last = finished[-1] if finished else (builds[-1] if builds else None)
    q, s = batch.queue.get(key), batch.skips.get(key)
    note = None
    spec, mask = requires_python
    python = f"{pyver[0]}.{pyver[1]}"
    own = any(f.abi_tag == target.abi_tag and target.platform_tag in f.platform_tag.split(".")
              for f in files)
    if excludes(mask, *pyver) and q is None and not own:
        # A pure or abi3 wheel "covers" it by its tags, but pip on this Python skips it.
        status, note = "not-for-python", f"Requires-Python {spec}"
    elif last is not None and last.status == "not-for-python" and q is None and not own:
        status, note = "not-for-python", "its sdist's PKG-INFO: see the log"
    elif covering:
        status = "built"
    elif q is not None and q.build_id is not None:
        status = "building"
    elif q is not None:
        status = "queued"
        if q.attempts:
            note = f"retry {q.attempts}" + (f" after {iso_time(q.not_before)}" if q.not_before
                                            else "")
        elif last is not None and last.status == "abandoned":
            note = "the last build was abandoned: its builder stopped renewing the lease"
    elif s is not None:
        status, note = "skipped", s.reason + (f": {s.note}" if s.note else "")
    elif last is not None and last.status != "abandoned":
        status = last.status
    elif skip:
        status, note = "skipped", skip
    else:
        status = "pending"
    return {"target": target.target, "abi": target.abi_tag, "platform": target.platform_tag,
            "python": python, "status": status, "note": note, "files": covering,
            "build": _build_entry(last)}


def project_data(package: str, batch: Batch, targets: list[Any]) -> dict[str, Any]:
    """Everything the project page shows, as plain data (also published as JSON)."""
    info = batch.packages[package]
    builds = batch.builds.get(package, [])
    by_id = {b.build_id: b for b in builds}
    builds_of = group_by(builds, "version")
    files_of = group_by(batch.files.get(package, []), "version")
    versions = sorted(batch.versions.get(package, []), key=lambda v: version_key(v.version),
                      reverse=True)
    out = []
    for v in versions:
        vfiles = files_of.get(v.version, [])
        skip = info.skip_reason or v.skip_reason
        if skip and v.skip_note and not info.skip_reason:
            skip = f"{skip}: {v.skip_note}"
        per_target = group_by(builds_of.get(v.version, []), "target")
        cells = [_target_cell(package, v.version, t, vfiles, per_target.get(t.target, []),
                              batch, skip, (v.requires_python, v.python_excluded))
                 for t in targets]
        for cell in cells:
            if cell["build"] is None and cell["files"]:  # covered by another target's wheel
                f = next(f for f in vfiles if f.filename == cell["files"][0])
                cell["build"] = _build_entry(by_id.get(f.build_id))
        out.append({
            "version": v.version, "released": iso_time(v.released), "prerelease": v.prerelease,
            "yanked": v.yanked, "yanked_reason": v.yanked_reason, "deleted": v.deleted,
            "skip_reason": v.skip_reason, "skip_note": v.skip_note,
            "requires_python": v.requires_python,
            "requires_python_invalid": not is_valid(v.requires_python), "targets": cells,
            "files": [_file_entry(f, batch, by_id) for f in vfiles],
        })
    return {"name": package, "display_name": info.display_name,
            "skip_reason": info.skip_reason, "deleted": info.deleted,
            "targets": [t.target for t in targets], "versions": out,
            # counted from the access logs (downloads/); refreshed daily on the page
            "downloads": batch.downloads.get(package, {"last_30_days": 0, "all_time": 0})}


def collect_stats(cur: Any) -> dict[str, Any]:
    """The farm's numbers for the stats page (``status.farm_stats``, with the details)."""
    s = farm_stats(cur, detail=True)
    files = s["files"]
    attempted, built = s["attempted"], files["versions"]
    by_status = {b["status"]: b["count"] for b in s["builds"]}
    not_for = {r["target"]: r["versions"] for r in s.get("not_for_python", [])}
    per_target = {r["target"]: r for r in s.get("targets", [])}
    return {
        "generated": iso_time(datetime.now(UTC)),
        "packages": {"known": s["packages"]["total"], "with_files": files["packages"]},
        "versions": {"known": sum(v["count"] for v in s["versions"]), "attempted": attempted,
                     "built": built,
                     "success_rate": round(built / attempted, 4) if attempted else None},
        "builds": {"total": sum(by_status.values()), "by_status": by_status,
                   "build_time": round(sum(float(b["seconds"]) for b in s["builds"]), 1)},
        "files": {"count": files["count"], "wheels": files["wheels"],
                  "aliases": files["count"] - files["wheels"], "disk_used": int(files["bytes"])},
        "builders": [
            {"name": b["name"], "target": b["target"], "abi": b["abi"],
             "platform": b["platform"],
             "last_seen": iso_time(b["last_seen"]), "builds": b["builds"],
             "successes": b["successes"], "build_time": round(float(b["seconds"]), 1)}
            for b in s["builders"]
        ],
        # Per build target, ordered numerically; not_for_python: versions whose
        # Requires-Python rules the target's Python out (never queued); attempted and
        # built: versions with a final build on the target, and with a wheel from it.
        "queue": [{"target": q["target"], "abi": q["abi"], "platform": q["platform"],
                   "active": q["active"], "queued": q["queued"],
                   "building": q["building"], "waiting_retry": q["waiting_retry"],
                   "not_for_python": not_for.get(q["target"], 0),
                   "attempted": per_target.get(q["target"], {}).get("attempted", 0),
                   "built": per_target.get(q["target"], {}).get("built", 0)}
                  for q in s["queue"]],
        "downloads": farm_downloads(cur),
    }
