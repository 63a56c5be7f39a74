"""Dispatch throughput: 50 simulated builders against one PostgreSQL, vs pgbench.

Each builder is a process with its own connection doing no-op builds:
``claim_build`` then ``finish_build`` (a wheel recorded, one in ten a failure),
as fast as it can, for 60 s (``--quick``: 3 s). The queue is a synthetic farm
(bench/_synth.py, 200,000 packages / 1,000,000 versions by default; its
default layout, five build targets: cp37..cp313 on linux_armv7l, ten builders
each). Then ``pgbench -N`` (simple-update) runs on the
same cluster with the same number of clients for the same time: the rate this
server commits small write transactions at, the physical limit. The ratio
builds/s ÷ pgbench transactions/s is the figure to compare across machines.

Then the same load runs again, for the same time, with ``finish_build`` as
migration 0002 defined it (before 0004 locked the version row and dropped
``pg_notify``; its retry branch, which this load never takes, read per target
as 0010 requires), in this throwaway database only: the before/after of that
fix in one run (``before_0004_*``). While each load runs, the builders' backends
are sampled in ``pg_stat_activity``: the share waiting on each lock or
running is printed as ``backend_states``.

    .venv/bin/python bench/dispatch.py
    .venv/bin/python bench/dispatch.py --quick
"""

from __future__ import annotations

import json
import multiprocessing as mp
import re
import resource
import subprocess
import time

import _common
import _synth
from _common import Cluster, Report, summary_ms

TARGETS = _synth.TARGETS


def _wheel(claim: tuple, i: int) -> list[dict]:
    build_id, package, version, target = claim[:4]
    abi, platform = target.split("-", 1)
    mod = package.replace("-", "_")
    # A version is pure or not whatever the builder: pure ones (a third) are only ever
    # claimed on the primary target, since their wheel covers the others.
    pure = target == TARGETS[0].name and hash(version) % 3 == 0
    py, ab, plat = ("py3", "none", "any") if pure else (abi, abi, platform)
    return [{"filename": f"{mod}-{version}-{py}-{ab}-{plat}.whl", "python_tag": py,
             "abi_tag": ab, "platform_tag": plat, "size": 12345, "sha256": "ab" * 32,
             "requires_python": ">=3.7", "metadata_sha256": "cd" * 32,
             "dependencies": [{"tool": "pip", "dependency": "six"}]}]


def worker(dsn: str, builder_id: int, start: mp.Event, seconds: float, out: mp.Queue) -> None:
    import psycopg2

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    cur = conn.cursor()
    claims, finishes, idle, errors = [], [], 0, 0
    start.wait()
    t_end = time.perf_counter() + seconds
    i = 0
    while True:
        t0 = time.perf_counter()
        if t0 >= t_end:
            break
        try:
            cur.execute("SELECT * FROM claim_build(%s, 300)", (builder_id,))
            claim = cur.fetchone()
            t1 = time.perf_counter()
            if claim is None:
                idle += 1
                time.sleep(0.01)
                continue
            i += 1
            status = "failed" if i % 10 == 0 else "success"
            files = [] if status == "failed" else _wheel(claim, i)
            cur.execute("SELECT finish_build(%s, %s, 0.0, %s, 3, false, %s)",
                        (claim[0], status, b"log", json.dumps(files)))
            cur.fetchone()
            t2 = time.perf_counter()
        except psycopg2.Error as e:  # a deadlock or serialization failure: count, go on
            errors += 1
            out.put(("error", str(e).splitlines()[0]))
            continue
        if t2 <= t_end:
            claims.append(t1 - t0)
            finishes.append(t2 - t1)
    conn.close()
    out.put(("done", claims, finishes, idle, errors))


