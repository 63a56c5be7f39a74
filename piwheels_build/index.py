"""The static index, written from the database only.

``www/simple/`` is a PEP 503 / PEP 691 index (HTML and JSON side by side, for
nginx or ``piwheels serve`` to pick by ``Accept``), ``www/project/`` has a page
per package for people, ``www/logs/`` the build logs and ``www/stats.*`` the
farm's numbers. Every file is written under a temporary name and renamed into
place. File URLs are relative, so the tree can be served from anywhere.

Incremental runs write the packages in ``index_dirty``; ``full`` rewrites every
package with files. Work goes in batches of packages, each batch one
transaction with one query per table, so memory stays bounded at PyPI's size.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import time
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg2.extras
from packaging.version import InvalidVersion, Version

from .names import abi_version
from .store import fsync_dir

BATCH = 1000
LOG_LIMIT = 64 << 20  # bytes of a decompressed log we publish at most
API_VERSION = "1.1"
ROOT_STALE = ".root-stale"  # marker: the set of packages changed, the root is not written yet
FAILED = ("failed", "timeout", "out-of-memory", "missing-build-dependency", "infrastructure")

Progress = Callable[[str], None]


@dataclass
class IndexSummary:
    """What one run of the index writer did.

    packages_written counts simple-index pages (what pip sees); project pages
    of packages without files are counted in projects_written only.
    """

    packages_written: int = 0
    files_linked: int = 0
    root_written: bool = False
    elapsed: float = 0.0
    packages_removed: int = 0
    projects_written: int = 0
    logs_written: int = 0
    stats_written: bool = False

    def __str__(self) -> str:
        root = "root rewritten" if self.root_written else "root unchanged"
        stats = ", stats written" if self.stats_written else ""
        return (f"index: {self.packages_written:,} packages written, "
                f"{self.files_linked:,} files linked, {self.packages_removed:,} removed, "
                f"{self.projects_written:,} project pages, {self.logs_written:,} logs, "
                f"{root}{stats} in {self.elapsed:.1f}s")


# --------------------------------------------------------------------------- files


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{secrets.token_hex(6)}")


@contextlib.contextmanager
def _atomic(path: Path, mode: str = "wb") -> Iterator[Any]:
    """A file that appears at path complete or not at all."""
    tmp = _temp_path(path)
    enc = None if "b" in mode else "utf-8"
    try:
        try:
            f = open(tmp, mode, encoding=enc)
        except FileNotFoundError:  # first page of a package: make its directory
            path.parent.mkdir(parents=True, exist_ok=True)
            f = open(tmp, mode, encoding=enc)
        with f:
            yield f
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _write(path: Path, data: bytes) -> None:
    with _atomic(path) as f:
        f.write(data)


def _write_if_changed(path: Path, data: bytes) -> None:
    """For the few fixed files: leave them (and their mtime) alone when unchanged."""
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            return
    _write(path, data)


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


FSYNC_LIMIT = 64  # a batch touching more paths than this is flushed with one syncfs


def _fsync_paths(paths: Iterable[Path]) -> None:
    """fsync each file, then each directory holding one (so renames and unlinks last)."""
    dirs = set()
    for path in paths:
        dirs.add(path.parent)
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    for d in dirs:
        fsync_dir(d)


def _sync_filesystem(path: Path) -> None:
    """Flush a big batch's pages before the database forgets they were dirty.

    One syncfs instead of an fsync per page: a full run writes millions of
    pages, and a crash before the commit just rewrites the batch. Small
    batches (every incremental run) fsync their own files instead: syncfs
    also waits for everyone else's writes, PostgreSQL's included.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fd = os.open(path, os.O_RDONLY)
        try:
            libc.syncfs(fd)
        finally:
            os.close(fd)
    except (OSError, AttributeError):
        os.sync()


def _json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


# --------------------------------------------------------------------------- helpers


def version_key(version: str) -> tuple:
    """PEP 440 order; versions PEP 440 rejects sort first, as text."""
    try:
        return (1, Version(version))
    except InvalidVersion:
        return (0, version)


def _iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _human_size(n: int | None) -> str:
    size = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def _human_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def _gunzip(data: bytes, limit: int = LOG_LIMIT) -> bytes:
    """A stored log, decompressed with a cap (the builder is not trusted with our disk)."""
    d = zlib.decompressobj(wbits=47)  # gzip or zlib header
    try:
        out = d.decompress(data, limit)
    except zlib.error:
        return data[:limit]
    if d.unconsumed_tail:
        out += f"\n[piwheels: log cut at {limit} bytes]\n".encode()
    return out


