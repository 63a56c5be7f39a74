"""The simple repository API's vocabulary, without the network.

File names (sdists, wheels, other kinds) and their versions, and parsers for
PEP 503 HTML, PEP 691 JSON (with PEP 592 yanks, PEP 700 sizes, upload times
and versions) and the XML-RPC changelog's rows."""

from __future__ import annotations

import codecs
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any, NamedTuple
from urllib.parse import urljoin, urlsplit, urlunsplit

from packaging.utils import parse_wheel_filename
from packaging.version import Version

from ..names import normalize

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


HTML_TYPES = ("application/vnd.pypi.simple.v1+html", "text/html")


SDIST_EXTS = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".zip", ".tar")


OTHER_EXTS = (".egg", ".exe", ".msi", ".rpm")


_SERIAL_COMMENT = re.compile(r"^\s*SERIAL\s+(\d+)\s*$")


MAX_VERSION = 128  # characters: a longer "version" is junk, skipped like an invalid one


@dataclass
class UpstreamFile:
    """One distribution file of a project page."""

    filename: str
    url: str
    sha256: str | None = None
    size: int | None = None
    requires_python: str | None = None
    upload_time: datetime | None = None
    yanked: bool = False
    yanked_reason: str | None = None


@dataclass
class ProjectPage:
    """A project page: its files, the PEP 700 version list and its serial."""

    name: str
    files: list[UpstreamFile] = field(default_factory=list)
    versions: list[str] | None = None
    serial: int | None = None
    # Some file entries were malformed and left out: the page may not list every
    # file, so nothing it lacks may be deleted.
    partial: bool = False


@dataclass
class ProjectList:
    """The root page: names as spelled upstream, serials when the upstream offers them."""

    names: list[str] = field(default_factory=list)
    serials: dict[str, int] = field(default_factory=dict)
    serial: int | None = None


class ChangelogEntry(NamedTuple):
    name: str
    version: str | None
    timestamp: int
    action: str
    serial: int


def _canonical_version(text: str) -> str | None:
    """The normalized spelling, so an sdist and its wheels share one version row."""
    if not text or len(text) > MAX_VERSION:
        return None
    try:
        return str(Version(text))
    except ValueError:  # InvalidVersion, or a number too long for int() (>4300 digits)
        return None


def _strip_name(stem: str, project: str) -> str | None:
    """What follows ``<name>-`` in ``stem`` when ``<name>`` normalizes to ``project``."""
    want = normalize(project)
    for i, ch in enumerate(stem):
        if ch == "-" and normalize(stem[:i]) == want:
            return stem[i + 1:]
    return None


def _other_version(rest: str) -> str | None:
    """The version at the start of ``1.0-py2.7`` or ``1.0.win32`` (eggs, installers)."""
    parts = rest.split("-")[0].split(".")
    for k in range(len(parts), 0, -1):
        found = _canonical_version(".".join(parts[:k]))
        if found:
            return found
    return None


def classify(filename: str, project: str) -> tuple[str, str] | None:
    """(kind, version) of a file on ``project``'s page, or None to ignore it.

    Versions are normalized (``1.0-RC1`` -> ``1.0rc1``) so every file of a
    release lands in the same row; files of another project are ignored.
    """
    lower = filename.lower()
    if lower.endswith(".whl"):
        try:
            name, version, _, _ = parse_wheel_filename(filename)
        except ValueError:  # InvalidWheelFilename, InvalidVersion, a too-long number
            return None
        if name != normalize(project):
            return None
        return ("wheel", str(version)) if len(str(version)) <= MAX_VERSION else None
    for kind, exts in (("sdist", SDIST_EXTS), ("other", OTHER_EXTS)):
        for ext in exts:
            if lower.endswith(ext):
                rest = _strip_name(filename[: -len(ext)], project)
                if rest is None:
                    return None
                version = _canonical_version(rest) if kind == "sdist" else _other_version(rest)
                return (kind, version) if version else None
    return None


