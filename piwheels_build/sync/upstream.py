"""A client for the upstream simple index (PEP 503 HTML, PEP 691 JSON) and its
XML-RPC changelog.

Every failure the operator can do something about is an ``UpstreamError`` with
one line; retries and backoff live here so sync only sees final answers."""

from __future__ import annotations

import http.client
import json
import xmlrpc.client
from typing import Any
from xml.parsers.expat import ExpatError

import requests

from .. import http as retrying
from ..errors import UpstreamError
from ..names import normalize
from .simpleapi import (
    HTML_TYPES,
    JSON_TYPE,
    AnchorParser,
    ChangelogEntry,
    ProjectList,
    ProjectPage,
    changelog_entries,
    feed_html,
    html_file,
    int_or_none,
    json_file,
    meta_serial,
    project_entry,
)

ACCEPT = f"{JSON_TYPE}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"


_CHUNK = 1 << 16


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
        self.session = retrying.session(self.retries, backoff=backoff, pool_maxsize=64)
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
        """GET, retried by the session (connection errors, 5xx, 429); None on 404."""
        try:
            r = retrying.get(self.session, url, timeout=self.timeout, retries=self.retries,
                         stream=stream)
        except retrying.BAD_URL as e:
            raise self._error(url, f"is not a usable URL ({retrying.reason(e)})") from None
        except retrying.GaveUp as e:
            raise UpstreamError(
                f"upstream: cannot get {url} ({e.reason}, {e.attempts} "
                f"attempt{'s' * (e.attempts > 1)}); check 'upstream' in the config and the network"
            ) from None
        if r.status_code == 404:
            r.close()
            return None
        if r.status_code >= 400:
            r.close()
            raise self._error(url, f"answered HTTP {r.status_code}")
        return r

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
            raise self._error(r.url, f"broke off its answer ({retrying.reason(e)})") from None
        except ValueError as e:
            raise self._error(r.url, f"answered malformed JSON ({e})") from None
        if not isinstance(data, dict):
            raise self._error(r.url, "answered JSON that is not an object")
        return data

    def _html(self, r: requests.Response, parser: AnchorParser) -> None:
        try:
            feed_html(parser, r.iter_content(_CHUNK), r.encoding or "utf-8")
        except requests.RequestException as e:
            raise self._error(r.url, f"broke off its answer ({retrying.reason(e)})") from None
        except LookupError:
            raise self._error(r.url, f"uses an unknown encoding {r.encoding!r}") from None
        finally:
            r.close()
        if parser.opened and not parser.closed:  # cut off: the files after the cut are missing
            raise self._error(r.url, "answered a truncated page (<html> without </html>)")

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
        parser = AnchorParser(keep_attrs=False)
        self._html(r, parser)
        return ProjectList(names=parser.texts, serial=parser.serial or self._header_serial(r))

    def _json_root(self, r: requests.Response) -> ProjectList:
        data = self._json(r, object_pairs_hook=project_entry)
        projects = data.get("projects")
        if not isinstance(projects, list):
            raise self._error(r.url, "answered JSON without 'projects'")
        out = ProjectList(serial=meta_serial(data) or self._header_serial(r))
        for entry in projects:
            if not isinstance(entry, tuple) or not isinstance(entry[0], str):
                # A list missing names would mark their packages deleted: refuse it whole.
                raise self._error(r.url, f"answered a malformed project entry {str(entry)[:60]!r}")
            out.names.append(entry[0])
            serial = int_or_none(entry[1])
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
        parser = AnchorParser(keep_attrs=True)
        self._html(r, parser)
        files = [html_file(a, t, r.url) for a, t in parser.anchors]
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
        parsed = [json_file(f, r.url) for f in files]
        return ProjectPage(
            name=data["name"] if isinstance(data.get("name"), str) else name,
            files=[f for f in parsed if f is not None],
            partial=None in parsed,
            versions=[str(v) for v in versions] if isinstance(versions, list) else None,
            serial=meta_serial(data) or self._header_serial(r),
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
        return list(changelog_entries(rows))

    def last_serial(self) -> int | None:
        """The upstream's current changelog serial, or None."""
        value = self._xmlrpc("changelog_last_serial")
        return int_or_none(value)


def _transport(url: str, timeout: float) -> xmlrpc.client.Transport:
    """An XML-RPC transport that honours the HTTP timeout."""
    base = xmlrpc.client.SafeTransport if url.startswith("https:") else xmlrpc.client.Transport

    class _Timed(base):  # type: ignore[misc, valid-type]
        def make_connection(self, host):  # type: ignore[no-untyped-def]
            conn = super().make_connection(host)
            conn.timeout = timeout
            return conn

    return _Timed()

