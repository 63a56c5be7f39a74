"""The pages: PEP 503 HTML and PEP 691 JSON for pip and uv, project and
statistics pages for people. Pure functions of the data ``data`` reads.

The HTML is in Jinja2 templates (``templates/``, one autoescaping
environment for every page; ``base.html`` is the layout), the stylesheet in
``static/style.css``; the JSON pages are built here as data. To add a page: a
template, a function here that renders it, a call in ``writer``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from .data import iso_time, version_key

API_VERSION = "1.1"


def _yanked(version: Any) -> bool | str:
    """PEP 691 'yanked': false, true, or the reason."""
    if version is None or not version.yanked:
        return False
    return version.yanked_reason or True


def _human_size(n: int | None) -> str:
    size = float(n or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return ""


def _human_duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def _thousands(n: int) -> str:
    return f"{n:,}"


# One environment for the process. Autoescaping is on for every template: a
# name, version, reason or note from upstream or the database is text, never
# markup. StrictUndefined turns a misspelt variable into an error, not a blank.
ENV = Environment(
    loader=PackageLoader("piwheels_build.index", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    auto_reload=False,
)
ENV.filters.update(quote=quote, size=_human_size, duration=_human_duration,
                   thousands=_thousands)
ENV.globals.update(prefix="", css=False)  # base.html: the way back to www/, the stylesheet


def _render(template: str, **context: Any) -> str:
    return ENV.get_template(template).render(**context)


def simple_html(package: str, files: list[Any], versions: dict[str, Any]) -> str:
    """The PEP 503 page of one project (PEP 592 yanks, PEP 658/714 metadata)."""
    return _render("simple_project.html", package=package, files=files,
                   api_version=API_VERSION, yanked=lambda f: _yanked(versions.get(f.version)))


def simple_json(package: str, files: list[Any], versions: dict[str, Any]) -> dict[str, Any]:
    """The PEP 691 page of one project, with PEP 700 size, upload-time and versions."""
    out = []
    for f in files:
        meta = {"sha256": f.metadata_sha256} if f.metadata_sha256 else False
        out.append({
            "filename": f.filename,
            "url": quote(f.filename),
            "hashes": {"sha256": f.sha256},
            "requires-python": f.requires_python,
            "yanked": _yanked(versions.get(f.version)),
            # PEP 714: only the new key in JSON; pip 22.3-23.0 (Debian bookworm's pip)
            # fails hard on any "dist-info-metadata" in the JSON form.
            "core-metadata": meta,
            "size": f.size,
            "upload-time": iso_time(f.created_at),
        })
    listed = sorted({f.version for f in files}, key=version_key)
    return {"meta": {"api-version": API_VERSION}, "name": package, "files": out,
            "versions": listed}


_LINKS = Markup("\x00")  # where the root's links go (a constant, never data)


@cache
def root_html_parts() -> tuple[str, str]:
    """The root ``simple/index.html`` before and after its links, for the writer to
    stream a link per project (``root_link``) between them."""
    head, tail = _render("simple_root.html", api_version=API_VERSION, links=_LINKS).split(_LINKS)
    return head, tail


@cache
def _root_link() -> Any:
    return ENV.get_template("simple_root.html").make_module(
        {"api_version": API_VERSION, "links": ""}).link


def root_link(name: str) -> str:
    """One project's line of the root page (``simple_root.html``'s ``link`` macro;
    about 2 µs a name, 2 s more for a root of a million projects)."""
    return str(_root_link()(name))


def project_html(data: dict[str, Any]) -> str:
    """The page for people: every version, its status per ABI, files, logs, dependencies."""
    return _render("project.html", data=data, prefix="../../", css=True)


def stats_html(s: dict[str, Any]) -> str:
    """The stats page for people."""
    return _render("stats.html", s=s, prefix="", css=True)


def landing_html(downloads: dict[str, Any] | None = None) -> str:
    """``www/index.html``; ``downloads``: the stats' downloads (``farm_downloads``)."""
    return _render("landing.html", prefix="", css=True, downloads=downloads)


def style_css() -> bytes:
    """``static/style.css``, which the writer copies to ``www/static/``."""
    return files("piwheels_build.index").joinpath("static/style.css").read_bytes()


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