def _covers(f: Any, abi_tag: str, pyver: tuple[int, int]) -> bool:
    """Whether a wheel installs on an ABI: its own, any for 'none', cp3Y >= cp3X for abi3."""
    if f.abi_tag in (abi_tag, "none"):
        return True
    if f.abi_tag == "abi3":
        built = abi_version(f.python_tag)
        return built is not None and built <= pyver
    return False


# --------------------------------------------------------------------------- queries

Q_FULL_BATCH = """
SELECT p.package FROM packages p
WHERE p.package > %s AND EXISTS (SELECT 1 FROM files f WHERE f.package = p.package)
ORDER BY p.package LIMIT %s
"""
# Taking the rows (DELETE locks them) in the batch's transaction: a finish_build
# that upserts the same row waits for our commit and marks the package again.
Q_DIRTY_BATCH = """
DELETE FROM index_dirty WHERE package IN (
    SELECT package FROM index_dirty WHERE since <= %s
    ORDER BY package LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING package
"""
Q_REDIRTY = """
INSERT INTO index_dirty (package, since) SELECT unnest(%s::text[]), clock_timestamp()
ON CONFLICT DO NOTHING
"""
Q_BATCH = {
    "packages": "SELECT package, display_name, skip_reason, deleted FROM packages"
                " WHERE package = ANY(%s)",
    "versions": "SELECT package, version, released, yanked, yanked_reason, prerelease, deleted,"
                " skip_reason, skip_note FROM versions WHERE package = ANY(%s)",
    "builds": "SELECT b.build_id, b.package, b.version, b.abi_tag, b.status, b.started_at,"
              " b.finished_at, b.duration, bu.name AS builder,"
              " EXISTS (SELECT 1 FROM build_logs l WHERE l.build_id = b.build_id) AS has_log"
              " FROM builds b JOIN builders bu ON bu.builder_id = b.builder_id"
              " WHERE b.package = ANY(%s) ORDER BY b.build_id",
    "files": "SELECT filename, build_id, package, version, python_tag, abi_tag, platform_tag,"
             " size, sha256, requires_python, metadata_sha256, alias_of, created_at"
             " FROM files WHERE package = ANY(%s) ORDER BY package, filename",
    "deps": "SELECT d.filename, d.tool, d.dependency FROM dependencies d"
            " JOIN files f ON f.filename = d.filename WHERE f.package = ANY(%s)"
            " ORDER BY d.filename, d.tool, d.dependency",
    "queue": "SELECT package, version, abi_tag, attempts, build_id, not_before FROM queue"
             " WHERE package = ANY(%s)",
    "skips": "SELECT package, version, abi_tag, reason, note FROM abi_skips"
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
Q_STATS = {
    "counts": """
        SELECT (SELECT count(*) FROM packages),
               (SELECT count(*) FROM versions),
               (SELECT count(*) FROM (SELECT DISTINCT package, version FROM builds
                                      WHERE is_final_status(status)) a)""",
    "files": """
        SELECT count(*), count(*) FILTER (WHERE alias_of IS NULL),
               coalesce(sum(size) FILTER (WHERE alias_of IS NULL), 0),
               count(DISTINCT package), count(DISTINCT (package, version))
        FROM files""",
    "builds": """
        SELECT status, count(*), coalesce(sum(duration), 0) FROM builds
        GROUP BY status ORDER BY status""",
    "builders": """
        SELECT bu.name, bu.abi_tag, bu.platform_tag, bu.last_seen, count(b.build_id),
               count(b.build_id) FILTER (WHERE b.status = 'success'),
               coalesce(sum(b.duration), 0)
        FROM builders bu LEFT JOIN builds b ON b.builder_id = bu.builder_id
        GROUP BY bu.builder_id ORDER BY bu.name, bu.abi_tag""",
    "queue": """
        SELECT a.abi_tag, a.active, count(q.package),
               count(q.build_id),
               count(*) FILTER (WHERE q.build_id IS NULL AND q.not_before > now())
        FROM abis a LEFT JOIN queue q ON q.abi_tag = a.abi_tag
        GROUP BY a.abi_tag ORDER BY min(a.py_major), min(a.py_minor), a.abi_tag""",
}


class _Batch:
    """Everything the pages of a batch of packages need, fetched with one query per table."""

    def __init__(self, cur: Any, packages: list[str]) -> None:
        rows = {}
        for key, sql in Q_BATCH.items():
            cur.execute(sql, (packages,))
            rows[key] = cur.fetchall()
        self.packages = {r.package: r for r in rows["packages"]}
        self.versions = _group(rows["versions"], "package")
        self.builds = _group(rows["builds"], "package")
        self.files = _group(rows["files"], "package")
        self.deps: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
        for r in rows["deps"]:
            self.deps[r.filename][r.tool].append(r.dependency)
        self.queue = {(r.package, r.version, r.abi_tag): r for r in rows["queue"]}
        self.skips = {(r.package, r.version, r.abi_tag): r for r in rows["skips"]}

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


def _group(rows: Iterable[Any], attr: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = defaultdict(list)
    for r in rows:
        out[getattr(r, attr)].append(r)
    return out


# --------------------------------------------------------------------------- simple pages


def _page(title: str, body: str, *, css: str | None = None, head: str = "") -> str:
    link = f'<link rel="stylesheet" href="{escape(css)}">\n' if css else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n{head}'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"{link}<title>{escape(title)}</title>\n</head>\n<body>\n{body}</body>\n</html>\n")


_REPO_META = f'<meta name="pypi:repository-version" content="{API_VERSION}">\n'


def _yanked(version: Any) -> bool | str:
    """PEP 691 'yanked': false, true, or the reason."""
    if version is None or not version.yanked:
        return False
    return version.yanked_reason or True


def simple_html(package: str, files: list[Any], versions: dict[str, Any]) -> str:
    """The PEP 503 page of one project (PEP 592 yanks, PEP 658/714 metadata)."""
    links = []
    for f in files:
        attrs = [f'href="{escape(quote(f.filename))}#sha256={f.sha256}"']
        if f.requires_python:
            attrs.append(f'data-requires-python="{escape(f.requires_python)}"')
        yanked = _yanked(versions.get(f.version))
        if yanked is not False:
            attrs.append(f'data-yanked="{escape(yanked if isinstance(yanked, str) else "")}"')
        if f.metadata_sha256:
            attrs.append(f'data-core-metadata="sha256={escape(f.metadata_sha256)}"')
            attrs.append(f'data-dist-info-metadata="sha256={escape(f.metadata_sha256)}"')
        links.append(f'<a {" ".join(attrs)}>{escape(f.filename)}</a><br>\n')
    body = f"<h1>Links for {escape(package)}</h1>\n{''.join(links)}"
    return _page(f"Links for {package}", body, head=_REPO_META)


def simple_json(package: str, files: list[Any], versions: dict[str, Any]) -> dict[str, Any]:
    """The PEP 691 page of one project, with PEP 700 size, upload-time and versions."""
    out = []
    for f in files:
        meta = {"sha256": f.metadata_sha256} if f.metadata_sha256 else False
        out.append({
            "filename": f.filename,
            "url": quote(f.filename),
            "hashes": {"sha256": f.sha256},
            "requires-python": f.requires_python,
            "yanked": _yanked(versions.get(f.version)),
            # PEP 714: only the new key in JSON; pip 22.3-23.0 (Debian bookworm's pip)
            # fails hard on any "dist-info-metadata" in the JSON form.
            "core-metadata": meta,
            "size": f.size,
            "upload-time": _iso(f.created_at),
        })
    listed = sorted({f.version for f in files}, key=version_key)
    return {"meta": {"api-version": API_VERSION}, "name": package, "files": out,
            "versions": listed}


# --------------------------------------------------------------------------- project pages


def _file_entry(f: Any, batch: _Batch, builds: dict[int, Any]) -> dict[str, Any]:
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
        "uploaded": _iso(f.created_at),
        "build_id": f.build_id,
        "builder": b.builder if b else None,
        "duration": b.duration if b else None,
        "dependencies": {tool: list(deps.get(tool, [])) for tool in ("apt", "pip", "lib")},
    }


def _build_entry(b: Any | None) -> dict[str, Any] | None:
    if b is None:
        return None
    return {"build_id": b.build_id, "status": b.status, "builder": b.builder,
            "duration": b.duration, "started": _iso(b.started_at),
            "finished": _iso(b.finished_at),
            "log": f"../../logs/{b.build_id}.txt" if b.has_log else None}


def _abi_cell(key: tuple[str, str, str], pyver: tuple[int, int], files: list[Any],
              builds: list[Any], batch: _Batch, skip: str | None) -> dict[str, Any]:
    """Status of one version on one ABI: built, building, queued, skipped, failed, ..."""
    package, version, abi = key
    covering = [f.filename for f in files if _covers(f, abi, pyver)]
    finished = [b for b in builds if b.status not in ("building", "abandoned")]
    last = finished[-1] if finished else (builds[-1] if builds else None)
    q, s = batch.queue.get(key), batch.skips.get(key)
    note = None
    if covering:
        status = "built"
    elif q is not None and q.build_id is not None:
        status = "building"
    elif q is not None:
        status = "queued"
        if q.attempts:
            note = f"retry {q.attempts}" + (f" after {_iso(q.not_before)}" if q.not_before
                                            else "")
    elif s is not None:
        status, note = "skipped", s.reason + (f": {s.note}" if s.note else "")
    elif last is not None and last.status != "abandoned":
        status = last.status
    elif skip:
        status, note = "skipped", skip
    else:
        status = "pending"
    return {"abi": abi, "status": status, "note": note, "files": covering,
            "build": _build_entry(last)}


def project_data(package: str, batch: _Batch, abis: list[Any]) -> dict[str, Any]:
    """Everything the project page shows, as plain data (also published as JSON)."""
    info = batch.packages[package]
    builds = batch.builds.get(package, [])
    by_id = {b.build_id: b for b in builds}
    builds_of = _group(builds, "version")
    files_of = _group(batch.files.get(package, []), "version")
    versions = sorted(batch.versions.get(package, []), key=lambda v: version_key(v.version),
                      reverse=True)
    out = []
    for v in versions:
        vfiles = files_of.get(v.version, [])
        skip = info.skip_reason or v.skip_reason
        if skip and v.skip_note and not info.skip_reason:
            skip = f"{skip}: {v.skip_note}"
        per_abi = _group(builds_of.get(v.version, []), "abi_tag")
        cells = [_abi_cell((package, v.version, a.abi_tag), (a.py_major, a.py_minor), vfiles,
                           per_abi.get(a.abi_tag, []), batch, skip) for a in abis]
        for cell in cells:
            if cell["build"] is None and cell["files"]:  # covered by another ABI's wheel
                f = next(f for f in vfiles if f.filename == cell["files"][0])
                cell["build"] = _build_entry(by_id.get(f.build_id))
        out.append({
            "version": v.version, "released": _iso(v.released), "prerelease": v.prerelease,
            "yanked": v.yanked, "yanked_reason": v.yanked_reason, "deleted": v.deleted,
            "skip_reason": v.skip_reason, "skip_note": v.skip_note, "abis": cells,
            "files": [_file_entry(f, batch, by_id) for f in vfiles],
        })
    return {"name": package, "display_name": info.display_name,
            "skip_reason": info.skip_reason, "deleted": info.deleted,
            "abis": [a.abi_tag for a in abis], "versions": out}


def _nav(prefix: str) -> str:
    return (f'<nav><a href="{prefix}">piwheels</a> · <a href="{prefix}simple/">simple index</a>'
            f' · <a href="{prefix}stats.html">stats</a></nav>\n')


def _status_row(cell: dict[str, Any]) -> str:
    b = cell["build"] or {}
    status = escape(cell["status"])
    if cell["note"]:
        status += f' <span class="note">({escape(cell["note"])})</span>'
    log = f'<a href="{escape(b["log"])}">log</a>' if b.get("log") else ""
    cls = escape(cell["status"].replace(" ", "-"))
    return (f'<tr class="status-{cls}"><td>{escape(cell["abi"])}</td><td>{status}</td>'
            f'<td>{escape(b.get("builder") or "")}</td>'
            f'<td>{escape(_human_duration(b.get("duration")))}</td><td>{log}</td></tr>\n')


def _deps_html(deps: dict[str, list[str]]) -> str:
    parts = []
    if deps["apt"]:
        parts.append(f'<pre class="deps">apt install {escape(" ".join(deps["apt"]))}</pre>')
    if deps["pip"]:
        parts.append('<pre class="deps">' + escape("\n".join(deps["pip"])) + "</pre>")
    if deps["lib"]:
        parts.append(f'<p class="deps">libraries: {escape(", ".join(deps["lib"]))}</p>')
    return "".join(parts)


def _file_item(f: dict[str, Any]) -> str:
    alias = ""
    if f["alias_of"]:
        alias = f' <span class="note">(alias of {escape(f["alias_of"])})</span>'
    meta = [_human_size(f["size"])]
    if f["requires_python"]:
        meta.append(f"Requires-Python {f['requires_python']}")
    if f["builder"]:
        meta.append(f"built by {f['builder']} in {_human_duration(f['duration'])}")
    return (f'<li><a href="{escape(f["url"])}">{escape(f["filename"])}</a>{alias}'
            f' <span class="meta">{escape(", ".join(meta))}</span>'
            f'<br><code class="hash">sha256 {escape(f["sha256"])}</code>'
            f'{_deps_html(f["dependencies"])}</li>\n')


def _version_section(v: dict[str, Any]) -> str:
    badges = []
    if v["prerelease"]:
        badges.append("pre-release")
    if v["yanked"]:
        badges.append("yanked" + (f": {v['yanked_reason']}" if v["yanked_reason"] else ""))
    if v["deleted"]:
        badges.append("deleted upstream")
    if v["skip_reason"]:
        badges.append(f"skipped: {v['skip_reason']}"
                      + (f" ({v['skip_note']})" if v["skip_note"] else ""))
    tags = "".join(f' <span class="badge">{escape(b)}</span>' for b in badges)
    released = escape((v["released"] or "")[:10])
    rows = "".join(_status_row(c) for c in v["abis"])
    files = "".join(_file_item(f) for f in v["files"])
    return (f'<section id="v{escape(v["version"])}">\n<h2>{escape(v["version"])}{tags}</h2>\n'
            f'<p class="meta">released {released}</p>\n'
            f"<table>\n<thead><tr><th>ABI</th><th>status</th><th>builder</th><th>time</th>"
            f"<th>log</th></tr></thead>\n<tbody>\n{rows}</tbody>\n</table>\n"
            + (f'<ul class="files">\n{files}</ul>\n' if files else "") + "</section>\n")


def project_html(data: dict[str, Any]) -> str:
    """The page for people: every version, its status per ABI, files, logs, dependencies."""
    name = data["display_name"] or data["name"]
    notes = []
    if data["deleted"]:
        notes.append("This package was deleted upstream.")
    if data["skip_reason"]:
        notes.append(f"This package is not built: {data['skip_reason']}.")
    notice = "".join(f'<p class="notice">{escape(n)}</p>\n' for n in notes)
    pkg = escape(quote(data["name"]))
    body = (_nav("../../") + f"<main>\n<h1>{escape(name)}</h1>\n{notice}"
            f'<p><a href="../../simple/{pkg}/">simple index page</a> · '
            f'<a href="index.json">this page as JSON</a></p>\n'
            f"<pre>pip install {escape(data['name'])}</pre>\n"
            + "".join(_version_section(v) for v in data["versions"])
            + ("" if data["versions"] else "<p>No versions known.</p>\n") + "</main>\n")
    return _page(f"{name} – piwheels", body, css="../../static/style.css")


# --------------------------------------------------------------------------- stats


def collect_stats(cur: Any) -> dict[str, Any]:
    """The farm's numbers for the stats page, from a handful of aggregate queries."""
    rows = {}
    for key, sql in Q_STATS.items():
        cur.execute(sql)
        rows[key] = cur.fetchall()
    packages, versions, attempted = rows["counts"][0]
    n_files, n_wheels, disk, pkgs_with_files, built = rows["files"][0]
    by_status = {s: n for s, n, _ in rows["builds"]}
    return {
        "generated": _iso(datetime.now(UTC)),
        "packages": {"known": packages, "with_files": pkgs_with_files},
        "versions": {"known": versions, "attempted": attempted, "built": built,
                     "success_rate": round(built / attempted, 4) if attempted else None},
        "builds": {"total": sum(by_status.values()), "by_status": by_status,
                   "build_time": round(sum(float(t) for _, _, t in rows["builds"]), 1)},
        "files": {"count": n_files, "wheels": n_wheels, "aliases": n_files - n_wheels,
                  "disk_used": int(disk)},
        "builders": [
            {"name": n, "abi": a, "platform": p, "last_seen": _iso(seen), "builds": c,
             "successes": ok, "build_time": round(float(t), 1)}
            for n, a, p, seen, c, ok, t in rows["builders"]
        ],
        "queue": [{"abi": a, "active": act, "queued": n, "building": b, "waiting_retry": w}
                  for a, act, n, b, w in rows["queue"]],
    }


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>\n"
                   for r in rows)
    return f"<table>\n<thead><tr>{th}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


