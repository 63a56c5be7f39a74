"""The grouped wanted_builds (0004, per target since 0010) gives exactly what 0002's
per-ABI probes gave, read per build target.

The rules themselves are checked one by one in test_queue_rules; this test
builds random farms (two platforms, every build status, pure, abi3 and compiled
files, skips, deleted and skipped versions, an inactive ABI) and compares the
view with the 0002 definition it replaced, read per target (an ABI becomes a
target; an abi3 wheel covers its own platform only), in full and for single
packages and versions (the two shapes refresh_queue asks for).
"""

from __future__ import annotations

import random
import re

import pytest

from piwheels_build import db

ABIS = ["cp39", "cp311", "cp312", "cp313"]
PLATFORMS = ["linux_armv7l", "linux_aarch64"]
STATUSES = ["building", "success", "failed", "timeout", "out-of-memory",
            "missing-build-dependency", "infrastructure", "abandoned"]

# 0002's definition, read per target: (text in 0002, its per-target reading, times).
PER_TARGET = [
    ("SELECT v.package, v.version, a.abi_tag, v.released",
     "SELECT v.package, v.version, a.target, v.released", 1),
    ("CROSS JOIN abis a", "CROSS JOIN targets a", 1),
    ("a.abi_tag = (SELECT x.abi_tag FROM abis x WHERE x.active\n"
     "                     ORDER BY x.py_major, x.py_minor, x.abi_tag LIMIT 1)",
     "a.target = (SELECT x.target FROM targets x WHERE x.active\n"
     "                     ORDER BY x.py_major, x.py_minor, x.platform_tag LIMIT 1)", 1),
    ("b.abi_tag <> a.abi_tag", "b.target <> a.target", 1),
    ("b.abi_tag = a.abi_tag", "b.target = a.target", 1),
    ("abi_skips s", "target_skips s", 2),
    ("s.abi_tag <> a.abi_tag", "s.target <> a.target", 1),
    ("s.abi_tag = a.abi_tag", "s.target = a.target", 1),
    ("(f.abi_tag = 'abi3'\n", "(f.abi_tag = 'abi3' AND f.platform_tag = a.platform_tag\n", 1),
]


def _old_view_sql() -> str:
    """The wanted_builds of migration 0002, per target, as a temporary view to compare with."""
    sql = next(text for n, _, text in db.migrations() if n == 2)
    body = re.search(r"CREATE VIEW wanted_builds AS\n(.*?);\n", sql, re.S)
    assert body, "0002 no longer defines wanted_builds"
    view = body[1]
    for old, new, times in PER_TARGET:
        assert view.count(old) == times, f"0002's wanted_builds changed: {old!r}"
        view = view.replace(old, new)
    assert "abi_tag" not in view.replace("f.abi_tag", ""), view
    return "CREATE TEMP VIEW wanted_builds_0002 AS\n" + view


