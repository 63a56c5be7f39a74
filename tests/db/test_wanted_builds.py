"""0004's grouped wanted_builds gives exactly what 0002's per-ABI probes gave.

The rules themselves are checked one by one in test_queue_rules; this test
builds random farms (every build status, pure, abi3 and compiled files, skips,
deleted and skipped versions, an inactive ABI) and compares the view with the
0002 definition it replaced, in full and for single packages and versions
(the two shapes refresh_queue asks for).
"""

from __future__ import annotations

import random
import re

import pytest

from piwheels_build import db

ABIS = ["cp39", "cp311", "cp312", "cp313"]
STATUSES = ["building", "success", "failed", "timeout", "out-of-memory",
            "missing-build-dependency", "infrastructure", "abandoned"]


def _old_view_sql() -> str:
    """The wanted_builds of migration 0002, as a temporary view to compare with."""
    sql = next(text for n, _, text in db.migrations() if n == 2)
    body = re.search(r"CREATE VIEW wanted_builds AS\n(.*?);\n", sql, re.S)
    assert body, "0002 no longer defines wanted_builds"
    return "CREATE TEMP VIEW wanted_builds_0002 AS\n" + body[1]


def _random_farm(cur, rng: random.Random) -> list[tuple[str, str]]:
    builders = {}
    for abi in ABIS:
        cur.execute("SELECT register_builder(%s, %s, 'linux_armv7l', %s)", (f"b-{abi}", abi, abi))
        builders[abi] = cur.fetchone()[0]
    cur.execute("UPDATE abis SET active = false WHERE abi_tag = 'cp312'")
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
            for abi in rng.sample(ABIS, rng.randint(0, 4)):
                for status in rng.sample(STATUSES, rng.randint(1, 2)):
                    cur.execute("INSERT INTO builds (package, version, abi_tag, builder_id, status)"
                                " VALUES (%s, %s, %s, %s, %s) RETURNING build_id",
                                (pkg, ver, abi, builders[abi], status))
                    build_ids.append(cur.fetchone()[0])
            if build_ids and rng.random() < 0.6:
                kind = rng.choice(["pure", "abi3", "compiled"])
                py = rng.choice(ABIS)
                tags = {"pure": ("py3", "none", "any"), "abi3": (py, "abi3", "linux_armv7l"),
                        "compiled": (py, py, "linux_armv7l")}[kind]
                cur.execute("INSERT INTO files (filename, build_id, package, version, python_tag,"
                            " abi_tag, platform_tag, size, sha256)"
                            " VALUES (%s, %s, %s, %s, %s, %s, %s, 1, %s)",
                            (f"{pkg}-{ver}-{'-'.join(tags)}.whl", rng.choice(build_ids),
                             pkg, ver, *tags, "0" * 64))
            for abi in ABIS:
                if rng.random() < 0.08:
                    cur.execute("INSERT INTO abi_skips (package, version, abi_tag, reason)"
                                " VALUES (%s, %s, %s, 'admin')", (pkg, ver, abi))
    return versions


def _rows(cur, view: str, where: str = "", args: tuple = ()) -> list[tuple]:
    cur.execute(f"SELECT package, version, abi_tag, released FROM {view} {where}"
                " ORDER BY 1, 2, 3", args)
    return cur.fetchall()


@pytest.mark.parametrize("seed", range(6))
def test_grouped_view_matches_the_per_abi_definition(conn, seed):
    rng = random.Random(seed)
    with conn.cursor() as cur:
        versions = _random_farm(cur, rng)
        cur.execute(_old_view_sql())
        new, old = _rows(cur, "wanted_builds"), _rows(cur, "wanted_builds_0002")
        assert new == old
        assert len({r[2] for r in new}) >= 2, "the random farm should want several ABIs"
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
        _random_farm(cur, random.Random(1))
        cur.execute("ANALYZE")
        cur.execute("SET LOCAL enable_seqscan = off")  # tiny tables: ask what it can do
        cur.execute("EXPLAIN SELECT * FROM wanted_builds WHERE package = 'p1' AND version = '1.0'")
        plan = "\n".join(r[0] for r in cur.fetchall())
    conn.rollback()
    assert "Seq Scan on builds" not in plan and "Seq Scan on files" not in plan
    # The package/version equality reaches each grouped subquery as an index condition.
    for table in ("builds", "files", "abi_skips"):
        probe = (rf"Scan using \w+ on {table} \w+ .*\n\s+Index Cond: "
                 r"\(\(package = 'p1'::text\) AND \(version = '1\.0'::text\)\)")
        assert re.search(probe, plan), plan
