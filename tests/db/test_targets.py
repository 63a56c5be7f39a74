"""Build targets are (ABI, platform) (migration 0010): the queue's rules per target,
checked against the real SQL functions, and the migration's carry-over of a farm
that had only ABIs."""

import itertools
import json

import psycopg2
import psycopg2.errors
import pytest
from helpers.queue_helpers import add_version, claim, finish, register, wheel

from piwheels_build import db

_n = itertools.count()


def queued(conn) -> set[tuple[str, str, str]]:
    with conn.cursor() as cur:
        cur.execute("SELECT package, version, target FROM queue")
        rows = set(cur.fetchall())
    conn.commit()
    return rows


def test_targets_order_by_python_then_platform(conn):
    register(conn, "cp311", "pi5", "linux_aarch64")
    register(conn, "cp39", "pi3", "linux_armv7l")
    register(conn, "cp39", "pi4", "linux_aarch64")
    add_version(conn, "foo", "1.0")
    assert queued(conn) == {("foo", "1.0", "cp39-linux_aarch64")}


def test_a_compiled_wheel_satisfies_only_its_own_platform(conn):
    """An x86 builder's cp311 wheel is no ARM builder's: the ARM target is queued."""
    arm = register(conn, "cp311", "pi", "linux_armv7l")
    x86 = register(conn, "cp311", "pc", "linux_x86_64")
    add_version(conn, "foo", "1.0")
    assert queued(conn) == {("foo", "1.0", "cp311-linux_armv7l")}
    assert claim(conn, x86) is None          # an x86 builder never takes an ARM row
    build = claim(conn, arm)
    assert build[3] == "cp311-linux_armv7l"  # the claim names its target
    finish(conn, build[0], "success", [wheel("foo", "1.0", "cp311", "cp311", "linux_armv7l")])
    assert queued(conn) == {("foo", "1.0", "cp311-linux_x86_64")}
    build = claim(conn, x86)
    finish(conn, build[0], "success", [wheel("foo", "1.0", "cp311", "cp311", "linux_x86_64")])
    assert queued(conn) == set()
    with conn.cursor() as cur:
        cur.execute("SELECT b.target, f.platform_tag FROM builds b JOIN files f USING (build_id)"
                    " ORDER BY 1")
        assert cur.fetchall() == [("cp311-linux_armv7l", "linux_armv7l"),
                                  ("cp311-linux_x86_64", "linux_x86_64")]
    conn.commit()


def test_a_pure_wheel_covers_every_platform(conn):
    b = register(conn, "cp39", "pi", "linux_armv7l")
    register(conn, "cp39", "pi64", "linux_aarch64")
    register(conn, "cp311", "pc", "linux_x86_64")
    add_version(conn, "foo", "1.0")
    build = claim(conn, register(conn, "cp39", "pi64", "linux_aarch64"))
    assert build is not None and claim(conn, b) is None
    finish(conn, build[0], "success", [wheel("foo", "1.0", "py3", "none", "any")])
    assert queued(conn) == set()


def test_abi3_covers_newer_pythons_on_its_own_platform_only(conn):
    b64 = register(conn, "cp39", "pi64", "linux_aarch64")
    for abi, plat in (("cp39", "linux_armv7l"), ("cp311", "linux_armv7l"),
                      ("cp311", "linux_aarch64")):
        register(conn, abi, f"b-{abi}-{plat}", plat)
    add_version(conn, "foo", "1.0")
    build = claim(conn, b64)
    finish(conn, build[0], "success", [wheel("foo", "1.0", "cp39", "abi3", "linux_aarch64")])
    assert queued(conn) == {("foo", "1.0", "cp39-linux_armv7l"),
                            ("foo", "1.0", "cp311-linux_armv7l")}


def test_a_failure_queues_every_other_target(conn):
    b = register(conn, "cp311", "pi64", "linux_aarch64")
    register(conn, "cp311", "pi", "linux_armv7l")
    register(conn, "cp313", "pi64b", "linux_aarch64")
    add_version(conn, "foo", "1.0")
    finish(conn, claim(conn, b)[0], "failed")
    assert queued(conn) == {("foo", "1.0", "cp311-linux_armv7l"),
                            ("foo", "1.0", "cp313-linux_aarch64")}


