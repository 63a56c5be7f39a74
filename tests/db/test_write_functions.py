"""Migration 0006's grants: every write function is the master's alone; the
builders keep exactly their five; farm_stats is readable by the web role."""

import psycopg2
import pytest

BUILDER_FUNCTIONS = {"register_builder", "claim_build", "heartbeat_build", "finish_build",
                     "file_is_recorded", "tag_pyver", "is_final_status", "python_bit",
                     "python_excludes"}


def _executable_by(conn, role):
    with conn.cursor() as cur:
        cur.execute("SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
                    " WHERE n.nspname = 'public'"
                    " AND has_function_privilege(%s, p.oid, 'EXECUTE')", (role,))
        return {r[0] for r in cur.fetchall()}


def test_builder_and_web_may_call_only_their_functions(conn):
    assert _executable_by(conn, "piwheels_builder") == BUILDER_FUNCTIONS
    assert _executable_by(conn, "piwheels_web") == {"tag_pyver", "is_final_status", "farm_stats",
                                                    "python_bit", "python_excludes",
                                                    "targets_named"}
    master = _executable_by(conn, "piwheels_master")
    for name in ("set_setting", "package_changed", "skip_version", "unskip_version",
                 "requeue_version", "merge_project_list", "write_versions",
                 "write_upstream_files", "take_dirty_batch", "redirty", "farm_stats"):
        assert name in master


def test_write_functions_are_security_definer(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT proname, prosecdef FROM pg_proc WHERE proname = ANY(%s)",
                    (["package_changed", "set_setting", "write_versions", "farm_stats"],))
        rows = dict(cur.fetchall())
    assert rows == {"package_changed": True, "set_setting": True, "write_versions": True,
                    "farm_stats": False}


def _login(conn, role):
    with conn.cursor() as cur:
        cur.execute(f"DROP ROLE IF EXISTS {role}_login")
        cur.execute(f"CREATE ROLE {role}_login LOGIN IN ROLE {role}")
    conn.commit()


def test_a_builder_cannot_mark_or_skip(conn, dsn):
    _login(conn, "piwheels_builder")
    bconn = psycopg2.connect(dsn.replace("user=piwheels", "user=piwheels_builder_login"))
    with bconn.cursor() as cur:
        for sql in ("SELECT package_changed(ARRAY['x'])", "SELECT set_setting('a', 'b')",
                    "SELECT skip_version('x')", "SELECT farm_stats()"):
            with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                cur.execute(sql)
            bconn.rollback()
    bconn.close()


def test_set_setting_says_whether_it_changed(conn):
    from piwheels_build.db import writes

    with conn.cursor() as cur:
        assert writes.set_setting(cur, "retry_limit", "7") is True
        assert writes.set_setting(cur, "retry_limit", "7") is False
        assert writes.set_setting(cur, "new_key", "1") is True
        cur.execute("SELECT value FROM settings WHERE key = 'retry_limit'")
        assert cur.fetchone()[0] == "7"
