"""The page templates, without a database: hostile text in every field stays text.

Names, versions, reasons, notes, builder names and file names come from
upstream, from builds or from operators; whatever they hold, a page shows it
as text and never as markup (autoescaping, no ``|safe`` on data). The
writer's tests (test_index.py) check the same pages against a real farm.
"""

from __future__ import annotations

import re
from collections import namedtuple
from html.parser import HTMLParser
from importlib.resources import files

import pytest

from piwheels_build.index import pages

EVIL = '<script>alert("x")</script>\'"><img src=x onerror=alert(1)>&amp;'
File = namedtuple("File", "filename sha256 requires_python version metadata_sha256 size "
                          "created_at")
Version = namedtuple("Version", "version yanked yanked_reason")


class Parsed(HTMLParser):
    """Tags, attributes and text of a page, as a browser's parser sees them."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.texts: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data):
        self.texts.append(data)


def assert_inert(html: str) -> Parsed:
    """No tag or attribute came from the data, and the data reads back as text."""
    page = Parsed(html)
    assert "script" not in page.tags and "img" not in page.tags
    assert not any(name.startswith("on") or name == "src" for name, _ in page.attrs)
    assert any(EVIL in t for t in page.texts)
    return page


def hostile_project() -> dict:
    build = {"build_id": 7, "status": EVIL, "builder": EVIL, "duration": 12.5,
             "started": None, "finished": None, "log": EVIL}
    file = {"filename": EVIL, "url": EVIL, "sha256": EVIL, "size": 1234, "python_tag": EVIL,
            "abi_tag": EVIL, "platform_tag": EVIL, "requires_python": EVIL, "alias_of": EVIL,
            "uploaded": None, "build_id": 7, "builder": EVIL, "duration": 3.0,
            "dependencies": {"apt": [EVIL], "pip": [EVIL, EVIL], "lib": [EVIL]}}
    version = {"version": EVIL, "released": EVIL, "prerelease": True, "yanked": True,
               "yanked_reason": EVIL, "deleted": True, "skip_reason": EVIL, "skip_note": EVIL,
               "requires_python": EVIL, "requires_python_invalid": True,
               "targets": [{"target": EVIL, "abi": EVIL, "platform": EVIL, "python": EVIL,
                            "status": EVIL, "note": EVIL, "files": [EVIL], "build": build},
                           {"target": EVIL, "abi": EVIL, "platform": EVIL, "python": EVIL,
                            "status": "not-for-python", "note": EVIL, "files": [],
                            "build": None}],
               "files": [file]}
    return {"name": EVIL, "display_name": EVIL, "skip_reason": EVIL, "deleted": True,
            "targets": [EVIL], "versions": [version]}


def test_environment_autoescapes_and_no_template_marks_data_safe():
    assert pages.ENV.autoescape is True
    templates = files("piwheels_build.index").joinpath("templates")
    names = [t.name for t in templates.iterdir() if t.name.endswith(".html")]
    assert {"base.html", "simple_project.html", "simple_root.html", "project.html",
            "stats.html", "landing.html"} <= set(names)
    for name in names:
        text = re.sub(r"\{#.*?#\}", "", templates.joinpath(name).read_text(), flags=re.S)
        assert "|safe" not in text.replace(" ", ""), name
        assert "autoescape" not in text and "Markup" not in text, name


def test_project_page_shows_hostile_text_as_text():
    html = pages.project_html(hostile_project())
    page = assert_inert(html)
    # every field reads back whole: the badge texts, the status cell, the file, its deps
    text = "".join(page.texts)
    for shown in (f"yanked: {EVIL}", f"skipped: {EVIL} ({EVIL})", f"({EVIL})",
                  f"(alias of {EVIL})", f"Requires-Python {EVIL}", f"built by {EVIL}",
                  f"sha256 {EVIL}", f"apt install {EVIL}", f"{EVIL}\n{EVIL}",
                  f"libraries: {EVIL}", f"pip install {EVIL}",
                  f"This package is not built: {EVIL}.", f"not for Python {EVIL}",
                  f"Requires-Python {EVIL} (not a valid specifier: ignored)"):
        assert shown in text, shown
    hrefs = [v for k, v in page.attrs if k == "href"]
    assert EVIL in hrefs  # the log link and the file link: an attribute value, not markup
    assert ("id", f"v{EVIL}") in page.attrs


def test_simple_page_attributes_carry_hostile_text_exactly():
    f = File(EVIL, EVIL, EVIL, "1.0", EVIL, 1, None)
    html = pages.simple_html(EVIL, [f], {"1.0": Version("1.0", True, EVIL)})
    page = assert_inert(html)
    attrs = dict(page.attrs)
    assert attrs["data-requires-python"] == EVIL
    assert attrs["data-yanked"] == EVIL
    assert attrs["data-core-metadata"] == attrs["data-dist-info-metadata"] == f"sha256={EVIL}"
    assert attrs["href"].endswith(f"#sha256={EVIL}")
    assert "<" not in attrs["href"].split("#")[0]  # the file name is URL-quoted in the href


@pytest.mark.parametrize("yanked,expected", [(False, None), (True, ""), ("why", "why")])
def test_simple_page_yank_attribute(yanked, expected):
    f = File("a-1.0-py3-none-any.whl", "ab", None, "1.0", None, 1, None)
    version = Version("1.0", bool(yanked), yanked if isinstance(yanked, str) else None)
    attrs = dict(Parsed(pages.simple_html("a", [f], {"1.0": version})).attrs)
    assert attrs.get("data-yanked") == expected


def test_stats_page_shows_hostile_names_as_text():
    stats = {"generated": "2026-11-29T00:00:00Z",
             "packages": {"known": 1, "with_files": 1},
             "versions": {"known": 1, "attempted": 1, "built": 1, "success_rate": None},
             "builds": {"total": 1, "by_status": {EVIL: 1}, "build_time": 1.0},
             "files": {"count": 1, "wheels": 1, "aliases": 0, "disk_used": 1},
             "builders": [{"name": EVIL, "target": EVIL, "abi": EVIL, "platform": EVIL,
                           "last_seen": EVIL, "builds": 1, "successes": 1, "build_time": 1.0}],
             "queue": [{"target": EVIL, "abi": EVIL, "platform": EVIL, "active": False,
                        "queued": 0, "building": 0, "waiting_retry": 0, "not_for_python": 0,
                        "attempted": 0, "built": 0}]}
    page = assert_inert(pages.stats_html(stats))
    assert f"{EVIL} {EVIL} (inactive)" in page.texts


def test_root_link_quotes_and_escapes():
    page = assert_inert(pages.root_link(EVIL))
    (href,) = [v for k, v in page.attrs if k == "href"]
    assert "<" not in href and href.endswith("/")
    head, tail = pages.root_html_parts()
    assert head.endswith("<h1>Simple index</h1>\n") and tail == "</body>\n</html>\n"
    assert '<meta name="pypi:repository-version" content="1.1">' in head
