"""Requires-Python at scale (migration 0008): the one-shot fill, the queue with the rule on.

The synthetic farm of bench/_synth.py (its default layout: five build targets, cp37..cp313
on linux_armv7l, cp37-linux_armv7l primary), migrated with every
version unevaluated (``python_excluded`` NULL, as a database upgraded to 0008 has it),
its sdists given a Requires-Python by a hash of the file name: 35% ``>=3.8``, 15%
``>=3.9``, 10% ``>=3.10``, 5% ``>=3.7,<3.12``, 1% invalid (``>=3.6.*``), the rest none.
Then:

- ``refresh_queue()`` over everything, no mask yet (the queue as before 0008), then, in
  the same run and on the same data, a no-op full refresh and ``refresh_queue(package,
  version)`` with the current ``wanted_builds`` (0010's, per target, with 0008's rule) and
  with the same view without the rule (0010's text with its two Requires-Python tests
  taken out: the primary is the first active target, no target is excluded, 0004's rule
  per target), alternated: the cost of the rule where it changes nothing. (Before 0010
  this compared 0008's view with 0004's; those views read the ABI tables 0010 dropped.)
- the fill as the next sync run does it (``sync/backfill.py``: batches of 5,000, masks
  computed in Python, ``fill_requires_python`` refreshing the versions that now exclude
  an active target's Python): versions per second, queue rows before and after;
- a no-op ``refresh_queue()`` over everything with the masks in place;
- ``refresh_queue(package, version)`` and claim + finish latency, with the rule on;
- EXPLAIN (ANALYZE, BUFFERS) of the claim query and of ``wanted_builds`` for one version.

    .venv/bin/python bench/requires_python.py               # 100,000 packages / 500,000 versions
    .venv/bin/python bench/requires_python.py --scale 1000000
    .venv/bin/python bench/requires_python.py --quick       # 5,000 / 25,000
"""

from __future__ import annotations

import json
import random

import _common
import _synth
from _common import Cluster, Report, explain, plan_summary, print_plan, summary_ms, timed
from queue_scale import CLAIM_SQL, wheel_for

from piwheels_build import db
from piwheels_build.sync import backfill
from piwheels_build.sync.summary import Progress, SyncSummary

# Requires-Python of the sdists, by bench_h(length of the file name * 7 + id) % 100.
SPECS = """
UPDATE upstream_files SET requires_python = CASE
    WHEN x < 35 THEN '>=3.8' WHEN x < 50 THEN '>=3.9' WHEN x < 60 THEN '>=3.10'
    WHEN x < 65 THEN '>=3.7,<3.12' WHEN x < 66 THEN '>=3.6.*' END
FROM (SELECT filename AS fn, (bench_h(hashtext(filename)::bigint & 2147483647) % 100)::int AS x
      FROM upstream_files WHERE kind = 'sdist') h
WHERE filename = h.fn
"""
PER_TARGET = """
SELECT t.target, count(q.target) FROM targets t LEFT JOIN queue q ON q.target = t.target
GROUP BY t.target, t.py_major, t.py_minor, t.platform_tag
ORDER BY t.py_major, t.py_minor, t.platform_tag
"""


# 0010's view without the Requires-Python rule: (text in 0010, its replacement).
NO_RULE = (
    ("  AND NOT python_excludes(v.python_excluded, a.py_major, a.py_minor)\n", ""),
    ("(NOT a.lower_other AND a.lower_bits & ~coalesce(v.python_excluded, 0) = 0)",
     "(NOT a.lower_other AND a.lower_bits = 0)"),  # the first active target
)


def use_view(cur, rule: bool) -> None:
    """``wanted_builds`` as migration 0010 wrote it, or without its Requires-Python rule
    (the same columns)."""
    sql = next(text for n, _, text in db.migrations() if n == 10)
    view = sql[sql.index("CREATE VIEW wanted_builds"):]
    view = view[:view.index(";\n") + 1].replace("CREATE VIEW", "CREATE OR REPLACE VIEW", 1)
    if not rule:
        for old, new in NO_RULE:
            if old not in view:
                raise SystemExit(f"0010's wanted_builds: {old!r} not found")
            view = view.replace(old, new)
    cur.execute(view)


def compare_views(cur, report: Report, pv: list[tuple[str, str]], rounds: int) -> None:
    """No-op full refresh and per-version refresh with 0010's view and with the same view
    without the Requires-Python rule, alternated (masks all NULL: both must leave the
    queue as it is)."""
    full: dict[str, list[float]] = {"rule": [], "norule": []}
    per_version: dict[str, list[float]] = {"rule": [], "norule": []}
    changed = 0
    for _ in range(rounds):
        for m in ("rule", "norule"):
            use_view(cur, m == "rule")
            with timed() as t:
                cur.execute("SELECT refresh_queue()")
                changed += cur.fetchone()[0]
            full[m].append(t[0])
            for p, v in pv:
                with timed() as t:
                    cur.execute("SELECT refresh_queue(%s, %s)", (p, v))
                per_version[m].append(t[0])
    use_view(cur, True)
    for m in ("rule", "norule"):
        report.add(f"view_{m}_refresh_full_noop_s", [round(x, 2) for x in full[m]], "s")
        report.add(f"view_{m}_refresh_version", summary_ms(per_version[m]))
    report.add("ratio_refresh_full_noop_rule_to_norule",
               round(sum(full["rule"]) / max(sum(full["norule"]), 1e-6), 3))
    report.add("views_rows_changed", changed)
    if changed:
        report.note("wanted_builds with and without the Requires-Python rule disagree"
                    " with no masks set")


