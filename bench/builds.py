"""Builds: a farm wave over real packages vs a plain ``pip wheel --no-deps`` loop.

The sdists that ``bench/fetch_fixtures.sh`` saved (pure and C-extension
packages that build with setuptools alone) are served, with the setuptools
and wheel wheels they need to build, by a local fake upstream on 127.0.0.1
(tests/upstream_server.py). In the same run, with the same interpreter and the
same parallelism (``--jobs``, default 2):

- plain: ``python -m pip wheel --no-deps --no-cache-dir --index-url LOCAL
  SDIST`` for each package, ``--jobs`` at a time, with the builder's
  environment (fresh HOME and TMPDIR, PIP_CONFIG_FILE=/dev/null);
- farm: ``piwheels sync NAMES``, then ``--jobs`` ``piwheels build``
  processes until the queue is empty, then ``piwheels index``; once per
  sandbox mode the builder offers (``sandbox = "none"`` and
  ``"bubblewrap"``), each wave in a fresh database and www/.

The machine is shared, so the run is ``--rounds`` rounds (default 3) of a
plain loop followed by the farm waves; each ratio is taken within a round
and the median over the rounds is reported. Without the fixtures it
falls back to small generated pure packages and says so.

    bash bench/fetch_fixtures.sh                 # once, the only step that uses the network
    .venv/bin/python bench/builds.py
    .venv/bin/python bench/builds.py --quick     # two packages
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import _common
from _common import CACHE, ROOT, Cluster, Report

sys.path.insert(0, str(ROOT / "tests"))
from helpers.upstream_server import FakeUpstream, make_sdist  # noqa: E402

from piwheels_build import config as configmod  # noqa: E402
from piwheels_build import db  # noqa: E402

QUICK = ("six", "markupsafe")
PYTHON = "/usr/bin/python3"  # visible inside the sandbox (a venv under /root is not)


def sdists(quick: bool, report: Report) -> list[tuple[str, str, bytes]]:
    """(project, filename, bytes) of the packages to build."""
    found = sorted((CACHE / "sdists").glob("*.tar.gz"))
    out = []
    for path in found:
        name = path.name[: -len(".tar.gz")].rsplit("-", 1)[0]
        if quick and name.lower() not in QUICK:
            continue
        out.append((name, path.name, path.read_bytes()))
    if not out:
        report.note("no fixtures in .cache/bench/sdists (run bench/fetch_fixtures.sh): "
                    "building small generated pure packages instead")
        for i in range(2 if quick else 8):
            fn, data = make_sdist(f"benchpkg{i}", "1.0")
            out.append((f"benchpkg{i}", fn, data))
    return out


def build_wheels() -> list[Path]:
    found = {}
    for d in (CACHE / "wheels", ROOT / ".cache" / "fixture-wheels"):
        for w in sorted(d.glob("*.whl")) if d.is_dir() else []:
            found.setdefault(w.name.split("-")[0], w)
    return list(found.values())


def plain_loop(items: list[tuple[str, str, bytes]], url: str, jobs: int, work: Path) -> dict:
    src = work / "src"
    src.mkdir(parents=True, exist_ok=True)
    for _, fn, data in items:
        (src / fn).write_bytes(data)

    def one(item: tuple[str, str, bytes]) -> tuple[str, float, int]:
        name, fn, _ = item
        d = Path(tempfile.mkdtemp(prefix="plain-", dir=work))
        (d / "home").mkdir()
        (d / "tmp").mkdir()
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(d / "home"),
               "TMPDIR": str(d / "tmp"), "LANG": "C.UTF-8", "PIP_CONFIG_FILE": os.devnull,
               "PIP_NO_INPUT": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        t0 = time.perf_counter()
        proc = subprocess.run([PYTHON, "-m", "pip", "wheel", "--no-deps", "--no-cache-dir",
                               "--index-url", url, "--wheel-dir", str(d / "out"),
                               str(src / fn)], env=env, cwd=d, capture_output=True,
                              stdin=subprocess.DEVNULL)
        took = time.perf_counter() - t0
        shutil.rmtree(d, ignore_errors=True)
        return name, took, proc.returncode

    t0 = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        results = list(pool.map(one, items))
    return {"wall": time.perf_counter() - t0, "per": {n: t for n, t, _ in results},
            "failed": [n for n, _, rc in results if rc != 0]}


def farm_wave(items: list[tuple[str, str, bytes]], url: str, jobs: int, report: Report,
              args, sandbox: str | None) -> dict:
    with Cluster(report, keep=args.keep) as cluster:
        work = cluster.tmp
        www = work / "www"
        cfgs = []
        for i in range(jobs):
            lines = [f'database = "{cluster.dsn}"', f'upstream = "{url}"', f'www = "{www}"',
                     f'pythons = ["{PYTHON}"]', f'builder_name = "bench{i}"',
                     "build_timeout = 900"]
            if sandbox is not None:
                lines.append(f'sandbox = "{sandbox}"')
            p = work / f"piwheels-{i}.toml"
            p.write_text("\n".join(lines) + "\n")
            cfgs.append(p)
        cli = [sys.executable, "-m", "piwheels_build.cli"]
        names = [n for n, _, _ in items]
        times = {}
        t0 = time.perf_counter()
        subprocess.run([*cli, "--config", str(cfgs[0]), "sync", *names], check=True,
                       capture_output=True, text=True)
        times["sync"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        procs = [subprocess.Popen([*cli, "--config", str(c), "build"], stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True) for c in cfgs]
        outs = [p.communicate()[0] for p in procs]
        times["build"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        subprocess.run([*cli, "--config", str(cfgs[0]), "index"], check=True,
                       capture_output=True, text=True)
        times["index"] = time.perf_counter() - t0
        conn = db.connect(cluster.dsn)
        with conn.cursor() as cur:
            cur.execute("SELECT package, status, duration FROM builds ORDER BY build_id")
            rows = cur.fetchall()
        conn.close()
        for o in outs:
            for line in o.splitlines():
                if "Traceback" in line or line.startswith("piwheels:"):
                    report.note(f"builder: {line}")
        return {**times, "per": {p: d for p, _, d in rows},
                "status": {p: s for p, s, _ in rows}}


def main() -> None:
    ap = _common.parser(__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=2, help="builds at a time (both sides)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of plain + farm waves")
    args = ap.parse_args()
    report = Report("builds", args)
    items = sdists(args.quick, report)
    modes: list[str | None] = [None]
    if "sandbox" in configmod.KNOWN_KEYS:
        modes = ["none"] + (["bubblewrap"] if shutil.which("bwrap") else [])
        if not shutil.which("bwrap"):
            report.note("bubblewrap not installed: the sandbox's cost is not measured")
    else:
        report.note("this builder has no 'sandbox' setting: the sandbox's cost is not measured")

    rounds = 1 if args.quick else args.rounds
    with FakeUpstream() as fake, tempfile.TemporaryDirectory(prefix="bench-plain-") as tmp:
        for name, fn, data in items:
            fake.add_file(name, fn, data)
        for w in build_wheels():
            fake.add_file(w.name.split("-")[0], w.name, w.read_bytes())
        report.add("packages", [n for n, _, _ in items])
        report.add("jobs", args.jobs)
        report.add("rounds", rounds)
        report.add("python", subprocess.run([PYTHON, "--version"], capture_output=True,
                                            text=True).stdout.strip())
        # Rounds of (plain loop, then each farm mode): the machine is shared, so each ratio
        # is taken within a round and the median over rounds is reported.
        plains: list[dict] = []
        waves: dict[str, list[dict]] = {}
        for r in range(rounds):
            plain = plain_loop(items, fake.url, args.jobs, Path(tmp))
            plains.append(plain)
            report.log(f"round {r + 1}: plain pip wheel loop {plain['wall']:.1f}s")
            if plain["failed"]:
                report.note(f"plain pip wheel failed for {plain['failed']}")
            for mode in modes:
                label = f"farm_sandbox_{mode}" if mode else "farm"
                w = farm_wave(items, fake.url, args.jobs, report, args, mode)
                waves.setdefault(label, []).append(w)
                report.log(f"round {r + 1}: {label}: sync {w['sync']:.1f}s, build "
                           f"{w['build']:.1f}s, index {w['index']:.1f}s")

    def median(values: list[float]) -> float:
        v = sorted(values)
        return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2

    report.add("plain_wall_s", [round(p["wall"], 2) for p in plains], "s")
    first = None
    for label, ws in waves.items():
        report.add(f"{label}_build_s", [round(w["build"], 2) for w in ws], "s")
        report.add(f"{label}_sync_s", [round(w["sync"], 2) for w in ws], "s")
        report.add(f"{label}_index_s", [round(w["index"], 2) for w in ws], "s")
        report.add(f"{label}_status", ws[-1]["status"])
        report.add(f"{label}_ratio_build_to_plain",
                   round(median([w["build"] / p["wall"]
                                 for w, p in zip(ws, plains, strict=True)]), 3))
        report.add(f"{label}_ratio_wave_to_plain",
                   round(median([(w["sync"] + w["build"] + w["index"]) / p["wall"]
                                 for w, p in zip(ws, plains, strict=True)]), 3))
        per: dict[str, list[float]] = {}
        for w in ws:
            for pkg, d in w["per"].items():
                per.setdefault(pkg, []).append(d or 0.0)
        report.add(f"{label}_per_build_s", {k: round(median(v), 2) for k, v in per.items()})
        if first is None:
            first = (label, ws, per)
        else:
            extra = [median(v) - median(first[2].get(k, [0.0])) for k, v in per.items()]
            report.add(f"{label}_extra_per_build_s_vs_{first[0]}",
                       round(sum(extra) / max(1, len(extra)), 2), "s")
            report.add(f"{label}_ratio_build_to_{first[0]}",
                       round(median([w["build"] / f["build"]
                                     for w, f in zip(ws, first[1], strict=True)]), 3))
    plain_per: dict[str, list[float]] = {}
    for p in plains:
        for k, t in p["per"].items():
            plain_per.setdefault(k, []).append(t)
    report.add("plain_per_build_s", {k: round(median(v), 2) for k, v in plain_per.items()})
    report.machine = report.machine or _common.machine()
    report.finish()


if __name__ == "__main__":
    main()
