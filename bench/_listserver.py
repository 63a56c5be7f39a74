"""A fake upstream with a PyPI-sized project list, for bench/sync_scale.py (run as a process).

    python bench/_listserver.py NAMES_SOURCE   # prints the port, then serves 127.0.0.1

NAMES_SOURCE is a saved root page (``.html`` or ``.json``) or ``synthetic:N``.
``/simple/`` is the PEP 691 JSON list with per-project ``_last-serial``;
``/simple/<name>/`` a JSON project page made up on the fly (one sdist per
version); ``/html/`` the saved HTML root page as it was fetched; a POST to
``/_bump?n=N&offset=K`` gives N projects (every len/N-th, from the K-th) a new
version and a new serial, and answers them as JSON ``[[package, version], ...]``.

A POST to ``/pypi`` is PyPI's XML-RPC changelog API, what sync calls with
``upstream_xmlrpc``: ``changelog_last_serial()`` and
``changelog_since_serial(serial)`` (rows ``[name, version, timestamp, action,
serial]``; each listed name has a ``create`` row at its initial serial, each
bump a ``new release`` and an ``add source file`` row). ``/_stats`` answers
JSON counts of the requests served so far (``root``: the list pages
``/simple/`` and ``/html/``; ``pages``; ``xmlrpc``), so the bench can tell
whether a sync read the full list.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
import threading
import time
import xmlrpc.server
from bisect import bisect_right
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
_NORM = re.compile(r"[-_.]+")


def normalize(name: str) -> str:
    return _NORM.sub("-", name).lower()


class State:
    def __init__(self, source: str) -> None:
        self.html = b""
        if source.startswith("synthetic:"):
            n = int(source.split(":", 1)[1])
            names = [f"{hashlib.md5(str(i).encode()).hexdigest()[:10]}-pkg{i}" for i in range(n)]
        elif source.endswith(".json"):
            data = json.loads(Path(source).read_bytes())
            names = [p["name"] for p in data["projects"]]
        else:
            self.html = Path(source).read_bytes()
            names = [m.decode("utf-8", "replace")
                     for m in re.findall(rb"<a [^>]*>([^<]+)</a>", self.html)]
        self.names = names
        self.serial = {normalize(n): i + 1 for i, n in enumerate(names)}
        self.display = {normalize(n): n for n in names}
        self.versions: dict[str, list[str]] = {}
        self.last = len(names)
        # Changelog rows after the initial ``create`` ones, in serial order.
        self.changelog: list[tuple[str, str | None, int, str, int]] = []
        self.started = int(time.time())
        self.lock = threading.Lock()
        self.counts = {"root": 0, "pages": 0, "xmlrpc": 0}
        self.render_root()

    def count(self, what: str) -> None:
        with self.lock:
            self.counts[what] += 1

    def render_root(self) -> None:
        projects = [{"name": n, "_last-serial": self.serial[normalize(n)]} for n in self.names]
        self.root = json.dumps({"meta": {"api-version": "1.1", "_last-serial": self.last},
                                "projects": projects}, separators=(",", ":")).encode()

    def page(self, key: str) -> bytes | None:
        if key not in self.serial:
            return None
        files = []
        for v in self.versions.get(key, ["1.0"]):
            fn = f"{key}-{v}.tar.gz"
            files.append({"filename": fn, "url": f"../../files/{fn}",
                          "hashes": {"sha256": hashlib.sha256(fn.encode()).hexdigest()},
                          "size": 1000, "upload-time": "2024-01-01T00:00:00.000000Z",
                          "requires-python": ">=3.8", "yanked": False})
        return json.dumps({"meta": {"api-version": "1.1", "_last-serial": self.serial[key]},
                           "name": self.display[key], "files": files,
                           "versions": self.versions.get(key, ["1.0"])}).encode()

    def bump(self, n: int, offset: int = 0) -> list[tuple[str, str]]:
        """A new version of n projects, as an upload to PyPI: two changelog rows each."""
        step = max(1, len(self.names) // n)
        done = []
        now = int(time.time())
        with self.lock:
            for name in self.names[offset::step][:n]:
                key = normalize(name)
                vs = self.versions.setdefault(key, ["1.0"])
                v = f"1.{len(vs)}"
                vs.append(v)
                self.changelog.append((name, v, now, "new release", self.last + 1))
                self.changelog.append((name, v, now, f"add source file {key}-{v}.tar.gz",
                                       self.last + 2))
                self.last += 2
                self.serial[key] = self.last
                done.append((key, v))
            self.render_root()
        return done

    # -- XML-RPC (PyPI's names) --------------------------------------------------------

    def changelog_last_serial(self) -> int:
        return self.last

    def changelog_since_serial(self, since: int) -> list[list]:
        with self.lock:
            creates = [[n, None, self.started, "create", i + 1]
                       for i, n in enumerate(self.names[max(0, since):], start=max(0, since))]
            serials = [row[4] for row in self.changelog]
            later = self.changelog[bisect_right(serials, since):]
        return creates + [list(row) for row in later]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body are two writes: without TCP_NODELAY, Nagle and the client's delayed
    # ACK hold every keep-alive answer ~40 ms and this server, not sync, is what is measured.
    disable_nagle_algorithm = True
    state: State
    rpc: xmlrpc.server.SimpleXMLRPCDispatcher

    def log_message(self, *args: object) -> None:
        pass

    def send(self, code: int, body: bytes, ctype: str = JSON_TYPE) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        path = urlsplit(self.path).path
        if path == "/simple/":
            self.state.count("root")
            return self.send(200, self.state.root)
        if path == "/html/" and self.state.html:
            self.state.count("root")
            return self.send(200, self.state.html, "text/html")
        if path == "/_stats":
            with self.state.lock:
                body = json.dumps(self.state.counts).encode()
            return self.send(200, body, "application/json")
        if path.startswith("/simple/"):
            self.state.count("pages")
            body = self.state.page(path[len("/simple/"):].strip("/"))
            if body is not None:
                return self.send(200, body)
        self.send(404, b"not found", "text/plain")

    def do_POST(self) -> None:  # noqa: N802
        url = urlsplit(self.path)
        data = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        if url.path == "/pypi":
            self.state.count("xmlrpc")
            return self.send(200, self.rpc._marshaled_dispatch(data), "text/xml")
        if url.path == "/_bump":
            q = parse_qs(url.query)
            done = self.state.bump(int(q.get("n", ["1000"])[0]), int(q.get("offset", ["0"])[0]))
            return self.send(200, json.dumps(done).encode(), "application/json")
        self.send(404, b"not found", "text/plain")


def main() -> None:
    Handler.state = state = State(sys.argv[1])
    Handler.rpc = xmlrpc.server.SimpleXMLRPCDispatcher(allow_none=True)
    Handler.rpc.register_function(state.changelog_last_serial, "changelog_last_serial")
    Handler.rpc.register_function(state.changelog_since_serial, "changelog_since_serial")
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], len(Handler.state.names), flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