def main() -> None:
    ap = _common.parser(__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, default=None,
                    help="packages (versions are five times as many); default 100,000")
    ap.add_argument("--claims", type=int, default=None, help="claim+finish iterations")
    args = ap.parse_args()
    packages = args.scale or (5_000 if args.quick else 100_000)
    versions = packages * 5
    n_claims = args.claims or (300 if args.quick else 2000)
    n_refresh = 100 if args.quick else 1000
    report = Report("requires_python", args)
    rnd = random.Random(42)

    with Cluster(report, keep=args.keep) as cluster:
        conn = cluster.connect()
        report.add("packages", packages)
        report.add("versions", versions)
        _synth.generate(conn, packages, versions, report)
        conn.autocommit = True
        cur = conn.cursor()
        with timed() as t:
            cur.execute(SPECS)
        report.add("specs_set_s", round(t[0], 1), "s")
        cur.execute("SELECT requires_python, count(*) FROM upstream_files WHERE kind = 'sdist'"
                    " GROUP BY 1 ORDER BY 1 NULLS FIRST")
        report.add("sdists_by_requires_python", {str(k): n for k, n in cur.fetchall()})
        cur.execute("VACUUM ANALYZE upstream_files")

        with timed() as t:
            cur.execute("SELECT refresh_queue()")
            before = cur.fetchone()[0]
        report.add("refresh_full_no_masks_s", round(t[0], 2), "s")
        report.add("queue_rows_no_masks", before)
        cur.execute(PER_TARGET)
        report.add("queue_per_target_no_masks", dict(cur.fetchall()))
        cur.execute("VACUUM ANALYZE queue")
        cur.execute("SELECT package, version FROM versions TABLESAMPLE SYSTEM (2)"
                    " LIMIT %s", (n_refresh,))
        pv = cur.fetchall()
        rnd.shuffle(pv)
        compare_views(cur, report, pv, 1 if args.quick else 3)

        # -- the fill, as the next sync run does it ------------------------------------
        conn.autocommit = False
        summary = SyncSummary()
        lines: list[str] = []
        with timed() as t:
            written = backfill.fill(conn, summary, Progress(lambda p: lines.append(str(p))))
        report.log(lines[-1] if lines else "fill: nothing")
        report.add("fill_s", round(t[0], 1), "s")
        report.add("fill_versions", written)
        report.add("fill_versions_per_s", round(written / max(t[0], 1e-6)), "/s")
        report.add("fill_invalid_specifiers", summary.invalid_requires_python)
        conn.autocommit = True
        cur.execute("VACUUM ANALYZE versions")
        cur.execute("VACUUM ANALYZE queue")
        cur.execute("SELECT count(*) FROM queue")
        report.add("queue_rows_after_fill", cur.fetchone()[0])
        cur.execute(PER_TARGET)
        report.add("queue_per_target_after_fill", dict(cur.fetchall()))
        cur.execute("SELECT farm_stats(false)->'not_for_python'")
        report.add("not_for_python", cur.fetchone()[0])

        with timed() as t:
            cur.execute("SELECT refresh_queue()")
            again = cur.fetchone()[0]
        report.add("refresh_full_noop_with_masks_s", round(t[0], 2), "s")
        report.add("refresh_full_noop_with_masks_rows", again)
        if again:
            report.note("the fill left the queue out of line with wanted_builds")

        # -- per version, claim and finish, with the rule on ---------------------------
        lat = []
        for p, v in pv:
            with timed() as t:
                cur.execute("SELECT refresh_queue(%s, %s)", (p, v))
            lat.append(t[0])
        report.add("refresh_version", summary_ms(lat))
        builders = []
        for t in _synth.TARGETS:
            cur.execute("SELECT register_builder(%s, %s, %s, '3', 'bench')",
                        ("bench", t.abi, t.platform))
            builders.append(cur.fetchone()[0])
        claim_lat, finish_lat = [], []
        for i in range(n_claims):
            with timed() as t:
                cur.execute("SELECT * FROM claim_build(%s, 300)", (builders[i % len(builders)],))
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

        plans = {}
        first, last = _synth.TARGETS[0].name, _synth.TARGETS[-1].name
        for title, sql, params in (
            (f"claim query ({last}, deepest queue)", CLAIM_SQL, (last,)),
            (f"claim query ({first}, primary)", CLAIM_SQL, (first,)),
            ("wanted_builds for one version",
             "SELECT * FROM wanted_builds WHERE package = %s AND version = %s", pv[0]),
        ):
            cur.execute("BEGIN")
            lines = explain(cur, sql, params)
            cur.execute("ROLLBACK")
            print_plan(title, lines)
            plans[title] = plan_summary(lines)
        report.add("plans", plans)
        conn.close()
    report.finish()


if __name__ == "__main__":
    main()
