"""Names, versions and pages from the upstream, fuzzed: a skip or a one-line
UpstreamError, never an exception escaping, never a store path outside www/simple."""

from __future__ import annotations

import io
import json
from pathlib import Path

import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from packaging.version import Version

from piwheels_build.errors import StoreError, UpstreamError
from piwheels_build.names import is_valid_name, normalize
from piwheels_build.store import Store
from piwheels_build.sync.diff import group_files, plan_files, plan_versions
from piwheels_build.sync.simpleapi import (
    AnchorParser,
    changelog_entries,
    classify,
    feed_html,
    html_file,
    json_file,
)
from piwheels_build.sync.summary import SyncSummary
from piwheels_build.sync.upstream import Upstream

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text that likes the characters that make trouble in names and paths.
_NASTY = st.sampled_from(["/", "..", ".", "\\", "\0", "-", "_", "%2e", "%2f", "~", " ",
                          "\n", "é", "ﬁ", "Ⅸ", "\u202e", "\udcff", ".whl", ".tar.gz", "1.0"])
nasty_text = st.lists(st.one_of(_NASTY, st.text(max_size=8)), max_size=12).map("".join)
long_text = st.integers(200, 600).map(lambda n: "a" * n)
names = st.one_of(nasty_text, long_text, st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,20}",
                                                        fullmatch=True))
filenames = st.one_of(
    nasty_text,
    st.tuples(names, nasty_text, st.sampled_from([".tar.gz", ".zip", ".whl", ".egg", ".exe",
                                                  "-py3-none-any.whl", ""]))
    .map(lambda t: f"{t[0]}-{t[1]}{t[2]}"),
)


def _one_line(e: Exception) -> None:
    assert str(e) and "\n" not in str(e), repr(e)


def _inside(path: Path, root: Path) -> bool:
    return path.resolve().is_relative_to(root.resolve())


@FUZZ
@given(filename=filenames, project=names)
@example(filename="../../etc/passwd-1.0.tar.gz", project="..")
@example(filename="foo-1.0\0.tar.gz", project="foo")
@example(filename="foo-" + "9" * 5000 + ".tar.gz", project="foo")   # int() digit limit
@example(filename="foo-" + "9" * 5000 + "-py3-none-any.whl", project="foo")
def test_classify_is_a_kind_and_a_valid_version_or_none(filename, project):
    found = classify(filename, project)
    if found is not None:
        kind, version = found
        assert kind in ("sdist", "wheel", "other")
        assert str(Version(version)) == version


@FUZZ
@given(package=names, filename=filenames)
@example(package="/etc", filename="passwd")           # an absolute package name
@example(package="a/../../..", filename="x.whl")
@example(package="..", filename="x.whl")
@example(package="a\0b", filename="x.whl")
@example(package="a\\..\\..", filename="x.whl")
@example(package="foo", filename="../../x.whl")
def test_store_paths_never_leave_the_store(tmp_path_factory, package, filename):
    www = tmp_path_factory.getbasetemp() / "www"
    store = Store(www)
    try:
        path = store.path(package, filename)
    except StoreError as e:
        _one_line(e)
        return
    assert _inside(path, store.root)
    assert path.parent.parent == store.root      # exactly www/simple/<package>/<file>


@FUZZ
@given(entry=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | nasty_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["filename", "url", "hashes", "sha256", "size", "yanked",
                         "requires-python", "upload-time"]) | nasty_text, inner, max_size=6),
    max_leaves=12))
@example(entry={"filename": "a-1.0.tar.gz", "url": "http://[::1", "hashes": {"sha256": 5}})
@example(entry={"filename": "a-1.0.tar.gz", "url": "x", "upload-time": "9999-99-99"})
def test_json_file_entries_are_a_file_or_skipped(entry):
    f = json_file(entry, "https://upstream.example/simple/a/")
    assert f is None or isinstance(f.filename, str)


