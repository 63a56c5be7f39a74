"""Expected failures are one line on stderr and a non-zero exit, never a traceback."""

import json
import subprocess
import sys


def piwheels(*args, config=None, env=None):
    cmd = [sys.executable, "-m", "piwheels_build.cli"]
    if config:
        cmd += ["--config", str(config)]
    return subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=120,
                          env=env)


def _one_line_error(proc, words):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("piwheels:")]
    assert len(errors) == 1 and words in errors[0], proc.stderr


def test_wrong_config_key(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('database = "x"\nbuild_timout = 1\n')
    _one_line_error(piwheels("status", config=cfg), "unknown key 'build_timout'")


def test_unreachable_database(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('database = "host=/nonexistent port=1 dbname=x"\n')
    _one_line_error(piwheels("status", config=cfg), "cannot connect")


def test_uninitialised_database(tmp_path, pg_cluster):
    pg_cluster.createdb("cli_empty")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'database = "{pg_cluster.dsn("cli_empty")}"\n')
    _one_line_error(piwheels("status", config=cfg), "run 'piwheels initdb'")


def test_initdb_then_status(tmp_path, pg_cluster):
    pg_cluster.createdb("cli_init")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'database = "{pg_cluster.dsn("cli_init")}"\nretry_limit = 7\n')
    first = piwheels("initdb", config=cfg)
    assert first.returncode == 0 and "applied" in first.stdout
    again = piwheels("initdb", config=cfg)
    assert again.returncode == 0 and "up to date" in again.stdout
    status = piwheels("status", "--json", config=cfg)
    assert status.returncode == 0
    assert json.loads(status.stdout)["packages"]["total"] == 0
    queue = piwheels("queue", config=cfg)
    assert queue.returncode == 0 and "no active build target" in queue.stdout


def test_bad_package_name_writes_nothing(tmp_path, dsn):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'database = "{dsn}"\nupstream = "http://127.0.0.1:9/simple/"\n')
    _one_line_error(piwheels("sync", "not a name!", config=cfg), "not a valid package name")
    status = piwheels("status", "--json", config=cfg)
    assert json.loads(status.stdout)["packages"]["total"] == 0


def test_unreachable_upstream(tmp_path, dsn):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'database = "{dsn}"\nupstream = "http://127.0.0.1:9/simple/"\n'
                   "http_retries = 0\nhttp_timeout = 2\n")
    proc = piwheels("sync", config=cfg)
    _one_line_error(proc, "upstream")


def test_skip_and_rebuild(tmp_path, dsn, conn):
    from helpers.queue_helpers import add_version, claim, finish, queued, register

    b = register(conn, "cp311")
    add_version(conn, "foo", "1.0")
    finish(conn, claim(conn, b)[0], "failed")
    assert queued(conn) == set()
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'database = "{dsn}"\n')
    out = piwheels("rebuild", "Foo==1.0", "--priority", "5", config=cfg)
    assert out.returncode == 0 and "queued for cp311-linux_armv7l" in out.stdout, out.stderr
    assert queued(conn) == {("foo", "1.0", "cp311-linux_armv7l")}
    out = piwheels("skip", "foo==1.0", "--note", "breaks the builder", config=cfg)
    assert out.returncode == 0 and "skipped" in out.stdout
    assert queued(conn) == set()
    assert piwheels("skip", "foo==1.0", "--undo", config=cfg).returncode == 0
    assert queued(conn) == {("foo", "1.0", "cp311-linux_armv7l")}
    _one_line_error(piwheels("rebuild", "foo", config=cfg), "NAME==VERSION")
    _one_line_error(piwheels("skip", "nosuch==1", config=cfg), "nosuch")


def test_status_shows_an_active_target_with_an_empty_queue(tmp_path, dsn, conn):
    from helpers.queue_helpers import register

    register(conn, "cp311")
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'database = "{dsn}"\n')
    state = json.loads(piwheels("status", "--json", config=cfg).stdout)
    assert state["queue"] == {"cp311-linux_armv7l": {"ready": 0, "building": 0,
                                                    "waiting_retry": 0}}


