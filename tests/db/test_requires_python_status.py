"""`piwheels status` counts what Requires-Python keeps off the queue apart from failures."""

from helpers.queue_helpers import add_version, claim, finish, register

from piwheels_build import status
from piwheels_build.requirespython import excluded_mask


def test_status_counts_not_for_python_apart_from_failures(conn):
    b8 = register(conn, "cp38", "a")
    register(conn, "cp311", "b")
    for v, spec in (("1.0", ">=3.9"), ("2.0", ">=3.9"), ("3.0", None)):
        add_version(conn, "foo", v)
        with conn.cursor() as cur:
            cur.execute("UPDATE versions SET requires_python = %s, python_excluded = %s"
                        " WHERE package = 'foo' AND version = %s", (spec, excluded_mask(spec), v))
            cur.execute("SELECT refresh_queue('foo', %s)", (v,))
        conn.commit()
    add_version(conn, "bar", "1.0")                    # not evaluated yet
    build = claim(conn, b8)
    finish(conn, build[0], "not-for-python")           # found in the sdist's PKG-INFO
    s = status.collect(conn)
    assert s["not_for_python"] == {"cp38-linux_armv7l": 2, "cp311-linux_armv7l": 0}
    assert s["requires_python_pending"] == 1
    assert s["builds"]["not-for-python"]["count"] == 1 and "failed" not in s["builds"]
    text = status.render(s)
    assert ("not for their Python (Requires-Python, not queued): cp38-linux_armv7l 2 versions"
            in text)
    assert "1 versions' Requires-Python not evaluated yet" in text
    assert "builds:   1 not-for-python" in text


def test_status_says_nothing_of_requires_python_when_nothing_is_excluded(conn):
    register(conn, "cp38", "a")
    add_version(conn, "foo", "1.0")
    with conn.cursor() as cur:
        cur.execute("UPDATE versions SET python_excluded = 0")
    conn.commit()
    assert "python:" not in status.render(status.collect(conn))
