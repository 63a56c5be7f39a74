"""A synthetic farm database at PyPI's scale, generated set-based in SQL.

Shared by queue_scale, dispatch, index_scale and requires_python (not a
benchmark itself).

Shape (deterministic: the same scale and layout give the same database):

- ``packages`` packages named ``<8 hex>-<n>`` (so name order is not insertion
  order, as upstream), every package has one version and the rest are spread
  with a skew (a few packages have thousands of versions, most have one to
  five), versions ``1.<n>``, released at random over 15 years;
- build targets (ABI x platform, migration 0010), ordered as the schema orders
  them (by Python version, then platform name), one history builder each. Two
  layouts (``LAYOUTS``):

  - ``abis`` (the default, the farm before 0010): five ABIs on one platform,
    ``cp37`` (primary) ``cp39 cp311 cp312 cp313`` on ``linux_armv7l``;
  - ``targets``: two ABIs on three platforms, ``cp311`` then ``cp313`` on
    ``linux_aarch64 linux_armv7l linux_x86_64`` (primary:
    ``cp311-linux_aarch64``);

- per version, by a hash of its number (percent of versions); "T1..TN" are
  the first N targets in order, wheels carry their build target's ABI and
  platform:

  ====================  ====  ==============================================
  category              %     history
  ====================  ====  ==============================================
  binary-only           3     no sdist upstream: skipped
  never attempted       7     queued on T1 (the primary)
  pure                  52    T1 success, one ``py3-none-any`` wheel
  compiled, 4 targets   10    success on T1..T4 (4 wheels); the rest queued
  abi3                  4     T1 success, one ``<T1 ABI>-abi3-<T1 platform>``
                              wheel: covers the later ABIs on T1's platform
  compiled, 1 target    10    T1 success (1 wheel); the rest queued
  failed                14    failed on T1 and T2; the rest queued
  ====================  ====  ==============================================

  So 76% of versions are built (the seed's figure), about 1.06 files and
  1.34 builds per version in both layouts. The queue differs:

  ====================  ==================  =============================
  category              ``abis`` (5 x 1)    ``targets`` (2 ABIs x 3 plat.)
  ====================  ==================  =============================
  never attempted       1 row               1 row
  compiled, 4 targets   1 (cp313)           2 (cp313 on armv7l, x86_64)
  abi3                  0 (covers all)      4 (both ABIs on the other two
                                            platforms: abi3 covers its own
                                            platform only)
  compiled, 1 target    4                   5
  failed                3                   4
  per version           about 0.99 rows     about 1.49 rows
  ====================  ==================  =============================
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Target(NamedTuple):
    abi: str
    platform: str
    major: int
    minor: int

    @property
    def name(self) -> str:
        return f"{self.abi}-{self.platform}"


def _layout(abis: list[tuple[str, int, int]], platforms: list[str]) -> list[Target]:
    """Every ABI on every platform, ordered numerically (Python, then platform name)."""
    return sorted((Target(a, p, mj, mn) for a, mj, mn in abis for p in platforms),
                  key=lambda t: (t.major, t.minor, t.platform))


LAYOUTS: dict[str, list[Target]] = {
    "abis": _layout([("cp37", 3, 7), ("cp39", 3, 9), ("cp311", 3, 11), ("cp312", 3, 12),
                     ("cp313", 3, 13)], ["linux_armv7l"]),
    "targets": _layout([("cp311", 3, 11), ("cp313", 3, 13)],
                       ["linux_aarch64", "linux_armv7l", "linux_x86_64"]),
}
DEFAULT_LAYOUT = "abis"
TARGETS = LAYOUTS[DEFAULT_LAYOUT]

# Category boundaries on bench_cat(vid) in [0, 100).
BINARY_ONLY = 3      # [0, 3)
UNBUILT = 10         # [3, 10)
PURE = 62            # [10, 62)
COMPILED4 = 72       # [62, 72)
ABI3 = 76            # [72, 76)
COMPILED1 = 86       # [76, 86)
# failed: [86, 100)

FUNCTIONS = """
CREATE OR REPLACE FUNCTION bench_h(x bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT (x * 2654435761) % 4294967291';
CREATE OR REPLACE FUNCTION bench_pkg(i bigint) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT substr(md5(i::text), 1, 8) || '-' || i $$;
CREATE OR REPLACE FUNCTION bench_pkgidx(vid bigint, p bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN vid <= p THEN vid
                ELSE 1 + floor(p * power((bench_h(vid) % 1000000) / 1e6, 2))::bigint END $$;
CREATE OR REPLACE FUNCTION bench_cat(vid bigint) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS 'SELECT (bench_h(vid * 31 + 7) % 100)::integer';
CREATE OR REPLACE FUNCTION bench_released(vid bigint) RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
    $$ SELECT timestamptz '2010-01-01 00:00+00'
              + make_interval(secs => bench_h(vid * 17 + 3) % (15 * 365 * 86400)) $$;
"""

STEPS = [
    ("packages", """
        INSERT INTO packages (package, display_name, needs_sync, synced_at, upstream_serial,
                              synced_serial)
        SELECT bench_pkg(i), bench_pkg(i), false, now(), i, i FROM generate_series(1, %(P)s) i
    """),
    ("package_names", """
        INSERT INTO package_names (name, package)
        SELECT bench_pkg(i), bench_pkg(i) FROM generate_series(1, %(P)s) i
    """),
    ("versions", f"""
        INSERT INTO versions (package, version, released, skip_reason)
        SELECT bench_pkg(bench_pkgidx(vid, %(P)s)), '1.' || vid, bench_released(vid),
               CASE WHEN bench_cat(vid) < {BINARY_ONLY} THEN 'binary-only' END
        FROM generate_series(1, %(V)s) vid
    """),
    ("upstream_files", f"""
        INSERT INTO upstream_files (filename, package, version, kind, url, sha256, size,
                                    upload_time)
        SELECT f.fn, f.pkg, '1.' || vid, f.kind, 'http://127.0.0.1:9/files/' || f.fn,
               md5(vid::text) || md5(f.fn), 10000 + bench_h(vid) % 1000000, bench_released(vid)
        FROM generate_series(1, %(V)s) vid,
        LATERAL (SELECT bench_pkg(bench_pkgidx(vid, %(P)s)) AS pkg) p,
        LATERAL (SELECT p.pkg,
                        CASE WHEN bench_cat(vid) < {BINARY_ONLY}
                             THEN replace(p.pkg, '-', '_') || '-1.' || vid || '-py3-none-any.whl'
                             ELSE p.pkg || '-1.' || vid || '.tar.gz' END AS fn,
                        CASE WHEN bench_cat(vid) < {BINARY_ONLY} THEN 'wheel'
                             ELSE 'sdist' END AS kind) f
    """),
    ("builds", f"""
        INSERT INTO builds (build_id, package, version, target, builder_id, status,
                            started_at, finished_at, duration)
        SELECT vid * 8 + ai, bench_pkg(bench_pkgidx(vid, %(P)s)), '1.' || vid,
               (%(TARGETS)s)[ai + 1], ai + 1,
               CASE WHEN c.cat >= {COMPILED1} THEN 'failed' ELSE 'success' END,
               bench_released(vid) + make_interval(hours => 1 + ai * 24),
               bench_released(vid) + make_interval(hours => 1 + ai * 24,
                                                   secs => 10 + bench_h(vid + ai) % 900),
               10 + bench_h(vid + ai) % 900
        FROM generate_series(1, %(V)s) vid
        CROSS JOIN LATERAL (SELECT bench_cat(vid) AS cat) c
        CROSS JOIN LATERAL generate_series(0, CASE
            WHEN c.cat < {UNBUILT} THEN -1
            WHEN c.cat < {PURE} THEN 0
            WHEN c.cat < {COMPILED4} THEN 3
            WHEN c.cat < {COMPILED1} THEN 0
            ELSE 1 END) ai
    """),
    ("files", f"""
        INSERT INTO files (filename, build_id, package, version, python_tag, abi_tag,
                           platform_tag, size, sha256, requires_python, metadata_sha256,
                           created_at)
        SELECT replace(b.package, '-', '_') || '-' || b.version || '-' || t.py || '-' || t.abi
                   || '-' || t.plat || '.whl',
               b.build_id, b.package, b.version, t.py, t.abi, t.plat,
               20000 + bench_h(b.build_id) % 5000000,
               md5(b.build_id::text) || md5(b.package), '>=3.7',
               md5(b.package) || md5(b.build_id::text), b.finished_at
        FROM builds b
        JOIN targets bt ON bt.target = b.target
        CROSS JOIN LATERAL (SELECT bench_cat(b.build_id / 8) AS cat) c
        CROSS JOIN LATERAL (SELECT
            CASE WHEN c.cat < {PURE} THEN 'py3'
                 ELSE bt.abi_tag END AS py,
            CASE WHEN c.cat < {PURE} THEN 'none'
                 WHEN c.cat >= {COMPILED4} AND c.cat < {ABI3} THEN 'abi3'
                 ELSE bt.abi_tag END AS abi,
            CASE WHEN c.cat < {PURE} THEN 'any' ELSE bt.platform_tag END AS plat) t
        WHERE b.status = 'success'
    """),
]


def generate(conn: Any, packages: int, versions: int, report: Any,
             layout: str = DEFAULT_LAYOUT) -> dict[str, float]:
    """Fill an empty, migrated database; returns seconds per step. Leaves the queue empty."""
    import time

    targets = LAYOUTS[layout]
    assert len(targets) >= 4, "the categories build on up to four targets"
    versions = max(versions, packages)
    arr = "ARRAY[" + ", ".join(f"'{t.name}'" for t in targets) + "]"
    times: dict[str, float] = {}
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(FUNCTIONS)
        cur.execute("SET synchronous_commit TO off")
        cur.execute("SET maintenance_work_mem TO '1GB'")
        cur.execute("SET work_mem TO '256MB'")
        # Bulk load only: skip the per-row foreign key triggers (the data is consistent by
        # construction), as pg_restore does.
        cur.execute("SET session_replication_role TO replica")
        for t in targets:
            cur.execute("INSERT INTO targets (target, abi_tag, platform_tag, py_major, py_minor)"
                        " VALUES (%s, %s, %s, %s, %s)",
                        (t.name, t.abi, t.platform, t.major, t.minor))
        for i, t in enumerate(targets, 1):
            cur.execute("INSERT INTO builders (builder_id, name, abi_tag, platform_tag, target,"
                        " python) VALUES (%s, %s, %s, %s, %s, %s)",
                        (i, f"history-{t.name}", t.abi, t.platform, t.name,
                         f"{t.major}.{t.minor}"))
        cur.execute("SELECT setval('builders_builder_id_seq', %s)", (len(targets),))
        for name, sql in STEPS:
            t0 = time.perf_counter()
            sql = (sql.replace("%(P)s", str(int(packages))).replace("%(V)s", str(int(versions)))
                   .replace("%(TARGETS)s", arr))
            cur.execute(sql)
            times[name] = time.perf_counter() - t0
            report.log(f"generated {name}: {cur.rowcount:,} rows in {times[name]:.1f}s")
        cur.execute("SELECT setval('builds_build_id_seq', (SELECT max(build_id) FROM builds))")
        cur.execute("RESET session_replication_role")
        t0 = time.perf_counter()
        cur.execute("VACUUM ANALYZE")
        times["vacuum_analyze"] = time.perf_counter() - t0
        report.log(f"VACUUM ANALYZE in {times['vacuum_analyze']:.1f}s")
    conn.autocommit = False
    return times


def counts(conn: Any) -> dict[str, int]:
    out = {}
    with conn.cursor() as cur:
        for table in ("packages", "versions", "upstream_files", "builds", "files", "queue"):
            cur.execute(f"SELECT count(*) FROM {table}")
            out[table] = cur.fetchone()[0]
        cur.execute("SELECT count(*) FROM (SELECT DISTINCT package, version FROM files) x")
        out["versions_built"] = cur.fetchone()[0]
        cur.execute("SELECT pg_database_size(current_database())")
        out["db_bytes"] = cur.fetchone()[0]
    conn.rollback()
    return out
