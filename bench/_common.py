"""Shared helpers of the bench/ scripts (not a benchmark itself).

Every benchmark starts its own throwaway PostgreSQL cluster in a temporary
directory (``piwheels_build.db.localdb.LocalCluster``), prints the machine it
ran on and its figures, and stops the cluster with ``pg_ctl stop`` (which
signals the postmaster named in its own ``postmaster.pid``, nothing else).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "bench"
sys.path.insert(0, str(ROOT))

import psycopg2  # noqa: E402

from piwheels_build import db  # noqa: E402
from piwheels_build.db.localdb import LocalCluster, find_bindir  # noqa: E402

# --------------------------------------------------------------------------- arguments


def parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true",
                    help="small scale, well under a minute: a smoke test that it runs")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    ap.add_argument("--keep", action="store_true",
                    help="keep the temporary directory (cluster stopped) for inspection")
    return ap


# --------------------------------------------------------------------------- the machine


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _ram_gib() -> float:
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / (1 << 20)
    return 0.0


def machine(pg_version: str | None = None) -> dict[str, Any]:
    """What a reader needs to compare figures across machines."""
    if pg_version is None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            pg_version = subprocess.run([str(find_bindir() / "postgres"), "--version"],
                                        capture_output=True, text=True).stdout.strip()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(_ram_gib(), 1),
        "postgresql": pg_version or "?",
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


# --------------------------------------------------------------------------- reporting


class Report:
    """Figures in order, printed as they come and once more at the end."""

    def __init__(self, name: str, args: argparse.Namespace) -> None:
        self.name, self.args = name, args
        self.figures: dict[str, Any] = {}
        self.notes: list[str] = []
        self.machine: dict[str, Any] = {}
        self.started = time.monotonic()

    def set_machine(self, info: dict[str, Any]) -> None:
        self.machine = info
        print(f"== {self.name} ({'quick' if self.args.quick else 'full'}) ==", flush=True)
        for k, v in info.items():
            print(f"machine: {k}: {v}", flush=True)

    def add(self, key: str, value: Any, unit: str = "") -> None:
        self.figures[key] = value
        shown = f"{value:,.3f}" if isinstance(value, float) else (
            f"{value:,}" if isinstance(value, int) else str(value))
        print(f"figure: {key} = {shown}{(' ' + unit) if unit else ''}", flush=True)

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"note: {text}", flush=True)

    def log(self, text: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {text}", flush=True)

    def finish(self) -> None:
        elapsed = time.monotonic() - self.started
        print(f"== {self.name}: figures ==")
        for k, v in self.figures.items():
            print(f"  {k}: {v}")
        print(f"== {self.name}: done in {elapsed:.1f}s ==", flush=True)
        data = {"bench": self.name, "quick": self.args.quick, "machine": self.machine,
                "figures": self.figures, "notes": self.notes, "elapsed": round(elapsed, 1)}
        print("BENCH-JSON " + json.dumps(data, default=str), flush=True)
        if self.args.json:
            Path(self.args.json).write_text(json.dumps(data, indent=2, default=str) + "\n")


def pct(values: list[float], p: float) -> float:
    """The p-th percentile (nearest rank) of values."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
    return s[k]


def summary_ms(values: list[float]) -> dict[str, float]:
    """p50, p99, max and mean of durations in seconds, as milliseconds."""
    return {"p50_ms": round(pct(values, 50) * 1000, 3), "p99_ms": round(pct(values, 99) * 1000, 3),
            "max_ms": round(max(values) * 1000, 3) if values else float("nan"),
            "mean_ms": round(statistics.fmean(values) * 1000, 3) if values else float("nan"),
            "n": len(values)}


@contextlib.contextmanager
def timed() -> Iterator[list[float]]:
    """with timed() as t: ...; then t[0] is the seconds it took."""
    out: list[float] = []
    start = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - start)


# --------------------------------------------------------------------------- memory


def reset_peak_rss() -> bool:
    """Reset this process's peak RSS (VmHWM) so a phase can be measured on its own."""
    try:
        Path(f"/proc/{os.getpid()}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    """Peak resident memory of this process since start or the last reset_peak_rss()."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def rss_mib() -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{os.getpid()}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# --------------------------------------------------------------------------- the cluster


# Only for loading millions of rows fast; documented in docs/benchmarks.md.
BENCH_CONF = """
# bench/: bulk loading
max_wal_size = '8GB'
checkpoint_timeout = '15min'
"""


class Cluster:
    """A throwaway cluster and database in a temporary directory, stopped and removed at exit."""

    def __init__(self, report: Report, keep: bool = False, extra_conf: str = "") -> None:
        self.report, self.keep, self.extra_conf = report, keep, extra_conf
        self.tmp = Path(tempfile.mkdtemp(prefix="piwheels-bench-"))
        os.chmod(self.tmp, 0o755)
        self.local = LocalCluster(self.tmp / "pg", port=5432)
        self.dbname = "bench"
        self._started = False

    def __enter__(self) -> Cluster:
        # A SIGTERM (timeout, Ctrl-C of a parent) still stops the cluster we started.
        self._old = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            self.local.init()
            with (self.local.data / "postgresql.conf").open("a") as fh:
                fh.write(BENCH_CONF + self.extra_conf)
            self.local.start()
            self._started = True
            self.local.createdb(self.dbname)
            conn = db.connect(self.dsn)
            db.migrate(conn)
            conn.close()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        self.report.set_machine(machine(self.server_version()))
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._started:
                self.local.stop()  # pg_ctl stop -D data: the postmaster of this cluster only
        finally:
            signal.signal(signal.SIGTERM, self._old)
            if self.keep:
                print(f"note: kept {self.tmp}")
            else:
                shutil.rmtree(self.tmp, ignore_errors=True)

    @property
    def dsn(self) -> str:
        return self.local.dsn(self.dbname)

    @property
    def socket_dir(self) -> Path:
        return self.local.run

    def connect(self, autocommit: bool = False) -> Any:
        return db.connect(self.dsn, autocommit=autocommit)

    def server_version(self) -> str:
        conn = psycopg2.connect(self.dsn)
        with conn.cursor() as cur:
            cur.execute("SHOW server_version")
            v = cur.fetchone()[0]
        conn.close()
        return f"PostgreSQL {v}"

    def bin(self, name: str) -> str:
        return str(self.local.bindir / name)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def explain(cur: Any, sql: str, params: Any = None) -> list[str]:
    """EXPLAIN (ANALYZE, BUFFERS) of sql, as lines."""
    cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
    return [r[0] for r in cur.fetchall()]


def plan_summary(lines: list[str]) -> dict[str, Any]:
    """Execution time, the index scans used and whether a sequential scan is in the plan."""
    text = "\n".join(lines)
    m = re.search(r"Execution Time: ([\d.]+) ms", text)
    return {
        "execution_ms": float(m[1]) if m else None,
        "indexes": sorted(set(re.findall(r"Index (?:Only )?Scan(?: Backward)? using (\w+)",
                                         text))),
        "seq_scans": sorted(set(re.findall(r"Seq Scan on (\w+)", text))),
    }


def print_plan(title: str, lines: list[str]) -> None:
    print(f"---- EXPLAIN (ANALYZE, BUFFERS): {title}")
    for line in lines:
        print(f"    {line}")
    print("----", flush=True)