def test_index_watch_polls_for_finished_builds(tmp_path, dsn, conn):
    """index --watch finds work by polling index_dirty (finish_build sends no NOTIFY)."""
    import time

    cfg = tmp_path / "c.toml"
    cfg.write_text(f'database = "{dsn}"\nwww = "www"\n')
    proc = subprocess.Popen([sys.executable, "-m", "piwheels_build.cli", "--config", str(cfg),
                             "index", "--watch", "--interval", "0.2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT register_builder('pi', 'cp311', 'linux_armv7l', '3.11')")
            builder = cur.fetchone()[0]
            cur.execute("INSERT INTO packages (package, display_name) VALUES ('late', 'late')")
            cur.execute("INSERT INTO versions (package, version) VALUES ('late', '1.0')")
            cur.execute("INSERT INTO upstream_files (filename, package, version, kind, url)"
                        " VALUES ('late-1.0.tar.gz', 'late', '1.0', 'sdist', 'http://x/l')")
            cur.execute("SELECT refresh_queue()")
            cur.execute("SELECT build_id FROM claim_build(%s)", (builder,))
            build_id = cur.fetchone()[0]
            wheel = {"filename": "late-1.0-py3-none-any.whl", "python_tag": "py3",
                     "abi_tag": "none", "platform_tag": "any", "size": 1, "sha256": "a" * 64}
            cur.execute("SELECT finish_build(%s, 'success', 1.0, NULL, NULL, NULL, %s::jsonb)",
                        (build_id, json.dumps([wheel])))
        conn.commit()
        page = tmp_path / "www/simple/late/index.html"
        deadline = time.monotonic() + 60  # a bound so a broken loop fails instead of hanging
        while not page.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert page.exists(), proc.stderr.read() if proc.poll() is not None else "not written"
        assert "late-1.0-py3-none-any.whl" in page.read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_index_interval_must_be_positive(tmp_path, dsn):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'database = "{dsn}"\n')
    proc = piwheels("index", "--watch", "--interval", "0", config=cfg)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "not a positive number of seconds" in proc.stderr


def _journal_run(tmp_path, args, cfg, *, journal: bool, until: str | None = None,
                 extra_env: dict | None = None) -> tuple[int | None, list[str]]:
    """Run piwheels with stderr in a file; with ``journal``, JOURNAL_STREAM names that
    file as systemd does for the journal. Stopped once ``until`` was logged."""
    import os
    import time

    err = tmp_path / "stderr"
    with err.open("wb") as fh:
        st = os.fstat(fh.fileno())
        env = dict(os.environ, **(extra_env or {}))
        env.pop("JOURNAL_STREAM", None)
        if journal:
            env["JOURNAL_STREAM"] = f"{st.st_dev}:{st.st_ino}"
        proc = subprocess.Popen([sys.executable, "-m", "piwheels_build.cli", "--config",
                                 str(cfg), *args], stdout=subprocess.DEVNULL, stderr=fh,
                                env=env)
        try:
            deadline = time.monotonic() + 60   # a bound, not a threshold
            while proc.poll() is None and time.monotonic() < deadline \
                    and not (until and until in err.read_text()):
                time.sleep(0.1)
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=30)
    return proc.returncode, err.read_text().splitlines()


def test_services_log_with_journald_priorities(tmp_path, dsn):
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'database = "{dsn}"\nwww = "www"\n')
    _, lines = _journal_run(tmp_path, ["index", "--watch"], cfg, journal=True,
                            until="watching for finished builds")
    assert lines and all(ln.startswith("<6>index: ") for ln in lines), lines
    _, lines = _journal_run(tmp_path, ["index", "--watch"], cfg, journal=False,
                            until="watching for finished builds")
    assert any(" INFO index: watching for finished builds" in ln for ln in lines), lines


def test_a_service_failure_is_one_line_with_error_priority(tmp_path, pg_cluster):
    # A database that does not exist: waiting cannot fix it, so even a service refuses
    # it at once (a server that is down is waited for: tests/faults/test_start_checks.py).
    cfg = tmp_path / "c.toml"
    cfg.write_text(f'database = "{pg_cluster.dsn("no_such_db")}"\n')
    code, lines = _journal_run(tmp_path, ["index", "--watch"], cfg, journal=True)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("<3>piwheels: database: ")
    assert "does not exist" in lines[0]


def test_log_level_from_the_environment(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('database = "x"\n')
    env = dict(__import__("os").environ, PIWHEELS_LOG_LEVEL="chatty")
    proc = piwheels("status", config=cfg, env=env)
    assert proc.returncode == 2
    _one_line_error(proc, "PIWHEELS_LOG_LEVEL='chatty' is not a log level")
