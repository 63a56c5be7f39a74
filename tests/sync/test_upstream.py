"""The upstream client against a fake index on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from datetime import UTC, datetime

import pytest
import requests
from helpers.upstream_server import FakeUpstream, make_sdist

from piwheels_build.errors import UpstreamError
from piwheels_build.sync.simpleapi import classify
from piwheels_build.sync.upstream import Upstream

T0 = datetime(2024, 5, 1, 12, 30, 15, 123456, tzinfo=UTC)




def _client(fake: FakeUpstream, **kw) -> Upstream:
    kw.setdefault("retries", 2)
    kw.setdefault("backoff", 0.01)
    kw.setdefault("timeout", 5)
    return Upstream(fake.url, **kw)


def _populate(fake: FakeUpstream) -> bytes:
    name, data = make_sdist("Foo_Bar.baz", "1.0")
    fake.add_file("Foo_Bar.baz", name, data, upload_time=T0, requires_python="<4,>=3.8")
    fake.add_file("Foo_Bar.baz", "foo_bar_baz-1.0-py3-none-any.whl", b"wheel")
    fake.add_file("other", "other-2.0.tar.gz", b"sdist")
    fake.yank("other-2.0.tar.gz", "broken & bad")
    return data


@pytest.mark.parametrize(
    ("filename", "project", "expected"),
    [
        ("Foo_Bar.baz-1.0.tar.gz", "foo-bar-baz", ("sdist", "1.0")),
        ("foo-bar-baz-2.0rc1.zip", "Foo_Bar.baz", ("sdist", "2.0rc1")),
        ("foo-1.0-RC1.tar.bz2", "foo", ("sdist", "1.0rc1")),
        ("foo-1.0.tgz", "foo", ("sdist", "1.0")),
        ("foo-1.0.tar", "foo", ("sdist", "1.0")),
        ("foo-1.0.tar.xz", "foo", ("sdist", "1.0")),
        ("foo_bar-1.0-cp311-cp311-linux_armv7l.whl", "foo-bar", ("wheel", "1.0")),
        ("foo_bar-1.0-1-py3-none-any.whl", "foo.bar", ("wheel", "1.0")),
        ("Foo_Bar-1.0-py2.7.egg", "foo-bar", ("other", "1.0")),
        ("foo-1.2.3.win32.exe", "foo", ("other", "1.2.3")),
        ("foo-1.0-1.noarch.rpm", "foo", ("other", "1.0")),
        ("foo-1.0.win-amd64-py2.7.msi", "foo", ("other", "1.0")),
        ("foo-bar-1.0.tar.gz", "foo", None),            # another project's file
        ("other-1.0-py3-none-any.whl", "foo", None),
        ("foo-not.a.version.tar.gz", "foo", None),
        ("foo-1.0.txt", "foo", None),
        ("broken.whl", "foo", None),
        ("foo-.tar.gz", "foo", None),
    ],
)
def test_classify(filename, project, expected):
    assert classify(filename, project) == expected


def test_json_root(fake):
    _populate(fake)
    listing = _client(fake).list_projects()
    assert sorted(listing.names) == ["Foo_Bar.baz", "other"]
    assert listing.serial == fake.serial
    assert listing.serials == {n: p.serial for n, p in
                               ((p.name, p) for p in fake.projects.values())}


def test_html_root(html_fake):
    _populate(html_fake)
    listing = _client(html_fake).list_projects()
    assert sorted(listing.names) == ["Foo_Bar.baz", "other"]
    assert listing.serials == {}
    assert listing.serial == html_fake.serial


def test_json_page(fake):
    data = _populate(fake)
    up = _client(fake)
    page = up.project("FOO.bar_baz")
    assert fake.requests_log[-1] == "/simple/foo-bar-baz/"
    assert page.name == "Foo_Bar.baz"
    assert page.versions == ["1.0"]
    assert page.serial == fake.projects["foo-bar-baz"].serial
    sdist = next(f for f in page.files if f.filename.endswith(".tar.gz"))
    assert sdist.url == f"{fake.root}/files/Foo_Bar.baz-1.0.tar.gz"
    assert sdist.sha256 == hashlib.sha256(data).hexdigest()
    assert sdist.size == len(data)
    assert sdist.upload_time == T0 and sdist.upload_time.tzinfo is not None
    assert sdist.requires_python == "<4,>=3.8"
    assert not sdist.yanked and sdist.yanked_reason is None
    assert requests.get(sdist.url, timeout=5).content == data
    other = up.project("other").files[0]
    assert other.yanked and other.yanked_reason == "broken & bad"


def test_html_page(html_fake):
    data = _populate(html_fake)
    page = _client(html_fake).project("foo-bar-baz")
    assert page.versions is None
    assert page.serial == html_fake.projects["foo-bar-baz"].serial
    sdist = next(f for f in page.files if f.filename.endswith(".tar.gz"))
    assert sdist.url == f"{html_fake.root}/files/Foo_Bar.baz-1.0.tar.gz"
    assert sdist.sha256 == hashlib.sha256(data).hexdigest()
    assert sdist.requires_python == "<4,>=3.8"  # html-unescaped
    assert sdist.upload_time is None and not sdist.yanked
    other = _client(html_fake).project("other").files[0]
    assert other.yanked and other.yanked_reason == "broken & bad"


def test_html_yanked_without_reason(html_fake):
    html_fake.add_file("x", "x-1.0.tar.gz", b"x")
    html_fake.yank("x-1.0.tar.gz")
    f = _client(html_fake).project("x").files[0]
    assert f.yanked and f.yanked_reason is None


def test_missing_project_is_none_and_not_retried(fake):
    assert _client(fake).project("nothing-here") is None
    assert fake.requests_log == ["/simple/nothing-here/"]


def test_server_errors_are_retried(fake):
    _populate(fake)
    fake.fail("/simple/other/", times=2)
    fake.fail("/simple/other/", times=1, status=429)
    page = _client(fake, retries=3).project("other")
    assert page and page.files[0].filename == "other-2.0.tar.gz"
    assert fake.requests_log.count("/simple/other/") == 4


def test_retries_run_out_with_one_line(fake):
    fake.fail("/simple/", times=3)
    with pytest.raises(UpstreamError) as e:
        _client(fake, retries=2).list_projects()
    msg = str(e.value)
    assert "\n" not in msg and "HTTP 500" in msg and "3 attempts" in msg
    assert "check 'upstream'" in msg and fake.url in msg
    assert fake.requests_for("/simple/") == 3


def test_retry_after_is_honoured(fake, monkeypatch):
    """A 503 with Retry-After is retried after the time it asks (urllib3's Retry), not
    after the backoff; the sleep is observed, not timed."""
    import urllib3.util.retry

    slept: list[float] = []
    monkeypatch.setattr(urllib3.util.retry.time, "sleep", slept.append)
    _populate(fake)
    fake.fail("/simple/other/", times=1, status=503, retry_after="7")
    page = _client(fake, retries=2, backoff=0).project("other")
    assert page and page.files[0].filename == "other-2.0.tar.gz"
    assert fake.requests_for("/simple/other/") == 2
    assert slept == [7]


def test_huge_or_broken_retry_after_is_capped(fake, monkeypatch):
    import urllib3.util.retry

    from piwheels_build.http import RETRY_AFTER_MAX

    slept: list[float] = []
    monkeypatch.setattr(urllib3.util.retry.time, "sleep", slept.append)
    _populate(fake)
    fake.fail("/simple/other/", times=1, status=429, retry_after="86400")
    fake.fail("/simple/other/", times=1, status=503, retry_after="soon")
    assert _client(fake, retries=2, backoff=0).project("other")
    assert fake.requests_for("/simple/other/") == 3
    assert slept == [RETRY_AFTER_MAX]


def test_dropped_connection_is_retried(fake):
    _populate(fake)
    fake.drop("/simple/other/")
    page = _client(fake, retries=1).project("other")
    assert page and page.files[0].filename == "other-2.0.tar.gz"
    assert fake.requests_for("/simple/other/") == 2


def test_dropped_connections_run_out_with_one_line(fake):
    fake.drop("/simple/", times=2)
    with pytest.raises(UpstreamError) as e:
        _client(fake, retries=1).list_projects()
    msg = _one_line(e)
    assert "cannot get" in msg and "2 attempts" in msg and fake.url in msg
    assert "check 'upstream' in the config and the network" in msg
    assert fake.requests_for("/simple/") == 2


def test_client_errors_are_not_retried(fake):
    fake.fail("/simple/", times=1, status=403)
    with pytest.raises(UpstreamError) as e:
        _client(fake, retries=3).list_projects()
    assert "answered HTTP 403" in _one_line(e)
    assert fake.requests_for("/simple/") == 1


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith("upstream: ")
    assert exc.value.__cause__ is None or exc.value.__suppress_context__
    return msg


def test_malformed_json(fake):
    _populate(fake)
    fake.malformed("/simple/other/")
    with pytest.raises(UpstreamError) as e:
        _client(fake).project("other")
    msg = _one_line(e)
    assert "malformed JSON" in msg and "/simple/other/" in msg


def test_json_without_files(fake):
    fake.add_file("x", "x-1.0.tar.gz", b"x")
    fake.malformed("/simple/x/", body=b'{"meta": {}}')
    with pytest.raises(UpstreamError) as e:
        _client(fake).project("x")
    assert "without 'files'" in _one_line(e)


def test_wrong_content_type(fake):
    fake.malformed("/simple/", body=b"hello", content_type="text/plain")
    with pytest.raises(UpstreamError) as e:
        _client(fake).list_projects()
    assert "'text/plain'" in _one_line(e)


def test_timeout_is_retried_then_one_line(fake):
    fake.add_file("x", "x-1.0.tar.gz", b"x")
    fake.slow("/simple/x/", 1.0)
    assert _client(fake, timeout=0.3, retries=1).project("x").files
    fake.slow("/simple/x/", 1.0, times=2)
    with pytest.raises(UpstreamError) as e:
        _client(fake, timeout=0.3, retries=1).project("x")
    assert "timed out" in str(e.value) and "\n" not in str(e.value)


def test_junk_file_entries_are_skipped(fake):
    body = json.dumps({"meta": {"_last-serial": "nope"}, "name": 7, "versions": "1.0", "files": [
        {"filename": "x-1.0.tar.gz", "url": "http://[broken/x-1.0.tar.gz"},
        {"url": "x-1.1.tar.gz"},
        "junk",
        {"filename": "x-1.2.tar.gz", "url": "/f/x-1.2.tar.gz", "hashes": [], "size": "big",
         "upload-time": "yesterday", "yanked": "", "requires-python": ""},
    ]}).encode()
    fake.malformed("/simple/x/", body=body)
    page = _client(fake).project("x")
    assert (page.name, page.versions, page.serial) == ("x", None, None)
    assert [f.filename for f in page.files] == ["x-1.2.tar.gz"]
    f = page.files[0]
    assert f.url == f"{fake.root}/f/x-1.2.tar.gz"
    assert (f.sha256, f.size, f.upload_time, f.requires_python) == (None, None, None, None)
    assert f.yanked and f.yanked_reason is None


def test_unreachable_upstream():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    up = Upstream(f"http://127.0.0.1:{port}/simple", retries=1, backoff=0.01, timeout=2)
    with pytest.raises(UpstreamError) as e:
        up.list_projects()
    msg = str(e.value)
    assert "\n" not in msg and "cannot get" in msg and "2 attempts" in msg


def test_bad_url_is_one_line():
    with pytest.raises(UpstreamError) as e:
        Upstream("nonsense", retries=0).list_projects()
    assert "not a usable URL" in _one_line(e)


def test_changelog(fake):
    _populate(fake)
    up = _client(fake, xmlrpc_url=fake.xmlrpc_url)
    assert up.last_serial() == fake.serial
    entries = up.changelog_since(fake.serial - 1)
    assert len(entries) == 1
    e = entries[0]
    assert (e.name, e.version, e.action, e.serial) == ("other", "2.0", "yank release", fake.serial)
    assert len(up.changelog_since(0)) == fake.serial


def test_changelog_not_offered():
    with FakeUpstream(json=False) as plain:
        assert _client(plain).changelog_since(0) is None
        up = _client(plain, xmlrpc_url=plain.xmlrpc_url)   # answers 404
        assert up.changelog_since(0) is None and up.last_serial() is None


def test_cut_off_changelog_answer_is_no_changelog():
    """A cut-off answer or a broken status line counts as no changelog, not a traceback."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)

    answers = [b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n"
               b"Content-Length: 5000\r\n\r\n<?xml version='1.0'?><methodResponse>",
               b"HTTP/1.1 two hundred\r\n\r\n"]   # http.client.BadStatusLine

    def answer() -> None:
        for data in answers:
            conn, _ = srv.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(data)

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    url = f"http://127.0.0.1:{srv.getsockname()[1]}/pypi"
    up = Upstream(f"http://127.0.0.1:{srv.getsockname()[1]}/simple/", retries=0, timeout=3,
                  xmlrpc_url=url)
    try:
        assert up.changelog_since(0) is None
        assert up.last_serial() is None
    finally:
        t.join(timeout=10)
        srv.close()