def _random_farm(cur, rng: random.Random,
                 platforms: list[str] = PLATFORMS) -> list[tuple[str, str]]:
    targets = [f"{abi}-{plat}" for abi in ABIS for plat in platforms]
    builders = {}
    for abi in ABIS:
        for plat in platforms:
            cur.execute("SELECT register_builder(%s, %s, %s, %s)",
                        (f"b-{abi}-{plat}", abi, plat, abi))
            builders[f"{abi}-{plat}"] = cur.fetchone()[0]
    cur.execute("UPDATE targets SET active = false WHERE abi_tag = 'cp312'")
    versions = []
    for i in range(40):
        pkg = f"p{i}"
        cur.execute("INSERT INTO packages (package, display_name, deleted, skip_reason)"
                    " VALUES (%s, %s, %s, %s)",
                    (pkg, pkg, rng.random() < 0.05, "admin" if rng.random() < 0.05 else None))
        for j in range(rng.randint(1, 4)):
            ver = f"1.{j}"
            versions.append((pkg, ver))
            cur.execute("INSERT INTO versions (package, version, deleted, skip_reason)"
                        " VALUES (%s, %s, %s, %s)",
                        (pkg, ver, rng.random() < 0.05,
                         "binary-only" if rng.random() < 0.05 else None))
            build_ids = []
            for target in rng.sample(targets, rng.randint(0, 4)):
                for status in rng.sample(STATUSES, rng.randint(1, 2)):
                    cur.execute("INSERT INTO builds (package, version, target, builder_id, status)"
                                " VALUES (%s, %s, %s, %s, %s) RETURNING build_id",
                                (pkg, ver, target, builders[target], status))
                    build_ids.append(cur.fetchone()[0])
            if build_ids and rng.random() < 0.6:
                kind = rng.choice(["pure", "abi3", "compiled"])
                py, plat = rng.choice(ABIS), rng.choice(platforms)
                tags = {"pure": ("py3", "none", "any"), "abi3": (py, "abi3", plat),
                        "compiled": (py, py, plat)}[kind]
                cur.execute("INSERT INTO files (filename, build_id, package, version, python_tag,"
                            " abi_tag, platform_tag, size, sha256)"
                            " VALUES (%s, %s, %s, %s, %s, %s, %s, 1, %s)",
                            (f"{pkg}-{ver}-{'-'.join(tags)}.whl", rng.choice(build_ids),
                             pkg, ver, *tags, "0" * 64))
            for target in targets:
                if rng.random() < 0.08:
                    cur.execute("INSERT INTO target_skips (package, version, target, reason)"
                                " VALUES (%s, %s, %s, 'admin')", (pkg, ver, target))
    return versions


def _rows(cur, view: str, where: str = "", args: tuple = ()) -> list[tuple]:
    cur.execute(f"SELECT package, version, target, released FROM {view} {where}"
                " ORDER BY 1, 2, 3", args)
    return cur.fetchall()


@pytest.mark.parametrize("seed", range(6))
def test_grouped_view_matches_the_per_target_definition(conn, seed):
    rng = random.Random(seed)
    with conn.cursor() as cur:
        versions = _random_farm(cur, rng)
        cur.execute(_old_view_sql())
        new, old = _rows(cur, "wanted_builds"), _rows(cur, "wanted_builds_0002")
        assert new == old
        assert len({r[2] for r in new}) >= 2, "the random farm should want several targets"
        assert {r[2].split("-")[1] for r in new} == set(PLATFORMS), "and both platforms"
        for pkg, ver in rng.sample(versions, 15):
            assert (_rows(cur, "wanted_builds", "WHERE package = %s", (pkg,))
                    == _rows(cur, "wanted_builds_0002", "WHERE package = %s", (pkg,)))
            one = "WHERE package = %s AND version = %s"
            assert (_rows(cur, "wanted_builds", one, (pkg, ver))
                    == _rows(cur, "wanted_builds_0002", one, (pkg, ver)))
    conn.rollback()


def test_single_version_refresh_stays_an_index_probe(conn):
    """The per-build refresh must not aggregate whole tables (it runs in every finish)."""
    with conn.cursor() as cur:
        # One platform: the planner weighs an index scan of builds against a bitmap
        # one by rows per version, as dense as before targets (either is a probe).
        _random_farm(cur, random.Random(1), PLATFORMS[:1])
        cur.execute("ANALYZE")
        cur.execute("SET LOCAL enable_seqscan = off")  # tiny tables: ask what it can do
        cur.execute("EXPLAIN SELECT * FROM wanted_builds WHERE package = 'p1' AND version = '1.0'")
        plan = "\n".join(r[0] for r in cur.fetchall())
    conn.rollback()
    assert "Seq Scan on builds" not in plan and "Seq Scan on files" not in plan
    # The package/version equality reaches each grouped subquery as an index condition.
    for table in ("builds", "files", "target_skips"):
        probe = (rf"Scan using \w+ on {table} \w+ .*\n\s+Index Cond: "
                 r"\(\(package = 'p1'::text\) AND \(version = '1\.0'::text\)\)")
        assert re.search(probe, plan), plan