def _parse_time(value: Any) -> datetime | None:
    """PEP 700 upload-time (ISO 8601) as an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _yank(value: Any) -> tuple[bool, str | None]:
    """PEP 592/691 yanked: a bool, or a reason string (empty means no reason)."""
    if isinstance(value, str):
        return True, value or None
    return bool(value), None


def json_file(entry: Any, base: str) -> UpstreamFile | None:
    if not isinstance(entry, dict):
        return None
    filename, url = entry.get("filename"), entry.get("url")
    if not isinstance(filename, str) or not isinstance(url, str):
        return None
    try:
        url = urljoin(base, url)
    except ValueError:  # e.g. a broken IPv6 literal: skip the file, not the project
        return None
    hashes = entry.get("hashes")
    sha = hashes.get("sha256") if isinstance(hashes, dict) else None
    rp = entry.get("requires-python")
    yanked, reason = _yank(entry.get("yanked", False))
    return UpstreamFile(
        filename=filename,
        url=url,
        sha256=sha.lower() if isinstance(sha, str) else None,
        size=int_or_none(entry.get("size")),
        requires_python=rp if isinstance(rp, str) and rp else None,
        upload_time=_parse_time(entry.get("upload-time")),
        yanked=yanked,
        yanked_reason=reason,
    )


def meta_serial(data: dict) -> int | None:
    meta = data.get("meta")
    return int_or_none(meta.get("_last-serial")) if isinstance(meta, dict) else None


class AnchorParser(HTMLParser):
    """Collects anchors (attributes and text) and the ``<!--SERIAL n-->`` comment."""

    def __init__(self, keep_attrs: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.keep_attrs = keep_attrs
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.texts: list[str] = []
        self.serial: int | None = None
        self.opened = self.closed = False   # <html> seen, and </html> (a whole document)
        self._attrs: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.opened |= tag == "html"
        if tag == "a":
            self._attrs = dict(attrs) if self.keep_attrs else {}
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._attrs is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        self.closed |= tag == "html"
        if tag == "a" and self._attrs is not None:
            text = "".join(self._text).strip()
            if self.keep_attrs:
                self.anchors.append((self._attrs, text))
            elif text:
                self.texts.append(text)
            self._attrs = None

    def handle_comment(self, data: str) -> None:
        m = _SERIAL_COMMENT.match(data)
        if m:
            self.serial = int(m[1])


def feed_html(parser: HTMLParser, chunks: Iterable[bytes], encoding: str) -> None:
    """Parse as the bytes arrive, so a 40 MB page is never held twice."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    for chunk in chunks:
        parser.feed(decoder.decode(chunk))
    parser.feed(decoder.decode(b"", final=True))
    parser.close()


def html_file(attrs: dict[str, str | None], text: str, base: str) -> UpstreamFile | None:
    href = attrs.get("href")
    if not href:
        return None
    try:
        parts = urlsplit(href)
        url = urljoin(base, urlunsplit(parts._replace(fragment="")))
    except ValueError:
        return None
    filename = text or parts.path.rstrip("/").rsplit("/", 1)[-1]
    algo, _, digest = parts.fragment.partition("=")
    yanked = "data-yanked" in attrs
    return UpstreamFile(
        filename=filename,
        url=url,
        sha256=digest.lower() if algo == "sha256" and digest else None,
        requires_python=attrs.get("data-requires-python") or None,
        yanked=yanked,
        yanked_reason=(attrs.get("data-yanked") or None) if yanked else None,
    )


def project_entry(pairs: list[tuple[str, Any]]) -> Any:
    """json object hook: root project entries become small tuples, not dicts."""
    d = dict(pairs)
    if "name" in d and "projects" not in d and "meta" not in d:
        return (d["name"], d.get("_last-serial"))
    return d


def changelog_entries(rows: list) -> Iterator[ChangelogEntry]:
    for row in rows:
        if isinstance(row, list | tuple) and len(row) >= 5 and isinstance(row[0], str):
            name, version, ts, action, serial = row[:5]
            if isinstance(serial, int):
                yield ChangelogEntry(name, version if version else None,
                                     ts if isinstance(ts, int) else 0, str(action or ""), serial)

