"""The embedded web server: negotiation, ranges, confinement, and a real pip against it."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import logging
import os
import subprocess
import sys
import threading
import zipfile
from pathlib import Path

import pytest

from piwheels_build.index import write_index
from piwheels_build.serve import make_server, negotiate, parse_range
from piwheels_build.store import Store

V1_JSON = "application/vnd.pypi.simple.v1+json"
V1_HTML = "application/vnd.pypi.simple.v1+html"
WHEEL = "tinypkg-1.0-py3-none-any.whl"


@pytest.fixture
def www(tmp_path) -> Path:
    """A hand-made tree: index pages, a wheel, an alias symlink and traps outside www/."""
    root = tmp_path / "www"
    demo = root / "simple/demo"
    demo.mkdir(parents=True)
    (root / "simple/index.html").write_text("<!DOCTYPE html><title>root html</title>")
    (root / "simple/index.json").write_text('{"projects": []}')
    (demo / "index.html").write_text("demo html")
    (demo / "index.json").write_text('{"name": "demo"}')
    (demo / "demo-1.0-cp311-cp311-linux_armv7l.whl").write_bytes(bytes(range(256)) * 4)
    (demo / "demo-1.0-cp311-cp311-linux_armv6l.whl").symlink_to(
        "demo-1.0-cp311-cp311-linux_armv7l.whl")
    (demo / "demo-1.0-cp311-cp311-linux_armv7l.whl.metadata").write_text("Name: demo\n")
    (demo / ".demo-1.0.whl.tmp-abc").write_text("half written")
    (root / "project/demo").mkdir(parents=True)
    (root / "project/demo/index.html").write_text("project page")
    (root / "project/empty").mkdir()
    (root / "logs").mkdir()
    (root / "logs/1.txt").write_text("log text")
    (root / "static").mkdir()
    (root / "static/style.css").write_text("body {}")
    (tmp_path / "secret.txt").write_text("outside www")
    (demo / "escape.txt").symlink_to(tmp_path / "secret.txt")
    (root / "simple/outside").symlink_to(tmp_path)
    return root


@pytest.fixture
def server(www):
    srv = make_server(www, "127.0.0.1", 0, quiet=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(5)


def request(server, path, method="GET", **headers):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        conn.request(method, path, headers=headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("accept, file, ctype", [
    (None, "index.html", "text/html; charset=utf-8"),
    ("*/*", "index.html", "text/html; charset=utf-8"),
    ("text/html", "index.html", "text/html; charset=utf-8"),
    (V1_HTML, "index.html", V1_HTML),
    (V1_JSON, "index.json", V1_JSON),
    ("application/vnd.pypi.simple.latest+json", "index.json", V1_JSON),
    ("application/vnd.pypi.simple.latest+html", "index.html", V1_HTML),
    # what pip sends
    (f"{V1_JSON}, {V1_HTML}; q=0.1, text/html; q=0.01", "index.json", V1_JSON),
    (f"{V1_JSON};q=0.2, text/html;q=0.9", "index.html", "text/html; charset=utf-8"),
    (f"{V1_HTML}, {V1_JSON}", "index.html", V1_HTML),  # a tie goes to the client's order
    (f"application/*;q=0.5, {V1_JSON};q=0", "index.html", V1_HTML),
    ("text/*", "index.html", "text/html; charset=utf-8"),
])
def test_negotiate(accept, file, ctype):
    assert negotiate(accept) == (file, ctype)


@pytest.mark.parametrize("accept", ["application/json", "image/png, text/plain",
                                    f"{V1_JSON};q=0, text/html;q=0", "*/*;q=0"])
def test_negotiate_nothing_acceptable(accept):
    assert negotiate(accept) is None


def test_simple_directories_negotiate(server):
    status, headers, body = request(server, "/simple/demo/", Accept=V1_JSON)
    assert status == 200 and body == b'{"name": "demo"}'
    assert headers["Content-Type"] == V1_JSON and headers["Vary"] == "Accept"
    status, headers, body = request(server, "/simple/demo/", Accept="text/html")
    assert (status, body) == (200, b"demo html")
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Vary"] == "Accept"
    status, headers, _ = request(server, "/simple/", Accept=V1_JSON)
    assert status == 200 and headers["Content-Type"] == V1_JSON
    status, headers, _ = request(server, "/simple/demo/", Accept="application/json")
    assert status == 406 and headers["Vary"] == "Accept"


def test_directories_redirect_to_trailing_slash(server):
    for path in ("/simple", "/simple/demo", "/project/demo"):
        status, headers, _ = request(server, path)
        assert status == 301 and headers["Location"] == path + "/"
    status, headers, _ = request(server, "/simple/demo?x=1")
    assert headers["Location"] == "/simple/demo/?x=1"


def test_other_directories_serve_index_html_never_listings(server):
    status, headers, body = request(server, "/project/demo/", Accept=V1_JSON)
    assert (status, body) == (200, b"project page")
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert request(server, "/project/empty/")[0] == 404
    assert request(server, "/logs/")[0] == 404
    assert request(server, "/")[0] == 404  # no index.html at the top of this tree


@pytest.mark.parametrize("path, ctype", [
    ("/simple/demo/demo-1.0-cp311-cp311-linux_armv7l.whl", "application/octet-stream"),
    ("/simple/demo/demo-1.0-cp311-cp311-linux_armv7l.whl.metadata", "text/plain; charset=utf-8"),
    ("/simple/demo/index.json", "application/json"),
    ("/logs/1.txt", "text/plain; charset=utf-8"),
    ("/static/style.css", "text/css; charset=utf-8"),
    ("/simple/index.html", "text/html; charset=utf-8"),
])
def test_content_types(server, www, path, ctype):
    status, headers, body = request(server, path)
    assert status == 200 and headers["Content-Type"] == ctype
    assert body == (www / path.lstrip("/")).read_bytes()
    assert int(headers["Content-Length"]) == len(body)
    assert headers["ETag"] and headers["Last-Modified"]


def test_alias_symlink_inside_www_is_served(server, www):
    status, _, body = request(server, "/simple/demo/demo-1.0-cp311-cp311-linux_armv6l.whl")
    assert status == 200 and body == bytes(range(256)) * 4


def test_head_and_conditional_requests(server):
    path = "/simple/demo/demo-1.0-cp311-cp311-linux_armv7l.whl"
    status, headers, body = request(server, path, method="HEAD")
    assert status == 200 and body == b"" and headers["Content-Length"] == "1024"
    etag = headers["ETag"]
    assert request(server, path, **{"If-None-Match": etag})[0] == 304
    assert request(server, path, **{"If-Modified-Since": headers["Last-Modified"]})[0] == 304
    assert request(server, path, **{"If-None-Match": '"other"'})[0] == 200


def test_single_range_requests(server):
    path = "/simple/demo/demo-1.0-cp311-cp311-linux_armv7l.whl"
    data = bytes(range(256)) * 4
    status, headers, body = request(server, path, Range="bytes=10-19")
    assert (status, body) == (206, data[10:20])
    assert headers["Content-Range"] == "bytes 10-19/1024" and headers["Content-Length"] == "10"
    status, headers, body = request(server, path, Range="bytes=-16")
    assert (status, body) == (206, data[-16:])
    status, headers, body = request(server, path, Range="bytes=1000-")
    assert (status, body) == (206, data[1000:])
    status, headers, body = request(server, path, Range="bytes=1000-5000")
    assert (status, headers["Content-Range"]) == (206, "bytes 1000-1023/1024")
    status, headers, _ = request(server, path, Range="bytes=2000-")
    assert status == 416 and headers["Content-Range"] == "bytes */1024"
    # several ranges or nonsense: the whole file
    assert request(server, path, Range="bytes=0-1,5-6")[0] == 200
    assert request(server, path, Range="lines=1-2")[0] == 200
    status, _, body = request(server, path, Range="bytes=0-9", **{"If-Range": '"stale"'})
    assert status == 200 and body == data


def test_parse_range():
    assert parse_range("bytes=0-0", 10) == (0, 0)
    assert parse_range("bytes=-100", 10) == (0, 9)
    assert parse_range("bytes=5-2", 10) is None
    assert parse_range("bytes=-0", 10) == "unsatisfiable"
    assert parse_range("bytes=0-", 0) == "unsatisfiable"
    assert parse_range(None, 10) is None


@pytest.mark.parametrize("path", [
    "/simple/../../secret.txt",
    "/simple/%2e%2e/%2e%2e/secret.txt",
    "/simple/demo/..%2f..%2f..%2fsecret.txt",
    "/simple/demo/%2E%2E/%2E%2E/%2E%2E/secret.txt",
    "/simple/demo/escape.txt",  # a symlink that leads out of www/
    "/simple/outside/secret.txt",
    "/simple/demo/.demo-1.0.whl.tmp-abc",  # never serve a file being written
    "/simple/demo/%00",
    "/simple/demo/%ff",
    "//etc/passwd",
    "/simple/demo/nothing.whl",
])
def test_traversal_and_hidden_files_are_404(server, path):
    status, _, body = request(server, path)
    assert status == 404 and b"outside www" not in body


def test_quiet_flag_and_request_log(www, caplog):
    caplog.set_level(logging.INFO, logger="piwheels.serve")
    for quiet, expected in ((False, 1), (True, 0)):
        caplog.clear()
        srv = make_server(www, "127.0.0.1", 0, quiet=quiet)
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            request(srv, "/logs/1.txt")
        finally:
            srv.shutdown()
            srv.server_close()
        lines = [r for r in caplog.records if "/logs/1.txt" in r.getMessage()]
        assert len(lines) == expected
        assert all(" 200 " in r.getMessage() and r.levelno == logging.INFO for r in lines)


# --------------------------------------------------------------------------- real pip


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def make_real_wheel(path: Path) -> bytes:
    """A complete pure wheel; returns its METADATA."""
    metadata = (b"Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n"
                b"Requires-Python: >=3.8\n")
    files = {
        "tinypkg/__init__.py": b"VALUE = 42\n",
        "tinypkg-1.0.dist-info/METADATA": metadata,
        "tinypkg-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\n"
                                       b"Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{n},{_record_hash(d)},{len(d)}\n" for n, d in files.items())
    record += "tinypkg-1.0.dist-info/RECORD,,\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            z.writestr(name, data)
        z.writestr("tinypkg-1.0.dist-info/RECORD", record)
    return metadata


def _publish(conn, www: Path, src: Path, metadata: bytes) -> None:
    """Store the wheel and record it the way a builder and finish_build would."""
    store = Store(www)
    store.put("tinypkg", WHEEL, src)
    meta_sha = store.put_metadata("tinypkg", WHEEL, metadata)
    data = src.read_bytes()
    with conn.cursor() as cur:
        cur.execute("INSERT INTO targets (target, abi_tag, platform_tag, py_major, py_minor)"
                    " VALUES ('cp311-linux_armv7l', 'cp311', 'linux_armv7l', 3, 11)")
        cur.execute("INSERT INTO builders (name, abi_tag, platform_tag, target, python)"
                    " VALUES ('pi', 'cp311', 'linux_armv7l', 'cp311-linux_armv7l', '3.11')"
                    " RETURNING builder_id")
        builder = cur.fetchone()[0]
        cur.execute("INSERT INTO packages (package, display_name) VALUES ('tinypkg', 'TinyPkg')")
        cur.execute("INSERT INTO versions (package, version) VALUES ('tinypkg', '1.0')")
        cur.execute("INSERT INTO builds (package, version, target, builder_id, status)"
                    " VALUES ('tinypkg', '1.0', 'cp311-linux_armv7l', %s, 'success')"
                    " RETURNING build_id",
                    (builder,))
        build = cur.fetchone()[0]
        cur.execute("INSERT INTO files (filename, build_id, package, version, python_tag,"
                    " abi_tag, platform_tag, size, sha256, requires_python, metadata_sha256)"
                    " VALUES (%s, %s, 'tinypkg', '1.0', 'py3', 'none', 'any', %s, %s,"
                    " '>=3.8', %s)",
                    (WHEEL, build, len(data), hashlib.sha256(data).hexdigest(), meta_sha))
        cur.execute("INSERT INTO index_dirty (package) VALUES ('tinypkg')")
    conn.commit()


def _isolated_pip_env() -> dict[str, str]:
    """No ambient pip configuration (find-links, extra-index-url) and no proxy."""
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith("PIP_") and "proxy" not in k.lower()}
    env.update(PIP_CONFIG_FILE="/dev/null", PIP_DISABLE_PIP_VERSION_CHECK="1",
               NO_PROXY="127.0.0.1", no_proxy="127.0.0.1")
    return env


def test_pip_downloads_from_the_index(conn, tmp_path):
    www = tmp_path / "www"
    metadata = make_real_wheel(tmp_path / WHEEL)
    _publish(conn, www, tmp_path / WHEEL, metadata)
    write_index(conn, www)
    srv = make_server(www, "127.0.0.1", 0, quiet=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/simple/"
        status, _, body = request(srv, "/simple/tinypkg/", Accept=V1_JSON)
        assert status == 200 and json.loads(body)["files"][0]["filename"] == WHEEL
        out = tmp_path / "dl"
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
             "--isolated", "--disable-pip-version-check", "--index-url", url,
             "--only-binary", ":all:", "TinyPkg", "-d", str(out)],
            env=_isolated_pip_env(), capture_output=True, text=True, timeout=240)
    finally:
        srv.shutdown()
        srv.server_close()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / WHEEL).read_bytes() == (tmp_path / WHEEL).read_bytes()
