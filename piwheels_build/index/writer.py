"""The index writer: database -> ``www/``, in batches, each one transaction."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg2.extras

from .. import fsutil, queue
from ..db import writes
from ..errors import StoreError
from .data import (
    BATCH,
    Q_FULL_BATCH,
    Q_LISTED,
    Q_UNKNOWN,
    Q_UNLISTED,
    Batch,
    collect_stats,
    gunzip_capped,
    project_data,
)
from .pages import (
    API_VERSION,
    json_bytes,
    landing_html,
    project_html,
    root_html_parts,
    root_link,
    simple_html,
    simple_json,
    stats_html,
    style_css,
)

ROOT_STALE = ".root-stale"  # marker: the set of packages changed, the root is not written yet

# Temporary files (fsutil.temp_name: ``.NAME.tmp-XXXXXXXXXXXX``) a killed process left.
# Only those untouched for TEMP_AGE seconds are removed: every write (a page, the root
# streamed at PyPI's size in ~27 s, a builder's wheel over sshfs) moves its temporary
# file's mtime on each chunk, so a day without a write means its writer is dead.
TEMP_AGE = 24 * 3600
# The big directories (simple/, project/ and logs/: a million entries each at PyPI's
# size) are listed for leftovers by --full runs, and by an incremental run at most
# this often; the small ones (www/, static/) every run, a package's own directories
# whenever a batch writes its pages.
TEMP_SWEEP_INTERVAL = 6 * 3600
TEMP_SWEPT = ".temp-swept"  # marker in www/: when the big directories were last swept


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
    temp_removed: int = 0

    def __str__(self) -> str:
        root = "root rewritten" if self.root_written else "root unchanged"
        stats = ", stats written" if self.stats_written else ""
        temp = (f", {self.temp_removed:,} leftover temporary files removed"
                if self.temp_removed else "")
        return (f"index: {self.packages_written:,} packages written, "
                f"{self.files_linked:,} files linked, {self.packages_removed:,} removed, "
                f"{self.projects_written:,} project pages, {self.logs_written:,} logs, "
                f"{root}{stats}{temp} in {self.elapsed:.1f}s")


FSYNC_LIMIT = 64  # a batch touching more paths than this is flushed with one syncfs


class _Writer:
    """One run: batches of packages, each written and committed together."""

    def __init__(self, conn: Any, www: Path, progress: Progress, batch_size: int,
                 stats_interval: float, root_interval: float = 0) -> None:
        self.conn, self.www, self.progress, self.batch_size = conn, www, progress, batch_size
        self.stats_interval = stats_interval
        self.root_interval = root_interval
        self.simple, self.project, self.logs = www / "simple", www / "project", www / "logs"
        self.summary = IndexSummary()
        self.targets: list[Any] = []
        self.touched: list[Path] = []  # paths written or removed since the last commit

    def put(self, path: Path, data: bytes) -> None:
        fsutil.write_bytes(path, data)
        self.touched.append(path)

    def remove(self, path: Path) -> bool:
        removed = fsutil.unlink(path)
        if removed:
            self.touched.append(path)
        return removed

    def cursor(self) -> Any:
        return self.conn.cursor(cursor_factory=psycopg2.extras.NamedTupleCursor)

    def run(self, full: bool) -> None:
        with self.cursor() as cur:
            cur.execute("SELECT target, abi_tag, platform_tag, py_major, py_minor, active"
                        " FROM targets ORDER BY py_major, py_minor, platform_tag")
            self.targets = cur.fetchall()
            # A dead builder's build shows as abandoned now, not at the next claim;
            # its package, marked dirty, is written by this run (migration 0007).
            queue.expire_leases(self.conn)
            cur.execute("SELECT clock_timestamp()")
            started = cur.fetchone()[0]
        self.conn.commit()
        self.sweep_temp_files(full)
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
                writes.clear_dirty(cur, packages)
                self.write_batch(cur, packages)
            self.commit_batch()
            after = packages[-1]
        self.conn.rollback()

    def dirty_pass(self, started: datetime) -> None:
        """The packages marked dirty before this run began (later ones wait for the next)."""
        while True:
            with self.cursor() as cur:
                packages = writes.take_dirty_batch(cur, started, self.batch_size)
                if not packages:
                    break
                self.write_batch(cur, packages)
            self.commit_batch()
        self.conn.rollback()

    def commit_batch(self) -> None:
        if len(self.touched) > FSYNC_LIMIT:
            fsutil.sync_filesystem(self.www)
        else:
            fsutil.fsync_paths(self.touched)
        self.touched.clear()
        self.conn.commit()
        self.progress(f"index: {self.summary.packages_written:,} packages written")

    def write_batch(self, cur: Any, packages: list[str]) -> None:
        batch = Batch(cur, packages)
        for package in packages:
            self.summary.temp_removed += (_sweep_temp(self.simple / package)
                                          + _sweep_temp(self.project / package))
            self.write_simple(package, batch)
            self.write_project(package, batch)
        self.write_logs(batch)
        building = batch.building()
        if building:
            writes.redirty(cur, building)

    def write_simple(self, package: str, batch: Batch) -> None:
        """The package's PEP 503 and PEP 691 pages, or none when nothing is listed."""
        d = self.simple / package
        had = (d / "index.html").exists()
        files = batch.listed_files(package)
        if files:
            versions = {v.version: v for v in batch.versions.get(package, [])}
            self.put(d / "index.json", json_bytes(simple_json(package, files, versions)))
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

    def write_project(self, package: str, batch: Batch) -> None:
        d = self.project / package
        if package not in batch.packages:
            self.remove(d / "index.html")
            self.remove(d / "index.json")
            return
        data = project_data(package, batch, self.targets)
        self.put(d / "index.json", json_bytes(data))
        self.put(d / "index.html", project_html(data).encode())
        self.summary.projects_written += 1

    def write_logs(self, batch: Batch) -> None:
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
                text = gunzip_capped(bytes(log)).decode("utf-8", "replace").encode()
                self.put(self.logs / f"{build_id}.txt", text)
                self.summary.logs_written += 1

    def write_root(self) -> None:
        """``simple/index.html`` and ``index.json``, streamed: there may be a million names."""
        marker = self.simple / ROOT_STALE
        existed = marker.exists()
        head, tail = root_html_parts()
        with (self.conn.cursor(name=f"root_{secrets.token_hex(4)}") as cur,
              fsutil.atomic_write(self.simple / "index.html", "w") as h,
              fsutil.atomic_write(self.simple / "index.json", "w") as j):
            cur.itersize = 10000
            cur.execute(Q_LISTED)
            h.write(head)
            j.write(json_bytes({"meta": {"api-version": API_VERSION}}).decode()[:-1])
            j.write(',"projects":[')
            for i, (name,) in enumerate(cur):
                h.write(root_link(name))
                j.write(("," if i else "") + json.dumps({"name": name}))
            h.write(tail)
            j.write("]}\n")
        self.conn.rollback()
        if existed:
            fsutil.unlink(marker)
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
                    removed = [fsutil.unlink(directory / name / n) for n in names]
                    if directory == self.simple and any(removed):
                        self.summary.packages_removed += 1

    def sweep_temp_files(self, full: bool) -> None:
        """Leftover temporary files of killed runs and builders (see TEMP_AGE): in the
        small directories every run, in the big ones on --full runs and at most every
        TEMP_SWEEP_INTERVAL seconds (a package's directory: when its pages are written)."""
        removed = _sweep_temp(self.www) + _sweep_temp(self.www / "static")
        marker = self.www / TEMP_SWEPT
        if full or _older_than(marker, TEMP_SWEEP_INTERVAL):
            for directory in (self.simple, self.project, self.logs):
                removed += _sweep_temp(directory)
            if self.www.is_dir():
                marker.touch()
        self.summary.temp_removed += removed

    def write_fixed(self) -> None:
        fsutil.write_if_changed(self.www / "static" / "style.css", style_css())
        # With the downloads' figures, the stats run writes it (write_stats).
        if not (self.www / "index.html").exists():
            fsutil.write_if_changed(self.www / "index.html", landing_html().encode())

    def root_due(self) -> bool:
        """The root lists every package (46 MB at PyPI's size, ~27 s to write): rewrite it
        when the set of packages changed, at most every ``root_interval`` seconds. pip
        and uv never read it (they ask /simple/<name>/, which is written at once)."""
        if not (self.simple / ROOT_STALE).exists():
            return False
        return _older_than(self.simple / "index.html", self.root_interval)

    def stats_due(self) -> bool:
        """The stats recount whole tables (33 s at PyPI's size): not on every small run."""
        return _older_than(self.www / "stats.json", self.stats_interval)

    def write_stats(self) -> None:
        with self.conn.cursor() as cur:  # plain rows: aggregates have duplicate column names
            stats = collect_stats(cur)
        self.conn.rollback()
        fsutil.write_bytes(self.www / "stats.json", json_bytes(stats))
        fsutil.write_bytes(self.www / "stats.html", stats_html(stats).encode())
        fsutil.write_if_changed(self.www / "index.html",
                                landing_html(stats.get("downloads")).encode())
        self.summary.stats_written = True


