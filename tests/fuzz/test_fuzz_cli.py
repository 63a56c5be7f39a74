"""`piwheels` with random arguments and a database that does not exist: an exit code
and at most one line on stderr, never a traceback."""

from __future__ import annotations

import contextlib
import io
import re

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from piwheels_build import cli

FUZZ = settings(max_examples=120, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

COMMANDS = ["initdb", "sync", "queue", "build", "index", "serve", "skip", "rebuild", "log",
            "status", "help", ""]
OPTIONS = ["--config", "--json", "--batch", "--forever", "--full", "--watch", "--interval",
           "--stats", "--host", "--port", "--target", "--abi", "--note", "--undo", "--priority",
           "--full-list", "-v", "-vv", "--", "-", "--version", "--bogus"]
WORDS = ["0", "-1", "1e999", "nan", "inf", "99999999999999999999", "70000", "foo", "foo==1.0",
         "==", "a==", "../..", "/", "\0", "a\nb", "é", "x" * 300, "foo==" + "9" * 5000]
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO) ")
token = st.sampled_from(OPTIONS + WORDS + COMMANDS) | st.text(max_size=10)


@pytest.fixture(scope="module")
def cfg_path(tmp_path_factory):
    """A valid configuration whose database is a socket directory that does not exist."""
    path = tmp_path_factory.mktemp("cli") / "piwheels.toml"
    www = path.parent / "www"
    path.write_text('database = "host=/nonexistent/piwheels-fuzz dbname=none user=none '
                    'connect_timeout=1"\n'
                    f'upstream = "http://127.0.0.1:9/simple/"\nwww = "{www}"\n'
                    'pythons = ["/nonexistent/python3"]\nhttp_retries = 0\n')
    return str(path)


@pytest.fixture
def no_serving(monkeypatch):
    """`serve` binds for real (so a bad port is caught) but never serves forever."""
    from piwheels_build import serve

    def bind_only(www, host, port, **kw):
        with serve.make_server(www, host, port, quiet=True):
            pass

    monkeypatch.setattr(serve, "serve", bind_only)


def run(argv: list[str]) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(argv)
        except SystemExit as e:     # argparse: --help, --version and usage errors
            code = e.code if isinstance(e.code, int) else 1
    return code, err.getvalue()


@FUZZ
@given(command=st.sampled_from(COMMANDS), args=st.lists(token, max_size=5))
@example(command="serve", args=["--port", "70000"])        # OverflowError from bind()
@example(command="serve", args=["--port", "-1"])
@example(command="serve", args=["--host", "\0"])
@example(command="sync", args=["\0"])
@example(command="rebuild", args=["foo==" + "9" * 5000])
@example(command="log", args=["99999999999999999999"])
@example(command="bogus", args=[])                           # argparse printed usage + error
def test_any_arguments_are_an_exit_code_and_one_line(cfg_path, no_serving, command, args):
    argv = ["--config", cfg_path, *([command] if command else []), *args]
    code, err = run(argv)
    assert "Traceback" not in err, err
    assert isinstance(code, int)
    lines = [ln for ln in err.splitlines() if ln.strip() and not LOG_LINE.match(ln)]
    if code != 0:       # the services log a line or two as they start: those are not errors
        assert len(lines) == 1, err
        assert lines[0].startswith("piwheels"), err
