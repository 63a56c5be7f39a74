"""A misconfigured builder is refused at start, with one line, before it claims
anything: an interpreter the build user cannot run, ``sandbox = "auto"`` with no
``bwrap`` as root, a read-only store, a database login without the builder's
grants. Each runs the real ``piwheels build`` against the real throwaway
PostgreSQL, with a build waiting in the queue, and checks that nothing moved."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from helpers.farm import clean_env
from helpers.queue_helpers import add_version, register

from piwheels_build.build.interpreters import discover

BUILD_USER = "piwheels-build"


def _build_user_exists() -> bool:
    try:
        pwd.getpwnam(BUILD_USER)
        return True
    except KeyError:
        return False


pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not _build_user_exists(),
    reason=f"runs as root, with the build user {BUILD_USER} (scripts/setup.sh makes it)")


@pytest.fixture(scope="module")
def interp():
    """An interpreter every user can run (not under a 0700 home)."""
    found = [i for i in discover((3, 9)) if not i.path.startswith(("/root/", "/home/"))]
    if not found:
        pytest.fail("needs a CPython 3.9+ with pip outside /root and /home")
    return found[-1]


@pytest.fixture
def waiting(conn, interp):
    """A build of the interpreter's target waiting in the queue; ``moved()`` says what changed."""
    register(conn, interp.abi_tag, name="other-builder", platform=interp.platform_tag)
    add_version(conn, "waiting", "1.0")

    def snapshot():
        with conn.cursor() as cur:
            cur.execute("SELECT (SELECT count(*) FROM builds),"
                        " (SELECT array_agg(row_to_json(q)::text ORDER BY q::text) FROM queue q),"
                        " (SELECT count(*) FROM builders)")
            row = cur.fetchone()
        conn.rollback()
        return row

    before = snapshot()
    assert before[0] == 0 and before[1] and before[2] == 1

    def moved():
        return snapshot() != before
    return moved


def _config(tmp_path: Path, dsn: str, pythons: list[str], **settings) -> Path:
    values = {"database": dsn, "upstream": "http://127.0.0.1:9/simple/",
              "www": str(tmp_path / "www"), "pythons": pythons, **settings}
    cfg = tmp_path / "piwheels.toml"
    cfg.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in values.items()))
    return cfg


def _build(cfg: Path, *, env: dict[str, str] | None = None, wrap: list[str] = ()):
    return subprocess.run([*wrap, sys.executable, "-m", "piwheels_build.cli", "--config",
                           str(cfg), "build", "--batch", "1"],
                          capture_output=True, text=True, timeout=300, env=env or clean_env())


def _refused(proc, *words: str) -> str:
    """Exit 2, no traceback, exactly one error line, saying ``words``."""
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("piwheels:")]
    assert len(errors) == 1, proc.stderr
    for word in words:
        assert word in errors[0], proc.stderr
    return errors[0]


def test_interpreter_the_build_user_cannot_run(tmp_path, dsn, interp, waiting):
    """A venv under a 0700 directory (pyenv under /root): root can run it, so it is
    resolved; the build user cannot, and builds run it as the build user."""
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    venv = private / "venv"
    subprocess.run([interp.path, "-m", "venv", "--without-pip", "--system-site-packages",
                    str(venv)], check=True)
    python = str(venv / "bin" / "python")
    cfg = _config(tmp_path, dsn, [python], sandbox="none")
    line = _refused(_build(cfg), python, BUILD_USER, "Permission denied")
    assert "\n" not in line
    assert not waiting()
    assert not list((tmp_path / "www" / "simple").glob(".*"))  # the store probe cleaned up


def test_the_same_interpreter_runs_in_bubblewrap(tmp_path, dsn, interp):
    """bwrap binds an interpreter under a hidden or private directory back, read-only,
    so the probe (the builds' own path) accepts it there: no check of modes by hand."""
    if shutil.which("bwrap") is None:
        pytest.skip("needs bubblewrap")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    subprocess.run([interp.path, "-m", "venv", "--without-pip", "--system-site-packages",
                    str(private / "venv")], check=True)
    cfg = _config(tmp_path, dsn, [str(private / "venv" / "bin" / "python")],
                  sandbox="bubblewrap")
    proc = _build(cfg)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr


def test_a_runnable_interpreter_passes_and_none_says_not_isolated(tmp_path, dsn, interp):
    """The same path with an interpreter the build user can run: the build starts (an
    empty queue: nothing to build), after a warning that builds are not isolated."""
    cfg = _config(tmp_path, dsn, [interp.path], sandbox="none")
    proc = _build(cfg)
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if "WARNING" in ln]
    assert len(warnings) == 1 and "NOT isolated" in warnings[0], proc.stderr
    assert "build: 0 builds" in proc.stdout


def _path_without(tmp_path: Path, name: str) -> str:
    """A PATH with every program of this one but ``name``."""
    hidden = tmp_path / f"bin-without-{name}"
    hidden.mkdir()
    for d in os.environ.get("PATH", "/usr/bin:/bin").split(os.pathsep):
        if not os.path.isdir(d):
            continue
        for entry in os.scandir(d):
            target = hidden / entry.name
            if entry.name != name and not os.path.lexists(target):  # a dangling link too
                target.symlink_to(entry.path)
    return str(hidden)


