"""The custom Ansible modules in library/ (with their shared code in
module_utils/), run as Ansible runs them (a module file with a JSON arguments
file), against the real PostgreSQL cluster of the session: changed only when
something changed, check mode changes nothing."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg2
import pytest
from helpers.queue_helpers import add_version, claim, finish, queued, register
from helpers.upstream_server import make_sdist

# The modules import ansible's module_utils: installed with the `fleet` extra
# (scripts/fleet-test.sh installs it and runs these).
pytest.importorskip("ansible.module_utils.basic")
pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "library"
MODULE_UTILS = ROOT / "module_utils"
MIGRATIONS = ROOT / "piwheels_build" / "db" / "migrations"
MODULES = ("piwheels_db", "piwheels_sync", "piwheels_build", "piwheels_queue")

# Runs a module file as its own __main__ with ansible.module_utils extended by the
# repository's module_utils/ (what Ansible bundles into the module's payload; the
# payload itself is checked by test_ansible_bundles_module_utils).
_RUN_MODULE_FILE = ("import runpy, sys, ansible.module_utils as mu; "
                    "mu.__path__.append(sys.argv.pop(1)); sys.argv.pop(0); "
                    "runpy.run_path(sys.argv[0], run_name='__main__')")


def _module_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "ANSIBLE_"))}
    env["PYTHONPATH"] = str(ROOT)
    return env


def _answer(module: str, proc: subprocess.CompletedProcess) -> dict:
    try:
        return json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"{module}: no JSON answer\n{proc.stdout}\n{proc.stderr}") from None


def run_module(module: str, tmp_path: Path, check: bool = False, **args) -> dict:
    """Run library/<name>.py with ``args`` the way Ansible does; return its JSON answer."""
    args.setdefault("python", sys.executable)
    argfile = tmp_path / f"{module}-args.json"
    argfile.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args,
                                                           "_ansible_check_mode": check}}))
    proc = subprocess.run([sys.executable, "-c", _RUN_MODULE_FILE, str(MODULE_UTILS),
                           str(LIBRARY / f"{module}.py"), str(argfile)],
                          capture_output=True, text=True, timeout=600, env=_module_env())
    return _answer(module, proc)


# Builds each module's AnsiballZ payload with Ansible's own module_common (what
# ansible-playbook sends to a host), reading the repository's ansible.cfg.
_BUILD_PAYLOADS = """
import json, sys
from ansible.plugins.loader import init_plugin_loader
init_plugin_loader()
from ansible.executor.module_common import modify_module
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar
for name, path, args, out in json.load(sys.stdin):
    built = modify_module(module_name=name, module_path=path, module_args=args,
                          templar=Templar(loader=DataLoader()))
    with open(out, "wb") as f:
        f.write(built.b_module_data)
"""


def run_as_ansible(calls: list[tuple[str, dict]], tmp_path: Path) -> list[dict]:
    """Build the payloads of (module, args) pairs as Ansible does, run them; their answers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "ANSIBLE_"))}
    env.update(ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_LOCAL_TEMP=str(tmp_path))
    jobs = [(name, str(LIBRARY / f"{name}.py"), {"python": sys.executable, **args},
             str(tmp_path / f"payload-{i}-{name}.py")) for i, (name, args) in enumerate(calls)]
    subprocess.run([sys.executable, "-c", _BUILD_PAYLOADS], input=json.dumps(jobs), text=True,
                   check=True, capture_output=True, timeout=120, env=env, cwd=tmp_path)
    answers = []
    for name, _, _, payload in jobs:
        proc = subprocess.run([sys.executable, payload], capture_output=True, text=True,
                              timeout=600, env=_module_env(), cwd=tmp_path)
        answers.append(_answer(name, proc))
    return answers


def _doc_strings(path: Path) -> dict:
    """DOCUMENTATION, EXAMPLES and RETURN of a module file, read as ansible-doc reads them."""
    found = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    found[target.id] = node.value.value
    return found


