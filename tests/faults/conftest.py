"""A running farm to inject faults into: its own PostgreSQL cluster (the restart
test stops and starts it, so the session's cluster is left alone), a fake
upstream with the fixture wheels, and the real CLI as services (``build
--forever``, ``index --watch``) in subprocesses with real interpreters."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg2
import pytest
from helpers.farm import clean_env, sdist
from helpers.faults import DEADLINE
from helpers.upstream_server import FakeUpstream

from piwheels_build import db
from piwheels_build.build.interpreters import discover
from piwheels_build.db.localdb import LocalCluster

FIXTURE_WHEELS = os.environ.get("PIWHEELS_FIXTURE_WHEELS", "")


@pytest.fixture(scope="session")
def fault_cluster():
    tmp = Path(tempfile.mkdtemp(prefix="piwheels-faults-"))
    os.chmod(tmp, 0o755)
    cluster = LocalCluster(tmp / "pg")
    cluster.init()
    cluster.start()
    cluster.createdb("template_faults")
    conn = db.connect(cluster.dsn("template_faults"))
    db.migrate(conn)
    conn.close()
    yield cluster
    cluster.stop()
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def python():
    found = discover((3, 9))
    if not found:
        pytest.skip("needs a CPython interpreter (3.9+) with pip")
    return found[-1]


@pytest.fixture
def upstream():
    wheels = sorted(Path(FIXTURE_WHEELS).glob("*.whl")) if FIXTURE_WHEELS else []
    if not any(w.name.startswith("setuptools-") for w in wheels):
        pytest.fail("no setuptools wheel for the test upstream: run the tests with "
                    "scripts/test.sh, which fetches it into .cache/fixture-wheels")
    with FakeUpstream() as up:
        for whl in wheels:
            up.add_file(whl.name.split("-")[0], whl.name, whl.read_bytes())
        yield up


class FaultFarm:
    """One farm: a database of its own on the fault cluster, a www/ tree, and one
    configuration file per builder (each its own builder name)."""

    def __init__(self, tmp: Path, cluster: LocalCluster, dbname: str, upstream: FakeUpstream,
                 python, **settings) -> None:
        self.tmp, self.cluster, self.up, self.python = tmp, cluster, upstream, python
        self.dsn = cluster.dsn(dbname)
        self.www = tmp / "www"
        self.settings = {"database": self.dsn, "upstream": upstream.url, "www": str(self.www),
                         "pythons": [python.path], "build_timeout": 300, "retry_delay": 1,
                         **settings}
        self.procs: list[tuple[subprocess.Popen, Path]] = []

    def add(self, name: str, version: str, files: dict[str, str]) -> None:
        filename, data = sdist(name, version, files)
        self.up.add_file(name, filename, data)

    def config(self, builder: str = "b1") -> Path:
        path = self.tmp / f"{builder}.toml"
        if not path.exists():
            values = {**self.settings, "builder_name": builder}
            path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
        return path

    def _argv(self, builder: str, args: tuple[str, ...]) -> list[str]:
        return [sys.executable, "-m", "piwheels_build.cli", "--config",
                str(self.config(builder)), *args]

    def run(self, *args: str, builder: str = "b1") -> subprocess.CompletedProcess:
        proc = subprocess.run(self._argv(builder, args), capture_output=True, text=True,
                              timeout=DEADLINE, env=clean_env())
        assert proc.returncode == 0, f"piwheels {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def start(self, *args: str, builder: str = "b1") -> subprocess.Popen:
        """A service (``build --forever``, ``index --watch``), its output in a file."""
        out = self.tmp / f"{builder}-{args[0]}-{len(self.procs)}.log"
        with out.open("wb") as fh:
            proc = subprocess.Popen(self._argv(builder, args), stdout=fh, stderr=subprocess.STDOUT,
                                    env=clean_env(), start_new_session=True)
        self.procs.append((proc, out))
        return proc

    def output(self, proc: subprocess.Popen) -> str:
        return next(out for p, out in self.procs if p is proc).read_text(errors="replace")

    def stop(self, proc: subprocess.Popen) -> int:
        """SIGTERM and wait; the exit status."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail(f"{proc.args} did not stop on SIGTERM:\n{self.output(proc)}")

    def query(self, sql: str, *args):
        conn = psycopg2.connect(self.dsn)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, args)
                return cur.fetchall()
        finally:
            conn.close()

    def close(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


_count = iter(range(1_000_000))


@pytest.fixture
def make_farm(tmp_path, fault_cluster, upstream, python):
    """``make_farm(**settings)``: a farm on a fresh database, initialised."""
    farms: list[FaultFarm] = []

    def make(**settings) -> FaultFarm:
        name = f"f{os.getpid()}_{next(_count)}"
        conn = psycopg2.connect(fault_cluster.dsn("postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}" TEMPLATE "template_faults"')
        conn.close()
        farm = FaultFarm(tmp_path, fault_cluster, name, upstream, python, **settings)
        farms.append(farm)
        farm.run("initdb")
        return farm

    yield make
    for farm in farms:
        farm.close()
