"""Read access logs incrementally into the database (migration 0009).

Each log is known by its content, the sha256 of its first line, with the position
(bytes of uncompressed text) read so far: a file renamed by logrotate, or gzipped
afterwards, goes on from there; a new file starts at 0. Complete lines only (a last
line without its newline is left for the next run). Every ``chunk`` bytes the counts
and the new position are written in one transaction (``record_downloads``), so a run
killed at any point neither loses nor doubles a line.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from ..db import writes
from ..errors import PiwheelsError
from .logformat import parse_line
from .useragent import DIMENSIONS, dimensions

CHUNK = 8 << 20        # bytes of log text per transaction
MAX_FIRST_LINE = 1 << 16  # bytes of a longer first line that key the log
TAIL = 256  # bytes before a log's position whose hash tells it from another log
KEY_LINES = 8  # a log is keyed by its first line, else its first 2, ... 8 lines
PAGES_MARKED = "downloads_pages_marked"  # settings key: the day project pages were marked


def download_of(method: str, path: str, status: int) -> str | None:
    """The wheel's file name when a request is a download, else None.

    A download is a GET of ``/simple/<project>/<file>.whl`` (where the store puts
    wheels: store.py, served as is by nginx and serve.py) answered 200. A 206 is a
    range (pip's and uv's lazy metadata read the end of a wheel that way; a resumed
    download would be several): not counted. A ``.metadata`` fetch (PEP 658), a HEAD,
    a 304 are not downloads. An alias (linux_armv6l) counts under its own name.
    """
    if method != "GET" or status != 200 or not path.endswith(".whl"):
        return None
    parts = path.split("/")
    if len(parts) != 4 or parts[0] != "" or parts[1] != "simple" or not parts[2]:
        return None
    # Not a name the store could have written (a NUL, a control character: %00 in a
    # URL), and the database's text could not hold a NUL.
    return parts[3] if parts[3].isprintable() else None


@dataclass
class Tally:
    """What a stretch of log held: downloads per (day, file), per (day, dimension,
    value), lines read and lines that did not parse."""

    files: Counter = field(default_factory=Counter)
    dims: Counter = field(default_factory=Counter)
    lines: int = 0
    bad: int = 0

    def add(self, text: str) -> None:
        self.lines += 1
        req = parse_line(text)
        if req is None:
            self.bad += 1
            return
        name = download_of(req.method, req.path, req.status)
        if name is None:
            return
        self.files[req.day, name] += 1
        for dim, value in zip(DIMENSIONS, dimensions(req.user_agent), strict=True):
            self.dims[req.day, dim, value] += 1

    @property
    def downloads(self) -> int:
        return sum(self.files.values())


@dataclass
class Summary:
    """A run over some logs: files read, lines, downloads, lines skipped."""

    logs: int = 0
    lines: int = 0
    downloads: int = 0
    unknown: int = 0
    bad_lines: int = 0
    packages: set[str] = field(default_factory=set)
    contended: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    cut: list[str] = field(default_factory=list)  # .gz files that end before their end
    pages_marked: int = 0

    def __str__(self) -> str:
        text = (f"downloads: {self.logs} log(s), {self.lines:,} new line(s), "
                f"{self.downloads:,} download(s): {self.downloads - self.unknown:,} of "
                f"{len(self.packages):,} project(s), {self.unknown:,} of files not recorded")
        if self.bad_lines:
            text += f"; {self.bad_lines:,} line(s) not in the combined format, skipped"
        if self.contended:
            text += f"; another reader was reading {', '.join(self.contended)}"
        if self.cut:
            text += (f"; {', '.join(self.cut)} ends before its gzip end marker (being "
                     "written?): the rest is read once it is whole")
        if self.conflicts:
            text += (f"; not read now: {', '.join(self.conflicts)} (it starts as logs "
                     "already read do, but goes on differently, and has too few lines to "
                     "tell it apart yet)")
        return text


def _open_text(path: Path) -> tuple[Any, os.stat_result]:
    """The log's uncompressed bytes (gzip by its magic number) and its stat."""
    f = open(path, "rb")  # OSError: the caller says which log and why
    st = os.fstat(f.fileno())
    if f.read(2) == b"\x1f\x8b":
        f.seek(0)
        return gzip.GzipFile(fileobj=f, mode="rb"), st
    f.seek(0)
    return f, st