def restore_0002_finish_build(cluster: Cluster) -> None:
    """finish_build as migration 0002 wrote it: NOTIFY, and no lock on the version."""
    from piwheels_build import db

    sql = next(text for n, _, text in db.migrations() if n == 2)
    body = sql[sql.index("CREATE FUNCTION finish_build"):]
    body = body[:body.index("END $$;") + len("END $$;")]
    # Its infrastructure-retry branch (never taken here: no build ends 'infrastructure')
    # names 0002's columns; read it per target, as the schema is now (0010).
    for old, new in (("builds.abi_tag = b.abi_tag", "builds.target = b.target"),
                     ("INSERT INTO queue (package, version, abi_tag,",
                      "INSERT INTO queue (package, version, target,"),
                     ("VALUES (b.package, b.version, b.abi_tag, q.released",
                      "VALUES (b.package, b.version, b.target, q.released"),
                     ("INSERT INTO abi_skips (package, version, abi_tag,",
                      "INSERT INTO target_skips (package, version, target,"),
                     ("VALUES (b.package, b.version, b.abi_tag, 'too-many-failures'",
                      "VALUES (b.package, b.version, b.target, 'too-many-failures'")):
        if old not in body:
            raise SystemExit(f"0002's finish_build: {old!r} not found")
        body = body.replace(old, new)
    conn = cluster.connect(autocommit=True)
    with conn.cursor() as cur:
        cur.execute(body.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
    conn.close()


def wal_snapshot(dsn: str) -> tuple[str, int]:
    """The WAL insert position and the number of WAL flushes so far (pg_stat_wal)."""
    import psycopg2

    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT pg_stat_force_next_flush()")
        cur.execute("SELECT pg_current_wal_lsn()::text, wal_sync FROM pg_stat_wal")
        lsn, syncs = cur.fetchone()
    conn.close()
    return lsn, int(syncs)


def wal_since(dsn: str, since: tuple[str, int]) -> tuple[int, int]:
    """WAL bytes written and WAL flushes since a wal_snapshot()."""
    import psycopg2

    lsn, syncs = wal_snapshot(dsn)
    conn = psycopg2.connect(dsn)
    with conn.cursor() as cur:
        cur.execute("SELECT pg_wal_lsn_diff(%s, %s)::bigint", (lsn, since[0]))
        nbytes = cur.fetchone()[0]
    conn.close()
    return int(nbytes), syncs - since[1]


def run_builders(dsn: str, builder_ids: list[int], seconds: float,
                 report: Report, prefix: str = "") -> dict:
    ctx = mp.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(dsn, b, start, seconds, out), daemon=True)
             for b in builder_ids]
    for p in procs:
        p.start()
    time.sleep(1.0)  # let every worker connect
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wal0 = wal_snapshot(dsn)
    t0 = time.perf_counter()
    start.set()
    claims, finishes, idle, errors, msgs = [], [], 0, 0, set()
    done = 0
    waits: dict[str, int] = {}
    import psycopg2
    mon = psycopg2.connect(dsn)
    mon.autocommit = True
    mcur = mon.cursor()
    while done < len(procs):
        if time.perf_counter() - t0 < seconds:
            mcur.execute("SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU'), count(*)"
                         " FROM pg_stat_activity WHERE backend_type = 'client backend'"
                         " AND state = 'active' AND pid <> pg_backend_pid() GROUP BY 1")
            for k, n in mcur.fetchall():
                waits[k] = waits.get(k, 0) + n
        try:
            item = out.get(timeout=0.2)
        except Exception:  # queue.Empty: sample again
            if time.perf_counter() - t0 > seconds + 120:
                raise
            continue
        if item[0] == "error":
            msgs.add(item[1])
            continue
        _, c, f, i, e = item
        claims += c
        finishes += f
        idle += i
        errors += e
        done += 1
    for p in procs:
        p.join(timeout=30)
    wall = time.perf_counter() - t0
    mon.close()
    wal_bytes, wal_syncs = wal_since(dsn, wal0)
    total = sum(waits.values()) or 1
    report.add(f"{prefix}backend_states", {k: round(n / total, 3) for k, n in
                                  sorted(waits.items(), key=lambda kv: -kv[1])[:8]})
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    for m in sorted(msgs)[:5]:
        report.note(f"builder error: {m}")
    return {"builds": len(finishes), "seconds": seconds, "wall": wall,
            "claims": summary_ms(claims), "finishes": summary_ms(finishes),
            "idle_claims": idle, "errors": errors,
            "wal_bytes": wal_bytes, "wal_syncs": wal_syncs,
            "client_cpu_s": round((after.ru_utime - before.ru_utime)
                                  + (after.ru_stime - before.ru_stime), 1)}


