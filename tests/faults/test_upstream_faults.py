"""Malformed upstream answers during a real sync (fake upstream over HTTP, real
PostgreSQL): sync retries or refuses with one line, the saved serial never moves
backwards, and no version known before is deleted because of a bad answer."""

from __future__ import annotations

import json

import pytest
from helpers.upstream_server import HTML_TYPE, JSON_TYPE, make_sdist

from piwheels_build.config import from_dict
from piwheels_build.errors import UpstreamError
from piwheels_build.sync import sync


def config(dsn, fake, **extra):
    data = {"database": dsn, "upstream": fake.url, "http_retries": 0, "http_timeout": 5,
            "sync_workers": 2}
    data.update(extra)
    return from_dict(data)


def rows(conn, sql, *args):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        out = cur.fetchall()
    conn.commit()
    return out


def live_versions(conn, package):
    return {r[0] for r in rows(conn, "SELECT version FROM versions WHERE package = %s"
                                     " AND NOT deleted", package)}


def saved_serial(conn):
    found = rows(conn, "SELECT value FROM settings WHERE key = 'upstream_serial'")
    return int(found[0][0]) if found else 0


def one_line(errors):
    assert errors and all("\n" not in e and e for e in errors), errors


@pytest.fixture
def synced(conn, dsn, fake):
    """A farm that knows a 1.0 and 1.1 of 'a' and a 1.0 of 'b'; 'a' then gets a 2.0."""
    for name, version in (("a", "1.0"), ("a", "1.1"), ("b", "1.0")):
        fake.add_file(name, *make_sdist(name, version))
    cfg = config(dsn, fake)
    assert sync(conn, cfg).errors == []
    fake.add_file("a", *make_sdist("a", "2.0"))
    return cfg


def _page(fake, name, accept_json=True):
    proj = fake.projects[name]
    return fake._page_json(proj) if accept_json else fake._page_html(proj)


def test_slow_answer_past_the_timeout_is_one_line_and_loses_nothing(conn, dsn, fake, synced):
    cfg = config(dsn, fake, http_timeout=0.5)
    fake.slow("/simple/a/", 2)
    s = sync(conn, cfg)
    one_line(s.errors)
    assert "timed out" in s.errors[0]
    assert live_versions(conn, "a") == {"1.0", "1.1"}
    assert sync(conn, cfg).errors == []                       # resumed by the next run
    assert live_versions(conn, "a") == {"1.0", "1.1", "2.0"}


def test_5xx_then_success_is_retried_within_the_run(conn, dsn, fake, synced):
    fake.requests_log.clear()
    fake.fail("/simple/a/", times=2, status=503)
    s = sync(conn, config(dsn, fake, http_retries=3))
    assert s.errors == [] and fake.requests_for("/simple/a/") == 3
    assert live_versions(conn, "a") == {"1.0", "1.1", "2.0"}


@pytest.mark.parametrize("kind", ["json", "html"])
def test_truncated_page_is_refused_and_keeps_the_versions(conn, dsn, fake, synced, kind):
    body = _page(fake, "a", kind == "json")
    cut = body[: body.index(b"a-1.1") + 3]                    # 1.1 and 2.0 cut off
    fake.malformed("/simple/a/", body=cut, content_type=JSON_TYPE if kind == "json"
                   else HTML_TYPE)
    s = sync(conn, synced)
    one_line(s.errors)
    assert ("malformed JSON" if kind == "json" else "truncated") in s.errors[0]
    assert live_versions(conn, "a") == {"1.0", "1.1"}
    assert ("a",) in rows(conn, "SELECT package FROM packages WHERE needs_sync")
    assert sync(conn, synced).errors == []
    assert live_versions(conn, "a") == {"1.0", "1.1", "2.0"}


@pytest.mark.parametrize("mangle", ["filename-int", "url-list", "entry-string", "files-dict"])
def test_json_with_wrong_types_deletes_no_version(conn, dsn, fake, synced, mangle):
    data = json.loads(_page(fake, "a"))
    if mangle == "filename-int":
        data["files"][0]["filename"] = 1
    elif mangle == "url-list":
        data["files"][1]["url"] = ["x"]
    elif mangle == "entry-string":
        data["files"] = ["a-1.0.tar.gz" for _ in data["files"]]
    else:
        data["files"] = {"a-1.0.tar.gz": {}}
    fake.malformed("/simple/a/", body=json.dumps(data).encode())
    s = sync(conn, synced)
    one_line(s.errors)
    assert {"1.0", "1.1"} <= live_versions(conn, "a")        # nothing lost
    assert ("a",) in rows(conn, "SELECT package FROM packages WHERE needs_sync")
    assert sync(conn, synced).errors == []
    assert live_versions(conn, "a") == {"1.0", "1.1", "2.0"}


def test_malformed_project_list_marks_nothing_deleted(conn, dsn, fake, synced):
    body = json.dumps({"meta": {"_last-serial": fake.serial},
                       "projects": [{"name": "a"}, {"name": 5}, "b"]}).encode()
    fake.malformed("/simple/", body=body)
    with pytest.raises(UpstreamError) as e:
        sync(conn, synced)
    assert "\n" not in str(e.value) and "malformed project entry" in str(e.value)
    assert rows(conn, "SELECT package FROM packages WHERE deleted") == []
    assert live_versions(conn, "b") == {"1.0"}


def test_truncated_project_list_is_refused(conn, dsn, fake, html_fake):
    for name in ("a", "b", "c"):
        html_fake.add_file(name, *make_sdist(name, "1.0"))
    cfg = config(dsn, html_fake)
    sync(conn, cfg)
    body = html_fake._root_html()
    html_fake.malformed("/simple/", body=body[: body.index(b">b<")], content_type=HTML_TYPE)
    with pytest.raises(UpstreamError) as e:
        sync(conn, cfg)
    assert "\n" not in str(e.value) and "truncated" in str(e.value)
    assert rows(conn, "SELECT package FROM packages WHERE deleted") == []


def test_changelog_going_backwards_never_moves_the_serial_back(conn, dsn, fake):
    for name in ("a", "b"):
        fake.add_file(name, *make_sdist(name, "1.0"))
    cfg = config(dsn, fake, upstream_xmlrpc=fake.xmlrpc_url)
    sync(conn, cfg)
    reached = saved_serial(conn)
    assert reached == fake.serial
    # The upstream is restored from an old backup: its changelog and serial go back.
    fake.changelog = fake.changelog[:2]
    fake.serial = 2
    s = sync(conn, cfg)
    assert saved_serial(conn) == reached and s.errors == []
    assert live_versions(conn, "a") == {"1.0"} and live_versions(conn, "b") == {"1.0"}
    # A changelog that answers entries older than the saved serial is not followed.
    fake.changelog_since_serial = lambda serial: [["a", "0.1", 0, "new release", 1]]
    s = sync(conn, cfg)
    assert saved_serial(conn) == reached
    assert live_versions(conn, "a") == {"1.0"}
