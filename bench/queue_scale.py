"""The queue at PyPI's scale: refresh, the next 100,000 builds per ABI, claim latency.

A synthetic database (bench/_synth.py: 1,000,000 packages, 5,000,000 versions,
5 ABIs, 76% built) in a throwaway cluster, then:

- ``refresh_queue()`` over everything (the initial fill, then a no-op re-run),
  per package (what sync calls) and per version (what finish_build calls);
- the next 100,000 builds of each ABI, from the materialised queue (what
  claim_build walks) and recomputed from the ``wanted_builds`` view;
- claim latency: one builder per ABI doing claim_build + finish_build in a
  loop (p50, p99 of each);
- a no-op full refresh as migration 0002 wrote it (view and function), beside
  the current one, in the same run: the before/after of 0004 and 0005;
- EXPLAIN (ANALYZE, BUFFERS) of the claim query, the lease sweep, the
  per-package view and the next-100,000 query; index sizes and use counts.

    .venv/bin/python bench/queue_scale.py            # 1M packages / 5M versions
    .venv/bin/python bench/queue_scale.py --quick    # 10k / 50k, well under a minute
"""

from __future__ import annotations

import json
import random

import _common
import _synth
from _common import Cluster, Report, explain, plan_summary, print_plan, summary_ms, timed

CLAIM_SQL = """
SELECT qq.package, qq.version, qq.abi_tag FROM queue qq
WHERE qq.abi_tag = %s AND qq.build_id IS NULL
  AND (qq.not_before IS NULL OR qq.not_before <= now())
ORDER BY qq.priority DESC, qq.released DESC
LIMIT 1
FOR UPDATE SKIP LOCKED
"""
LEASES_SQL = """
SELECT q.package, q.version, q.abi_tag, q.build_id FROM queue q
WHERE q.build_id IS NOT NULL AND q.lease_expires < now()
FOR UPDATE SKIP LOCKED
"""
NEXT_SQL = """
SELECT package, version FROM queue
WHERE abi_tag = %s AND build_id IS NULL AND (not_before IS NULL OR not_before <= now())
ORDER BY priority DESC, released DESC
LIMIT %s
"""
WANTED_NEXT_SQL = """
SELECT package, version FROM wanted_builds WHERE abi_tag = %s
ORDER BY released DESC LIMIT %s
"""


def wheel_for(claim: tuple, i: int) -> dict:
    """A plausible no-op result: mostly compiled wheels for the builder's ABI, some pure."""
    build_id, package, version, abi = claim[:4]
    mod = package.replace("-", "_")
    if i % 3 == 0:
        py, ab, plat = "py3", "none", "any"
    else:
        py, ab, plat = abi, abi, "linux_armv7l"
    return {"filename": f"{mod}-{version}-{py}-{ab}-{plat}.whl", "python_tag": py,
            "abi_tag": ab, "platform_tag": plat, "size": 12345, "sha256": "ab" * 32,
            "requires_python": ">=3.7", "metadata_sha256": "cd" * 32,
            "dependencies": [{"tool": "pip", "dependency": "six"}]}


def restore_0002(cur) -> None:
    """wanted_builds and refresh_queue as migration 0002 wrote them.

    Before 0004 grouped the view's tests per version and 0005 made the full
    refresh one pass over the view.
    """
    from piwheels_build import db

    sql = next(text for n, _, text in db.migrations() if n == 2)
    view = sql[sql.index("CREATE VIEW wanted_builds"):]
    view = view[:view.index(";\n") + 1]
    cur.execute(view.replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1))
    func = sql[sql.index("CREATE FUNCTION refresh_queue"):]
    func = func[:func.index("END $$;") + len("END $$;")]
    cur.execute(func.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))


