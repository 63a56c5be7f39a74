"""Downloads from access logs: real pip and uv against `piwheels serve` (its own access
log), nginx's combined lines, garbage counted and skipped, rotation, reruns and a kill
counting nothing twice, and the counts on the pages."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import zipfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from piwheels_build.downloads import Reader
from piwheels_build.downloads.logformat import format_line, parse_line
from piwheels_build.downloads.useragent import dimensions
from piwheels_build.index import write_index
from piwheels_build.serve import make_server
from piwheels_build.store import Store

PURE = "tinypkg-1.0-py3-none-any.whl"
ARM7 = "armpkg-2.0-cp311-cp311-linux_armv7l.whl"
ARM6 = "armpkg-2.0-cp311-cp311-linux_armv6l.whl"
LOCAL = "armpkg-2.0+local-cp311-cp311-linux_armv7l.whl"
PIP_UA = ('pip/23.0.1 {"ci":null,"cpu":"armv7l","distro":{"id":"bookworm","libc":'
          '{"lib":"glibc","version":"2.36"},"name":"Raspbian GNU/Linux","version":"12"},'
          '"implementation":{"name":"CPython","version":"3.11.2"},"installer":{"name":"pip",'
          '"version":"23.0.1"},"openssl_version":"OpenSSL 3.0.11 19 Sep 2023","python":'
          '"3.11.2","rustc_version":null,"setuptools_version":"66.1.1","system":{"name":'
          '"Linux","release":"6.1.21-v7+"}}')


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(
        b"=").decode()


def _wheel(path: Path, name: str, version: str, tag: str) -> bytes:
    """A complete wheel; returns its METADATA."""
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    di = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": b"X = 1\n", f"{di}/METADATA": meta,
             f"{di}/WHEEL": f"Wheel-Version: 1.0\nGenerator: t\nRoot-Is-Purelib: true\n"
                            f"Tag: {tag}\n".encode()}
    record = "".join(f"{n},{_record_hash(d)},{len(d)}\n" for n, d in files.items())
    with zipfile.ZipFile(path, "w") as z:
        for n, d in files.items():
            z.writestr(n, d)
        z.writestr(f"{di}/RECORD", record + f"{di}/RECORD,,\n")
    return meta


def _farm(conn, tmp_path: Path) -> Path:
    """www/ with tinypkg (pure, a 120 s build) and armpkg (armv7l, a 600 s build, with its
    armv6l alias), recorded as finish_build records them, and the index written."""
    www = tmp_path / "www"
    store = Store(www)
    rows = []
    for package, filename, version, tags, duration, alias in [
            ("tinypkg", PURE, "1.0", ("py3", "none", "any"), 120.0, None),
            ("armpkg", ARM7, "2.0", ("cp311", "cp311", "linux_armv7l"), 600.0, None),
            ("armpkg", ARM6, "2.0", ("cp311", "cp311", "linux_armv6l"), 600.0, ARM7)]:
        src = tmp_path / filename
        meta = _wheel(src, package, version, "-".join(tags))
        if alias:
            store.alias(package, alias, filename)
        else:
            store.put(package, filename, src)
        rows.append((package, filename, version, tags, duration, alias, src.read_bytes(),
                     store.put_metadata(package, filename, meta)))
    with conn.cursor() as cur:
        cur.execute("INSERT INTO targets (target, abi_tag, platform_tag, py_major, py_minor)"
                    " VALUES ('cp311-linux_armv7l', 'cp311', 'linux_armv7l', 3, 11)")
        cur.execute("INSERT INTO builders (name, abi_tag, platform_tag, target, python)"
                    " VALUES ('pi', 'cp311', 'linux_armv7l', 'cp311-linux_armv7l', '3.11')"
                    " RETURNING builder_id")
        builder = cur.fetchone()[0]
        builds = {}
        for package, filename, version, tags, duration, alias, data, meta_sha in rows:
            if package not in builds:
                cur.execute("INSERT INTO packages (package, display_name) VALUES (%s, %s)"
                            " ON CONFLICT DO NOTHING", (package, package))
                cur.execute("INSERT INTO versions (package, version) VALUES (%s, %s)",
                            (package, version))
                cur.execute("INSERT INTO builds (package, version, target, builder_id, status,"
                            " duration) VALUES (%s, %s, 'cp311-linux_armv7l', %s, 'success', %s)"
                            " RETURNING build_id", (package, version, builder, duration))
                builds[package] = cur.fetchone()[0]
            cur.execute("INSERT INTO files (filename, build_id, package, version, python_tag,"
                        " abi_tag, platform_tag, size, sha256, metadata_sha256, alias_of)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                        (filename, builds[package], package, version, *tags, len(data),
                         hashlib.sha256(data).hexdigest(), meta_sha, alias))
            cur.execute("INSERT INTO index_dirty (package) VALUES (%s) ON CONFLICT DO NOTHING",
                        (package,))
    conn.commit()
    write_index(conn, www)
    return www


def _env() -> dict[str, str]:
    """No ambient pip or uv configuration, no proxy: loopback only."""
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith(("PIP_", "UV_")) and "proxy" not in k.lower()}
    env.update(PIP_CONFIG_FILE=os.devnull, UV_NO_CONFIG="1", NO_PROXY="127.0.0.1",
               no_proxy="127.0.0.1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def _counts(conn) -> dict:
    """What the database holds: per file, per project, per dimension value, logs."""
    with conn.cursor() as cur:
        cur.execute("SELECT filename, sum(downloads) FROM file_downloads_daily GROUP BY 1")
        files = {f: int(n) for f, n in cur.fetchall()}
        cur.execute("SELECT package, downloads, seconds_saved FROM project_downloads")
        projects = {p: (int(n), s) for p, n, s in cur.fetchall()}
        cur.execute("SELECT dimension, value, sum(downloads) FROM downloads_by GROUP BY 1, 2")
        dims = {(d, v): int(n) for d, v, n in cur.fetchall()}
        cur.execute("SELECT coalesce(sum(lines), 0), coalesce(sum(bad_lines), 0),"
                    " coalesce(sum(downloads), 0) FROM download_logs")
        lines, bad, downloads = cur.fetchone()
    conn.rollback()
    return {"files": files, "projects": projects, "dims": dims, "lines": int(lines),
            "bad": int(bad), "downloads": int(downloads)}


def _nginx(when: datetime, request: str, status: int, ua: str, sent: int = 1234,
           client: str = "192.0.2.7") -> str:
    """A line exactly as nginx's combined format writes it (strftime's %b is the locale's:
    nginx always writes English month names)."""
    months = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
    stamp = f"{when:%d}/{months[when.month - 1]}/{when:%Y:%H:%M:%S %z}"
    ua = ua.replace('"', "\\x22")
    return f'{client} - - [{stamp}] "{request}" {status} {sent} "-" "{ua}"\n'


# --------------------------------------------------------------------------- units


def test_parse_combined_lines():
    when = datetime(2026, 11, 30, 23, 59, 58, tzinfo=UTC)
    r = parse_line(_nginx(when, f"GET /simple/tinypkg/{PURE} HTTP/1.1", 200, PIP_UA))
    assert (r.day, r.method, r.path, r.status) == (date(2026, 11, 30), "GET",
                                                   f"/simple/tinypkg/{PURE}", 200)
    assert r.user_agent == PIP_UA  # nginx's \x22 escapes undone
    # The day is UTC's: 00:30 at +0100 is the day before.
    line = ('10.0.0.1 - bob [01/Dec/2026:00:30:00 +0100] "GET /simple/a/a-1-py3-none-any.whl'
            ' HTTP/2.0" 200 99 "http://x/" "curl/8.0"')
    assert parse_line(line).day == date(2026, 11, 30)
    # Apache's \" escape, the common format without referer and UA, a percent-encoded +.
    assert parse_line('1.2.3.4 - - [01/Dec/2026:00:00:00 +0000] "GET /a HTTP/1.1" 200 5 '
                      '"-" "say \\"hi\\""').user_agent == 'say "hi"'
    assert parse_line('1.2.3.4 - - [01/Dec/2026:00:00:00 +0000] "GET /a%2Bb HTTP/1.0" 304 -'
                      ).path == "/a+b"
    # combined with more fields after it ($request_time "$http_x_forwarded_for")
    r = parse_line(_nginx(when, f"GET /simple/tinypkg/{PURE} HTTP/1.1", 200, PIP_UA)[:-1]
                   + ' 0.004 "-"')
    assert r.user_agent == PIP_UA and r.status == 200
    # Apache's vhost_combined: host:port first
    r = parse_line("pw.example:443 " + _nginx(when, f"GET /simple/tinypkg/{PURE} HTTP/1.1", 200,
                                              "curl/8"))
    assert (r.path, r.status, r.user_agent) == (f"/simple/tinypkg/{PURE}", 200, "curl/8")
    # nonsense a client sent is still a line (not a download), logged 400
    assert parse_line('1.2.3.4 - - [01/Dec/2026:00:00:00 +0000] "\\x16\\x03\\x01" 400 150 '
                      '"-" "-"').method == ""
    for garbage in ["", "hello", '1.2.3.4 - - [32/Dec/2026:00:00:00 +0000] "GET / HTTP/1.1" '
                    '200 1 "-" "-"', '1.2.3.4 - - [01/Dec/2026:00:00:00 +0000] "GET / HTTP/1.1'
                    '" 200', "\x00\xff" * 10]:
        assert parse_line(garbage) is None, garbage
    # what serve writes reads back the same
    line = format_line("127.0.0.1", when, 'GET /simple/x/ HTTP/1.1', 200, 10, "",
                       'uv/0.5 {"a":"\u00e9"}')
    back = parse_line(line)
    assert back.user_agent == 'uv/0.5 {"a":"\u00e9"}' and back.status == 200


def test_user_agents_pip_really_sends():
    """pip's own user_agent() (the function whose result it sends), and a uv one."""
    from pip._internal.network.session import user_agent

    ua = user_agent()
    inst, py, impl, plat, distro = dimensions(ua)
    assert inst.startswith("pip ") and inst != "pip unknown"
    assert py == f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert impl == "CPython" and plat.startswith("Linux ") and distro != ""
    assert dimensions(PIP_UA) == ("pip 23.0.1", "3.11", "CPython", "Linux armv7l",
                                  "Raspbian GNU/Linux 12")
    # linehaul's other formats: browsers and curl, old pip, pdm; then made-up ones
    assert dimensions("curl/8.5.0") == ("Browser", "unknown", "unknown", "unknown", "unknown")
    assert dimensions("pip/1.5.6 CPython/2.7.9 Linux/3.16")[:3] == ("pip 1.5.6", "2.7",
                                                                   "CPython")
    assert dimensions("pdm/2.1 CPython/3.11")[0] == "pdm 2.1"
    for made_up in ["pip/9.0.1 not json", 'pip/24 {"python": ["x"], "cpu": "\\u0000"}',
                    'pip/24 {"installer": 5}', "pip/1 " + "[" * 100000, "", "x" * 5000]:
        assert dimensions(made_up) == ("other", "unknown", "unknown", "unknown", "unknown")


