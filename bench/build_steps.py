"""One builder, one build at a time: a loud build and small pure packages, step by step.

Two measurements of ``Builder.build`` itself (download, build in the
sandbox, verify, store; no queue, no other process), with Debian's
``/usr/bin/python3`` against a fake upstream on 127.0.0.1:

- **loud**: an sdist whose in-tree standard-library backend prints
  ``--lines`` lines of 100 bytes (400,000: 40 MB) on stderr and then writes a
  wheel: wall time, and CPU time of the builder's children with
  ``sandbox = "none"`` (bubblewrap's processes are reaped inside its PID
  namespace, so their CPU time does not reach us);
- **pure**: six, toml, certifi and docopt from ``bench/fetch_fixtures.sh``'s
  sdists (generated pure packages without them), built twice in a row: the
  first build pays the build requirements' fetch, the others reuse it.

``--tree PATH`` measures the piwheels_build of another checkout (e.g. a
``git worktree`` of an older commit) with this checkout's helpers:

    .venv/bin/python bench/build_steps.py
    git worktree add /tmp/before COMMIT && .venv/bin/python bench/build_steps.py --tree /tmp/before
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    # The tree goes first on the path before anything imports piwheels_build (_common does).
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--tree", type=Path)
    tree = (pre.parse_known_args()[0].tree or HERE.parent).resolve()
    sys.path[:0] = [str(tree), str(HERE), str(HERE.parent / "tests")]
    # imported before _common, which puts this checkout first on the path
    piwheels_build = importlib.import_module("piwheels_build")
    import _common

    ap = _common.parser(__doc__.split("\n\n")[0])
    ap.add_argument("--tree", type=Path, help="measure the piwheels_build of this checkout")
    ap.add_argument("--lines", type=int, default=400_000, help="lines the loud build prints")
    args = ap.parse_args()
    if not Path(piwheels_build.__file__).resolve().is_relative_to(tree):
        sys.exit(f"build_steps: piwheels_build comes from {piwheels_build.__file__}, "
                 f"not {tree}")
    from _common import CACHE, ROOT, Cluster, Report
    from helpers.fixture_packages import sdist_bytes, stdlib_backend
    from helpers.upstream_server import FakeUpstream, make_sdist

    from piwheels_build.build.builder import Builder
    from piwheels_build.build.interpreters import probe
    from piwheels_build.config import from_dict
    from piwheels_build.queue import Claim

    report = Report("build_steps", args)
    lines = 20_000 if args.quick else args.lines
    interp = probe("/usr/bin/python3")
    if interp is None:
        sys.exit("build_steps: needs /usr/bin/python3 with pip")
    names = ["six", "toml", "certifi", "docopt"][: 2 if args.quick else 4]
    pure = []
    for name in names:
        found = sorted((CACHE / "sdists").glob(f"{name}-*.tar.gz"))
        if found:
            pure.append((name, found[-1].name[len(name) + 1: -len(".tar.gz")],
                         found[-1].name, found[-1].read_bytes()))
        else:
            fn, data = make_sdist(f"bench{name}", "1.0")
            pure.append((f"bench{name}", "1.0", fn, data))
    with Cluster(report, keep=args.keep) as cluster, FakeUpstream() as fake:
        for d in (CACHE / "wheels", ROOT / ".cache" / "fixture-wheels"):
            for w in sorted(d.glob("*.whl")) if d.is_dir() else []:
                fake.add_file(w.name.split("-")[0], w.name, w.read_bytes())
        loud_fn, loud = sdist_bytes("loud", "1.0", stdlib_backend(
            "loud", "loud", requires=("wheel",), loud=lines))
        fake.add_file("loud", loud_fn, loud)
        for name, _version, fn, data in pure:
            fake.add_file(name, fn, data)
        report.add("tree", str(tree))
        report.add("python", ".".join(map(str, interp.version)) + f", pip {interp.pip_version}")
        report.add("loud_lines", lines)
        for sandbox in ("none", "bubblewrap"):
            cfg = from_dict({"database": cluster.dsn, "upstream": fake.url,
                             "www": str(cluster.tmp / f"www-{sandbox}"), "sandbox": sandbox,
                             "build_timeout": 1800, "lease_seconds": 3600,
                             "builder_name": f"steps-{sandbox}"})
            builder = Builder(cfg, [interp])
            try:
                def one(name: str, version: str, fn: str, data: bytes,
                        builder: Builder = builder) -> tuple[str, float]:
                    claim = Claim(1, name, version, interp.target, fn,
                                  f"{fake.root}/files/{fn}", hashlib.sha256(data).hexdigest())
                    t0 = time.perf_counter()
                    out = builder.build(interp, claim)
                    return out.status, time.perf_counter() - t0

                r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
                status, wall = one("loud", "1.0", loud_fn, loud)
                r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
                report.add(f"loud_{sandbox}_status", status)
                report.add(f"loud_{sandbox}_wall_s", round(wall, 2), "s")
                if sandbox == "none":
                    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
                    report.add("loud_none_children_cpu_s", round(cpu, 2), "s")
                times: dict[str, list[float]] = {}
                statuses = set()
                for _round in range(2):
                    for name, version, fn, data in pure:
                        status, wall = one(name, version, fn, data)
                        statuses.add(status)
                        times.setdefault(name, []).append(round(wall, 2))
                    for p in (cfg.www / "simple").glob("*/*"):  # built again next round
                        p.unlink()
                report.add(f"pure_{sandbox}_status", sorted(statuses))
                report.add(f"pure_{sandbox}_per_build_s", times, "s")
                later = [t for ts in times.values() for t in ts][1:]
                report.add(f"pure_{sandbox}_mean_after_first_s",
                           round(sum(later) / len(later), 3), "s")
            finally:
                builder.close()
    report.finish()


if __name__ == "__main__":
    main()