def test_every_module_has_docs_examples_return():
    import yaml

    for name in MODULES:
        ns = _doc_strings(LIBRARY / f"{name}.py")
        doc = yaml.safe_load(ns["DOCUMENTATION"])
        assert doc["module"] == name
        assert doc["options"]["python"]["default"] == "/opt/piwheels/venv/bin/python"
        assert yaml.safe_load(ns["EXAMPLES"])
        assert yaml.safe_load(ns["RETURN"])


def test_ansible_bundles_module_utils(pg_cluster, dsn, tmp_path):
    """Through ansible.cfg, Ansible finds module_utils/piwheels_admin.py and ships it in
    every module's payload (the payload runs with nothing else on its path to find it in)."""
    name = f"ballz{os.getpid()}_{os.urandom(3).hex()}"
    queue, db, sync, build = run_as_ansible([
        ("piwheels_queue", {"dsn": dsn}),
        ("piwheels_db", {"name": name, "owner": f"{name}_own", "_ansible_check_mode": True,
                         "admin_dsn": pg_cluster.dsn("postgres")}),
        ("piwheels_sync", {"config": str(tmp_path / "none.toml")}),
        ("piwheels_build", {"config": str(tmp_path / "none.toml"), "batch": 0}),
    ], tmp_path)
    assert queue["changed"] is False and queue["status"]["builders"] == [], queue
    assert db["changed"] is True and db["applied"][0] == "0001_tables.sql", db
    assert sync["failed"] is True and "does not exist" in sync["msg"], sync
    assert build["failed"] is True and "batch" in build["msg"], build
    conn = psycopg2.connect(pg_cluster.dsn("postgres"))
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        assert cur.fetchone() is None, "check mode created the database"
    conn.close()


# -- piwheels_db ---------------------------------------------------------------------


@pytest.fixture
def fresh_db(pg_cluster):
    """An empty database and its owner, as the master role makes them with
    community.postgresql (and the group roles); dropped afterwards."""
    name = f"mod{os.getpid()}_{os.urandom(3).hex()}"
    made = {"name": name, "owner": f"{name}_own", "logins": []}
    conn = psycopg2.connect(pg_cluster.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'CREATE ROLE "{made["owner"]}" LOGIN')
        cur.execute(f'CREATE DATABASE "{name}" OWNER "{made["owner"]}"')
        for group in ("piwheels_master", "piwheels_builder", "piwheels_web"):
            cur.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (group,))
            if cur.fetchone() is None:
                cur.execute(f"CREATE ROLE {group} NOLOGIN")
    conn.close()
    yield made
    conn = psycopg2.connect(pg_cluster.dsn("postgres"))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for role in [made["owner"], *made["logins"]]:
            cur.execute(f'DROP ROLE IF EXISTS "{role}"')
    conn.close()


