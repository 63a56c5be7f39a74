"""Starting with the database away, and misconfiguration refused at start.

- ``build --forever`` started while PostgreSQL is down waits for it (one line when the
  wait starts, one when it ends) and then builds; a wrong password or database name is
  refused at once (one line, exit 2), as is the one-shot ``build`` with the server down.
- ``sync`` and ``index`` refuse, before any work, an upstream that is not an http(s)
  URL, a www that cannot be written, a schema not migrated and a role without the
  grants the command needs.

Real CLI subprocesses, real PostgreSQL clusters (the waiting test stops its own)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg2
import pytest
from helpers.farm import clean_env, sdist
from helpers.faults import DEADLINE, wait_for
from helpers.fixture_packages import pure

from piwheels_build.db.localdb import LocalCluster

pytestmark = pytest.mark.slow


def _config(path: Path, **values) -> Path:
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return path


def _cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "piwheels_build.cli", "--config",
                           str(config), *args], capture_output=True, text=True,
                          timeout=DEADLINE, env=clean_env())


def _refused(proc: subprocess.CompletedProcess, *words: str) -> str:
    """Exit 2, no traceback, exactly one error line, naming ``words``; the line."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out
    assert "Traceback" not in out, out
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("piwheels:")]
    assert len(lines) == 1, out
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _execute(dsn: str, *statements: str) -> None:
    conn = psycopg2.connect(dsn)
    conn.autocommit = True
    with conn.cursor() as cur:
        for sql in statements:
            cur.execute(sql)
    conn.close()


# -- build --forever and a database that is not there yet ---------------------------


@pytest.fixture
def own_cluster():
    """A cluster of this test's own (it is stopped and started), with a database."""
    tmp = Path(tempfile.mkdtemp(prefix="piwheels-start-"))
    os.chmod(tmp, 0o755)  # the cluster runs as the postgres user
    cluster = LocalCluster(tmp / "pg")
    cluster.init()
    cluster.start()
    cluster.createdb("farm")
    yield cluster
    cluster.stop()
    shutil.rmtree(tmp, ignore_errors=True)


def test_build_forever_waits_for_the_database(tmp_path, own_cluster, upstream, python):
    cfg = _config(tmp_path / "b1.toml", database=own_cluster.dsn("farm"),
                  upstream=upstream.url, www=str(tmp_path / "www"), pythons=[python.path],
                  builder_name="b1")
    assert _cli(cfg, "initdb").returncode == 0
    name, data = sdist("waiter", "1.0", pure("waiter", "waiter"))
    upstream.add_file("waiter", name, data)
    assert _cli(cfg, "sync").returncode == 0
    own_cluster.stop()

    # The one-shot build still refuses at once.
    _refused(_cli(cfg, "build"), "database: cannot connect")

    services = {what: _start(tmp_path / f"{what}.log", cfg, *args) for what, args in [
        ("build", ("build", "--forever")), ("index", ("index", "--watch", "--interval", "0.2")),
        ("stopped", ("build", "--forever"))]}
    try:
        for what, (proc, log) in services.items():
            wait_for(f"{what} to say it waits", lambda p=proc, lg=log: "not reachable at "
                     "start" in lg.read_text() or p.poll() is not None)
            assert proc.poll() is None, log.read_text()
        # SIGTERM ends the wait: exit 0, nothing else.
        proc, log = services.pop("stopped")
        proc.terminate()
        assert proc.wait(timeout=DEADLINE) == 0, log.read_text()
        assert "stopped while waiting" in log.read_text()
        own_cluster.start()
        wait_for("the build, indexed", lambda: (_successes(own_cluster.dsn("farm")) and (
            tmp_path / "www" / "simple" / "waiter" / "index.html").exists())
            or any(p.poll() is not None for p, _ in services.values()))
        for proc, log in services.values():
            proc.terminate()
            assert proc.wait(timeout=DEADLINE) == 0, log.read_text()
    finally:
        for proc, _ in services.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    for _proc, log in services.values():
        out = log.read_text()
        assert "Traceback" not in out, out
        # One line when the wait starts, one when it ends; no error line, no exit.
        assert out.count("database: not reachable at start") == 1, out
        assert out.count("database: reachable after") == 1, out
        assert "piwheels:" not in out, out
    assert _successes(own_cluster.dsn("farm")) == 1


