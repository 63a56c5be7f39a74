"""Requires-Python in the queue's rules (migration 0008), against the real SQL functions."""

import psycopg2
import pytest
from helpers.queue_helpers import add_version, claim, finish, queued, register, wheel

from piwheels_build.db import writes
from piwheels_build.requirespython import excluded_mask


def set_requires(conn, package, version, spec):
    """What sync writes for a version whose sdist gives ``spec``: the row with its mask."""
    with conn.cursor() as cur:
        cur.execute("UPDATE versions SET requires_python = %s, python_excluded = %s"
                    " WHERE package = %s AND version = %s",
                    (spec, excluded_mask(spec), package, version))
        cur.execute("SELECT refresh_queue(%s, %s)", (package, version))
    conn.commit()


def three_abis(conn):
    return register(conn, "cp38", "a"), register(conn, "cp39", "b"), register(conn, "cp311", "c")


def test_an_excluded_primary_abi_starts_the_version_on_the_next_one(conn):
    b8, b9, _ = three_abis(conn)
    add_version(conn, "foo", "1.0")
    set_requires(conn, "foo", "1.0", ">=3.9")
    assert queued(conn) == {("foo", "1.0", "cp39-linux_armv7l")}
    assert claim(conn, b8) is None
    build = claim(conn, b9)
    finish(conn, build[0], "success", [wheel("foo", "1.0", "cp39", "cp39", "linux_armv7l")])
    # The others follow the first result; cp38 never.
    assert queued(conn) == {("foo", "1.0", "cp311-linux_armv7l")}


def test_an_excluded_abi_is_not_queued_after_a_failure_either(conn):
    _, b9, _ = three_abis(conn)
    add_version(conn, "foo", "1.0")
    set_requires(conn, "foo", "1.0", ">=3.9")
    build = claim(conn, b9)
    finish(conn, build[0], "failed")
    assert queued(conn) == {("foo", "1.0", "cp311-linux_armv7l")}


def test_an_upper_bound_excludes_the_newer_abis(conn):
    b8, _, _ = three_abis(conn)
    add_version(conn, "foo", "1.0")
    set_requires(conn, "foo", "1.0", ">=3.7,<3.10")
    assert queued(conn) == {("foo", "1.0", "cp38-linux_armv7l")}
    build = claim(conn, b8)
    finish(conn, build[0], "success", [wheel("foo", "1.0", "cp38", "cp38", "linux_armv7l")])
    assert queued(conn) == {("foo", "1.0", "cp39-linux_armv7l")}


def test_a_version_for_no_active_python_is_not_queued_at_all(conn):
    three_abis(conn)
    add_version(conn, "foo", "1.0")
    set_requires(conn, "foo", "1.0", ">=3.12")
    assert queued(conn) == set()


def test_an_abi_added_later_is_judged_by_the_same_mask(conn):
    register(conn, "cp38", "a")
    add_version(conn, "foo", "1.0")
    set_requires(conn, "foo", "1.0", ">=3.12")
    assert queued(conn) == set()
    register(conn, "cp313", "new")      # a new interpreter: register_builder refreshes all
    assert queued(conn) == {("foo", "1.0", "cp313-linux_armv7l")}
    register(conn, "cp311", "older")    # admits nothing new
    assert queued(conn) == {("foo", "1.0", "cp313-linux_armv7l")}


def test_two_abis_of_one_python_are_both_excluded(conn):
    register(conn, "cp313", "a")
    register(conn, "cp313t", "b")
    register(conn, "cp314", "c")
    add_version(conn, "foo", "1.0")
    set_requires(conn, "foo", "1.0", ">=3.14")
    assert queued(conn) == {("foo", "1.0", "cp314-linux_armv7l")}


def test_a_non_cpython3_abi_is_never_excluded_and_stays_primary(conn):
    register(conn, "cp27", "old")
    register(conn, "cp39", "b")
    add_version(conn, "foo", "1.0")
    set_requires(conn, "foo", "1.0", ">=3.9")
    # The mask holds only 3.x: Python 2.7 is not ruled out by it (conservative).
    assert queued(conn) == {("foo", "1.0", "cp27-linux_armv7l")}


def test_no_constraint_keeps_the_old_rule(conn):
    three_abis(conn)
    add_version(conn, "foo", "1.0")
    add_version(conn, "bar", "1.0")
    set_requires(conn, "bar", "1.0", None)   # evaluated: nothing excluded
    assert queued(conn) == {("foo", "1.0", "cp38-linux_armv7l"),
                            ("bar", "1.0", "cp38-linux_armv7l")}