def test_db_creates_migrates_and_is_idempotent(pg_cluster, fresh_db, tmp_path):
    admin_dsn = pg_cluster.dsn("postgres")
    args = dict(name=fresh_db["name"], owner=fresh_db["owner"], admin_dsn=admin_dsn,
                settings={"retry_limit": 3})

    shipped = sorted(p.name for p in MIGRATIONS.glob("*.sql"))
    planned = run_module("piwheels_db", tmp_path, check=True, **args)
    assert planned["changed"] is True and planned["applied"] == shipped, planned
    conn = psycopg2.connect(pg_cluster.dsn(fresh_db["name"]))
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass('public.schema_version')")
        assert cur.fetchone() == (None,), "check mode migrated the database"
    conn.close()

    first = run_module("piwheels_db", tmp_path, **args)
    assert first["changed"] is True, first
    assert first["applied"] == shipped
    assert first["schema_version"] == int(shipped[-1].split("_", 1)[0])

    again = run_module("piwheels_db", tmp_path, **args)
    assert again == {**again, "changed": False, "changes": [], "applied": []}, again

    conn = psycopg2.connect(pg_cluster.dsn(fresh_db["name"]))
    with conn.cursor() as cur:
        cur.execute("SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
        assert cur.fetchall() == [(fresh_db["owner"],)]
        cur.execute("SELECT value FROM settings WHERE key = 'retry_limit'")
        assert cur.fetchone() == ("3",)
    conn.close()


def test_db_fails_with_one_line_when_python_lacks_piwheels(tmp_path):
    out = run_module("piwheels_db", tmp_path, python="/usr/bin/python3")
    assert out["failed"] is True
    assert "piwheels_build" in out["msg"]


# -- piwheels_queue -------------------------------------------------------------------

T311 = "cp311-linux_armv7l"   # register()'s build target for cp311


def test_queue_facts_refresh_skip_unskip(conn, dsn, tmp_path):
    register(conn, "cp311", "bookworm")
    add_version(conn, "foo", "1.0")
    add_version(conn, "foo", "2.0")
    with conn.cursor() as cur:
        cur.execute("DELETE FROM queue")  # as if the queue had drifted
    conn.commit()

    facts = run_module("piwheels_queue", tmp_path, dsn=dsn)
    assert facts["changed"] is False
    assert facts["queue"].get(T311, {}).get("ready", 0) == 0
    assert facts["status"]["builders"][0]["abi"] == "cp311"
    assert facts["status"]["builders"][0]["target"] == T311

    assert run_module("piwheels_queue", tmp_path, check=True, dsn=dsn, op="refresh")["added"] == 2
    assert queued(conn) == set()
    refreshed = run_module("piwheels_queue", tmp_path, dsn=dsn, op="refresh")
    assert (refreshed["changed"], refreshed["added"]) == (True, 2)
    assert refreshed["queue"][T311]["ready"] == 2
    assert run_module("piwheels_queue", tmp_path, dsn=dsn, op="refresh")["changed"] is False

    skip = dict(dsn=dsn, op="skip", package="Foo", version="2.0", note="hangs")
    assert run_module("piwheels_queue", tmp_path, check=True, **skip)["changed"] is True
    assert ("foo", "2.0", T311) in queued(conn)
    assert run_module("piwheels_queue", tmp_path, **skip)["changed"] is True
    assert queued(conn) == {("foo", "1.0", T311)}
    assert run_module("piwheels_queue", tmp_path, **skip)["changed"] is False

    unskip = dict(skip, op="unskip")
    assert run_module("piwheels_queue", tmp_path, **unskip)["changed"] is True
    assert run_module("piwheels_queue", tmp_path, **unskip)["changed"] is False
    assert ("foo", "2.0", T311) in queued(conn)

    whole = run_module("piwheels_queue", tmp_path, dsn=dsn, op="skip", package="foo")
    assert whole["changed"] is True and queued(conn) == set()

    missing = run_module("piwheels_queue", tmp_path, dsn=dsn, op="skip", package="nope")
    assert missing["failed"] is True and "unknown package" in missing["msg"]


def test_queue_requeue_forgets_failures(conn, dsn, tmp_path):
    b11 = register(conn, "cp311", "bookworm")
    add_version(conn, "bar", "1.0")
    build = claim(conn, b11)
    finish(conn, build[0], "failed")
    assert ("bar", "1.0", T311) not in queued(conn)

    args = dict(dsn=dsn, op="requeue", package="bar", version="1.0", priority=5)
    planned = run_module("piwheels_queue", tmp_path, check=True, **args)
    assert planned["changed"] is True and planned["queued"] == [T311]
    assert ("bar", "1.0", T311) not in queued(conn)

    done = run_module("piwheels_queue", tmp_path, **args)
    assert done["changed"] is True and done["queued"] == [T311]
    with conn.cursor() as cur:
        cur.execute("SELECT priority FROM queue WHERE package = 'bar'")
        assert cur.fetchone() == (5,)
    conn.commit()
    assert run_module("piwheels_queue", tmp_path, **args)["changed"] is False

    bad = run_module("piwheels_queue", tmp_path, dsn=dsn, op="requeue", package="bar")
    assert bad["failed"] is True and "version" in bad["msg"]


# -- piwheels_sync ---------------------------------------------------------------------


def _config(tmp_path: Path, dsn: str, upstream: str, **extra) -> Path:
    cfg = tmp_path / "piwheels.toml"
    lines = [f'database = "{dsn}"', f'upstream = "{upstream}"', f'www = "{tmp_path / "www"}"']
    lines += [f"{k} = {json.dumps(v)}" for k, v in extra.items()]
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def test_sync_changed_only_when_upstream_changed(dsn, fake, tmp_path):
    fake.add_file("alpha", *make_sdist("alpha", "1.0"))
    cfg = _config(tmp_path, dsn, fake.url)

    planned = run_module("piwheels_sync", tmp_path, check=True, config=str(cfg))
    assert planned["changed"] is False and planned["pending"] == 0
    assert fake.project_paths() == []

    first = run_module("piwheels_sync", tmp_path, config=str(cfg))
    assert first["changed"] is True, first
    assert first["summary"]["new_packages"] == 1 and first["summary"]["new_versions"] == 1
    assert run_module("piwheels_sync", tmp_path, config=str(cfg))["changed"] is False

    fake.add_file("alpha", *make_sdist("alpha", "1.1"))
    named = run_module("piwheels_sync", tmp_path, config=str(cfg), names=["Alpha"])
    assert named["changed"] is True and named["summary"]["new_versions"] == 1


def test_sync_full_list_option_reads_the_project_list(dsn, fake, tmp_path):
    """With a changelog the list is read once a day; full_list: true reads it now."""
    fake.add_file("alpha", *make_sdist("alpha", "1.0"))
    cfg = _config(tmp_path, dsn, fake.url, upstream_xmlrpc=fake.xmlrpc_url)
    run_module("piwheels_sync", tmp_path, config=str(cfg))
    fake.requests_log.clear()
    assert run_module("piwheels_sync", tmp_path, config=str(cfg))["changed"] is False
    assert fake.requests_log.count("/simple/") == 0  # the changelog was enough
    out = run_module("piwheels_sync", tmp_path, config=str(cfg), full_list=True)
    assert out["changed"] is False and fake.requests_log.count("/simple/") == 1


def test_sync_reports_a_missing_config(tmp_path):
    out = run_module("piwheels_sync", tmp_path, config=str(tmp_path / "none.toml"))
    assert out["failed"] is True and "does not exist" in out["msg"]


# -- piwheels_build -------------------------------------------------------------------


def _setuptools_wheel() -> Path | None:
    for d in (os.environ.get("PIWHEELS_FIXTURE_WHEELS"), ROOT / ".cache" / "fixture-wheels"):
        found = sorted(Path(d).glob("setuptools-*.whl")) if d else []
        if found:
            return found[-1]
    return None


def test_build_wave_builds_then_reports_nothing(dsn, fake, tmp_path):
    wheel = _setuptools_wheel()
    if wheel is None:
        pytest.skip("no setuptools wheel: run scripts/test.sh (it fetches one)")
    for whl in sorted(wheel.parent.glob("*.whl")):  # setuptools and wheel, if the builder asks
        fake.add_file(whl.name.split("-")[0], whl.name, whl.read_bytes())
    fake.add_file("modpure", *make_sdist("modpure", "1.0"))
    cfg = _config(tmp_path, dsn, fake.url, pythons=[sys.executable], build_timeout=300)
    assert run_module("piwheels_sync", tmp_path, config=str(cfg))["changed"] is True

    planned = run_module("piwheels_build", tmp_path, check=True, config=str(cfg))
    assert planned["changed"] is False and planned["builds"] == 0
    assert planned["interpreters"][0]["path"]

    wave = run_module("piwheels_build", tmp_path, config=str(cfg), batch=5)
    assert wave["changed"] is True, wave
    assert wave["builds"] == 1 and wave["by_status"] == {"success": 1}
    assert wave["built"] == ["modpure-1.0-py3-none-any.whl"]
    assert wave["results"][0]["package"] == "modpure"
    assert (tmp_path / "www" / "simple" / "modpure" / "modpure-1.0-py3-none-any.whl").exists()

    idle = run_module("piwheels_build", tmp_path, config=str(cfg), idle_timeout=1, poll=0.2)
    assert idle["changed"] is False and idle["builds"] == 0
    assert idle["elapsed"] >= 1


def test_build_rejects_a_zero_batch(tmp_path):
    out = run_module("piwheels_build", tmp_path, config="/nonexistent.toml", batch=0)
    assert out["failed"] is True and "batch" in out["msg"]