def stats_html(s: dict[str, Any]) -> str:
    """The stats page for people."""
    v, f, b = s["versions"], s["files"], s["builds"]
    rate = f"{v['success_rate'] * 100:.1f}%" if v["success_rate"] is not None else "–"
    summary = _table(["", ""], [
        ["packages known", f"{s['packages']['known']:,}"],
        ["packages with files", f"{s['packages']['with_files']:,}"],
        ["versions known", f"{v['known']:,}"],
        ["versions attempted", f"{v['attempted']:,}"],
        ["versions built", f"{v['built']:,}"],
        ["success rate", rate],
        ["builds", f"{b['total']:,}"],
        ["total build time", _human_duration(b["build_time"])],
        ["files", f"{f['count']:,} ({f['aliases']:,} aliases)"],
        ["disk used", _human_size(f["disk_used"])],
    ])
    statuses = _table(["status", "builds"], [[k, f"{n:,}"] for k, n in b["by_status"].items()])
    builders = _table(["builder", "ABI", "platform", "builds", "successes", "build time",
                       "last seen"],
                      [[x["name"], x["abi"], x["platform"], x["builds"], x["successes"],
                        _human_duration(x["build_time"]), (x["last_seen"] or "")[:19]]
                       for x in s["builders"]])
    queue = _table(["ABI", "queued", "building", "waiting to retry"],
                   [[q["abi"] + ("" if q["active"] else " (inactive)"), q["queued"],
                     q["building"], q["waiting_retry"]] for q in s["queue"]])
    body = (_nav("") + f"<main>\n<h1>piwheels statistics</h1>\n"
            f'<p class="meta">generated {escape(s["generated"][:19])} UTC · '
            f'<a href="stats.json">JSON</a></p>\n{summary}<h2>Builds by status</h2>\n{statuses}'
            f"<h2>Builders</h2>\n{builders}<h2>Queue</h2>\n{queue}</main>\n")
    return _page("piwheels statistics", body, css="static/style.css")


