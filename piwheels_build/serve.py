"""A small read-only web server for the www/ tree, for one-machine use (nginx in a fleet).

It does what the nginx role does: PEP 691 content negotiation on ``/simple/``
directories, conditional and single-range requests, and nothing outside www/
(no traversal, no symlinks leading out, no hidden temp files, no listings).
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .downloads.logformat import format_line

V1_JSON = "application/vnd.pypi.simple.v1+json"
V1_HTML = "application/vnd.pypi.simple.v1+html"
HTML = "text/html; charset=utf-8"
TEXT = "text/plain; charset=utf-8"
# What a /simple/ directory can answer, in the server's order of preference on a tie.
OFFERS = (("text/html", "index.html", HTML),
          (V1_HTML, "index.html", V1_HTML),
          (V1_JSON, "index.json", V1_JSON))
LATEST = {"application/vnd.pypi.simple.latest+json": V1_JSON,
          "application/vnd.pypi.simple.latest+html": V1_HTML}
TYPES = {".whl": "application/octet-stream", ".metadata": TEXT, ".txt": TEXT,
         ".json": "application/json", ".html": HTML, ".css": "text/css; charset=utf-8",
         ".gz": "application/gzip", ".zip": "application/zip"}
CHUNK = 1 << 16
log = logging.getLogger("piwheels.serve")


def parse_accept(header: str | None) -> list[tuple[str, float, int]]:
    """(media range, q, position) of each entry of an Accept header; no header is */*."""
    if not header or not header.strip():
        return [("*/*", 1.0, 0)]
    out = []
    for pos, item in enumerate(header.split(",")):
        parts = [p.strip() for p in item.split(";")]
        media = parts[0].lower()
        if "/" not in media:
            continue
        q = 1.0
        for param in parts[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = min(max(float(value.strip()), 0.0), 1.0)
                except ValueError:
                    q = 0.0
        out.append((LATEST.get(media, media), q, pos))
    return out


def _match(offer: str, ranges: list[tuple[str, float, int]]) -> tuple[float, int, int] | None:
    """(q, specificity, -position) of the most specific range that covers offer."""
    kind = offer.split("/")[0]
    best = None
    for media, q, pos in ranges:
        if media == offer:
            spec = 2
        elif media == f"{kind}/*":
            spec = 1
        elif media == "*/*":
            spec = 0
        else:
            continue
        if best is None or spec > best[1]:
            best = (q, spec, -pos)
    return best


def negotiate(accept: str | None) -> tuple[str, str] | None:
    """(index file, Content-Type) for a /simple/ directory, or None: 406 Not Acceptable."""
    ranges = parse_accept(accept)
    scored = []
    for pref, (offer, filename, ctype) in enumerate(reversed(OFFERS)):
        m = _match(offer, ranges)
        if m is not None and m[0] > 0:
            scored.append(((*m, pref), filename, ctype))
    if not scored:
        return None
    _, filename, ctype = max(scored)
    return filename, ctype


def content_type(path: str) -> str:
    return TYPES.get(os.path.splitext(path)[1].lower(), "application/octet-stream")


def parse_range(header: str | None, size: int) -> tuple[int, int] | str | None:
    """A single ``bytes=`` range as (first, last); "unsatisfiable"; None to send everything."""
    if not header or not header.strip().lower().startswith("bytes="):
        return None
    spec = header.strip()[6:].strip()
    if "," in spec or "-" not in spec:
        return None
    first, _, last = (s.strip() for s in spec.partition("-"))
    if not (first.isdigit() or first == "") or not (last.isdigit() or last == ""):
        return None
    if first == "":
        if last == "" or int(last) == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - int(last)), size - 1
    start = int(first)
    if last and int(last) < start:
        return None  # invalid: ignore it
    if start >= size:
        return "unsatisfiable"
    return start, size - 1 if last == "" else min(int(last), size - 1)


