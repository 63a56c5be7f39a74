"""Security: the builder's database role can do nothing but its five functions, and
`piwheels serve` serves nothing outside www/ (traversal, encodings, symlinks out)."""

from __future__ import annotations

import http.client
import os
import threading

import psycopg2
import psycopg2.errors
import pytest

from piwheels_build.serve import make_server

BUILDER_CALLS = {"register_builder", "claim_build", "heartbeat_build", "finish_build",
                 "file_is_recorded", "tag_pyver", "is_final_status", "python_bit",
                 "python_excludes"}

# A builder checks the schema version before it starts (db.check_schema): that and nothing
# else is readable; it holds no secret.
READABLE = {"schema_version"}


# ------------------------------------------------------------------ the builder's role

@pytest.fixture
def builder(conn, dsn):
    with conn.cursor() as cur:
        cur.execute("DROP ROLE IF EXISTS sec_builder_login")
        cur.execute("CREATE ROLE sec_builder_login LOGIN IN ROLE piwheels_builder")
    conn.commit()
    b = psycopg2.connect(dsn.replace("user=piwheels", "user=sec_builder_login"))
    b.autocommit = True
    yield b
    b.close()


def _refused(cur, sql: str) -> None:
    with pytest.raises(psycopg2.errors.InsufficientPrivilege):
        cur.execute(sql)


def test_the_builder_role_can_touch_no_table(conn, builder):
    with conn.cursor() as cur:
        cur.execute("SELECT table_name, min(column_name) FROM information_schema.columns"
                    " WHERE table_schema = 'public' AND table_name IN"
                    " (SELECT tablename FROM pg_tables WHERE schemaname = 'public')"
                    " GROUP BY table_name")
        columns = dict(cur.fetchall())
        tables = sorted(columns)
    conn.commit()
    assert {"packages", "versions", "builds", "files", "queue", "settings"} <= set(tables)
    with builder.cursor() as cur:
        for t in tables:
            if t not in READABLE:
                _refused(cur, f'SELECT * FROM public."{t}" LIMIT 1')
            _refused(cur, f'INSERT INTO public."{t}" DEFAULT VALUES')
            _refused(cur, f'UPDATE public."{t}" SET "{columns[t]}" = "{columns[t]}"')
            _refused(cur, f'DELETE FROM public."{t}"')
            _refused(cur, f'TRUNCATE public."{t}"')
            _refused(cur, f'DROP TABLE public."{t}"')
        _refused(cur, "SELECT rolname, rolpassword FROM pg_authid")
        _refused(cur, "CREATE TABLE public.sneaky (x int)")


def test_the_builder_role_can_call_only_its_functions(conn, builder):
    with conn.cursor() as cur:
        cur.execute("""
            SELECT p.proname, array(SELECT format_type(t.oid, NULL)
                                    FROM unnest(p.proargtypes) WITH ORDINALITY AS a(oid, n)
                                    JOIN pg_type t ON t.oid = a.oid ORDER BY a.n)
            FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
            WHERE n.nspname = 'public' AND p.prokind = 'f'
              AND p.prorettype <> 'trigger'::regtype""")
        functions = cur.fetchall()
    conn.commit()
    others = [(name, args) for name, args in functions if name not in BUILDER_CALLS]
    assert {"set_setting", "package_changed", "write_versions", "skip_version",
            "requeue_version", "take_dirty_batch", "merge_project_list"} <= {n for n, _ in others}
    with builder.cursor() as cur:
        for name, args in others:
            nulls = ", ".join(f"NULL::{a}" for a in args)
            _refused(cur, f"SELECT public.{name}({nulls})")
        assert {name for name, _ in functions} >= BUILDER_CALLS - {"tag_pyver",
                                                                  "is_final_status"}


# ------------------------------------------------------------------ piwheels serve

@pytest.fixture
def served(tmp_path):
    www = tmp_path / "www"
    (www / "simple" / "foo").mkdir(parents=True)
    (www / "simple" / "foo" / "index.html").write_text("<html>foo</html>")
    (www / "simple" / "foo" / "foo-1.0-py3-none-any.whl").write_bytes(b"wheel")
    (www / "simple" / "empty").mkdir()
    (www / "logs").mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text("SECRET")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "index.html").write_text("SECRET")
    os.symlink(secret, www / "simple" / "foo" / "evil-1.0-py3-none-any.whl")
    os.symlink("../../../secret.txt", www / "simple" / "foo" / "rel.txt")
    os.symlink(tmp_path / "outside", www / "simple" / "out")
    os.symlink("foo-1.0-py3-none-any.whl", www / "simple" / "foo" / "alias.whl")  # inside
    server = make_server(www, "127.0.0.1", 0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def get(port: int, raw_path: str) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.putrequest("GET", raw_path, skip_accept_encoding=True)
    c.endheaders()
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, body


@pytest.mark.parametrize("path", [
    "/../secret.txt", "/simple/../../secret.txt", "/%2e%2e/secret.txt",
    "/simple/%2e%2e/%2e%2e/secret.txt", "/simple%2f..%2f..%2fsecret.txt",
    "/%252e%252e/secret.txt", "/simple/foo/%00", "/simple/foo/index.html%00.whl",
    "/..%5c..%5csecret.txt", "/simple\\..\\..\\secret.txt", "//etc/passwd",
    "/simple/foo/evil-1.0-py3-none-any.whl", "/simple/foo/rel.txt", "/simple/out/",
    "/simple/out/index.html", "/%c0%ae%c0%ae/secret.txt", "/simple/foo/.hidden",
    "/simple/empty/", "/logs/", "/" + "a" * 5000,
])
def test_serve_gives_nothing_outside_www(served, path):
    status, body = get(served, path)
    assert status in (301, 400, 403, 404), (path, status)
    assert b"SECRET" not in body


def test_serve_still_serves_what_is_inside(served):
    assert get(served, "/simple/foo/foo-1.0-py3-none-any.whl") == (200, b"wheel")
    assert get(served, "/simple/foo/alias.whl") == (200, b"wheel")    # an alias in www
    status, body = get(served, "/simple/foo/")
    assert status == 200 and b"foo" in body