def test_not_for_python_is_final_and_queues_the_others(conn):
    b8, _, _ = three_abis(conn)
    add_version(conn, "foo", "1.0")
    build = claim(conn, b8)
    assert finish(conn, build[0], "not-for-python")
    assert queued(conn) == {("foo", "1.0", "cp39-linux_armv7l"),
                            ("foo", "1.0", "cp311-linux_armv7l")}
    with conn.cursor() as cur:
        cur.execute("SELECT status FROM builds WHERE build_id = %s", (build[0],))
        assert cur.fetchone()[0] == "not-for-python"
        cur.execute("SELECT is_final_status('not-for-python')")
        assert cur.fetchone()[0] is True


def test_an_unknown_status_is_still_refused(conn):
    b8, _, _ = three_abis(conn)
    add_version(conn, "foo", "1.0")
    build = claim(conn, b8)
    with pytest.raises(psycopg2.errors.RaiseException):
        finish(conn, build[0], "not-for-pythn")
    conn.rollback()


def test_fill_requires_python_writes_only_pending_rows_and_refreshes_the_queue(conn):
    three_abis(conn)
    add_version(conn, "foo", "1.0")
    add_version(conn, "foo", "2.0")
    add_version(conn, "bar", "1.0")
    set_requires(conn, "bar", "1.0", ">=3.8")          # sync wrote it already
    assert queued(conn) == {("foo", "1.0", "cp38-linux_armv7l"),
                            ("foo", "2.0", "cp38-linux_armv7l"),
                            ("bar", "1.0", "cp38-linux_armv7l")}
    with conn.cursor() as cur:
        cur.execute("DELETE FROM index_dirty")
        n = writes.fill_requires_python(cur, [
            ("foo", "1.0", ">=3.9", excluded_mask(">=3.9")),
            ("foo", "2.0", None, 0),
            ("bar", "1.0", ">=3.11", excluded_mask(">=3.11")),   # not pending: kept as it is
        ])
        cur.execute("SELECT version, requires_python, python_excluded FROM versions"
                    " ORDER BY package, version")
        rows = cur.fetchall()
        cur.execute("SELECT package FROM index_dirty")
        dirty = {r[0] for r in cur.fetchall()}
    conn.commit()
    assert n == 2
    assert rows == [("1.0", ">=3.8", excluded_mask(">=3.8")),
                    ("1.0", ">=3.9", excluded_mask(">=3.9")), ("2.0", None, 0)]
    assert queued(conn) == {("foo", "1.0", "cp39-linux_armv7l"),
                            ("foo", "2.0", "cp38-linux_armv7l"),
                            ("bar", "1.0", "cp38-linux_armv7l")}
    assert dirty == {"foo"}


def test_farm_stats_counts_versions_not_for_an_abi(conn):
    three_abis(conn)
    for v, spec in (("1.0", ">=3.9"), ("2.0", ">=3.10"), ("3.0", None)):
        add_version(conn, "foo", v)
        set_requires(conn, "foo", v, spec)
    add_version(conn, "foo", "4.0")                    # not evaluated yet
    with conn.cursor() as cur:
        cur.execute("SELECT farm_stats(false)")
        stats = cur.fetchone()[0]
    conn.rollback()
    assert stats["not_for_python"] == [
        {"target": "cp38-linux_armv7l", "abi": "cp38", "platform": "linux_armv7l", "versions": 2},
        {"target": "cp39-linux_armv7l", "abi": "cp39", "platform": "linux_armv7l", "versions": 1},
        {"target": "cp311-linux_armv7l", "abi": "cp311", "platform": "linux_armv7l",
         "versions": 0}]
    assert stats["requires_python_pending"] == 1


def test_a_version_only_ruled_out_is_not_counted_as_attempted(conn):
    b8, b9, _ = three_abis(conn)
    add_version(conn, "foo", "1.0")
    add_version(conn, "bar", "1.0")
    build = claim(conn, b8)
    finish(conn, build[0], "not-for-python")
    build = claim(conn, b8)
    finish(conn, build[0], "failed")
    with conn.cursor() as cur:
        cur.execute("SELECT farm_stats(true)->'attempted'")
        attempted = cur.fetchone()[0]
    conn.rollback()
    assert attempted == 1     # the failed one; not the one not for cp38


def test_fill_drops_a_queued_row_of_a_ruled_out_abi_after_a_first_build(conn):
    b8, _, _ = three_abis(conn)
    add_version(conn, "foo", "1.0")
    build = claim(conn, b8)
    finish(conn, build[0], "success", [wheel("foo", "1.0", "cp38", "cp38", "linux_armv7l")])
    assert queued(conn) == {("foo", "1.0", "cp39-linux_armv7l"),
                            ("foo", "1.0", "cp311-linux_armv7l")}
    with conn.cursor() as cur:
        assert writes.fill_requires_python(cur, [("foo", "1.0", "<3.10",
                                                  excluded_mask("<3.10"))]) == 1
    conn.commit()
    assert queued(conn) == {("foo", "1.0", "cp39-linux_armv7l")}