def test_auto_without_bwrap_is_refused_as_root(tmp_path, dsn, interp, waiting):
    path = _path_without(tmp_path, "bwrap")
    env = clean_env(PATH=path)
    assert shutil.which("bwrap", path=path) is None
    cfg = _config(tmp_path, dsn, [interp.path], sandbox="auto")
    _refused(_build(cfg, env=env), 'sandbox = "auto"', "bwrap is not installed",
             'sandbox = "none"')
    assert not waiting()


def test_auto_without_bwrap_warns_when_not_root(dsn, interp):
    """Not root (the lab's builder service, a user's own farm): the builder starts, and
    its first line after the interpreters is the warning that builds are not isolated."""
    user = pwd.getpwnam(BUILD_USER)
    home = Path(tempfile.mkdtemp(prefix="piwheels-preflight-"))  # not under 0700 pytest dirs
    try:
        os.chmod(home, 0o755)
        (home / "www").mkdir()
        os.chown(home / "www", user.pw_uid, user.pw_gid)
        path = _path_without(home, "bwrap")
        cfg = _config(home, dsn, [interp.path], sandbox="auto")
        drop = ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                "--clear-groups", "--"]
        proc = _build(cfg, env=clean_env(PATH=path, HOME=str(home)), wrap=drop)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if "WARNING" in ln]
    assert len(warnings) == 1, proc.stderr
    assert "bwrap is not installed: builds are NOT isolated" in warnings[0]
    assert f"as {BUILD_USER}" in warnings[0]


def test_read_only_store(tmp_path, dsn, interp, waiting):
    """www bound read-only in a mount namespace of the builder's own (root ignores modes)."""
    www = tmp_path / "www"
    (www / "simple").mkdir(parents=True)
    cfg = _config(tmp_path, dsn, [interp.path], sandbox="bubblewrap")
    wrap = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount --bind -o ro "$0" "$0" && exec "$@"', str(www)]
    line = _refused(_build(cfg, wrap=wrap), "store", str(www / "simple"),
                    "Read-only file system")
    assert "mount the store read-write" in line
    assert not waiting()
    assert list((www / "simple").iterdir()) == []


def _login(conn, name: str, group: str | None) -> None:
    with conn.cursor() as cur:
        cur.execute(f"DROP ROLE IF EXISTS {name}")
        cur.execute(f"CREATE ROLE {name} LOGIN" + (f" IN ROLE {group}" if group else ""))
    conn.commit()


def _as(dsn: str, login: str) -> str:
    assert "user=piwheels" in dsn
    return dsn.replace("user=piwheels", f"user={login}")


@pytest.mark.parametrize("group, words", [
    # the web login configured on a builder by mistake
    ("piwheels_web", ["may not call register_builder(), claim_build(), heartbeat_build(), "
                      "finish_build(), file_is_recorded()", "GRANT piwheels_builder TO"]),
    # a login in no group at all
    (None, ["may not read schema_version", "GRANT piwheels_builder TO"]),
])
def test_login_without_builder_grants(tmp_path, dsn, conn, interp, waiting, group, words):
    login = f"preflight_{group or 'nogroup'}"
    _login(conn, login, group)
    cfg = _config(tmp_path, _as(dsn, login), [interp.path], sandbox="bubblewrap")
    _refused(_build(cfg), f"role {login}", *words)
    assert not waiting()


def test_one_grant_missing_is_named(tmp_path, dsn, conn, interp, waiting):
    """A builder login whose group lost one grant (a migration that forgot it)."""
    _login(conn, "preflight_builder", "piwheels_builder")
    with conn.cursor() as cur:
        cur.execute("REVOKE EXECUTE ON FUNCTION file_is_recorded(text) FROM piwheels_builder")
    conn.commit()
    cfg = _config(tmp_path, _as(dsn, "preflight_builder"), [interp.path], sandbox="bubblewrap")
    line = _refused(_build(cfg), "may not call file_is_recorded();", "piwheels initdb")
    assert "claim_build" not in line
    assert not waiting()


def test_builder_login_with_its_grants_passes(tmp_path, dsn, conn, interp):
    _login(conn, "preflight_ok", "piwheels_builder")
    cfg = _config(tmp_path, _as(dsn, "preflight_ok"), [interp.path], sandbox="bubblewrap")
    proc = _build(cfg)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr


def _wave(cfg: Path, env: dict[str, str]) -> dict:
    request = json.dumps({"action": "build", "params": {"config": str(cfg), "batch": 1}})
    proc = subprocess.run([sys.executable, "-m", "piwheels_build.admin"], input=request,
                          capture_output=True, text=True, timeout=300, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    answer = json.loads(proc.stdout)
    assert proc.returncode == (1 if answer.get("failed") else 0)
    return answer


def test_the_wave_refuses_with_the_same_line(tmp_path, dsn, interp, waiting):
    """The Ansible wave (python -m piwheels_build.admin, run_build) fails with the line."""
    path = _path_without(tmp_path, "bwrap")
    cfg = _config(tmp_path, dsn, [interp.path], sandbox="auto")
    answer = _wave(cfg, clean_env(PATH=path))
    assert answer["failed"] and "bwrap is not installed" in answer["msg"], answer
    assert "\n" not in answer["msg"]
    assert not waiting()


def test_the_wave_answer_warns_when_not_isolated(tmp_path, dsn, interp):
    cfg = _config(tmp_path, dsn, [interp.path], sandbox="none")
    answer = _wave(cfg, clean_env())
    assert not answer.get("failed"), answer
    assert len(answer["warnings"]) == 1 and "NOT isolated" in answer["warnings"][0]