@FUZZ
@given(body=st.one_of(st.binary(max_size=400),
                      nasty_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
                      st.lists(st.tuples(nasty_text, nasty_text), max_size=5).map(
                          lambda rows: "".join(f'<a href="{h}" data-yanked="{t}">{t}</a>'
                                               for h, t in rows).encode("utf-8", "surrogatepass"))))
@example(body=b'<a href="http://[::1/x#sha256=zz">x</a><!--SERIAL 99999999999999999999-->')
@example(body=b"<a href='#'></a><!--SERIAL -1--><a")
def test_html_pages_parse_without_escaping_exceptions(body):
    parser = AnchorParser(keep_attrs=True)
    feed_html(parser, [body[:7], body[7:]], "utf-8")
    for attrs, text in parser.anchors:
        html_file(attrs, text, "https://upstream.example/simple/a/")


@FUZZ
@given(rows=st.lists(st.lists(st.none() | st.integers() | nasty_text | st.booleans(),
                              max_size=6), max_size=6))
def test_changelog_rows_are_entries_or_skipped(rows):
    for e in changelog_entries(rows):
        assert isinstance(e.serial, int) and isinstance(e.name, str)


# ------------------------------------------------------------ whole pages, as the client reads them

def _response(body: bytes, ctype: str) -> requests.Response:
    r = requests.Response()
    r.status_code = 200
    r.headers["Content-Type"] = ctype
    r.raw = io.BytesIO(body)
    r.url = "https://upstream.example/simple/a/"
    r.encoding = "utf-8"
    return r


def _read_page(monkeypatch, body: bytes, ctype: str, page_name: str) -> None:
    """The client's own parsing of ``body`` as a project page (no network: the answer is
    handed to it): a page sync can plan, or one UpstreamError line."""
    up = Upstream("https://upstream.example/simple/", retries=0)
    monkeypatch.setattr(up, "_get", lambda url, stream=False: _response(body, ctype))
    try:
        page = up.project(page_name)
    except UpstreamError as e:
        _one_line(e)
        return
    finally:
        up.close()
    _plan(page_name, page)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | nasty_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["meta", "_last-serial", "name", "files", "versions", "filename",
                         "url", "hashes", "sha256", "yanked", "upload-time"]) | nasty_text,
        inner, max_size=5),
    max_leaves=16)


@FUZZ
@given(data=json_values, page_name=names, truncate=st.integers(0, 50))
@example(data={"name": "a", "files": [{"filename": "../../../x-1.0.tar.gz", "url": "/x"}]},
         page_name="a", truncate=0)
@example(data={"name": "a", "files": [{"filename": 1, "url": []}], "versions": 3},
         page_name="a", truncate=0)
def test_json_pages_are_a_page_or_one_line(monkeypatch, data, page_name, truncate):
    body = json.dumps(data).encode()
    if truncate:
        body = body[: max(0, len(body) - truncate)]
    _read_page(monkeypatch, body, "application/vnd.pypi.simple.v1+json", page_name)


@FUZZ
@given(body=st.binary(max_size=300) | st.lists(st.tuples(filenames, nasty_text), max_size=6)
       .map(lambda rows: ("<html><body>" + "".join(
           f'<a href="../../f/{f}#sha256={h}">{f}</a>' for f, h in rows)
           + "</body></html>").encode("utf-8", "surrogatepass")),
       page_name=names)
def test_html_pages_are_a_page_or_one_line(monkeypatch, body, page_name):
    _read_page(monkeypatch, body, "text/html", page_name)


def _plan(name, page) -> None:
    """What sync would write for the page: valid versions only."""
    if page is None or not is_valid_name(name):
        return
    package = normalize(name)
    files, groups = group_files(package, page)
    rows = plan_versions(package, groups, {}, True, SyncSummary())
    plan_files(files, {})
    for row in rows:
        assert str(Version(row[1])) == row[1]
