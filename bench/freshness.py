"""Freshness: from a new release upstream to its wheel installable, with the services running.

A fake upstream on 127.0.0.1 (tests/upstream_server.py, per-project serials)
and the farm as loops of the piwheels CLI, each its own process:
``piwheels sync`` every ``--sync-interval`` seconds (the master role's
timer says 5 min; 10 s here, so the farm's own delays show), ``piwheels build
--forever``, ``piwheels index --watch`` and ``piwheels serve``. For each
sample a new version of a small pure package is uploaded upstream, then:

- the delay until its wheel is linked from ``/simple/<name>/`` (polled every
  0.2 s), and until ``pip download --only-binary :all:`` of it succeeds;
- split, from the database: upload -> version known (sync), -> build
  started (queue + builder idle sleep), -> build finished, -> linked (index).

Samples are ``--gap`` seconds apart (default 20 s, so the builder has been idle
a while, as between real releases); ``--quick`` takes one sample.

    .venv/bin/python bench/freshness.py
    .venv/bin/python bench/freshness.py --quick
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import _common
import requests
from _common import ROOT, Cluster, Report

sys.path.insert(0, str(ROOT / "tests"))
from helpers.upstream_server import FakeUpstream, make_sdist  # noqa: E402

NAME = "fresh-pkg"
PYTHON = "/usr/bin/python3"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Loops:
    """The farm's services as processes of our own, stopped by PID (process group)."""

    def __init__(self, cfg: Path, port: int, sync_interval: float, logdir: Path) -> None:
        self.cfg, self.port, self.interval, self.logdir = cfg, port, sync_interval, logdir
        self.procs: list[subprocess.Popen] = []
        self.halt = threading.Event()
        self.sync_thread = threading.Thread(target=self.sync_loop, daemon=True)

    def cli(self, *args: str, log: str) -> subprocess.Popen:
        out = open(self.logdir / log, "ab")
        p = subprocess.Popen([sys.executable, "-m", "piwheels_build.cli", "--config",
                              str(self.cfg), *args], stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        return p

    def start(self, registered: Callable[[], bool]) -> None:
        """The builder first, and the sync loop once it has registered its target.

        A sync committing while a new build target registers can miss that
        target's queue rows (docs/operations.md, "A new ABI and a sync at the same moment"); a
        farm's builders register long before, so the benchmark does the same.
        """
        self.cli("build", "--forever", log="build.log")
        deadline = time.monotonic() + 120
        while not registered():
            if time.monotonic() > deadline:
                raise SystemExit("freshness: the builder did not register within 120 s")
            time.sleep(0.2)
        self.cli("index", "--watch", log="index.log")
        self.cli("serve", "--port", str(self.port), log="serve.log")
        self.sync_thread.start()

    def sync_loop(self) -> None:
        while not self.halt.is_set():
            p = self.cli("sync", log="sync.log")
            p.wait()
            self.procs.remove(p)
            self.halt.wait(self.interval)

    def stop(self) -> None:
        self.halt.set()
        for p in list(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        for p in list(self.procs):
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        self.sync_thread.join(timeout=30)


def linked(base: str, version: str) -> bool:
    try:
        r = requests.get(f"{base}/simple/{NAME}/", timeout=5,
                         headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    except requests.RequestException:
        return False
    if r.status_code != 200:
        return False
    mod = NAME.replace("-", "_")
    return any(f["filename"].startswith(f"{mod}-{version}-") for f in r.json().get("files", []))


def pip_download(base: str, version: str, dest: Path) -> bool:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(dest), "PIP_CONFIG_FILE": os.devnull,
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                           "--no-cache-dir", "--only-binary", ":all:", "--index-url",
                           f"{base}/simple/", "-d", str(dest), f"{NAME}=={version}"],
                          env=env, capture_output=True).returncode == 0


def main() -> None:
    ap = _common.parser(__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=None)
    ap.add_argument("--sync-interval", type=float, default=10.0)
    ap.add_argument("--gap", type=float, default=None, help="seconds between releases")
    ap.add_argument("--timeout", type=float, default=600.0, help="give up on a sample after")
    args = ap.parse_args()
    samples = args.samples or (1 if args.quick else 5)
    gap = args.gap if args.gap is not None else (0.0 if args.quick else 20.0)
    report = Report("freshness", args)
    wheels = [w for d in (ROOT / ".cache" / "bench" / "wheels", ROOT / ".cache" / "fixture-wheels")
              if d.is_dir() for w in sorted(d.glob("*.whl"))]

    with FakeUpstream() as fake, Cluster(report, keep=args.keep) as cluster:
        seen = set()
        for w in wheels:
            if w.name.split("-")[0] not in seen:
                seen.add(w.name.split("-")[0])
                fake.add_file(w.name.split("-")[0], w.name, w.read_bytes())
        fn, data = make_sdist(NAME, "0.1")
        fake.add_file(NAME, fn, data)
        work = cluster.tmp
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        cfg = work / "piwheels.toml"
        cfg.write_text(f'database = "{cluster.dsn}"\nupstream = "{fake.url}"\n'
                       f'www = "{work / "www"}"\npythons = ["{PYTHON}"]\n'
                       'builder_name = "fresh"\n')
        report.add("sync_interval_s", args.sync_interval, "s")
        report.add("gap_s", gap, "s")
        loops = Loops(cfg, port, args.sync_interval, work)

        def registered() -> bool:
            conn = cluster.connect(autocommit=True)
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT count(*) FROM builders")
                    return cur.fetchone()[0] > 0
            finally:
                conn.close()

        loops.start(registered)
        results = []
        try:
            deadline = time.monotonic() + args.timeout
            while not linked(base, "0.1"):  # the farm is up: the first version is served
                if time.monotonic() > deadline:
                    raise SystemExit("freshness: the farm never served the first version; "
                                     f"see the logs in {work} (--keep)")
                time.sleep(0.5)
            report.log("farm up: first version served")
            for k in range(1, samples + 1):
                time.sleep(gap)
                version = f"1.{k}"
                fn, data = make_sdist(NAME, version)
                t0 = time.time()
                fake.add_file(NAME, fn, data)
                deadline = time.monotonic() + args.timeout
                while not linked(base, version):
                    if time.monotonic() > deadline:
                        raise SystemExit(f"freshness: {version} not linked after "
                                         f"{args.timeout}s")
                    time.sleep(0.2)
                t_link = time.time()
                with tempfile.TemporaryDirectory() as d:
                    while not pip_download(base, version, Path(d)):
                        if time.monotonic() > deadline:
                            raise SystemExit("freshness: pip download never succeeded")
                        time.sleep(0.2)
                t_pip = time.time()
                conn = cluster.connect()
                with conn.cursor() as cur:
                    cur.execute("SELECT extract(epoch FROM v.added_at),"
                                " extract(epoch FROM b.started_at),"
                                " extract(epoch FROM b.finished_at)"
                                " FROM versions v JOIN builds b USING (package, version)"
                                " WHERE v.package = %s AND v.version = %s AND b.status = 'success'",
                                (NAME, version))
                    added, started, finished = (float(x) for x in cur.fetchone())
                conn.close()
                r = {"installable_s": round(t_pip - t0, 2), "linked_s": round(t_link - t0, 2),
                     "sync_s": round(added - t0, 2), "queue_wait_s": round(started - added, 2),
                     "build_s": round(finished - started, 2),
                     "index_s": round(t_link - finished, 2)}
                results.append(r)
                report.log(f"sample {k}: {r}")
        finally:
            loops.stop()
    for i, r in enumerate(results, 1):
        report.add(f"sample_{i}", r)
    for key in ("installable_s", "linked_s", "sync_s", "queue_wait_s", "build_s", "index_s"):
        vals = [r[key] for r in results]
        report.add(f"median_{key}", round(sorted(vals)[len(vals) // 2], 2), "s")
    report.add("max_installable_s", max(r["installable_s"] for r in results), "s")
    report.finish()


if __name__ == "__main__":
    main()
