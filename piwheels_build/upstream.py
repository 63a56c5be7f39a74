"""A client for the upstream simple index (PEP 503 HTML, PEP 691 JSON, PEP 700).

Every failure the operator can do something about is an ``UpstreamError`` with
one line; retries and backoff live here so sync only sees final answers.
"""

from __future__ import annotations

import codecs
import http.client
import json
import re
import time
import xmlrpc.client
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any, NamedTuple
from urllib.parse import urljoin, urlsplit, urlunsplit
from xml.parsers.expat import ExpatError

import requests
import requests.adapters
from packaging.utils import InvalidWheelFilename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from .errors import UpstreamError
from .names import normalize

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPES = ("application/vnd.pypi.simple.v1+html", "text/html")
ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"
SDIST_EXTS = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".zip", ".tar")
OTHER_EXTS = (".egg", ".exe", ".msi", ".rpm")
_BACKOFF_CAP = 30.0
_CHUNK = 1 << 16
_SERIAL_COMMENT = re.compile(r"^\s*SERIAL\s+(\d+)\s*$")
_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")
_FATAL = (
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidHeader,
)


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


# ---------------------------------------------------------------- file names


def _canonical_version(text: str) -> str | None:
    """The normalized spelling, so an sdist and its wheels share one version row."""
    if not text:
        return None
    try:
        return str(Version(text))
    except InvalidVersion:
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
        except (InvalidWheelFilename, InvalidVersion):
            return None
        return ("wheel", str(version)) if name == normalize(project) else None
    for kind, exts in (("sdist", SDIST_EXTS), ("other", OTHER_EXTS)):
        for ext in exts:
            if lower.endswith(ext):
                rest = _strip_name(filename[: -len(ext)], project)
                if rest is None:
                    return None
                version = _canonical_version(rest) if kind == "sdist" else _other_version(rest)
                return (kind, version) if version else None
    return None


# ---------------------------------------------------------------- parsing


