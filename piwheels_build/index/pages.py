"""The pages: PEP 503 HTML and PEP 691 JSON for pip and uv, project and
statistics pages for people. Pure functions of the data ``data`` reads."""

from __future__ import annotations

import json
from html import escape
from typing import Any
from urllib.parse import quote

from .data import iso_time, version_key

API_VERSION = "1.1"


def page(title: str, body: str, *, css: str | None = None, head: str = "") -> str:
    link = f'<link rel="stylesheet" href="{escape(css)}">\n' if css else ""
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n{head}'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"{link}<title>{escape(title)}</title>\n</head>\n<body>\n{body}</body>\n</html>\n")


REPO_META = f'<meta name="pypi:repository-version" content="{API_VERSION}">\n'


def _yanked(version: Any) -> bool | str:
    """PEP 691 'yanked': false, true, or the reason."""
    if version is None or not version.yanked:
        return False
    return version.yanked_reason or True


def simple_html(package: str, files: list[Any], versions: dict[str, Any]) -> str:
    """The PEP 503 page of one project (PEP 592 yanks, PEP 658/714 metadata)."""
    links = []
    for f in files:
        attrs = [f'href="{escape(quote(f.filename))}#sha256={f.sha256}"']
        if f.requires_python:
            attrs.append(f'data-requires-python="{escape(f.requires_python)}"')
        yanked = _yanked(versions.get(f.version))
        if yanked is not False:
            attrs.append(f'data-yanked="{escape(yanked if isinstance(yanked, str) else "")}"')
        if f.metadata_sha256:
            attrs.append(f'data-core-metadata="sha256={escape(f.metadata_sha256)}"')
            attrs.append(f'data-dist-info-metadata="sha256={escape(f.metadata_sha256)}"')
        links.append(f'<a {" ".join(attrs)}>{escape(f.filename)}</a><br>\n')
    body = f"<h1>Links for {escape(package)}</h1>\n{''.join(links)}"
    return page(f"Links for {package}", body, head=REPO_META)


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


def _nav(prefix: str) -> str:
    return (f'<nav><a href="{prefix}">piwheels</a> · <a href="{prefix}simple/">simple index</a>'
            f' · <a href="{prefix}stats.html">stats</a></nav>\n')


def _status_row(cell: dict[str, Any]) -> str:
    b = cell["build"] or {}
    status = escape(cell["status"])
    if cell["note"]:
        status += f' <span class="note">({escape(cell["note"])})</span>'
    log = f'<a href="{escape(b["log"])}">log</a>' if b.get("log") else ""
    cls = escape(cell["status"].replace(" ", "-"))
    return (f'<tr class="status-{cls}"><td>{escape(cell["abi"])}</td><td>{status}</td>'
            f'<td>{escape(b.get("builder") or "")}</td>'
            f'<td>{escape(_human_duration(b.get("duration")))}</td><td>{log}</td></tr>\n')


def _deps_html(deps: dict[str, list[str]]) -> str:
    parts = []
    if deps["apt"]:
        parts.append(f'<pre class="deps">apt install {escape(" ".join(deps["apt"]))}</pre>')
    if deps["pip"]:
        parts.append('<pre class="deps">' + escape("\n".join(deps["pip"])) + "</pre>")
    if deps["lib"]:
        parts.append(f'<p class="deps">libraries: {escape(", ".join(deps["lib"]))}</p>')
    return "".join(parts)


def _file_item(f: dict[str, Any]) -> str:
    alias = ""
    if f["alias_of"]:
        alias = f' <span class="note">(alias of {escape(f["alias_of"])})</span>'
    meta = [_human_size(f["size"])]
    if f["requires_python"]:
        meta.append(f"Requires-Python {f['requires_python']}")
    if f["builder"]:
        meta.append(f"built by {f['builder']} in {_human_duration(f['duration'])}")
    return (f'<li><a href="{escape(f["url"])}">{escape(f["filename"])}</a>{alias}'
            f' <span class="meta">{escape(", ".join(meta))}</span>'
            f'<br><code class="hash">sha256 {escape(f["sha256"])}</code>'
            f'{_deps_html(f["dependencies"])}</li>\n')


def _version_section(v: dict[str, Any]) -> str:
    badges = []
    if v["prerelease"]:
        badges.append("pre-release")
    if v["yanked"]:
        badges.append("yanked" + (f": {v['yanked_reason']}" if v["yanked_reason"] else ""))
    if v["deleted"]:
        badges.append("deleted upstream")
    if v["skip_reason"]:
        badges.append(f"skipped: {v['skip_reason']}"
                      + (f" ({v['skip_note']})" if v["skip_note"] else ""))
    tags = "".join(f' <span class="badge">{escape(b)}</span>' for b in badges)
    released = escape((v["released"] or "")[:10])
    rows = "".join(_status_row(c) for c in v["abis"])
    files = "".join(_file_item(f) for f in v["files"])
    return (f'<section id="v{escape(v["version"])}">\n<h2>{escape(v["version"])}{tags}</h2>\n'
            f'<p class="meta">released {released}</p>\n'
            f"<table>\n<thead><tr><th>ABI</th><th>status</th><th>builder</th><th>time</th>"
            f"<th>log</th></tr></thead>\n<tbody>\n{rows}</tbody>\n</table>\n"
            + (f'<ul class="files">\n{files}</ul>\n' if files else "") + "</section>\n")