STYLE = """\
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 60rem; padding: 1rem;
       color: #222; }
nav { margin-bottom: 1rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: .2rem .5rem; text-align: left; }
code, pre { font-size: .85rem; }
pre { background: #f4f4f4; padding: .4rem; overflow-x: auto; white-space: pre-wrap; }
.badge { font-size: .8rem; background: #eee; border-radius: .3rem; padding: .1rem .4rem; }
.notice { background: #fff3cd; padding: .5rem; }
.note, .meta { color: #666; font-size: .9rem; }
.status-built td:nth-child(2) { color: #080; }
.status-failed td:nth-child(2), .status-timeout td:nth-child(2),
.status-out-of-memory td:nth-child(2),
.status-missing-build-dependency td:nth-child(2) { color: #b00; }
ul.files li { margin-bottom: .5rem; }
"""


def landing_html() -> str:
    body = (_nav("") + "<main>\n<h1>piwheels</h1>\n<p>Wheels built for this platform. "
            "Add to <code>/etc/pip.conf</code>:</p>\n"
            "<pre>[global]\nextra-index-url = https://THIS-HOST/simple/</pre>\n"
            '<p><a href="simple/">simple index</a> · <a href="stats.html">statistics</a>'
            "</p>\n</main>\n")
    return _page("piwheels", body, css="static/style.css")