def _parse_time(value: Any) -> datetime | None:
    """PEP 700 upload-time (ISO 8601) as an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _yank(value: Any) -> tuple[bool, str | None]:
    """PEP 592/691 yanked: a bool, or a reason string (empty means no reason)."""
    if isinstance(value, str):
        return True, value or None
    return bool(value), None


def _json_file(entry: Any, base: str) -> UpstreamFile | None:
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
        size=_int_or_none(entry.get("size")),
        requires_python=rp if isinstance(rp, str) and rp else None,
        upload_time=_parse_time(entry.get("upload-time")),
        yanked=yanked,
        yanked_reason=reason,
    )


def _meta_serial(data: dict) -> int | None:
    meta = data.get("meta")
    return _int_or_none(meta.get("_last-serial")) if isinstance(meta, dict) else None


class _AnchorParser(HTMLParser):
    """Collects anchors (attributes and text) and the ``<!--SERIAL n-->`` comment."""

    def __init__(self, keep_attrs: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.keep_attrs = keep_attrs
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.texts: list[str] = []
        self.serial: int | None = None
        self._attrs: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._attrs = dict(attrs) if self.keep_attrs else {}
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._attrs is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
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


def _feed(parser: HTMLParser, chunks: Iterable[bytes], encoding: str) -> None:
    """Parse as the bytes arrive, so a 40 MB page is never held twice."""
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    for chunk in chunks:
        parser.feed(decoder.decode(chunk))
    parser.feed(decoder.decode(b"", final=True))
    parser.close()


def _html_file(attrs: dict[str, str | None], text: str, base: str) -> UpstreamFile | None:
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


def _project_entry(pairs: list[tuple[str, Any]]) -> Any:
    """json object hook: root project entries become small tuples, not dicts."""
    d = dict(pairs)
    if "name" in d and "projects" not in d and "meta" not in d:
        return (d["name"], d.get("_last-serial"))
    return d


# ---------------------------------------------------------------- the client


def _reason(exc: BaseException) -> str:
    """A short, one-line cause for a requests exception."""
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    m = _ERRNO.search(str(exc))
    if m:
        return m[1].strip()
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class Upstream:
    """One HTTP session to the upstream index; safe to share between threads."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 30,
        retries: int = 4,
        xmlrpc_url: str | None = None,
        backoff: float = 0.5,
    ) -> None:
        self.url = url.rstrip("/") + "/"
        self.timeout = timeout
        self.retries = max(0, retries)
        self.xmlrpc_url = xmlrpc_url or None
        self.backoff = backoff
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["Accept"] = ACCEPT

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> Upstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _error(self, url: str, what: str) -> UpstreamError:
        return UpstreamError(f"upstream: {url} {what}; check 'upstream' in the config")

    def _get(self, url: str, *, stream: bool = False) -> requests.Response | None:
        """GET with retries on connection errors, 5xx and 429; None on 404."""
        last = "no answer"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), _BACKOFF_CAP))
            try:
                r = self.session.get(url, timeout=self.timeout, stream=stream)
            except _FATAL as e:
                raise self._error(url, f"is not a usable URL ({_reason(e)})") from None
            except requests.RequestException as e:
                last = _reason(e)
                continue
            if r.status_code == 404:
                r.close()
                return None
            if r.status_code == 429 or r.status_code >= 500:
                last = f"HTTP {r.status_code}"
                r.close()
                continue
            if r.status_code >= 400:
                r.close()
                raise self._error(url, f"answered HTTP {r.status_code}")
            return r
        tries = self.retries + 1
        raise UpstreamError(
            f"upstream: cannot get {url} ({last}, {tries} attempt{'s' * (tries > 1)}); "
            "check 'upstream' in the config and the network"
        )

    def _kind(self, r: requests.Response) -> str:
        """'json' or 'html' from the Content-Type, else a one-line error."""
        ctype = r.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype == JSON_TYPE:
            return "json"
        if ctype in HTML_TYPES:
            return "html"
        r.close()
        raise self._error(r.url, f"answered content type {ctype or 'none'!r}, not a simple index")

    def _json(self, r: requests.Response, **kw: Any) -> dict:
        try:
            data = json.loads(r.content, **kw)
        except requests.RequestException as e:
            raise self._error(r.url, f"broke off its answer ({_reason(e)})") from None
        except ValueError as e:
            raise self._error(r.url, f"answered malformed JSON ({e})") from None
        if not isinstance(data, dict):
            raise self._error(r.url, "answered JSON that is not an object")
        return data

    def _html(self, r: requests.Response, parser: HTMLParser) -> None:
        try:
            _feed(parser, r.iter_content(_CHUNK), r.encoding or "utf-8")
        except requests.RequestException as e:
            raise self._error(r.url, f"broke off its answer ({_reason(e)})") from None
        except LookupError:
            raise self._error(r.url, f"uses an unknown encoding {r.encoding!r}") from None
        finally:
            r.close()

    def _header_serial(self, r: requests.Response) -> int | None:
        value = r.headers.get("X-PyPI-Last-Serial", "")
        return int(value) if value.isdigit() else None

    def list_projects(self) -> ProjectList:
        """Every project name upstream, with per-project serials when offered."""
        r = self._get(self.url, stream=True)
        if r is None:
            raise self._error(self.url, "answered 404 Not Found")
        if self._kind(r) == "json":
            return self._json_root(r)
        parser = _AnchorParser(keep_attrs=False)
        self._html(r, parser)
        return ProjectList(names=parser.texts, serial=parser.serial or self._header_serial(r))

    def _json_root(self, r: requests.Response) -> ProjectList:
        data = self._json(r, object_pairs_hook=_project_entry)
        projects = data.get("projects")
        if not isinstance(projects, list):
            raise self._error(r.url, "answered JSON without 'projects'")
        out = ProjectList(serial=_meta_serial(data) or self._header_serial(r))
        for entry in projects:
            if not isinstance(entry, tuple) or not isinstance(entry[0], str):
                continue
            out.names.append(entry[0])
            serial = _int_or_none(entry[1])
            if serial is not None:
                out.serials[entry[0]] = serial
        return out

    def project(self, name: str) -> ProjectPage | None:
        """The project's page, or None when upstream does not know it (404)."""
        url = f"{self.url}{normalize(name)}/"
        r = self._get(url, stream=True)
        if r is None:
            return None
        if self._kind(r) == "json":
            return self._json_page(r, name)
        parser = _AnchorParser(keep_attrs=True)
        self._html(r, parser)
        files = [_html_file(a, t, r.url) for a, t in parser.anchors]
        return ProjectPage(
            name=name,
            files=[f for f in files if f is not None],
            serial=parser.serial or self._header_serial(r),
        )

    def _json_page(self, r: requests.Response, name: str) -> ProjectPage:
        data = self._json(r)
        files = data.get("files")
        if not isinstance(files, list):
            raise self._error(r.url, "answered JSON without 'files'")
        versions = data.get("versions")
        parsed = (_json_file(f, r.url) for f in files)
        return ProjectPage(
            name=data["name"] if isinstance(data.get("name"), str) else name,
            files=[f for f in parsed if f is not None],
            versions=[str(v) for v in versions] if isinstance(versions, list) else None,
            serial=_meta_serial(data) or self._header_serial(r),
        )

    # ------------------------------------------------------------ XML-RPC

    def _xmlrpc(self, method: str, *args: Any) -> Any:
        """Call the changelog API; None when it is not offered or refuses."""
        if not self.xmlrpc_url:
            return None
        proxy = xmlrpc.client.ServerProxy(self.xmlrpc_url, transport=_transport(
            self.xmlrpc_url, self.timeout))
        try:
            return getattr(proxy, method)(*args)
        except (xmlrpc.client.Error, ExpatError, OSError, ValueError, TypeError,
                http.client.HTTPException):  # a cut-off answer: as if it had none
            return None

    def changelog_since(self, serial: int) -> list[ChangelogEntry] | None:
        """Changes after ``serial``, or None when the upstream has no changelog."""
        rows = self._xmlrpc("changelog_since_serial", serial)
        if not isinstance(rows, list):
            return None
        return list(_entries(rows))

    def last_serial(self) -> int | None:
        """The upstream's current changelog serial, or None."""
        value = self._xmlrpc("changelog_last_serial")
        return _int_or_none(value)


def _entries(rows: list) -> Iterator[ChangelogEntry]:
    for row in rows:
        if isinstance(row, list | tuple) and len(row) >= 5 and isinstance(row[0], str):
            name, version, ts, action, serial = row[:5]
            if isinstance(serial, int):
                yield ChangelogEntry(name, version if version else None,
                                     ts if isinstance(ts, int) else 0, str(action or ""), serial)


def _transport(url: str, timeout: float) -> xmlrpc.client.Transport:
    """An XML-RPC transport that honours the HTTP timeout."""
    base = xmlrpc.client.SafeTransport if url.startswith("https:") else xmlrpc.client.Transport

    class _Timed(base):  # type: ignore[misc, valid-type]
        def make_connection(self, host):  # type: ignore[no-untyped-def]
            conn = super().make_connection(host)
            conn.timeout = timeout
            return conn

    return _Timed()