def _start(log: Path, cfg: Path, *args: str) -> tuple[subprocess.Popen, Path]:
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "piwheels_build.cli", "--config",
                                 str(cfg), *args], stdout=fh, stderr=subprocess.STDOUT,
                                env=clean_env(), start_new_session=True)
    return proc, log


def _successes(dsn: str) -> int:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM builds WHERE status = 'success'")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_build_forever_refuses_what_waiting_cannot_fix(tmp_path, own_cluster, python):
    dsn = own_cluster.dsn("farm")
    base = {"www": str(tmp_path / "www"), "pythons": [python.path]}
    # A database that does not exist: refused at once, not waited for.
    cfg = _config(tmp_path / "nodb.toml", database=own_cluster.dsn("no_such_db"), **base)
    _refused(_cli(cfg, "build", "--forever"), "database", '"no_such_db" does not exist')

    # A socket directory that does not exist (a server that is down keeps its own).
    cfg = _config(tmp_path / "nodir.toml", database="host=/nonexistent/pg dbname=farm", **base)
    _refused(_cli(cfg, "build", "--forever"), "database: cannot connect", "/nonexistent/pg")

    # A wrong password (this cluster asks one of this login over its socket).
    _execute(dsn, "CREATE ROLE pwuser LOGIN PASSWORD 'right'")
    hba = own_cluster.data / "pg_hba.conf"
    hba.write_text("local all pwuser scram-sha-256\n" + hba.read_text())
    _execute(dsn, "SELECT pg_reload_conf()")
    wrong = dsn.replace(f"user={own_cluster.dsn().split('user=')[1]}", "user=pwuser")
    cfg = _config(tmp_path / "pw.toml", database=wrong + " password=wrong", **base)
    _refused(_cli(cfg, "build", "--forever"), "password authentication failed")


# -- sync and index: refused before any work ----------------------------------------


def test_sync_refuses_an_upstream_that_is_not_http(make_farm):
    farm = make_farm()
    farm.add("pkg", "1.0", pure("pkg", "pkg"))
    for url, words in [("ftp://mirror.example/simple/", "its scheme is 'ftp'"),
                       ("mirror.example/simple/", "its scheme is ''"),
                       ("http:///simple/", "it has no host"),
                       ("http://[::1/simple/", "is not a URL"),
                       ("http://mirror.example:99999/simple/", "is not a URL")]:
        cfg = _config(farm.tmp / "bad-upstream.toml", **{**farm.settings, "upstream": url})
        _refused(_cli(cfg, "sync"), "config: upstream", words)
        if url.startswith("ftp"):  # the builder's pip and sdist download need http(s) too
            _refused(_cli(cfg, "build"), "config: upstream", words)
    cfg = _config(farm.tmp / "bad-xmlrpc.toml",
                  **{**farm.settings, "upstream_xmlrpc": "file:///tmp/rpc"})
    _refused(_cli(cfg, "sync"), "config: upstream_xmlrpc", "its scheme is 'file'")
    assert farm.query("SELECT count(*) FROM packages") == [(0,)]


def test_sync_and_index_refuse_a_database_not_migrated(make_farm):
    farm = make_farm()
    empty = farm.dsn.replace("dbname=", "dbname=empty_")
    dbname = empty.split("dbname=")[1].split()[0]
    _execute(farm.cluster.dsn("postgres"), f'CREATE DATABASE "{dbname}"')
    cfg = _config(farm.tmp / "empty.toml", **{**farm.settings, "database": empty})
    _refused(_cli(cfg, "sync"), "not initialised; run 'piwheels initdb'")
    _refused(_cli(cfg, "index"), "not initialised; run 'piwheels initdb'")
    assert not farm.www.exists()