def _older_than(path: Path, seconds: float) -> bool:
    """True when ``path`` is missing or was written ``seconds`` ago or more (or in the
    future: a clock that went back)."""
    try:
        age = time.time() - path.stat().st_mtime
    except FileNotFoundError:
        return True
    return not 0 <= age < seconds


def _sweep_temp(directory: Path, max_age: float = TEMP_AGE) -> int:
    """Remove the temporary files (not directories) in ``directory`` untouched for
    ``max_age`` seconds; how many were removed. One listing, no recursion."""
    removed = 0
    now = time.time()
    try:
        entries = os.scandir(directory)
    except (FileNotFoundError, NotADirectoryError):
        return 0
    with entries:
        for e in entries:
            if not e.name.startswith(".") or fsutil.TEMP_MARK not in e.name:
                continue
            try:
                if e.is_dir(follow_symlinks=False):
                    continue
                if now - e.stat(follow_symlinks=False).st_mtime < max_age:
                    continue  # maybe being written right now
                os.unlink(e.path)
                removed += 1
            except FileNotFoundError:
                pass
    return removed


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
    except BaseException as e:
        if not conn.closed:  # a connection lost mid-run has nothing to roll back
            conn.rollback()
        if isinstance(e, OSError):  # a full disk: one line, not a traceback
            raise StoreError(
                f"index: cannot write in {e.filename or www}: {e.strerror or e}; every page "
                "is whole (old or new) and the packages not written stay marked for the "
                "next run") from None
        raise
    finally:
        if autocommit and not conn.closed:
            conn.autocommit = True
    writer.summary.elapsed = time.monotonic() - started
    return writer.summary