def test_an_armv6l_alias_is_no_target(conn):
    """The armv6l alias of an armv7l wheel covers nothing: no builder builds armv6l."""
    b = register(conn, "cp311", "pi", "linux_armv7l")
    register(conn, "cp311", "pi64", "linux_aarch64")
    add_version(conn, "foo", "1.0")
    build = claim(conn, register(conn, "cp311", "pi64", "linux_aarch64"))
    real = wheel("foo", "1.0", "cp311", "cp311", "linux_aarch64")
    alias = wheel("foo", "1.0", "cp311", "cp311", "linux_armv6l")
    alias["alias_of"] = real["filename"]
    finish(conn, build[0], "success", [real, alias])
    assert queued(conn) == {("foo", "1.0", "cp311-linux_armv7l")}
    assert claim(conn, b)[3] == "cp311-linux_armv7l"


def test_operators_name_a_target_an_abi_or_a_platform(conn):
    b = register(conn, "cp311", "pi", "linux_armv7l")
    register(conn, "cp311", "pi64", "linux_aarch64")
    register(conn, "cp313", "pi64b", "linux_aarch64")
    add_version(conn, "foo", "1.0")
    finish(conn, claim(conn, register(conn, "cp311", "pi64", "linux_aarch64"))[0], "failed")
    with conn.cursor() as cur:
        cur.execute("SELECT skip_version('foo', '1.0', 'linux_aarch64', 'no 64-bit')")
        assert cur.fetchone()[0] is True
        cur.execute("SELECT target FROM target_skips ORDER BY 1")
        assert cur.fetchall() == [("cp311-linux_aarch64",), ("cp313-linux_aarch64",)]
    conn.commit()
    assert queued(conn) == {("foo", "1.0", "cp311-linux_armv7l")}
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM requeue_version('foo', '1.0', 'cp311')")
        forgotten, added, _, now_queued = cur.fetchone()
    conn.commit()
    assert forgotten == 2  # cp311-linux_aarch64's failure and its skip
    assert now_queued == ["cp311-linux_aarch64", "cp311-linux_armv7l"]
    assert claim(conn, b)[3] == "cp311-linux_armv7l"
    with conn.cursor() as cur, pytest.raises(psycopg2.errors.RaiseException,
                                             match="no build target is named cp399"):
        cur.execute("SELECT skip_version('foo', '1.0', 'cp399')")
    conn.rollback()


def test_register_refuses_a_bad_platform_tag(conn):
    with conn.cursor() as cur, pytest.raises(psycopg2.errors.RaiseException,
                                             match="invalid platform tag"):
        cur.execute("SELECT register_builder('b', 'cp311', 'linux-armv7l', '3.11')")
    conn.rollback()


def test_farm_stats_count_per_target(conn):
    a = register(conn, "cp311", "pi", "linux_armv7l")
    register(conn, "cp311", "pi64", "linux_aarch64")
    add_version(conn, "foo", "1.0")
    add_version(conn, "bar", "1.0")
    b1 = claim(conn, register(conn, "cp311", "pi64", "linux_aarch64"))
    finish(conn, b1[0], "success", [wheel(b1[1], "1.0", "cp311", "cp311", "linux_aarch64")])
    b2 = claim(conn, a)
    finish(conn, b2[0], "failed")
    with conn.cursor() as cur:
        cur.execute("SELECT farm_stats(true)")
        s = cur.fetchone()[0]
    conn.commit()
    per = {t["target"]: (t["abi"], t["platform"], t["attempted"], t["built"])
           for t in s["targets"]}
    assert per == {"cp311-linux_aarch64": ("cp311", "linux_aarch64", 1, 1),
                   "cp311-linux_armv7l": ("cp311", "linux_armv7l", 1, 0)}
    assert [q["target"] for q in s["queue"]] == ["cp311-linux_aarch64", "cp311-linux_armv7l"]
    # the first version is done on both; the second waits on its primary target
    assert [q["queued"] for q in s["queue"]] == [1, 0]
    assert {b["target"] for b in s["builders"]} == set(per)


# -- the migration's carry-over -------------------------------------------------


