"""Project pages say "not for Python 3.N" where Requires-Python rules a target out, never
"failed" (real PostgreSQL, the real index writer)."""

from __future__ import annotations

import json

from test_index import T311, T313, Farm, parse

from piwheels_build.index import write_index
from piwheels_build.requirespython import excluded_mask


def with_requires(farm: Farm, pkg: str, ver: str, spec: str | None) -> Farm:
    farm.cur.execute("UPDATE versions SET requires_python = %s, python_excluded = %s"
                     " WHERE package = %s AND version = %s",
                     (spec, excluded_mask(spec), pkg, ver))
    return farm


def test_not_for_python_cells(conn, tmp_path):
    farm = Farm(conn)   # targets cp311-linux_armv7l and cp313-linux_armv7l
    farm.package("rp").version("rp", "3.0").version("rp", "2.0").version("rp", "1.0")
    farm.version("rp", "0.9")
    with_requires(farm, "rp", "3.0", ">=3.12")       # upstream: not for 3.11
    with_requires(farm, "rp", "2.0", ">=3.6,<3.12")  # not for 3.13
    with_requires(farm, "rp", "0.9", ">=3.6.*")      # invalid: ignored
    # 3.0: a pure wheel built on cp313 "covers" cp311 by its tags, but not for its Python
    farm.file(farm.build("rp", "3.0", target=T313), "rp", "3.0", "rp-3.0-py3-none-any.whl",
              "e" * 64)
    # 1.0: the upstream said nothing; the builder found it in PKG-INFO
    farm.build("rp", "1.0", target=T311, status="not-for-python",
               log=b"[piwheels] Requires-Python >=3.12 (PKG-INFO) excludes Python 3.11.2\n")
    farm.dirty("rp").commit()
    write_index(conn, tmp_path)

    data = json.loads((tmp_path / "project/rp/index.json").read_text())
    cells = {(v["version"], c["target"]): c for v in data["versions"] for c in v["targets"]}
    assert cells[("3.0", T311)]["status"] == "not-for-python"
    assert cells[("3.0", T311)]["note"] == "Requires-Python >=3.12"
    assert cells[("3.0", T311)]["python"] == "3.11"
    assert cells[("3.0", T313)]["status"] == "built"
    assert cells[("2.0", T313)]["status"] == "not-for-python"
    assert cells[("2.0", T311)]["status"] == "pending"
    assert cells[("1.0", T311)]["status"] == "not-for-python"
    assert cells[("1.0", T311)]["build"]["log"]
    assert cells[("0.9", T311)]["status"] == "pending"
    versions = {v["version"]: v for v in data["versions"]}
    assert versions["3.0"]["requires_python"] == ">=3.12"
    assert versions["0.9"]["requires_python_invalid"] is True
    assert versions["3.0"]["requires_python_invalid"] is False

    page = parse(tmp_path / "project/rp/index.html")
    text = " ".join(page.texts)
    assert text.count("not for Python 3.11") == 2 and text.count("not for Python 3.13") == 1
    assert "failed" not in text
    assert "Requires-Python >=3.6.* (not a valid specifier: ignored)" in text


def test_stats_page_counts_versions_not_for_each_target(conn, tmp_path):
    farm = Farm(conn)   # targets cp311-linux_armv7l and cp313-linux_armv7l
    farm.package("rp").version("rp", "1.0").version("rp", "2.0")
    with_requires(farm, "rp", "1.0", ">=3.12")
    with_requires(farm, "rp", "2.0", ">=3.14")
    farm.dirty("rp").commit()
    write_index(conn, tmp_path)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert {q["target"]: q["not_for_python"] for q in stats["queue"]} == {T311: 2, T313: 1}
    assert "not for its Python" in (tmp_path / "stats.html").read_text()