def _read_some(stream: Any, size: int) -> tuple[bytes, bool]:
    """Up to ``size`` bytes; and whether a gzip stream ended before its end marker (being
    written by logrotate right now, or cut): what came before in 64 KiB pieces is
    returned, the rest is read next time."""
    if not isinstance(stream, gzip.GzipFile):
        return stream.read(size), False
    out = bytearray()
    while len(out) < size:
        try:
            piece = stream.read(min(1 << 16, size - len(out)))
        except EOFError:
            return bytes(out), True
        if not piece:
            break
        out += piece
    return bytes(out), False


class Reader:
    """Reads logs into the database; one per process (the index service keeps one, so
    a gzipped log read to its end is not decompressed again on every poll)."""

    def __init__(self, conn: Any, chunk: int = CHUNK,
                 progress: Callable[[str], None] | None = None, *,
                 mark_changed: bool = False, budget: int | None = None) -> None:
        """``mark_changed``: mark each project whose counts a chunk changed for the index
        writer, with the chunk (the one-shot command: its pages show the counts at the
        next index run); else only the daily marking (the index service: a poll must not
        rewrite every downloaded project's page). ``budget``: bytes of log text one
        ``read`` reads at most (whole chunks; the index service's, so a poll never holds
        its page writing for long: the rest is read by the next polls)."""
        self.conn = conn
        self.budget = budget
        self._spent = 0
        self.mark_changed = mark_changed
        self.warned: set[str] = set()  # the errors the index service has logged
        self.chunk = chunk
        self.progress = progress
        self._done: dict[tuple[int, int], tuple[int, int]] = {}  # (dev, ino) -> (size, mtime)

    def read(self, paths: Iterable[Path], *, missing_ok: bool = False,
             keep_going: bool = False) -> Summary:
        """Read each log from where the last run stopped; then, once a day, mark for the
        index writer the projects whose page counts changed (``mark_download_pages``).

        Raises PiwheelsError for a log that cannot be read (a missing one too, unless
        ``missing_ok``: between logrotate's rename and nginx's reopening, the live name
        may be briefly absent); with ``keep_going`` (the index service) the error's line
        goes to ``Summary.errors`` instead and the other logs are read."""
        summary = Summary()
        self._spent = 0
        for path in paths:
            try:
                self.read_one(Path(path), summary)
            except FileNotFoundError:
                if not missing_ok:
                    raise PiwheelsError(f"downloads: {path} does not exist; name an access "
                                        "log, or fix access_logs in the config") from None
            except (OSError, EOFError, zlib.error) as e:  # unreadable; a corrupt or cut .gz
                self.conn.rollback()
                why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                line = (f"downloads: cannot read {path} ({why}); the lines before that "
                        "are counted")
                if not keep_going:
                    raise PiwheelsError(line) from None
                summary.errors.append(line)
        summary.pages_marked = self.mark_pages()
        return summary

    def read_one(self, path: Path, summary: Summary) -> None:
        stream, st = _open_text(path)
        key, sig = (st.st_dev, st.st_ino), (st.st_size, st.st_mtime_ns)
        if self._done.get(key) == sig:
            stream.close()
            return
        with stream:
            try:
                first = stream.readline(MAX_FIRST_LINE)
                if not first.endswith(b"\n") and len(first) < MAX_FIRST_LINE:
                    return  # empty, or its first line not written yet
                found = self._resume(stream, first)
            except EOFError:  # a .gz cut short (logrotate writing it now): next time
                summary.cut.append(str(path))
                return
            summary.logs += 1
            if found is None:
                summary.conflicts.append(str(path))
                return
            fingerprint, position, before = found
            if not isinstance(stream, gzip.GzipFile) and st.st_size <= position:
                return  # nothing new (cheap: the index service does this every poll)
            complete = self._read_from(stream, path, st, fingerprint, position, before,
                                       summary)
            if complete is None:
                summary.cut.append(str(path))
        if complete is True and isinstance(stream, gzip.GzipFile):
            self._done[key] = sig

    def _keys(self, stream: Any, first: bytes) -> Iterator[str]:
        """The sha256 of the first line, then of the first 2 lines, ... KEY_LINES lines
        (as far as the file has complete lines), each read only when asked for."""
        head, at = hashlib.sha256(first), len(first)
        yield head.hexdigest()
        for _ in range(KEY_LINES - 1):
            stream.seek(at)  # the caller moved the stream in between
            line = stream.readline(MAX_FIRST_LINE)
            if not line.endswith(b"\n"):
                return
            head.update(line)
            at += len(line)
            yield head.hexdigest()

    def _resume(self, stream: Any, first: bytes) -> tuple[str, int, bytes] | None:
        """(key, position, the TAIL bytes before it) of the log ``stream`` holds, the stream
        left at the position; None when no key fits (see migration 0009).

        The key is the sha256 of the first line; the log read under it goes on only if
        this file has the same bytes before its position (a renamed or gzipped log does).
        A file that does not (another log starting with the same line) is keyed by its
        first 2 lines, or 3, ...: the first such key no log has, or whose log it goes on.
        None (read nothing now) when it has too few lines to tell, or 8 lines in common
        with logs it does not go on."""
        for fingerprint in self._keys(stream, first):
            with self.conn.cursor() as cur:
                cur.execute("SELECT position, tail_sha256 FROM download_logs"
                            " WHERE fingerprint = %s", (fingerprint,))
                row = cur.fetchone()
            self.conn.rollback()
            position, tail = row if row else (0, None)
            start = max(0, position - TAIL)
            # EOFError: a .gz cut short before it; never try the next key on that
            stream.seek(start)
            before = stream.read(position - start)
            if len(before) == position - start and (
                    position == 0 or hashlib.sha256(before).hexdigest() == tail):
                return fingerprint, position, before
        return None

    def _read_from(self, stream: Any, path: Path, st: os.stat_result, fingerprint: str,
                   position: int, before: bytes, summary: Summary) -> bool | None:
        """Read complete lines from ``position`` to the end in chunks, each chunk's counts
        committed with its end position and the hash of the bytes before it (``before``:
        those before ``position``); True at the end, None at the end of a .gz cut short,
        False if another reader moved the position."""
        rest, ended = b"", False
        while True:
            if self.budget is not None and self._spent >= self.budget:
                return False  # the next read goes on from here
            data, truncated = (b"", True) if ended else _read_some(stream, self.chunk)
            ended = ended or truncated
            buf = rest + data
            cut = buf.rfind(b"\n") + 1
            if cut == 0 and not data:
                return None if ended else True  # the end, or a last line without its newline
            if cut == 0:
                rest = buf
                continue
            text, rest = buf[:cut], buf[cut:]
            tally = Tally()
            # split("\n"), not splitlines(): a line holding U+2028 or \x1c is one line
            for line in text.decode("utf-8", "replace").split("\n")[:-1]:
                tally.add(line.removesuffix("\r"))
            end = position + cut
            before = (before + text)[-TAIL:]
            with self.conn.cursor() as cur:
                done = writes.record_downloads(
                    cur, fingerprint, str(path), st.st_dev, st.st_ino, position, end,
                    hashlib.sha256(before).hexdigest(), tally.lines, tally.bad, tally.files,
                    tally.dims)
                if done and self.mark_changed and done["packages"]:
                    writes.mark_dirty(cur, done["packages"])
            if done is None:
                self.conn.rollback()
                summary.contended.append(str(path))
                return False
            self.conn.commit()
            position = end
            self._spent += cut
            summary.lines += tally.lines
            summary.bad_lines += tally.bad
            summary.downloads += tally.downloads
            summary.unknown += done["unknown"]
            summary.packages.update(done["packages"])
            if self.progress:
                self.progress(f"downloads: {path}: {position:,} bytes read, "
                              f"{summary.downloads:,} download(s) so far")

    def mark_pages(self, today: date | None = None) -> int:
        """Once a day (UTC), mark the projects whose page counts changed
        (``mark_download_pages``); how many were marked (0 when already done today)."""
        today = today or datetime.now(UTC).date()
        with self.conn.cursor() as cur:
            cur.execute("SELECT value FROM settings WHERE key = %s", (PAGES_MARKED,))
            row = cur.fetchone()
            if row and row[0] == today.isoformat():
                self.conn.rollback()
                return 0
            n = writes.mark_download_pages(cur, today)
            writes.set_setting(cur, PAGES_MARKED, today.isoformat())
        self.conn.commit()
        return n