@pytest.fixture
def at_0009(pg_cluster):
    """A database migrated to 0009 only, holding a small farm of ABIs."""
    name = f"m{next(_n)}"
    pg_cluster.createdb(name)
    conn = db.connect(pg_cluster.dsn(name))
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE schema_version (version integer PRIMARY KEY, name text NOT"
                    " NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        for number, fname, sql in db.migrations():
            if number > 9:
                break
            cur.execute(sql)
            cur.execute("INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                        (number, fname))
    conn.commit()
    yield conn
    conn.close()


def _old_farm(cur) -> None:
    """cp39 on an armv7l builder and on an aarch64 one, cp311 on armv7l, cp313 unused."""
    for abi, major, minor in (("cp39", 3, 9), ("cp311", 3, 11), ("cp313", 3, 13)):
        cur.execute("INSERT INTO abis (abi_tag, py_major, py_minor) VALUES (%s, %s, %s)",
                    (abi, major, minor))
    for bid, name, abi, plat in ((1, "pi3", "cp39", "linux_armv7l"),
                                 (2, "pi4", "cp39", "linux_aarch64"),
                                 (3, "pi3", "cp311", "linux_armv7l")):
        cur.execute("INSERT INTO builders (builder_id, name, abi_tag, platform_tag, python)"
                    " VALUES (%s, %s, %s, %s, '3')", (bid, name, abi, plat))
    for pkg in ("foo", "bar", "baz"):
        cur.execute("INSERT INTO packages (package, display_name) VALUES (%s, %s)", (pkg, pkg))
        cur.execute("INSERT INTO versions (package, version, released) VALUES (%s, '1.0', now())",
                    (pkg,))
    # foo: built on cp39 by pi4 (aarch64); bar: held by pi3 on cp311; baz: queued on
    # cp39, skipped on cp311 and queued on cp313 (no builder).
    cur.execute("INSERT INTO builds (build_id, package, version, abi_tag, builder_id, status)"
                " VALUES (10, 'foo', '1.0', 'cp39', 2, 'success'),"
                "        (11, 'bar', '1.0', 'cp311', 3, 'building')")
    cur.execute("INSERT INTO queue (package, version, abi_tag, released, build_id,"
                " lease_expires) VALUES ('bar', '1.0', 'cp311', now(), 11, now()),"
                " ('baz', '1.0', 'cp39', now(), NULL, NULL),"
                " ('baz', '1.0', 'cp313', now(), NULL, NULL)")
    cur.execute("INSERT INTO abi_skips (package, version, abi_tag, reason, note)"
                " VALUES ('baz', '1.0', 'cp311', 'admin', 'why')")


def test_migration_makes_each_abi_its_builders_platforms_targets(at_0009):
    conn = at_0009
    with conn.cursor() as cur:
        _old_farm(cur)
    conn.commit()
    assert db.migrate(conn)[0] == "0010_targets.sql"
    with conn.cursor() as cur:
        cur.execute("SELECT target, abi_tag, platform_tag, py_major, py_minor FROM targets"
                    " ORDER BY 1")
        assert cur.fetchall() == [("cp311-linux_armv7l", "cp311", "linux_armv7l", 3, 11),
                                  ("cp39-linux_aarch64", "cp39", "linux_aarch64", 3, 9),
                                  ("cp39-linux_armv7l", "cp39", "linux_armv7l", 3, 9)]
        cur.execute("SELECT builder_id, target FROM builders ORDER BY 1")
        assert cur.fetchall() == [(1, "cp39-linux_armv7l"), (2, "cp39-linux_aarch64"),
                                  (3, "cp311-linux_armv7l")]
        cur.execute("SELECT build_id, target FROM builds ORDER BY 1")
        assert cur.fetchall() == [(10, "cp39-linux_aarch64"), (11, "cp311-linux_armv7l")]
        # the held row goes with its build; an unclaimed row to every target of its
        # ABI; cp313's row goes with cp313, which no builder ran
        cur.execute("SELECT package, target, build_id FROM queue ORDER BY 1, 2")
        assert cur.fetchall() == [("bar", "cp311-linux_armv7l", 11),
                                  ("baz", "cp39-linux_aarch64", None),
                                  ("baz", "cp39-linux_armv7l", None)]
        cur.execute("SELECT package, target, reason, note FROM target_skips")
        assert cur.fetchall() == [("baz", "cp311-linux_armv7l", "admin", "why")]
        cur.execute("SELECT to_regclass('abis'), to_regclass('abi_skips')")
        assert cur.fetchone() == (None, None)
        # the rules run on the carried data: finishing bar's held build queues its
        # other targets (foo is built on aarch64 only, so armv7l still wants it)
        cur.execute("SELECT finish_build(11, 'success', 1.0, NULL, NULL, NULL, %s)",
                    (json.dumps([wheel("bar", "1.0", "cp311", "cp311", "linux_armv7l")]),))
        cur.execute("SELECT refresh_queue()")
        cur.execute("SELECT package, target FROM queue ORDER BY 1, 2")
        assert cur.fetchall() == [("bar", "cp39-linux_aarch64"), ("bar", "cp39-linux_armv7l"),
                                  ("baz", "cp39-linux_aarch64"), ("baz", "cp39-linux_armv7l"),
                                  ("foo", "cp311-linux_armv7l"), ("foo", "cp39-linux_armv7l")]
    conn.commit()