def project_html(data: dict[str, Any]) -> str:
    """The page for people: every version, its status per ABI, files, logs, dependencies."""
    name = data["display_name"] or data["name"]
    notes = []
    if data["deleted"]:
        notes.append("This package was deleted upstream.")
    if data["skip_reason"]:
        notes.append(f"This package is not built: {data['skip_reason']}.")
    notice = "".join(f'<p class="notice">{escape(n)}</p>\n' for n in notes)
    pkg = escape(quote(data["name"]))
    body = (_nav("../../") + f"<main>\n<h1>{escape(name)}</h1>\n{notice}"
            f'<p><a href="../../simple/{pkg}/">simple index page</a> · '
            f'<a href="index.json">this page as JSON</a></p>\n'
            f"<pre>pip install {escape(data['name'])}</pre>\n"
            + "".join(_version_section(v) for v in data["versions"])
            + ("" if data["versions"] else "<p>No versions known.</p>\n") + "</main>\n")
    return page(f"{name} – piwheels", body, css="../../static/style.css")


def _table(head: list[str], rows: list[list[Any]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in r) + "</tr>\n"
                   for r in rows)
    return f"<table>\n<thead><tr>{th}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>\n"


def stats_html(s: dict[str, Any]) -> str:
    """The stats page for people."""
    v, f, b = s["versions"], s["files"], s["builds"]
    rate = f"{v['success_rate'] * 100:.1f}%" if v["success_rate"] is not None else "–"
    summary = _table(["", ""], [
        ["packages known", f"{s['packages']['known']:,}"],
        ["packages with files", f"{s['packages']['with_files']:,}"],
        ["versions known", f"{v['known']:,}"],
        ["versions attempted", f"{v['attempted']:,}"],
        ["versions built", f"{v['built']:,}"],
        ["success rate", rate],
        ["builds", f"{b['total']:,}"],
        ["total build time", _human_duration(b["build_time"])],
        ["files", f"{f['count']:,} ({f['aliases']:,} aliases)"],
        ["disk used", _human_size(f["disk_used"])],
    ])
    statuses = _table(["status", "builds"], [[k, f"{n:,}"] for k, n in b["by_status"].items()])
    builders = _table(["builder", "ABI", "platform", "builds", "successes", "build time",
                       "last seen"],
                      [[x["name"], x["abi"], x["platform"], x["builds"], x["successes"],
                        _human_duration(x["build_time"]), (x["last_seen"] or "")[:19]]
                       for x in s["builders"]])
    queue = _table(["ABI", "queued", "building", "waiting to retry"],
                   [[q["abi"] + ("" if q["active"] else " (inactive)"), q["queued"],
                     q["building"], q["waiting_retry"]] for q in s["queue"]])
    body = (_nav("") + f"<main>\n<h1>piwheels statistics</h1>\n"
            f'<p class="meta">generated {escape(s["generated"][:19])} UTC · '
            f'<a href="stats.json">JSON</a></p>\n{summary}<h2>Builds by status</h2>\n{statuses}'
            f"<h2>Builders</h2>\n{builders}<h2>Queue</h2>\n{queue}</main>\n")
    return page("piwheels statistics", body, css="static/style.css")


STYLE = """\
body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 60rem; padding: 1rem;
       color: #222; }
nav { margin-bottom: 1rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border: 1px solid #ccc; padding: .2rem .5rem; text-align: left; }
code, pre { font-size: .85rem; }
pre { background: #f4f4f4; padding: .4rem; overflow-x: auto; white-space: pre-wrap; }
.badge { font-size: .8rem; background: #eee; border-radius: .3rem; padding: .1rem .4rem; }
.notice { background: #fff3cd; padding: .5rem; }
.note, .meta { color: #666; font-size: .9rem; }
.status-built td:nth-child(2) { color: #080; }
.status-failed td:nth-child(2), .status-timeout td:nth-child(2),
.status-out-of-memory td:nth-child(2),
.status-missing-build-dependency td:nth-child(2) { color: #b00; }
ul.files li { margin-bottom: .5rem; }
"""


def landing_html() -> str:
    body = (_nav("") + "<main>\n<h1>piwheels</h1>\n<p>Wheels built for this platform. "
            "Add to <code>/etc/pip.conf</code>:</p>\n"
            "<pre>[global]\nextra-index-url = https://THIS-HOST/simple/</pre>\n"
            '<p><a href="simple/">simple index</a> · <a href="stats.html">statistics</a>'
            "</p>\n</main>\n")
    return page("piwheels", body, css="static/style.css")


def json_bytes(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()

