"""Rendering cost of the pages: the Jinja2 templates against the f-strings they replaced.

No database: synthetic pages shaped like the index benchmark's farm (5
versions and 3 build targets a package, cp311..cp313 on linux_armv7l; 9 files,
more than its 5.6), rendered in one process by

- the current ``piwheels_build.index.pages`` (templates in ``index/templates/``);
- the f-string code it replaced, loaded from git (``git show REV:piwheels_build/
  index/pages.py``, ``--old-rev``, default the commit before the templates).

Each round renders every package's PEP 503 page and page for people with both,
alternately (old, new, old, new, ...), and the fastest round of each is kept;
the root's per-project line is timed the same way. Before timing, every page
of both is compared (after mapping the two escapers' spellings of quotes,
``&quot;``/``&#34;`` and ``&#x27;``/``&#39;``, to one), including pages full
of markup in every field: the figures compare equal work. Since migration 0010
the project page's table has a row per build target ("cp311 linux_armv7l",
column "target"); the old code, which knew ABIs only, is given each row's
target as its ``abi`` and its header "ABI" is read as "target".

Figures: microseconds per page, the ratio new/old, and what the difference
adds to a full write of the index benchmark (940,250 packages with files).

    .venv/bin/python bench/pages.py            # 20,000 packages, 5 rounds
    .venv/bin/python bench/pages.py --quick    # 500 packages, 3 rounds
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
import types
from collections import namedtuple
from datetime import UTC, datetime, timedelta
from html import escape
from typing import Any
from urllib.parse import quote

import _common
from _common import ROOT, Report

from piwheels_build.index import data as datamod
from piwheels_build.index import pages as new

OLD_REV = "fe8c2f0"  # the last commit with the f-string pages
FULL_WRITE_PACKAGES = 940_250  # packages with files in bench/index_scale.py's full write

File = namedtuple("File", "filename sha256 requires_python version metadata_sha256 size "
                          "created_at")
Version = namedtuple("Version", "version yanked yanked_reason")

HOSTILE = ['<script>alert("x")</script>', "a & b", "' onmouseover='x", '"><img src=x>']
STATUSES = ["built", "failed", "queued", "skipped", "building", "pending", "timeout"]


def load_old(rev: str) -> types.ModuleType:
    """The f-string pages of ``rev``, as a module beside the current package."""
    source = subprocess.run(["git", "show", f"{rev}:piwheels_build/index/pages.py"],
                            cwd=ROOT, capture_output=True, text=True, check=True).stdout
    mod = types.ModuleType("piwheels_build.index._old_pages")
    mod.__package__ = "piwheels_build.index"
    sys.modules[mod.__name__] = mod
    exec(compile(source, f"{rev}:pages.py", "exec"), mod.__dict__)
    return mod


def _text(rng: random.Random, base: str, hostile: bool) -> str:
    return rng.choice(HOSTILE) + base if hostile else base


def synth_package(rng: random.Random, i: int, hostile: bool = False) -> dict[str, Any]:
    """One package: its simple page's rows and its project page's data (0010's shape),
    and the same data in the shape the old code reads (``project_old``)."""
    name = f"package-{i}"
    abis = ["cp311", "cp312", "cp313"]
    now = datetime(2026, 11, 29, tzinfo=UTC)
    files, versions, out = [], {}, []
    for v in range(rng.randint(1, 9)):
        version = _text(rng, f"1.{v}.{rng.randint(0, 20)}", hostile)
        yanked = rng.random() < 0.05 or hostile
        reason = _text(rng, "broken build", hostile) if yanked and rng.random() < 0.5 else None
        versions[version] = Version(version, yanked, reason)
        vfiles = []
        for abi in abis[:rng.randint(1, 3)] if rng.random() < 0.8 else ["none"]:
            fname = f"{name.replace('-', '_')}-{version}-{abi}-{abi}-linux_armv7l.whl"
            if hostile:
                fname = rng.choice(HOSTILE) + fname
            sha = f"{rng.getrandbits(256):064x}"
            rp = _text(rng, ">=3.8", hostile) if rng.random() < 0.7 else None
            files.append(File(fname, sha, rp, version,
                              f"{rng.getrandbits(256):064x}" if rng.random() < 0.9 else None,
                              rng.randint(10_000, 50_000_000), now - timedelta(days=v)))
            vfiles.append({
                "filename": fname, "url": f"../../simple/{name}/{fname}", "sha256": sha,
                "size": rng.randint(10_000, 50_000_000), "python_tag": abi, "abi_tag": abi,
                "platform_tag": "linux_armv7l", "requires_python": rp,
                "alias_of": fname if rng.random() < 0.1 else None,
                "uploaded": "2026-11-29T00:00:00Z", "build_id": i * 100 + v,
                "builder": _text(rng, "pi-one", hostile), "duration": rng.uniform(1, 4000),
                "dependencies": {
                    "apt": [_text(rng, "libfoo1", hostile)] if rng.random() < 0.3 else [],
                    "pip": [_text(rng, "numpy>=1.20", hostile)] if rng.random() < 0.3 else [],
                    "lib": [_text(rng, "libfoo.so.1", hostile)] if rng.random() < 0.2 else []},
            })
        cells = []
        for abi in abis:
            status = rng.choice(STATUSES)
            build = None if status in ("pending", "queued") else {
                "build_id": i * 100 + v, "status": status,
                "builder": _text(rng, "pi-two", hostile), "duration": rng.uniform(1, 4000),
                "started": None, "finished": None,
                "log": f"../../logs/{i * 100 + v}.txt" if rng.random() < 0.7 else None}
            note = _text(rng, "retry 2", hostile) if rng.random() < 0.2 else None
            cells.append({"target": f"{abi}-linux_armv7l", "abi": abi,
                          "platform": "linux_armv7l", "python": f"3.{abi[3:]}",
                          "status": status, "note": note, "files": [], "build": build})
        out.append({
            "version": version, "released": "2026-11-29T00:00:00Z",
            "prerelease": rng.random() < 0.1, "yanked": yanked, "yanked_reason": reason,
            "deleted": rng.random() < 0.02, "skip_reason":
                _text(rng, "binary-only", hostile) if rng.random() < 0.05 or hostile else None,
            "skip_note": _text(rng, "by hand", hostile) if hostile else None,
            # The pre-Jinja renderer this compares against has no per-version line.
            "requires_python": None, "requires_python_invalid": False,
            "targets": cells, "files": vfiles})
    files.sort(key=lambda f: (datamod.version_key(f.version), f.filename))
    project = {"name": name, "display_name": _text(rng, name.title(), hostile),
               "skip_reason": _text(rng, "admin", hostile) if hostile else None,
               "deleted": hostile, "targets": [f"{a}-linux_armv7l" for a in abis],
               "versions": out}
    # Before 0010: "abis", and a row named by its ABI alone (here: the target, as 0010's
    # page shows it, "cp311 linux_armv7l").
    project_old = dict(project, abis=abis, versions=[
        dict(v, abis=[dict(c, abi=f"{c['abi']} {c['platform']}") for c in v["targets"]])
        for v in out])
    return {"name": name, "files": files, "versions": versions, "project": project,
            "project_old": project_old}


def same(old_html: str, new_html: str) -> bool:
    """Equal once both escapers spell quotes the same way (and the old table's "ABI"
    column is read as 0010's "target")."""
    norm = old_html.replace("&quot;", "&#34;").replace("&#x27;", "&#39;")
    norm = norm.replace("<thead><tr><th>ABI</th>", "<thead><tr><th>target</th>")
    return norm == new_html


def check_equal(old: types.ModuleType, packages: list[dict[str, Any]]) -> int:
    """Every page of both is the same page; returns how many were compared."""
    n = 0
    for p in packages:
        pairs = [(old.simple_html(p["name"], p["files"], p["versions"]),
                  new.simple_html(p["name"], p["files"], p["versions"])),
                 (old.project_html(p["project_old"]), new.project_html(p["project"]))]
        for a, b in pairs:
            if not same(a, b):
                raise SystemExit(f"pages differ for {p['name']}:\n--- old\n{a}\n--- new\n{b}")
            n += 1
    # The stats and landing pages and the stylesheet have grown since the renderer
    # this compares against (Requires-Python counts, downloads): only the pages
    # timed here, the simple and project pages, are held to the same output.
    root_old = old.page("Simple index", "<h1>Simple index</h1>\n", head=old.REPO_META)
    head, tail = new.root_html_parts()
    if root_old != head + tail:
        raise SystemExit("root head/tail differ")
    return n + 1


def _root_link_old(name: str) -> str:  # writer.py's line before the templates
    return f'<a href="{escape(quote(name))}/">{escape(name)}</a><br>\n'


def time_round(mod: Any, packages: list[dict[str, Any]], key: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    for p in packages:
        mod.simple_html(p["name"], p["files"], p["versions"])
    t1 = time.perf_counter()
    for p in packages:
        mod.project_html(p[key])
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1


def time_root(fn: Any, names: list[str]) -> float:
    t0 = time.perf_counter()
    for name in names:
        fn(name)
    return time.perf_counter() - t0


def main() -> None:
    ap = _common.parser(__doc__.splitlines()[0])
    ap.add_argument("--packages", type=int, help="synthetic packages (20,000; quick: 500)")
    ap.add_argument("--rounds", type=int, help="rounds of each (5; quick: 3)")
    ap.add_argument("--old-rev", default=OLD_REV, help=f"git revision of the old pages "
                    f"(default {OLD_REV})")
    args = ap.parse_args()
    n = args.packages or (500 if args.quick else 20_000)
    rounds = args.rounds or (3 if args.quick else 5)
    report = Report("pages", args)
    report.set_machine(_common.machine(pg_version="(not used)"))
    old = load_old(args.old_rev)
    rng = random.Random(14)
    packages = [synth_package(rng, i) for i in range(n)]
    hostile = [synth_package(rng, n + i, hostile=True) for i in range(50)]
    compared = check_equal(old, packages + hostile)
    report.add("pages_compared_equal", compared)
    report.add("packages", n)
    report.add("files", sum(len(p["files"]) for p in packages))
    report.add("versions", sum(len(p["project"]["versions"]) for p in packages))

    best = {"old": [float("inf")] * 2, "new": [float("inf")] * 2}
    for _ in range(rounds):
        for label, mod, key in (("old", old, "project_old"), ("new", new, "project")):
            got = time_round(mod, packages, key)
            best[label] = [min(a, b) for a, b in zip(best[label], got, strict=True)]
    names = [f"package-name-{i}" for i in range(n * 10)]
    root = {"old": float("inf"), "new": float("inf")}
    for _ in range(rounds):
        root["old"] = min(root["old"], time_root(_root_link_old, names))
        root["new"] = min(root["new"], time_root(new.root_link, names))

    us = 1e6 / n
    for label in ("old", "new"):
        report.add(f"{label}_simple_us_per_page", round(best[label][0] * us, 1), "µs")
        report.add(f"{label}_project_us_per_page", round(best[label][1] * us, 1), "µs")
        report.add(f"{label}_root_link_us", round(root[label] * 1e6 / len(names), 2), "µs")
    report.add("ratio_simple_new_to_old", round(best["new"][0] / best["old"][0], 2))
    report.add("ratio_project_new_to_old", round(best["new"][1] / best["old"][1], 2))
    both_old, both_new = sum(best["old"]), sum(best["new"])
    report.add("ratio_both_pages_new_to_old", round(both_new / both_old, 2))
    report.add("ratio_root_link_new_to_old", round(root["new"] / root["old"], 2))
    added = (both_new - both_old) / n * FULL_WRITE_PACKAGES
    root_added = (root["new"] - root["old"]) / len(names) * FULL_WRITE_PACKAGES
    report.add("full_write_old_render_s", round(both_old / n * FULL_WRITE_PACKAGES, 1), "s")
    report.add("full_write_new_render_s", round(both_new / n * FULL_WRITE_PACKAGES, 1), "s")
    report.add("full_write_added_s", round(added + root_added, 1), "s")
    report.note(f"rendering both pages of {FULL_WRITE_PACKAGES:,} packages and the root: "
                f"{added + root_added:+.0f} s against the index benchmark's full write "
                "(1,470 s, docs/benchmarks.md section 4)")
    report.finish()


if __name__ == "__main__":
    main()