def run_pgbench(cluster: Cluster, clients: int, seconds: int,
                report: Report) -> tuple[float, int, int]:
    """pgbench -N's transactions/s, and the WAL bytes and flushes of its run."""
    conn = cluster.connect(autocommit=True)
    with conn.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS pgbench")
        cur.execute("CREATE DATABASE pgbench")
    conn.close()
    common = ["-h", str(cluster.socket_dir), "-p", "5432", "-U", "piwheels"]
    subprocess.run([cluster.bin("pgbench"), "-i", "-q", "-s", "10", *common, "pgbench"],
                   check=True, capture_output=True, text=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wal0 = wal_snapshot(cluster.dsn)
    proc = subprocess.run([cluster.bin("pgbench"), "-N", "-c", str(clients), "-j", "2",
                           "-T", str(seconds), "-n", *common, "pgbench"],
                          check=True, capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wal_bytes, wal_syncs = wal_since(cluster.dsn, wal0)
    m = re.search(r"tps = ([\d.]+) \(without initial connection time\)", proc.stdout)
    if not m:
        m = re.search(r"tps = ([\d.]+)", proc.stdout)
    for line in proc.stdout.splitlines():
        if line.startswith(("latency average", "number of transactions actually", "tps")):
            report.log(f"pgbench: {line}")
    report.add("pgbench_client_cpu_s", round((after.ru_utime - before.ru_utime)
                                             + (after.ru_stime - before.ru_stime), 1), "s")
    return float(m[1]), wal_bytes, wal_syncs


def main() -> None:
    ap = _common.parser(__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, default=None,
                    help="packages in the synthetic farm (versions: five times); default 200,000")
    ap.add_argument("--builders", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=None)
    args = ap.parse_args()
    packages = args.scale or (5_000 if args.quick else 200_000)
    seconds = args.seconds or (3 if args.quick else 60)
    report = Report("dispatch", args)

    with Cluster(report, keep=args.keep) as cluster:
        conn = cluster.connect()
        _synth.generate(conn, packages, packages * 5, report)
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT refresh_queue()")
            report.add("queue_rows", cur.fetchone()[0])
            cur.execute("VACUUM ANALYZE queue")
            ids = []
            for i in range(args.builders):
                t = TARGETS[i % len(TARGETS)]
                cur.execute("SELECT register_builder(%s, %s, %s, '3', 'bench')",
                            (f"bench-{i // len(TARGETS)}", t.abi, t.platform))
                ids.append(cur.fetchone()[0])
        conn.close()
        report.add("packages", packages)
        report.add("builders", len(ids))
        report.add("seconds", seconds)

        report.log(f"{len(ids)} builders claiming and finishing for {seconds}s")
        res = run_builders(cluster.dsn, ids, seconds, report)
        rate = res["builds"] / seconds
        report.add("builds", res["builds"])
        report.add("builds_per_s", round(rate, 1), "claim+finish pairs/s")
        report.add("transactions_per_s", round(rate * 2, 1), "/s")
        report.add("claim_latency", res["claims"])
        report.add("finish_latency", res["finishes"])
        report.add("idle_claims", res["idle_claims"])
        report.add("errors", res["errors"])
        report.add("builders_client_cpu_s", res["client_cpu_s"], "s")
        report.add("wal_bytes_per_build", round(res["wal_bytes"] / max(res["builds"], 1)), "B")
        report.add("wal_MiB_per_s", round(res["wal_bytes"] / seconds / 2**20, 2), "MiB/s")
        report.add("commits_per_wal_flush",
                   round(res["builds"] * 2 / max(res["wal_syncs"], 1), 2))

        report.log(f"pgbench -N with {len(ids)} clients for {seconds}s")
        tps, pg_wal, pg_syncs = run_pgbench(cluster, len(ids), seconds, report)
        report.add("pgbench_tps", round(tps, 1), "/s")
        report.add("pgbench_wal_bytes_per_tx", round(pg_wal / max(tps * seconds, 1)), "B")
        report.add("pgbench_wal_MiB_per_s", round(pg_wal / seconds / 2**20, 2), "MiB/s")
        report.add("pgbench_commits_per_wal_flush", round(tps * seconds / max(pg_syncs, 1), 2))
        report.add("ratio_wal_rate_to_pgbench",
                   round(res["wal_bytes"] / max(pg_wal, 1), 3))
        report.add("ratio_builds_to_pgbench", round(rate / tps, 3))
        report.add("ratio_transactions_to_pgbench", round(rate * 2 / tps, 3))

        # The same load with 0002's finish_build, in this throwaway database only.
        restore_0002_finish_build(cluster)
        report.log(f"before_0004: {len(ids)} builders for {seconds}s, 0002's finish_build")
        res = run_builders(cluster.dsn, ids, seconds, report, prefix="before_0004_")
        vrate = res["builds"] / seconds
        report.add("before_0004_builds_per_s", round(vrate, 1), "claim+finish pairs/s")
        report.add("before_0004_ratio_builds_to_pgbench", round(vrate / tps, 3))
        report.add("before_0004_finish_latency", res["finishes"])
        report.add("before_0004_errors", res["errors"])
        report.add("before_0004_commits_per_wal_flush",
                   round(res["builds"] * 2 / max(res["wal_syncs"], 1), 2))
        report.add("speedup_over_0002", round(rate / vrate, 2) if vrate else None)
    report.finish()


if __name__ == "__main__":
    main()
