"""Downloads from access logs at scale (migration 0009, piwheels_build/downloads/).

A farm of N packages with 3 wheels each (recorded as finish_build records them, every
build 60 to 600 s), and a combined-format log over 30 days: 60% wheel downloads (a
Zipf-like choice of project, so a few are popular), 20% ``.metadata``, 15% index pages,
5% not the format; User-Agents of pip and uv as they send them, one per client machine
(its kernel release and Python differ), 3% curl. Then:

- the first read of the whole log (one process, 8 MiB per transaction): lines/s;
- a rerun with nothing new, and the index service's poll with nothing new (ms);
- the index writer's reads: a batch of 1,000 projects' counts (``project_counts``,
  ``file_counts``), the stats' ``farm_downloads``; ``mark_download_pages`` for a day;
- the tables' sizes and rows.

    .venv/bin/python bench/downloads.py                 # 100,000 packages, 1,000,000 lines
    .venv/bin/python bench/downloads.py --lines 5000000
    .venv/bin/python bench/downloads.py --quick         # 2,000 packages, 50,000 lines
"""

from __future__ import annotations

import json
import random
import statistics
from datetime import UTC, datetime, timedelta

import _common
from _common import Cluster, Report, timed

from piwheels_build.downloads import Reader
from piwheels_build.downloads.stats import farm_downloads, file_counts, project_counts

MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()


def make_farm(cur, packages: int) -> list[tuple[str, str]]:
    """(package, wheel file name) of every file."""
    cur.execute("INSERT INTO targets (target, abi_tag, platform_tag, py_major, py_minor)"
                " VALUES ('cp311-linux_armv7l', 'cp311', 'linux_armv7l', 3, 11)")
    cur.execute("INSERT INTO builders (name, abi_tag, platform_tag, target, python)"
                " VALUES ('pi', 'cp311', 'linux_armv7l', 'cp311-linux_armv7l', '3.11')"
                " RETURNING builder_id")
    builder = cur.fetchone()[0]
    cur.execute("INSERT INTO packages (package, display_name)"
                " SELECT 'pkg' || i, 'pkg' || i FROM generate_series(1, %s) i", (packages,))
    cur.execute("INSERT INTO versions (package, version)"
                " SELECT 'pkg' || i, v || '.0' FROM generate_series(1, %s) i,"
                " generate_series(1, 3) v", (packages,))
    cur.execute("INSERT INTO builds (package, version, target, builder_id, status, duration)"
                " SELECT package, version, 'cp311-linux_armv7l', %s, 'success',"
                " 60 + (hashtext(version || package) & 511) FROM versions", (builder,))
    cur.execute("INSERT INTO files (filename, build_id, package, version, python_tag, abi_tag,"
                " platform_tag, size, sha256) SELECT package || '-' || version ||"
                " '-cp311-cp311-linux_armv7l.whl', build_id, package, version, 'cp311',"
                " 'cp311', 'linux_armv7l', 1000, repeat('a', 64) FROM builds")
    cur.execute("SELECT package, filename FROM files")
    return cur.fetchall()


def user_agents(rnd: random.Random, machines: int) -> list[str]:
    out = []
    for i in range(machines):
        tool = "uv" if i % 5 == 0 else "pip"
        version = rnd.choice(["0.5.11", "0.9.5"] if tool == "uv" else ["23.0.1", "24.0", "25.1"])
        minor = rnd.choice([9, 11, 11, 11, 13])
        data = {"installer": {"name": tool, "version": version}, "python": f"3.{minor}.2",
                "implementation": {"name": "CPython", "version": f"3.{minor}.2"},
                "distro": {"name": "Raspbian GNU/Linux", "version": str(rnd.choice([11, 12])),
                           "id": "bookworm", "libc": {"lib": "glibc", "version": "2.36"}},
                "system": {"name": "Linux", "release": f"6.1.{i % 97}-v7+"},
                "cpu": rnd.choice(["armv7l", "armv6l", "aarch64"]),
                "openssl_version": "OpenSSL 3.0.11 19 Sep 2023", "setuptools_version": "66.1.1",
                "rustc_version": None, "ci": None}
        out.append(f"{tool}/{version} {json.dumps(data)}".replace('"', "\\x22"))
    return out