class Handler(BaseHTTPRequestHandler):
    """GET and HEAD on the www/ tree of the server."""

    # Headers and body are separate writes: without this, Nagle holds each
    # keep-alive answer for the client's delayed ACK (~40 ms; bench/serving.py).
    disable_nagle_algorithm = True

    server_version = "piwheels"
    protocol_version = "HTTP/1.1"
    server: Any

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        self.handle_request(send_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self.handle_request(send_body=False)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """One access-log line per request (logging adds the time; none when quiet)."""
        if not getattr(self.server, "quiet", False):
            log.info("serve: %s %s", self.address_string(), format % args)

    # The access log (config serve_access_log): nginx's combined format, one line per
    # answer, written when its headers are, so `piwheels downloads` reads both servers'.
    def send_response(self, code: int, message: str | None = None) -> None:
        self._code, self._length = code, 0
        super().send_response(code, message)

    def send_header(self, keyword: str, value: str) -> None:
        if keyword.lower() == "content-length":
            self._length = int(value)
        super().send_header(keyword, value)

    def end_headers(self) -> None:
        access = getattr(self.server, "access_log", None)
        if access is not None and hasattr(self, "_code"):
            sent = self._length if getattr(self, "send_body", True) else 0
            headers = getattr(self, "headers", None) or {}  # none for a bad request line
            line = format_line(self.client_address[0], datetime.now(UTC),
                               getattr(self, "requestline", "") or "-", self._code, sent,
                               headers.get("Referer", ""), headers.get("User-Agent", ""))
            access.write(line)
        super().end_headers()

    def log_error(self, format: str, *args: Any) -> None:  # noqa: A002
        if not getattr(self.server, "quiet", False):
            log.warning("serve: %s %s", self.address_string(), format % args)

    # ------------------------------------------------------------------ routing

    def handle_request(self, send_body: bool) -> None:
        self.send_body = send_body
        url = urlsplit(self.path)
        target = self.resolve(url.path)
        if target is None:
            return self.error(404)
        if target.is_dir():
            if not url.path.endswith("/"):
                location = url.path + "/" + (f"?{url.query}" if url.query else "")
                return self.redirect(location)
            return self.serve_directory(target)
        if target.is_file():
            return self.send_file(target, content_type(target.name))
        return self.error(404)

    def resolve(self, url_path: str) -> Path | None:
        """The file or directory a URL path names, or None if it is not ours to serve."""
        try:
            text = unquote(url_path, errors="strict")
        except UnicodeDecodeError:
            return None
        if not text.startswith("/"):
            return None
        parts = text[1:].split("/")
        if parts and parts[-1] == "":
            parts.pop()
        for part in parts:
            if not part or part.startswith(".") or "\0" in part or "\\" in part:
                return None
        return self.inside(Path(self.server.www).joinpath(*parts))

    def inside(self, path: Path) -> Path | None:
        """path if it exists and, symlinks followed, stays inside www/."""
        root = os.path.realpath(self.server.www)
        real = os.path.realpath(path)
        if real != root and not real.startswith(root + os.sep):
            return None
        return Path(real) if os.path.exists(real) else None

    def serve_directory(self, directory: Path) -> None:
        root = Path(os.path.realpath(self.server.www))
        if directory.relative_to(root).parts[:1] == ("simple",):
            chosen = negotiate(self.headers.get("Accept"))
            if chosen is None:
                return self.error(406, {"Vary": "Accept"})
            filename, ctype = chosen
            index = self.inside(directory / filename)
            if index is None or not index.is_file():
                return self.error(404, {"Vary": "Accept"})
            return self.send_file(index, ctype, {"Vary": "Accept"})
        index = self.inside(directory / "index.html")
        if index is None or not index.is_file():
            return self.error(404)
        return self.send_file(index, HTML)

    # ------------------------------------------------------------------ responses

    def error(self, code: int, headers: dict[str, str] | None = None) -> None:
        body = f"{code} {self.responses.get(code, ('',))[0]}\n".encode()
        self.send_response(code)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", TEXT)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.send_body:
            self.wfile.write(body)

    def redirect(self, location: str) -> None:
        self.send_response(301)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def not_modified(self, etag: str, mtime: float) -> bool:
        """RFC 9110: If-None-Match wins over If-Modified-Since."""
        inm = self.headers.get("If-None-Match")
        if inm is not None:
            tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
            return "*" in tags or etag in tags
        ims = self.headers.get("If-Modified-Since")
        if ims:
            try:
                return int(mtime) <= parsedate_to_datetime(ims).timestamp()
            except (TypeError, ValueError, IndexError):
                return False
        return False

    def wanted_range(self, size: int, etag: str, last_modified: str) -> Any:
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range.strip() not in (etag, last_modified):
            return None
        return parse_range(self.headers.get("Range"), size)

    def send_file(self, path: Path, ctype: str, headers: dict[str, str] | None = None) -> None:
        try:
            f = open(path, "rb")
        except OSError:
            return self.error(404, headers)
        with f:
            st = os.fstat(f.fileno())
            etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
            last_modified = formatdate(st.st_mtime, usegmt=True)
            common = {**(headers or {}), "ETag": etag, "Last-Modified": last_modified,
                      "Accept-Ranges": "bytes", "X-Content-Type-Options": "nosniff"}
            if self.not_modified(etag, st.st_mtime):
                return self.send_headers(304, common)
            rng = self.wanted_range(st.st_size, etag, last_modified)
            if rng == "unsatisfiable":
                return self.error(416, {"Content-Range": f"bytes */{st.st_size}"})
            start, end = rng if rng else (0, st.st_size - 1)
            common["Content-Type"] = ctype
            common["Content-Length"] = str(end - start + 1)
            if rng:
                common["Content-Range"] = f"bytes {start}-{end}/{st.st_size}"
            self.send_headers(206 if rng else 200, common)
            if self.send_body:
                self.copy(f, start, end - start + 1)

    def send_headers(self, code: int, headers: dict[str, str]) -> None:
        self.send_response(code)
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()

    def copy(self, f: Any, start: int, length: int) -> None:
        f.seek(start)
        try:
            while length > 0:
                chunk = f.read(min(CHUNK, length))
                if not chunk:
                    break
                self.wfile.write(chunk)
                length -= len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class AccessLog:
    """An access log file, appended to one whole line at a time (threads share it).

    Opened by name for each line, as nginx reopens on USR1: logrotate may rename it
    under a running server and the next line starts the new file. Raises OSError when
    the file cannot be opened (checked once at start by ``make_server``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        with open(self.path, "a", encoding="ascii"):
            pass

    def write(self, line: str) -> None:
        with self._lock:
            try:
                with open(self.path, "a", encoding="ascii") as f:
                    f.write(line)  # one write of a whole line: a reader sees it whole or not
            except OSError as e:
                log.warning("serve: cannot write the access log %s: %s", self.path, e)


def make_server(www: Path, host: str = "127.0.0.1", port: int = 8000, *,
                quiet: bool = False, access_log: Path | None = None) -> ThreadingHTTPServer:
    """A server bound to host:port (port 0 picks a free one), not yet serving; with
    ``access_log``, each answer appends a combined-format line to it (OSError if the
    file cannot be opened for appending)."""
    log_file = AccessLog(access_log) if access_log else None
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    server.www = Path(www).resolve()  # type: ignore[attr-defined]
    server.quiet = quiet  # type: ignore[attr-defined]
    server.access_log = log_file  # type: ignore[attr-defined]
    return server


def serve(www: Path, host: str = "127.0.0.1", port: int = 8000, *, quiet: bool = False,
          access_log: Path | None = None) -> None:
    """Serve www/ until interrupted (``access_log``: as ``make_server``)."""
    with make_server(www, host, port, quiet=quiet, access_log=access_log) as server:
        server.serve_forever()
