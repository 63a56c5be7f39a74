"""A fake upstream simple index on 127.0.0.1 for tests (not a test module).

Serves PEP 691 JSON or PEP 503 HTML by the Accept header, a per-project and a
global ``_last-serial``, the files themselves, an XML-RPC changelog, and can be
told to fail (HTTP 500 with or without Retry-After, malformed JSON, a slow answer,
a connection dropped mid-answer) for a given path.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import socket
import tarfile
import threading
import time
import xmlrpc.server
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from piwheels_build.names import normalize

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
DROP = -1  # an injected "status": the connection is closed mid-answer
_SDIST_EXTS = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".zip", ".tar")


@dataclass
class FakeFile:
    filename: str
    version: str | None
    data: bytes
    upload_time: datetime
    requires_python: str | None = None
    yanked: bool = False
    yanked_reason: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class FakeProject:
    name: str
    serial: int
    files: dict[str, FakeFile] = field(default_factory=dict)


def _version_of(filename: str) -> str | None:
    """The version of a wheel or sdist, parsed independently of the code under test."""
    if filename.endswith(".whl") and filename.count("-") >= 4:
        return filename.split("-")[1]
    for ext in _SDIST_EXTS:
        if filename.endswith(ext) and "-" in filename:
            return filename[: -len(ext)].rsplit("-", 1)[1]
    return None


def _quality(accept: str, ctype: str) -> float:
    """The q value the Accept header gives ``ctype`` (exact match or */*)."""
    best = 0.0
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media not in (ctype, "*/*"):
            continue
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        best = max(best, q - (0.001 if media == "*/*" else 0))
    return best


class FakeUpstream:
    """An in-memory simple index served over HTTP in a daemon thread."""

    def __init__(self, *, json: bool = True, xmlrpc: bool = False) -> None:
        self.json = json
        self.xmlrpc = xmlrpc
        self.serial = 0
        self.projects: dict[str, FakeProject] = {}
        self.changelog: list[tuple[str, str | None, int, str, int]] = []
        self.requests_log: list[str] = []
        self._failures: dict[str, list] = {}
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> FakeUpstream:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def root(self) -> str:
        assert self._server, "FakeUpstream is not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def url(self) -> str:
        return f"{self.root}/simple/"

    @property
    def xmlrpc_url(self) -> str:
        return f"{self.root}/pypi"

    # ------------------------------------------------------------ state

    def _bump(self, project: FakeProject | None, name: str, version: str | None,
              action: str) -> None:
        self.serial += 1
        if project is not None:
            project.serial = self.serial
        self.changelog.append((name, version, int(time.time()), action, self.serial))

    def add_file(self, project: str, filename: str, data: bytes, *,
                 upload_time: datetime | None = None, requires_python: str | None = None,
                 version: str | None = None) -> FakeFile:
        """Upload a file to ``project`` (spelled as given), creating the project if new."""
        with self._lock:
            key = normalize(project)
            proj = self.projects.get(key)
            if proj is None:
                proj = self.projects[key] = FakeProject(project, self.serial)
                self._bump(proj, project, None, "create")
            f = FakeFile(filename, version or _version_of(filename), data,
                         upload_time or datetime.now(UTC), requires_python)
            proj.files[filename] = f
            self._bump(proj, proj.name, f.version, f"add file {filename}")
            return f

    def _matching(self, target: str | tuple[str, str]) -> list[tuple[FakeProject, FakeFile]]:
        found = []
        for proj in self.projects.values():
            for f in proj.files.values():
                if isinstance(target, tuple):
                    if normalize(target[0]) == normalize(proj.name) and f.version == target[1]:
                        found.append((proj, f))
                elif f.filename == target:
                    found.append((proj, f))
        if not found:
            raise KeyError(target)
        return found

    def yank(self, target: str | tuple[str, str], reason: str | None = None) -> None:
        """Yank one file, or every file of ``(project, version)``."""
        self._set_yank(target, True, reason)

    def unyank(self, target: str | tuple[str, str]) -> None:
        self._set_yank(target, False, None)

    def _set_yank(self, target: str | tuple[str, str], yanked: bool, reason: str | None) -> None:
        with self._lock:
            for proj, f in self._matching(target):
                f.yanked, f.yanked_reason = yanked, reason
                self._bump(proj, proj.name, f.version, "yank release" if yanked else "unyank")

    def remove_file(self, filename: str) -> None:
        with self._lock:
            for proj, f in self._matching(filename):
                del proj.files[f.filename]
                self._bump(proj, proj.name, f.version, f"remove file {filename}")

    def remove_project(self, name: str) -> None:
        with self._lock:
            proj = self.projects.pop(normalize(name))
            self._bump(None, proj.name, None, "remove project")

    def rename_project(self, old: str, new: str) -> None:
        """Rename as the changelog reports it: ``rename from <old>`` on the new name."""
        with self._lock:
            proj = self.projects.pop(normalize(old))
            proj.name = new
            self.projects[normalize(new)] = proj
            self._bump(proj, new, None, f"rename from {old}")

    def fail(self, path: str, times: int = 1, status: int = 500,
             retry_after: str | None = None) -> None:
        """Answer ``path`` (e.g. ``/simple/foo/``) with ``status`` the next ``times`` times,
        with a ``Retry-After`` header when given."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        with self._lock:
            self._failures.setdefault(path, []).extend(
                [(status, b"", "text/plain", 0, headers)] * times)

    def drop(self, path: str, times: int = 1) -> None:
        """Start answering ``path`` (part of the status line) and close the connection."""
        with self._lock:
            self._failures.setdefault(path, []).extend([(DROP, b"", "", 0, {})] * times)

    def requests_for(self, path: str) -> int:
        """How many requests for ``path`` the server received."""
        return self.requests_log.count(path)

    def malformed(self, path: str, times: int = 1, body: bytes = b'{"files": [',
                  content_type: str = JSON_TYPE) -> None:
        """Answer ``path`` with a broken body (malformed JSON by default)."""
        with self._lock:
            self._failures.setdefault(path, []).extend(
                [(200, body, content_type, 0, {})] * times)

    def slow(self, path: str, seconds: float, times: int = 1) -> None:
        """Answer ``path`` normally but only after ``seconds``, for timeout tests."""
        with self._lock:
            self._failures.setdefault(path, []).extend([(None, b"", "", seconds, {})] * times)

    def project_paths(self) -> list[str]:
        """Project-page requests seen so far (root and file downloads left out)."""
        return [p for p in self.requests_log if p.startswith("/simple/") and p != "/simple/"]

    # ------------------------------------------------------------ rendering

    def _injected(self, path: str) -> tuple[int, bytes, str, dict[str, str]] | None:
        with self._lock:
            queue = self._failures.get(path)
            found = queue.pop(0) if queue else None
        if found is None:
            return None
        status, body, ctype, delay, headers = found
        if delay:
            time.sleep(delay)
        return None if status is None else (status, body, ctype, headers)

    def _root_json(self) -> bytes:
        projects = [{"name": p.name, "_last-serial": p.serial}
                    for p in sorted(self.projects.values(), key=lambda p: normalize(p.name))]
        meta = {"api-version": "1.1", "_last-serial": self.serial}
        return json.dumps({"meta": meta, "projects": projects}).encode()

    def _root_html(self) -> bytes:
        rows = "".join(f'<a href="{normalize(p.name)}/">{html.escape(p.name)}</a>\n'
                       for p in self.projects.values())
        return (f"<!DOCTYPE html>\n<html><head><title>Simple index</title></head><body>\n"
                f"{rows}</body></html>\n<!--SERIAL {self.serial}-->\n").encode()

    def _page_json(self, proj: FakeProject) -> bytes:
        files = []
        for f in proj.files.values():
            files.append({
                "filename": f.filename,
                "url": f"../../files/{f.filename}",
                "hashes": {"sha256": f.sha256},
                "requires-python": f.requires_python,
                "size": len(f.data),
                "upload-time": f.upload_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "yanked": (f.yanked_reason or True) if f.yanked else False,
            })
        versions = sorted({f.version for f in proj.files.values() if f.version})
        meta = {"api-version": "1.1", "_last-serial": proj.serial}
        return json.dumps({"meta": meta, "name": proj.name, "files": files,
                           "versions": versions}).encode()

    def _page_html(self, proj: FakeProject) -> bytes:
        rows = []
        for f in proj.files.values():
            attrs = f' href="../../files/{f.filename}#sha256={f.sha256}"'
            if f.requires_python:
                attrs += f' data-requires-python="{html.escape(f.requires_python)}"'
            if f.yanked:
                attrs += f' data-yanked="{html.escape(f.yanked_reason or "")}"'
            rows.append(f"<a{attrs}>{html.escape(f.filename)}</a><br/>\n")
        return (f"<!DOCTYPE html>\n<html><head><title>Links for {html.escape(proj.name)}"
                f"</title></head><body>\n<h1>Links for {html.escape(proj.name)}</h1>\n"
                f"{''.join(rows)}</body></html>\n<!--SERIAL {proj.serial}-->\n").encode()

    def render(self, path: str, accept: str) -> tuple:
        """(status, body, content type[, extra headers]) for a GET of ``path``; status
        ``DROP`` means: close the connection mid-answer."""
        injected = self._injected(path)
        if injected:
            return injected
        with self._lock:
            if path.startswith("/files/"):
                return self._file(path[len("/files/"):])
            if not path.startswith("/simple/"):
                return 404, b"not found", "text/plain"
            q_json = _quality(accept, JSON_TYPE)
            q_html = max(_quality(accept, HTML_TYPE), _quality(accept, "text/html"))
            use_json = self.json and q_json > 0 and q_json >= q_html
            ctype = JSON_TYPE if use_json else (HTML_TYPE if self.json else "text/html")
            name = path[len("/simple/"):].strip("/")
            if not name:
                body = self._root_json() if use_json else self._root_html()
                return 200, body, ctype
            proj = self.projects.get(normalize(name))
            if proj is None:
                return 404, b"not found", "text/plain"
            return 200, self._page_json(proj) if use_json else self._page_html(proj), ctype

    def _file(self, filename: str) -> tuple[int, bytes, str]:
        for proj in self.projects.values():
            if filename in proj.files:
                return 200, proj.files[filename].data, "application/octet-stream"
        return 404, b"not found", "text/plain"

    def changelog_since_serial(self, serial: int) -> list:
        with self._lock:
            return [list(e[:1]) + [e[1] or ""] + list(e[2:])
                    for e in self.changelog if e[4] > serial]

    def changelog_last_serial(self) -> int:
        return self.serial


class _Handler(BaseHTTPRequestHandler):
    fake: FakeUpstream
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass

    def _send(self, status: int, body: bytes, ctype: str,
              headers: dict[str, str] | None = None) -> None:
        if status == DROP:
            self.wfile.write(b"HTTP/1.1 20")
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        try:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout test)

    def do_GET(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        self.fake.requests_log.append(path)
        self._send(*self.fake.render(path, self.headers.get("Accept", "")))

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        self.fake.requests_log.append(path)
        if path != "/pypi" or not self.fake.xmlrpc:
            length = int(self.headers.get("Content-Length", 0))
            self.rfile.read(length)
            self._send(404, b"not found", "text/plain")
            return
        data = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        dispatcher = xmlrpc.server.SimpleXMLRPCDispatcher(allow_none=True)
        dispatcher.register_function(self.fake.changelog_since_serial, "changelog_since_serial")
        dispatcher.register_function(self.fake.changelog_last_serial, "changelog_last_serial")
        self._send(200, dispatcher._marshaled_dispatch(data), "text/xml")


def make_sdist(name: str, version: str,
               files: dict[str, str] | None = None) -> tuple[str, bytes]:
    """A real, buildable setuptools sdist ``{name}-{version}.tar.gz``, built in memory."""
    module = normalize(name).replace("-", "_")
    root = f"{name}-{version}"
    contents = {
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        "pyproject.toml": (
            '[build-system]\nrequires = ["setuptools>=61"]\n'
            'build-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\n\n'
            f'[tool.setuptools]\npy-modules = ["{module}"]\n'
        ),
        f"{module}.py": f'"""A tiny test module."""\n\n__version__ = "{version}"\n',
    }
    contents.update(files or {})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, text in sorted(contents.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{path}")
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
            tar.addfile(info, io.BytesIO(data))
    return f"{root}.tar.gz", buf.getvalue()