# --------------------------------------------------------------------------- real clients


def test_real_pip_and_uv_against_serve_then_nginx_lines_rotation_and_reruns(conn, tmp_path):
    www = _farm(conn, tmp_path)
    log = tmp_path / "logs" / "access.log"
    log.parent.mkdir()
    srv = make_server(www, "127.0.0.1", 0, quiet=True, access_log=log)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/simple/"
    uv = Path(sys.executable).with_name("uv")
    try:
        pip = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--no-cache-dir",
             "--isolated", "--index-url", url, "--only-binary", ":all:", "tinypkg",
             "-d", str(tmp_path / "dl")], env=_env(), capture_output=True, text=True,
            timeout=240)
        assert pip.returncode == 0, pip.stdout + pip.stderr
        uvrun = subprocess.run(
            [str(uv), "pip", "install", "--no-cache", "--no-deps", "--index-url", url,
             "--target", str(tmp_path / "uvt"), "--python", sys.executable, "tinypkg"],
            env=_env(), capture_output=True, text=True, timeout=240)
        assert uvrun.returncode == 0, uvrun.stdout + uvrun.stderr
    finally:
        srv.shutdown()
        srv.server_close()
    served = log.read_text()
    assert f"/simple/tinypkg/{PURE}.metadata" in served or "/simple/tinypkg/" in served

    reader = Reader(conn)
    s = reader.read([log])
    c = _counts(conn)
    assert c["files"] == {PURE: 2}, served
    assert c["projects"] == {"tinypkg": (2, 240.0)}
    assert c["bad"] == 0 and c["lines"] == len(served.splitlines()) == s.lines
    installers = {v: n for (d, v), n in c["dims"].items() if d == "installer"}
    assert sorted(installers) == sorted(
        [f"pip {pip_version()}", f"uv {uv_version(uv)}"]) and set(installers.values()) == {1}
    py = f"{sys.version_info[0]}.{sys.version_info[1]}"
    assert c["dims"][("python", py)] == 2 and c["dims"][("implementation", "CPython")] == 2
    # A rerun counts nothing twice.
    again = reader.read([log])
    assert again.lines == 0 and _counts(conn) == c

    # nginx's lines appended: one of each kind; only the 200 GETs of wheels count.
    now = datetime.now(UTC).replace(microsecond=0)
    added = [
        _nginx(now, f"GET /simple/armpkg/{ARM6} HTTP/1.1", 200, PIP_UA),          # the alias
        _nginx(now, f"GET /simple/armpkg/{ARM7} HTTP/1.1", 200, PIP_UA),
        _nginx(now, f"GET /simple/armpkg/{ARM7} HTTP/1.1", 206, PIP_UA),          # a range
        _nginx(now, f"HEAD /simple/armpkg/{ARM7} HTTP/1.1", 200, PIP_UA),
        _nginx(now, f"GET /simple/armpkg/{ARM7} HTTP/1.1", 304, PIP_UA),
        _nginx(now, f"GET /simple/armpkg/{ARM7}.metadata HTTP/1.1", 200, PIP_UA),
        _nginx(now, f"GET /simple/armpkg/{ARM7} HTTP/1.1", 404, PIP_UA),
        _nginx(now, f"GET /simple/armpkg/{LOCAL.replace('+', '%2B')} HTTP/1.1", 200,
               "curl/8.5.0"),                                                      # unknown
        _nginx(now, "GET /simple/armpkg/ HTTP/1.1", 200, PIP_UA),
        _nginx(now, "GET /simple/armpkg/x%00.whl HTTP/1.1", 200, PIP_UA),          # not a name
        _nginx(now, f"GET /simple/armpkg/{ARM7}.metadata HTTP/1.1", 200, "a\u2028b\x1cc"),
        "this is not a log line\n",
        '203.0.113.9 - - [01/Dec/2026:00:00:00 +0000] "GET / HTTP/1.1" 2\n',
        "\n",
    ]
    with open(log, "a") as f:
        f.writelines(added)
    s = reader.read([log])
    assert (s.lines, s.bad_lines, s.downloads, s.unknown) == (len(added), 3, 3, 1)
    c = _counts(conn)
    assert c["files"] == {PURE: 2, ARM6: 1, ARM7: 1, LOCAL: 1}
    assert c["projects"]["armpkg"] == (2, 1200.0)
    assert (c["dims"][("installer", "pip 23.0.1")], c["dims"][("installer", "Browser")]) == (2, 1)
    assert c["dims"][("platform", "Linux armv7l")] == 2
    with conn.cursor() as cur:
        cur.execute("SELECT sum(downloads), sum(unknown), sum(seconds_saved) FROM downloads_days")
        assert cur.fetchone() == (4, 1, 1440.0)
    conn.rollback()

    # A last line without its newline is left for the next run.
    half = _nginx(now, f"GET /simple/tinypkg/{PURE} HTTP/1.1", 200, PIP_UA)
    with open(log, "a") as f:
        f.write(half[:40])
    assert reader.read([log]).lines == 0
    # logrotate: access.log -> access.log.1 (same inode; the server writes on, then reopens
    # a new access.log); later access.log.1 is gzipped to access.log.2.gz.
    rotated = log.with_name("access.log.1")
    log.rename(rotated)
    with open(rotated, "a") as f:
        f.write(half[40:])
        f.write(_nginx(now, f"GET /simple/tinypkg/{PURE} HTTP/1.1", 200, "curl/8.5.0"))
    log.write_text(_nginx(now + timedelta(seconds=1), f"GET /simple/armpkg/{ARM7} HTTP/1.1",
                          200, "curl/8.5.0"))
    s = reader.read([log, rotated])
    assert (s.lines, s.downloads) == (3, 3)
    c = _counts(conn)
    assert c["files"] == {PURE: 4, ARM6: 1, ARM7: 2, LOCAL: 1}
    gz = log.with_name("access.log.2.gz")
    with open(rotated, "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    rotated.unlink()
    log.rename(rotated)
    log.write_text(_nginx(now + timedelta(seconds=2), f"GET /simple/armpkg/{ARM7} HTTP/1.1",
                          200, "curl/8.5.0"))
    s = reader.read([log, rotated, gz])
    assert (s.lines, s.downloads) == (1, 1)
    assert _counts(conn)["files"][ARM7] == 3
    # A .gz nobody read before is read whole, once.
    fresh = tmp_path / "logs" / "other.log.gz"
    with gzip.open(fresh, "wt") as f:
        f.write(_nginx(now - timedelta(days=40), f"GET /simple/tinypkg/{PURE} HTTP/1.1", 200,
                       "curl/8.5.0"))
        f.write("garbage\n")
    assert (reader.read([fresh]).downloads, Reader(conn).read([fresh]).downloads) == (1, 0)
    assert _counts(conn)["bad"] == 4

    # The pages: the project's counts, the farm's totals and time saved.
    with conn.cursor() as cur:
        cur.execute("INSERT INTO index_dirty (package) VALUES ('tinypkg'), ('armpkg')")
    conn.commit()
    write_index(conn, www, stats_interval=0)
    page = (www / "project/tinypkg/index.html").read_text()
    assert "4 in the last 30 days, 5 in all" in page  # one download was 40 days ago
    data = json.loads((www / "project/armpkg/index.json").read_text())
    assert {f["filename"]: f["downloads"] for f in data["versions"][0]["files"]} == {
        ARM6: 1, ARM7: 3}
    assert data["downloads"] == {"last_30_days": 4, "all_time": 4}
    stats = (www / "stats.html").read_text()
    assert "wheels downloaded</td><td>9 (8 in the last 30 days)" in stats
    d = json.loads((www / "stats.json").read_text())["downloads"]
    assert d["top"] == [{"name": "tinypkg", "downloads": 5}, {"name": "armpkg", "downloads": 4}]
    assert dict(d["by_all_time"]["installer"])["pip 23.0.1"] == 3  # the nginx lines
    assert sum(n for _, n in d["by_all_time"]["python"]) == 10  # unknown files too
    assert sum(n for _, n in d["by_last_30_days"]["python"]) == 9
    saved = 5 * 120 + 4 * 600  # seconds: 50 minutes
    assert f"saving {saved // 60}m 00s of building:" in (www / "index.html").read_text()


def pip_version() -> str:
    from pip import __version__

    return __version__


def uv_version(uv: Path) -> str:
    return subprocess.run([str(uv), "--version"], capture_output=True, text=True,
                          check=True).stdout.split()[1]


# --------------------------------------------------------------------------- daily pages


def test_project_pages_are_marked_once_a_day(conn, tmp_path):
    _farm(conn, tmp_path)
    log = tmp_path / "access.log"
    today = datetime.now(UTC).replace(microsecond=0)
    log.write_text(_nginx(today - timedelta(days=1), f"GET /simple/tinypkg/{PURE} HTTP/1.1",
                          200, PIP_UA)
                   + _nginx(today - timedelta(days=30), f"GET /simple/armpkg/{ARM7} HTTP/1.1",
                            200, PIP_UA)
                   + _nginx(today - timedelta(days=5), f"GET /simple/armpkg/{ARM6} HTTP/1.1",
                            200, PIP_UA))
    with conn.cursor() as cur:
        cur.execute("DELETE FROM index_dirty")
        cur.execute("DELETE FROM settings WHERE key = 'downloads_pages_marked'")
    conn.commit()
    s = Reader(conn).read([log])
    assert s.pages_marked == 2  # yesterday's and the one that left the window
    with conn.cursor() as cur:
        cur.execute("SELECT package FROM index_dirty ORDER BY 1")
        assert [r[0] for r in cur.fetchall()] == ["armpkg", "tinypkg"]
        cur.execute("DELETE FROM index_dirty")
    conn.commit()
    assert Reader(conn).read([log]).pages_marked == 0  # once a day


# --------------------------------------------------------------------------- the CLI


def _config(tmp_path: Path, dsn: str, **extra) -> Path:
    cfg = tmp_path / "piwheels.toml"
    cfg.write_text(f'database = "{dsn}"\nwww = "{tmp_path / "www"}"\n'
                   + "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in extra.items()))
    return cfg


def _cli(cfg: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "piwheels_build.cli", "--config", str(cfg),
                           "downloads", *args], capture_output=True, text=True, timeout=120,
                          env=_env(), **kw)


def _one_line_error(proc, *words):
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and all(w in lines[0] for w in words), lines


def test_cli_refuses_what_it_cannot_read(dsn, tmp_path):
    cfg = _config(tmp_path, dsn)
    _one_line_error(_cli(cfg), "no log named and no access_logs")
    _one_line_error(_cli(cfg, str(tmp_path / "nope.log")), "does not exist")
    cfg = _config(tmp_path, dsn, access_logs=[str(tmp_path / "no-dir" / "access.log")])
    _one_line_error(_cli(cfg), "its directory does not exist", "access_logs")


def test_a_kill_mid_run_loses_and_doubles_nothing(conn, dsn, tmp_path):
    """SIGKILL after the first committed chunk, between others' reads and commits; the
    rerun ends with exactly the log's counts."""
    www = _farm(conn, tmp_path)
    log = tmp_path / "access.log"
    start = datetime(2026, 11, 1, tzinfo=UTC)
    n = 6000
    with open(log, "w") as f:
        for i in range(n):
            name = PURE if i % 3 else ARM7
            pkg = "tinypkg" if i % 3 else "armpkg"
            f.write(_nginx(start + timedelta(seconds=i), f"GET /simple/{pkg}/{name} HTTP/1.1",
                           200, PIP_UA))
    cfg = _config(tmp_path, dsn, access_logs=[str(log)])
    proc = subprocess.Popen([sys.executable, "-m", "piwheels_build.cli", "--config", str(cfg),
                             "downloads", "--chunk", "2K"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=_env())
    try:
        first = proc.stderr.readline()
        assert "bytes read" in first, first + proc.stderr.read()
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    partial = _counts(conn)["lines"]
    assert 0 < partial < n  # the kill landed mid-run
    with conn.cursor() as cur:
        cur.execute("DELETE FROM index_dirty")
    conn.commit()
    done = _cli(cfg, "--chunk", "64K")
    assert done.returncode == 0, done.stderr
    assert f"{n - partial:,} new line(s)" in done.stdout
    with conn.cursor() as cur:  # the one-shot command marks the pages it changed
        cur.execute("SELECT package FROM index_dirty ORDER BY 1")
        assert [r[0] for r in cur.fetchall()] == ["armpkg", "tinypkg"]
    conn.rollback()
    # and the next index run writes the stats and home pages with the new totals
    assert (www / "stats.json").stat().st_mtime == 0
    index = subprocess.run([sys.executable, "-m", "piwheels_build.cli", "--config", str(cfg),
                            "index"], capture_output=True, text=True, timeout=300, env=_env())
    assert index.returncode == 0, index.stderr
    assert f'"all_time":{n}' in (www / "stats.json").read_text()
    assert f"{n:,} wheels downloaded" in (www / "index.html").read_text()
    c = _counts(conn)
    assert (c["lines"], c["bad"]) == (n, 0)
    assert c["files"] == {PURE: n - n // 3, ARM7: n // 3}
    assert _cli(cfg).stdout.startswith("downloads: 1 log(s), 0 new line(s)")


def test_index_service_reads_access_logs_each_poll(conn, dsn, tmp_path):
    """`index --watch` with access_logs: a line appended while it runs is counted, once; a
    log whose directory is not there yet (nginx installed after the master) is a warning,
    and read once it appears."""
    www = _farm(conn, tmp_path)
    log = tmp_path / "access.log"
    now = datetime.now(UTC).replace(microsecond=0)
    log.write_text(_nginx(now, f"GET /simple/tinypkg/{PURE} HTTP/1.1", 200, PIP_UA))
    later = tmp_path / "nginx" / "access.log"
    cfg = _config(tmp_path, dsn, access_logs=[str(log), str(log) + ".1", str(later)])
    assert www.is_dir()
    proc = subprocess.Popen([sys.executable, "-m", "piwheels_build.cli", "--config", str(cfg),
                             "index", "--watch", "--interval", "0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=_env())
    # A service that never reads would block the loop below: stop it after a while.
    watchdog = threading.Timer(120, proc.send_signal, (signal.SIGTERM,))
    watchdog.start()
    try:
        seen, appended = [], False
        for line in proc.stderr:  # the service logs each read that found new lines
            seen.append(line)
            if "new line(s)" not in line:
                continue
            if appended:
                break
            assert _counts(conn)["files"] == {PURE: 1}, seen
            later.parent.mkdir()
            later.write_text(_nginx(now, f"GET /simple/armpkg/{ARM7} HTTP/1.1", 200, PIP_UA))
            appended = True
        else:
            raise AssertionError("".join(seen))
    finally:
        watchdog.cancel()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    assert _counts(conn)["files"] == {PURE: 1, ARM7: 1}
    assert any("its directory does not exist" in s and "WARNING" in s for s in seen), seen


def test_serve_refuses_an_access_log_it_cannot_write(tmp_path):
    (tmp_path / "www").mkdir()
    cfg = _config(tmp_path, "dbname=unused",
                  serve_access_log=str(tmp_path / "no-dir" / "access.log"))
    proc = subprocess.run([sys.executable, "-m", "piwheels_build.cli", "--config", str(cfg),
                           "serve", "--port", "0"], capture_output=True, text=True,
                          timeout=60, env=_env())
    _one_line_error(proc, "serve: cannot write the access log", "serve_access_log")


def test_two_logs_with_the_same_first_line_are_two_logs(conn, tmp_path):
    """A made-up log starting with the line another log starts with is not taken for
    that log renamed (which would skip its first bytes): it goes on differently."""
    _farm(conn, tmp_path)
    when = datetime(2026, 11, 2, 12, tzinfo=UTC)
    same = _nginx(when, f"GET /simple/tinypkg/{PURE} HTTP/1.1", 200, PIP_UA)
    a, b = tmp_path / "a.log", tmp_path / "b.log"
    a.write_text(same + "".join(_nginx(when, f"GET /simple/armpkg/{ARM7} HTTP/1.1", 200,
                                       "curl/8") for _ in range(3)))
    b.write_text(same + _nginx(when, f"GET /simple/armpkg/{ARM6} HTTP/1.1", 200, "curl/8"))
    reader = Reader(conn)
    assert reader.read([a]).downloads == 4
    assert reader.read([b]).downloads == 2
    assert _counts(conn)["files"] == {PURE: 2, ARM7: 3, ARM6: 1}
    with open(b, "a") as f:  # b goes on under its own key
        f.write(_nginx(when, f"GET /simple/armpkg/{ARM6} HTTP/1.1", 200, "curl/8"))
    assert (reader.read([a, b]).downloads, reader.read([a, b]).downloads) == (1, 0)
    # and a third sharing b's first two lines is keyed by its first three
    d = tmp_path / "d.log"
    d.write_text(b.read_text().splitlines(keepends=True)[0]
                 + b.read_text().splitlines(keepends=True)[1]
                 + _nginx(when, f"GET /simple/tinypkg/{PURE} HTTP/1.1", 200, "curl/8"))
    assert (reader.read([d]).downloads, reader.read([a, b, d]).downloads) == (3, 0)
    assert _counts(conn)["files"] == {PURE: 4, ARM7: 3, ARM6: 3}
    # a file with only that first line cannot be told apart yet: read later, not twice
    c = tmp_path / "c.log"
    c.write_text(same)
    s = reader.read([c])
    assert s.lines == 0 and s.conflicts == [str(c)]
    with open(c, "a") as f:
        f.write(_nginx(when, "GET /simple/ HTTP/1.1", 200, "curl/8"))
    assert reader.read([c]).downloads == 1
    assert _counts(conn)["files"] == {PURE: 5, ARM7: 3, ARM6: 3}


def test_a_cut_gz_is_one_line_and_the_service_reads_the_other_logs(conn, dsn, tmp_path):
    _farm(conn, tmp_path)
    when = datetime(2026, 11, 3, tzinfo=UTC)
    good, cut = tmp_path / "good.log", tmp_path / "cut.log.gz"
    good.write_text(_nginx(when, f"GET /simple/tinypkg/{PURE} HTTP/1.1", 200, PIP_UA))
    data = gzip.compress("".join(
        _nginx(when + timedelta(seconds=i), f"GET /simple/armpkg/{ARM7} HTTP/1.1", 200,
               "curl/8") for i in range(2000)).encode())
    cut.write_bytes(data[: len(data) // 2])
    reader = Reader(conn, chunk=4096)
    s = reader.read([cut, good], keep_going=True)
    assert not s.errors and 1 < s.downloads < 2001  # the cut .gz's lines so far, and good's
    assert s.cut == [str(cut)] and "ends before its gzip end marker" in str(s)
    assert _counts(conn)["files"][PURE] == 1
    cut.write_bytes(data)  # logrotate finished writing it: the rest, once
    assert reader.read([cut, good]).downloads + s.downloads == 2001
    assert _counts(conn)["files"] == {PURE: 1, ARM7: 2000}
    # A corrupt one is one line; the service reads the others.
    bad = tmp_path / "bad.log.gz"
    bad.write_bytes(data[:20] + bytes(200) + data[220:])
    with open(good, "a") as f:
        f.write(_nginx(when, f"GET /simple/tinypkg/{PURE} HTTP/1.1", 200, PIP_UA))
    s = reader.read([bad, good], keep_going=True)
    assert len(s.errors) == 1 and f"cannot read {bad}" in s.errors[0] and s.downloads == 1
    _one_line_error(_cli(_config(tmp_path, dsn), str(bad)), f"cannot read {bad}")


def test_a_budget_reads_a_backlog_over_several_reads(conn, tmp_path):
    """The index service's budget: each read stops after it; the next goes on; in all,
    every line once."""
    _farm(conn, tmp_path)
    log = tmp_path / "access.log"
    when = datetime(2026, 11, 4, tzinfo=UTC)
    log.write_text("".join(_nginx(when + timedelta(seconds=i),
                                  f"GET /simple/tinypkg/{PURE} HTTP/1.1", 200, PIP_UA)
                           for i in range(400)))
    reader = Reader(conn, chunk=4096, budget=3 * 4096)
    counts = []
    while not counts or counts[-1]:
        counts.append(reader.read([log]).lines)
    assert len(counts) > 3 and max(counts) < 400 and sum(counts) == 400
    assert _counts(conn)["files"] == {PURE: 400}


def test_record_downloads_refuses_a_stale_start(conn):
    """Two readers of one log: the second to commit from the same position adds nothing
    (record_downloads returns NULL), so no line is counted twice."""
    from piwheels_build.db import writes

    day = date(2026, 11, 5)
    args = ("a" * 64, "/x.log", 1, 2)
    files, dims = {(day, PURE): 3}, {(day, "installer", "pip 24.0"): 3}
    with conn.cursor() as cur:
        first = writes.record_downloads(cur, *args, 0, 300, "b" * 64, 3, 0, files, dims)
        second = writes.record_downloads(cur, *args, 0, 300, "b" * 64, 3, 0, files, dims)
        assert first == {"packages": [], "unknown": 3} and second is None
        cur.execute("SELECT downloads FROM file_downloads_daily")
        assert cur.fetchall() == [(3,)]
        cur.execute("SELECT position, lines FROM download_logs")
        assert cur.fetchall() == [(300, 3)]
    conn.rollback()