# --------------------------------------------------------------------------- the writer


class _Writer:
    """One run: batches of packages, each written and committed together."""

    def __init__(self, conn: Any, www: Path, progress: Progress, batch_size: int,
                 stats_interval: float, root_interval: float = 0) -> None:
        self.conn, self.www, self.progress, self.batch_size = conn, www, progress, batch_size
        self.stats_interval = stats_interval
        self.root_interval = root_interval
        self.simple, self.project, self.logs = www / "simple", www / "project", www / "logs"
        self.summary = IndexSummary()
        self.abis: list[Any] = []
        self.touched: list[Path] = []  # paths written or removed since the last commit

    def put(self, path: Path, data: bytes) -> None:
        _write(path, data)
        self.touched.append(path)

    def remove(self, path: Path) -> bool:
        removed = _unlink(path)
        if removed:
            self.touched.append(path)
        return removed

    def cursor(self) -> Any:
        return self.conn.cursor(cursor_factory=psycopg2.extras.NamedTupleCursor)

    def run(self, full: bool) -> None:
        with self.cursor() as cur:
            cur.execute("SELECT abi_tag, py_major, py_minor, active FROM abis"
                        " ORDER BY py_major, py_minor, abi_tag")
            self.abis = cur.fetchall()
            cur.execute("SELECT clock_timestamp()")
            started = cur.fetchone()[0]
        self.conn.commit()
        if full:
            self.full_pass()
            self.sweep_orphans()
        self.dirty_pass(started)
        if full or not (self.simple / "index.html").exists() or self.root_due():
            self.write_root()
        self.write_fixed()
        if full or self.stats_due():
            self.write_stats()

    def full_pass(self) -> None:
        """Every package with files, in name order, batch by batch."""
        after = ""
        while True:
            with self.cursor() as cur:
                cur.execute(Q_FULL_BATCH, (after, self.batch_size))
                packages = [r.package for r in cur.fetchall()]
                if not packages:
                    break
                cur.execute("DELETE FROM index_dirty WHERE package = ANY(%s)", (packages,))
                self.write_batch(cur, packages)
            self.commit_batch()
            after = packages[-1]
        self.conn.rollback()

    def dirty_pass(self, started: datetime) -> None:
        """The packages marked dirty before this run began (later ones wait for the next)."""
        while True:
            with self.cursor() as cur:
                cur.execute(Q_DIRTY_BATCH, (started, self.batch_size))
                packages = sorted(r.package for r in cur.fetchall())
                if not packages:
                    break
                self.write_batch(cur, packages)
            self.commit_batch()
        self.conn.rollback()

    def commit_batch(self) -> None:
        if len(self.touched) > FSYNC_LIMIT:
            _sync_filesystem(self.www)
        else:
            _fsync_paths(self.touched)
        self.touched.clear()
        self.conn.commit()
        self.progress(f"index: {self.summary.packages_written:,} packages written")

    def write_batch(self, cur: Any, packages: list[str]) -> None:
        batch = _Batch(cur, packages)
        for package in packages:
            self.write_simple(package, batch)
            self.write_project(package, batch)
        self.write_logs(batch)
        building = batch.building()
        if building:
            cur.execute(Q_REDIRTY, (building,))

    def write_simple(self, package: str, batch: _Batch) -> None:
        """The package's PEP 503 and PEP 691 pages, or none when nothing is listed."""
        d = self.simple / package
        had = (d / "index.html").exists()
        files = batch.listed_files(package)
        if files:
            versions = {v.version: v for v in batch.versions.get(package, [])}
            self.put(d / "index.json", _json_bytes(simple_json(package, files, versions)))
            self.put(d / "index.html", simple_html(package, files, versions).encode())
            self.summary.packages_written += 1
            self.summary.files_linked += len(files)
        else:
            removed = self.remove(d / "index.html") | self.remove(d / "index.json")
            self.summary.packages_removed += int(removed)
            with contextlib.suppress(OSError):
                d.rmdir()  # only when no wheel is left in it
        if had != bool(files):
            self.mark_root_stale()

    def mark_root_stale(self) -> None:
        """Remember, across a crash, that the root must be rewritten."""
        marker = self.simple / ROOT_STALE
        if not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            self.touched.append(marker)

    def write_project(self, package: str, batch: _Batch) -> None:
        d = self.project / package
        if package not in batch.packages:
            self.remove(d / "index.html")
            self.remove(d / "index.json")
            return
        data = project_data(package, batch, self.abis)
        self.put(d / "index.json", _json_bytes(data))
        self.put(d / "index.html", project_html(data).encode())
        self.summary.projects_written += 1

    def write_logs(self, batch: _Batch) -> None:
        """Logs of the batch's builds that are not on disk yet; logs never change."""
        missing = [b.build_id for rows in batch.builds.values() for b in rows
                   if b.has_log and not (self.logs / f"{b.build_id}.txt").exists()]
        if not missing:
            return
        self.logs.mkdir(parents=True, exist_ok=True)
        with self.conn.cursor(name=f"logs_{secrets.token_hex(4)}") as cur:
            cur.itersize = 20
            cur.execute("SELECT build_id, log FROM build_logs WHERE build_id = ANY(%s)",
                        (missing,))
            for build_id, log in cur:
                text = _gunzip(bytes(log)).decode("utf-8", "replace").encode()
                self.put(self.logs / f"{build_id}.txt", text)
                self.summary.logs_written += 1

    def write_root(self) -> None:
        """``simple/index.html`` and ``index.json``, streamed: there may be a million names."""
        marker = self.simple / ROOT_STALE
        existed = marker.exists()
        head = _page("Simple index", "<h1>Simple index</h1>\n", head=_REPO_META)
        head, tail = head.split("</body>")
        with (self.conn.cursor(name=f"root_{secrets.token_hex(4)}") as cur,
              _atomic(self.simple / "index.html", "w") as h,
              _atomic(self.simple / "index.json", "w") as j):
            cur.itersize = 10000
            cur.execute(Q_LISTED)
            h.write(head)
            j.write(_json_bytes({"meta": {"api-version": API_VERSION}}).decode()[:-1])
            j.write(',"projects":[')
            for i, (name,) in enumerate(cur):
                h.write(f'<a href="{escape(quote(name))}/">{escape(name)}</a><br>\n')
                j.write(("," if i else "") + json.dumps({"name": name}))
            h.write("</body>" + tail)
            j.write("]}\n")
        self.conn.rollback()
        if existed:
            _unlink(marker)
        self.summary.root_written = True

    def sweep_orphans(self) -> None:
        """Pages on disk that the database no longer backs (a full run is also a repair)."""
        for directory, query, names in ((self.simple, Q_UNLISTED, ("index.html", "index.json")),
                                        (self.project, Q_UNKNOWN, ("index.html", "index.json"))):
            for chunk in _chunks(_subdirs(directory), self.batch_size):
                with self.cursor() as cur:
                    cur.execute(query, (chunk,))
                    gone = [r.name for r in cur.fetchall()]
                self.conn.rollback()
                for name in gone:
                    removed = [_unlink(directory / name / n) for n in names]
                    if directory == self.simple and any(removed):
                        self.summary.packages_removed += 1

    def write_fixed(self) -> None:
        _write_if_changed(self.www / "static" / "style.css", STYLE.encode())
        _write_if_changed(self.www / "index.html", landing_html().encode())

    def root_due(self) -> bool:
        """The root lists every package (46 MB at PyPI's size, ~27 s to write): rewrite it
        when the set of packages changed, at most every ``root_interval`` seconds. pip
        and uv never read it (they ask /simple/<name>/, which is written at once)."""
        if not (self.simple / ROOT_STALE).exists():
            return False
        try:
            age = time.time() - (self.simple / "index.html").stat().st_mtime
        except FileNotFoundError:
            return True
        return not 0 <= age < self.root_interval

    def stats_due(self) -> bool:
        """The stats recount whole tables (33 s at PyPI's size): not on every small run."""
        try:
            age = time.time() - (self.www / "stats.json").stat().st_mtime
        except FileNotFoundError:
            return True
        return not 0 <= age < self.stats_interval

    def write_stats(self) -> None:
        with self.conn.cursor() as cur:  # plain rows: aggregates have duplicate column names
            stats = collect_stats(cur)
        self.conn.rollback()
        _write(self.www / "stats.json", _json_bytes(stats))
        _write(self.www / "stats.html", stats_html(stats).encode())
        self.summary.stats_written = True