@pytest.mark.parametrize("group, command, words", [
    # the web login (reads tables) given to the master's commands by mistake
    ("piwheels_web", "sync", "sync needs to read settings and call set_setting(), "
                             "package_changed()"),
    ("piwheels_web", "index", "index needs to call take_dirty_batch(), clear_dirty()"),
    # a builder's login: it may read no table at all
    ("piwheels_builder", "sync", "sync needs to read packages, versions, upstream_files"),
    ("piwheels_builder", "index", "index needs to read targets, target_skips, build_logs"),
])
def test_sync_and_index_refuse_a_role_without_grants(make_farm, group, command, words):
    farm = make_farm()
    farm.add("pkg", "1.0", pure("pkg", "pkg"))
    login = f"{group.split('_')[1]}_{os.getpid()}"
    _execute(farm.dsn, f"DROP ROLE IF EXISTS {login}",
             f"CREATE ROLE {login} LOGIN IN ROLE {group}")
    user = farm.dsn.split("user=")[1].split()[0]
    cfg = _config(farm.tmp / f"{login}.toml",
                  **{**farm.settings, "database": farm.dsn.replace(f"user={user}",
                                                                    f"user={login}")})
    line = _refused(_cli(cfg, command), words, f"the role {login}",
                    f"GRANT piwheels_master TO {login}")
    assert "check that PostgreSQL is running" not in line
    assert farm.query("SELECT count(*) FROM packages") == [(0,)]
    assert not (farm.www / "simple" / "index.html").exists()


def test_index_refuses_a_www_it_cannot_write(make_farm):
    farm = make_farm()
    farm.www.mkdir()
    cfg = farm.config()
    # The store mounted read-only (a real read-only bind mount, in a mount namespace).
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind -o ro "$0" "$0" && exec "$@"', str(farm.www)]
    proc = subprocess.run([*wrap, sys.executable, "-m", "piwheels_build.cli", "--config",
                           str(cfg), "index"], capture_output=True, text=True,
                          timeout=DEADLINE, env=clean_env())
    line = _refused(proc, f"index: cannot write in {farm.www}", "Read-only file system")
    assert "fix 'www' in the config" in line
    assert list(farm.www.iterdir()) == []
    # www under a file: cannot be made.
    cfg = _config(farm.tmp / "file-www.toml",
                  **{**farm.settings, "www": str(farm.tmp / "b1.toml" / "www")})
    _refused(_cli(cfg, "index"), "index: cannot write in", "Not a directory")
    # And a good one is written (the checks leave nothing behind).
    assert _cli(farm.config(), "index").returncode == 0
    assert not [p for p in farm.www.rglob("*") if ".tmp-" in p.name]


def test_serve_refuses_a_www_that_is_not_a_directory(tmp_path):
    cfg = _config(tmp_path / "serve.toml", database="dbname=unused", www=str(tmp_path / "www"))
    _refused(_cli(cfg, "serve", "--port", "0"), "serve: www", "is not a directory",
             "run 'piwheels index'")


def test_start_check_lists_name_what_sync_and_index_call():
    """Each function sync or the index writer calls through writes.py or queue.py, and
    each table they read, is in the list its start check asks the grants of."""
    import re

    from piwheels_build import preflight, queue
    from piwheels_build.db import writes

    root = Path(preflight.__file__).parent
    for folder, functions, tables in [("sync", preflight.SYNC_FUNCTIONS, preflight.SYNC_TABLES),
                                      ("index", preflight.INDEX_FUNCTIONS,
                                       preflight.INDEX_TABLES)]:
        text = "".join(p.read_text() for p in (root / folder).glob("*.py"))
        called = {name for module, name in re.findall(r"\b(writes|queue)\.([a-z_]+)\(", text)
                  if hasattr({"writes": writes, "queue": queue}[module], name)}
        called |= {"farm_stats"} if "farm_stats(" in text else set()
        assert len(called) >= 5 and called <= set(functions), (folder, called - set(functions))
        read = set(re.findall(r"\b(?:FROM|JOIN) ([a-z_]+)\b", text)) - {"unnest", "w"}
        assert read <= set(tables), (folder, read - set(tables))