def main() -> None:
    ap = _common.parser(__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, default=None,
                    help="packages (versions are five times as many); default 1,000,000")
    ap.add_argument("--claims", type=int, default=None, help="claim+finish iterations")
    args = ap.parse_args()
    packages = args.scale or (10_000 if args.quick else 1_000_000)
    versions = packages * 5
    n_claims = args.claims or (300 if args.quick else 5000)
    n_refresh = 100 if args.quick else 1000
    next_n = 100_000
    report = Report("queue_scale", args)
    rnd = random.Random(42)

    with Cluster(report, keep=args.keep) as cluster:
        conn = cluster.connect()
        report.add("packages", packages)
        report.add("versions", versions)
        with timed() as t:
            _synth.generate(conn, packages, versions, report)
        report.add("generate_s", round(t[0], 1), "s")

        conn.autocommit = True
        cur = conn.cursor()

        # -- refresh_queue() over everything --------------------------------------------
        with timed() as t:
            cur.execute("SELECT refresh_queue()")
            added = cur.fetchone()[0]
        report.add("refresh_full_initial_s", round(t[0], 2), "s")
        report.add("refresh_full_initial_rows", added)
        cur.execute("VACUUM ANALYZE queue")
        with timed() as t:
            cur.execute("SELECT refresh_queue()")
            again = cur.fetchone()[0]
        report.add("refresh_full_noop_s", round(t[0], 2), "s")
        report.add("refresh_full_noop_rows", again)
        c = _synth.counts(conn)
        conn.autocommit = True
        for k, v in c.items():
            report.add(f"rows_{k}", v)
        report.add("built_fraction", round(c["versions_built"] / c["versions"], 3))
        cur.execute("SELECT abi_tag, count(*) FROM queue GROUP BY abi_tag ORDER BY 1")
        per_abi = dict(cur.fetchall())
        report.add("queue_per_abi", per_abi)

        # -- per package and per version ---------------------------------------------------
        idx = [rnd.randint(1, packages) for _ in range(n_refresh)]
        cur.execute("SELECT bench_pkg(i) FROM unnest(%s::bigint[]) i", (idx,))
        pkgs = [r[0] for r in cur.fetchall()]
        lat = []
        for p in pkgs:
            with timed() as t:
                cur.execute("SELECT refresh_queue(%s)", (p,))
            lat.append(t[0])
        report.add("refresh_package", summary_ms(lat))
        cur.execute("SELECT package, version FROM versions TABLESAMPLE SYSTEM (1)"
                    " LIMIT %s", (n_refresh,))
        pv = cur.fetchall()
        lat = []
        for p, v in pv:
            with timed() as t:
                cur.execute("SELECT refresh_queue(%s, %s)", (p, v))
            lat.append(t[0])
        report.add("refresh_version", summary_ms(lat))

        # -- the next 100,000 builds per ABI -------------------------------------------------
        next_q, next_w = {}, {}
        for abi, *_ in _synth.ABIS:
            with timed() as t:
                cur.execute(NEXT_SQL, (abi, next_n))
                n = len(cur.fetchall())
            next_q[abi] = {"rows": n, "ms": round(t[0] * 1000, 1)}
        report.add("next_100k_from_queue", next_q)
        for abi, *_ in _synth.ABIS:
            with timed() as t:
                cur.execute(WANTED_NEXT_SQL, (abi, next_n))
                n = len(cur.fetchall())
            next_w[abi] = {"rows": n, "ms": round(t[0] * 1000, 1)}
        report.add("next_100k_from_view", next_w)

        # -- claim + finish latency -----------------------------------------------------------
        builders = []
        for abi, *_ in _synth.ABIS:
            cur.execute("SELECT register_builder(%s, %s, 'linux_armv7l', '3', 'bench')",
                        ("bench", abi))
            builders.append(cur.fetchone()[0])
        cur.execute("SELECT pg_stat_reset()")
        claim_lat, finish_lat = [], []
        for i in range(n_claims):
            bid = builders[i % len(builders)]
            with timed() as t:
                cur.execute("SELECT * FROM claim_build(%s, 300)", (bid,))
                claim = cur.fetchone()
            claim_lat.append(t[0])
            if claim is None:
                continue
            status = "failed" if i % 10 == 9 else "success"
            files = [] if status == "failed" else [wheel_for(claim, i)]
            with timed() as t:
                cur.execute("SELECT finish_build(%s, %s, 1.0, %s, 3, false, %s)",
                            (claim[0], status, b"log", json.dumps(files)))
                cur.fetchone()
            finish_lat.append(t[0])
        report.add("claim", summary_ms(claim_lat))
        report.add("finish", summary_ms(finish_lat))
        both = [a + b for a, b in zip(claim_lat, finish_lat, strict=False)]
        report.add("claim_plus_finish", summary_ms(both))
        report.add("serial_builds_per_s", round(len(both) / sum(both), 1), "/s")

        # -- indexes: size and use during the claim loop ----------------------------------------
        cur.execute("SELECT pg_stat_force_next_flush()")
        cur.execute("""
            SELECT s.relname, s.indexrelname, pg_relation_size(s.indexrelid), s.idx_scan
            FROM pg_stat_user_indexes s
            WHERE s.relname IN ('queue', 'builds', 'files', 'versions', 'upstream_files',
                                'abi_skips', 'index_dirty', 'builders', 'packages')
            ORDER BY s.relname, s.indexrelname""")
        idx_rows = cur.fetchall()
        print("---- indexes (size, scans during the claim/finish loop)")
        for rel, name, size, scans in idx_rows:
            print(f"    {rel:15} {name:28} {size / 2**20:9.1f} MiB {scans:10,} scans")
        report.add("indexes", {name: {"mib": round(size / 2**20, 1), "scans": scans}
                               for _, name, size, scans in idx_rows})

        # -- plans -----------------------------------------------------------------------------
        plans = {}
        for title, sql, params in (
            ("claim query (cp313, deepest queue)", CLAIM_SQL, ("cp313",)),
            ("claim query (cp37, primary)", CLAIM_SQL, ("cp37",)),
            ("lease sweep (release_expired_leases)", LEASES_SQL, None),
            ("wanted_builds for one package", "SELECT * FROM wanted_builds WHERE package = %s",
             (pkgs[0],)),
            ("wanted_builds for one version",
             "SELECT * FROM wanted_builds WHERE package = %s AND version = %s", pv[0]),
            ("next 100,000 builds of cp313 (queue)", NEXT_SQL, ("cp313", next_n)),
            ("wanted_builds, all (what refresh_queue() reads)",
             "SELECT count(*) FROM wanted_builds", None),
        ):
            cur.execute("BEGIN")
            lines = explain(cur, sql, params)
            cur.execute("ROLLBACK")
            print_plan(title, lines)
            plans[title] = plan_summary(lines)
        report.add("plans", plans)

        # -- before/after migrations 0004 and 0005, in this run ------------------------------
        # A no-op refresh_queue() as it is, then with 0002's wanted_builds (a correlated probe
        # of builds per version and ABI) and 0002's refresh_queue (the view read twice, every
        # wanted row offered to INSERT ... ON CONFLICT), in this throwaway database only. The
        # queue must come out the same: the two must agree.
        cur.execute("SELECT count(*) FROM queue")
        queued = cur.fetchone()[0]
        with timed() as t:
            cur.execute("SELECT refresh_queue()")
            cur.fetchone()
        report.add("refresh_full_noop_again_s", round(t[0], 2), "s")
        restore_0002(cur)
        with timed() as t:
            cur.execute("SELECT refresh_queue()")
            added_old = cur.fetchone()[0]
        report.add("before_0004_refresh_full_noop_s", round(t[0], 2), "s")
        cur.execute("SELECT count(*) FROM queue")
        queued_old = cur.fetchone()[0]
        report.add("before_0004_refresh_rows_added", added_old)
        report.add("before_0004_refresh_rows_removed", queued + added_old - queued_old)
        if added_old or queued_old != queued:
            report.note("0002's and 0004's wanted_builds disagree: the queue changed")
        report.add("speedup_refresh_over_0002",
                   round(report.figures["before_0004_refresh_full_noop_s"]
                         / max(report.figures["refresh_full_noop_again_s"], 0.001), 2))

        conn.close()
    report.finish()


if __name__ == "__main__":
    main()