def write_log(path, rnd: random.Random, files, lines: int, machines: int) -> None:
    uas = user_agents(rnd, machines)
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(days=30)
    step = 30 * 86400 / lines
    with open(path, "w") as f:
        for i in range(lines):
            when = start + timedelta(seconds=int(i * step))
            stamp = f"{when:%d}/{MONTHS[when.month - 1]}/{when:%Y:%H:%M:%S} +0000"
            package, name = files[min(int(rnd.paretovariate(1.2)) - 1, len(files) - 1)
                                  if rnd.random() < .5 else rnd.randrange(len(files))]
            r = rnd.random()
            if r < .05:
                f.write(f"garbage line {i}\n")
                continue
            path_ = (f"/simple/{package}/{name}" if r < .65 else
                     f"/simple/{package}/{name}.metadata" if r < .85 else f"/simple/{package}/")
            ua = "curl/8.5.0" if rnd.random() < .03 else rnd.choice(uas)
            f.write(f'10.{i % 250}.{i % 199}.{i % 97} - - [{stamp}] "GET {path_} HTTP/1.1" '
                    f'200 {1000 + i % 5000} "-" "{ua}"\n')


def main() -> None:
    ap = _common.parser(__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=int, default=None, help="packages (default 100,000)")
    ap.add_argument("--lines", type=int, default=None, help="log lines (default 1,000,000)")
    args = ap.parse_args()
    packages = args.scale or (2_000 if args.quick else 100_000)
    lines = args.lines or (50_000 if args.quick else 1_000_000)
    machines = 200 if args.quick else 20_000
    report = Report("downloads", args)
    rnd = random.Random(42)

    with Cluster(report, keep=args.keep) as cluster:
        conn = cluster.connect()
        with conn.cursor() as cur:
            files = make_farm(cur, packages)
        conn.commit()
        report.add("packages", packages)
        report.add("files", len(files))
        log = cluster.tmp / "access.log"
        write_log(log, rnd, files, lines, machines)
        report.add("log_lines", lines)
        report.add("log_mib", round(log.stat().st_size / (1 << 20), 1), "MiB")
        report.add("client_machines", machines)

        with timed() as t:
            s = Reader(conn).read([log])
        report.log(str(s))
        report.add("first_read_s", round(t[0], 1), "s")
        report.add("first_read_lines_per_s", round(lines / t[0]), "/s")
        report.add("downloads", s.downloads)
        report.add("bad_lines", s.bad_lines)

        with timed() as t:
            again = Reader(conn).read([log])
        assert again.lines == 0
        report.add("rerun_nothing_new_ms", round(t[0] * 1000, 1), "ms")
        service = Reader(conn, budget=32 << 20)
        polls = []
        for _ in range(50 if args.quick else 200):
            with timed() as t:
                service.read([log], missing_ok=True, keep_going=True)
            polls.append(t[0] * 1000)
        report.add("service_poll_nothing_new_median_ms", round(statistics.median(polls), 2),
                   "ms")

        with conn.cursor() as cur:
            cur.execute("ANALYZE")
            batch = [f"pkg{i}" for i in rnd.sample(range(1, packages + 1), min(1000, packages))]
            with timed() as t:
                project_counts(cur, batch)
                file_counts(cur, batch)
            report.add("batch_1000_counts_ms", round(t[0] * 1000, 1), "ms")
            with timed() as t:
                farm_downloads(cur)
            report.add("farm_downloads_ms", round(t[0] * 1000, 1), "ms")
            with timed() as t:
                cur.execute("SELECT mark_download_pages((now() AT TIME ZONE 'UTC')::date)")
                marked = cur.fetchone()[0]
            report.add("mark_download_pages_ms", round(t[0] * 1000, 1), "ms")
            report.add("mark_download_pages_marked", marked)
            conn.rollback()
            sizes = {}
            for table in ("file_downloads_daily", "file_downloads", "project_downloads_daily",
                          "project_downloads", "downloads_days", "downloads_by",
                          "download_logs"):
                cur.execute(f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}")
                rows, size = cur.fetchone()
                sizes[table] = {"rows": rows, "mib": round(size / (1 << 20), 1)}
            report.add("tables", sizes)
        conn.close()
    report.finish()


if __name__ == "__main__":
    main()