def _subdirs(directory: Path) -> Iterator[str]:
    try:
        entries = os.scandir(directory)
    except FileNotFoundError:
        return
    with entries:
        for e in entries:
            if not e.name.startswith(".") and e.is_dir(follow_symlinks=False):
                yield e.name


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def write_index(conn: Any, www: Path, *, full: bool = False, progress: Progress | None = None,
                batch_size: int = BATCH, stats_interval: float = 0,
                root_interval: float = 0) -> IndexSummary:
    """Write the pages of the dirty packages (every package with ``full``), root and stats.

    Uses its own transactions on conn (one per batch); a package is unmarked
    dirty only in the transaction that wrote its pages. The stats page is
    rewritten by a full run, or when it is older than ``stats_interval``
    seconds (0: every run); the root, when the set of listed packages changed
    and it is older than ``root_interval`` seconds (0: at once).
    """
    started = time.monotonic()
    writer = _Writer(conn, Path(www), progress or (lambda _msg: None), batch_size,
                     stats_interval, root_interval)
    autocommit = conn.autocommit
    if autocommit:
        conn.autocommit = False  # named (server-side) cursors need a transaction
    try:
        writer.run(full)
    except BaseException:
        conn.rollback()
        raise
    finally:
        if autocommit:
            conn.autocommit = True
    writer.summary.elapsed = time.monotonic() - started
    return writer.summary
