"""Serving: nginx vs ``piwheels serve`` vs pypiserver on the same files, on loopback.

A www/ tree written by the index writer from a small farm database: 10
packages of 30 versions each (a real, installable wheel per version, with its
PEP 658 ``.metadata``) and one 1 MiB wheel. Three servers serve it on
127.0.0.1, one at a time:

- nginx, run as our own process with a configuration generated from the
  webserver role's template (PEP 691 negotiation with ``map $http_accept``);
- ``piwheels serve`` (piwheels_build.serve, through the CLI, which sets
  TCP_NODELAY), and the same server with Nagle's algorithm left on
  (``piwheels_nagle``: how it was before that fix, in the benchmark's process
  only), so the fix's effect is measured in the same run;
- pypiserver (``pip install pypiserver waitress``) on ``www/simple``
  (``--disable-fallback``: nothing is redirected off this machine).

For each: ``wrk`` requests/s (bounded: 10 s per URL, 1 s with ``--quick``) for
a project page (``/simple/<name>/`` with pip's Accept header) and for the
1 MiB wheel; then ``pip install --no-deps`` of the 10 packages from it
(best of 3). Servers missing on the machine are skipped with a note.

    .venv/bin/python bench/serving.py
    .venv/bin/python bench/serving.py --quick
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import _common
from _common import ROOT, Cluster, Report

from piwheels_build import index as indexmod

ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html; q=0.1,"
          " text/html; q=0.01")  # what pip sends
N_PACKAGES, N_VERSIONS = 10, 30
BIG = 1 << 20


def make_wheel(name: str, version: str, payload: bytes = b"") -> tuple[str, bytes, bytes]:
    """(filename, wheel bytes, METADATA bytes) of a real, installable pure wheel."""
    mod = name.replace("-", "_")
    dist = f"{mod}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode()
    files = {f"{mod}/__init__.py": f"__version__ = {version!r}\n".encode(),
             f"{dist}/METADATA": meta,
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n"}
    if payload:
        files[f"{mod}/data.bin"] = payload
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for path, data in files.items():
            z.writestr(path, data)
    return f"{mod}-{version}-py3-none-any.whl", buf.getvalue(), meta


def build_tree(cluster: Cluster, www: Path) -> tuple[list[str], str, str]:
    """Record the packages through claim/finish, write their files and the index."""
    conn = cluster.connect(autocommit=True)
    cur = conn.cursor()
    cur.execute("SELECT register_builder('bench', 'cp311', 'linux_x86_64', '3.11')")
    bid = cur.fetchone()[0]
    names = [f"bench-serve{i}" for i in range(N_PACKAGES)]
    big_name = "bench-big"
    import json as _json
    for name in [*names, big_name]:
        versions = [f"1.{v}" for v in range(N_VERSIONS)] if name != big_name else ["1.0"]
        cur.execute("INSERT INTO packages (package, display_name) VALUES (%s, %s)", (name, name))
        for v in versions:
            cur.execute("INSERT INTO versions (package, version) VALUES (%s, %s)", (name, v))
            fn = f"{name}-{v}.tar.gz"
            cur.execute("INSERT INTO upstream_files (filename, package, version, kind, url)"
                        " VALUES (%s, %s, %s, 'sdist', %s)", (fn, name, v, "http://127.0.0.1:9/"))
        cur.execute("SELECT refresh_queue(%s)", (name,))
        for _ in versions:
            cur.execute("SELECT * FROM claim_build(%s, 300)", (bid,))
            claim = cur.fetchone()
            payload = os.urandom(BIG) if name == big_name else b""
            fn, data, meta = make_wheel(claim[1], claim[2], payload)
            d = www / "simple" / name
            d.mkdir(parents=True, exist_ok=True)
            (d / fn).write_bytes(data)
            (d / f"{fn}.metadata").write_bytes(meta)
            rec = {"filename": fn, "python_tag": "py3", "abi_tag": "none", "platform_tag": "any",
                   "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                   "requires_python": None, "metadata_sha256": hashlib.sha256(meta).hexdigest()}
            cur.execute("SELECT finish_build(%s, 'success', 1.0, NULL, 0, false, %s)",
                        (claim[0], _json.dumps([rec])))
    conn.autocommit = False
    indexmod.write_index(conn, www, full=True)
    conn.close()
    big = next((www / "simple" / big_name).glob("*.whl")).name
    return names, big_name, big


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("server did not start")


def nginx_conf(www: Path, port: int, work: Path) -> Path:
    """The webserver role's server block, for our own nginx process on 127.0.0.1."""
    tpl = (ROOT / "roles" / "webserver" / "templates" / "piwheels-nginx.conf.j2").read_text()
    tpl = "\n".join(line for line in tpl.splitlines()
                    if "ansible_managed" not in line and "listen [::]" not in line)
    server = (tpl.replace("{{ piwheels_web_port }}", f"127.0.0.1:{port}")
              .replace("{{ piwheels_web_server_name }}", "localhost")
              .replace("{{ piwheels_www }}", str(www))
              .replace("{{ piwheels_web_index_max_age }}", "300"))
    if "{{" in server:
        raise RuntimeError("nginx template has variables this benchmark does not know")
    for d in ("tmp", "logs"):
        (work / d).mkdir(exist_ok=True)
    conf = work / "nginx.conf"
    conf.write_text(f"""
worker_processes auto;
pid {work}/nginx.pid;
error_log {work}/logs/error.log warn;
daemon off;
events {{ worker_connections 1024; }}
http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 65;
    access_log off;
    client_body_temp_path {work}/tmp/body;
    proxy_temp_path {work}/tmp/proxy;
    fastcgi_temp_path {work}/tmp/fastcgi;
    uwsgi_temp_path {work}/tmp/uwsgi;
    scgi_temp_path {work}/tmp/scgi;
{server}
}}
""")
    return conf


def start_server(kind: str, www: Path, work: Path, cfg: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    if kind == "nginx":
        conf = nginx_conf(www, port, work)
        cmd = [shutil.which("nginx") or "nginx", "-c", str(conf), "-p", str(work)]
    elif kind == "piwheels":
        cmd = [sys.executable, "-m", "piwheels_build.cli", "--config", str(cfg), "serve",
               "--port", str(port)]
    elif kind == "piwheels_nagle":
        # Before the fix: Nagle on (headers and body are separate writes, so Nagle + the
        # client's delayed ACK hold each keep-alive answer ~40 ms).
        cmd = [sys.executable, "-c",
               "import sys; from piwheels_build import serve;"
               " serve.Handler.disable_nagle_algorithm = False;"
               " serve.serve(sys.argv[1], '127.0.0.1', int(sys.argv[2]))",
               str(www), str(port)]
    else:
        cmd = [str(Path(sys.executable).parent / "pypi-server"), "run", "-p", str(port),
               "-i", "127.0.0.1", "--disable-fallback", "-a", ".", "-P", ".",
               "--log-stream", "none", str(www / "simple")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_port(port, proc)
    except RuntimeError:
        stop(proc)
        raise
    return proc, port


def stop(proc: subprocess.Popen) -> None:
    """Stop a server we started (its own session: nginx's workers too), by its PID."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wrk(url: str, seconds: int, accept: str | None = None) -> dict:
    cmd = ["wrk", "-t2", "-c16", f"-d{seconds}s", "--timeout", "5s", "--latency"]
    if accept:
        cmd += ["-H", f"Accept: {accept}"]
    out = subprocess.run([*cmd, url], capture_output=True, text=True,
                         timeout=seconds + 60).stdout
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = None
    if p99:
        lat = float(p99[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99[2]]
    return {"rps": float(rps[1]) if rps else 0.0, "p99_ms": lat,
            "non_2xx": int(errors[1]) if errors else 0}


def pip_install(index: str, names: list[str], work: Path) -> float:
    target = Path(tempfile.mkdtemp(prefix="pip-target-", dir=work))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(target), "PIP_CONFIG_FILE": os.devnull,
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                           "--no-cache-dir", "--index-url", index, "--target",
                           str(target / "t"), *names], env=env, capture_output=True, text=True)
    took = time.perf_counter() - t0
    shutil.rmtree(target, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"pip install from {index} failed: {proc.stderr.strip()[-300:]}")
    return took


def main() -> None:
    ap = _common.parser(__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=int, default=None, help="wrk duration per URL")
    args = ap.parse_args()
    seconds = args.seconds or (1 if args.quick else 10)
    reps = 1 if args.quick else 3
    report = Report("serving", args)
    with Cluster(report, keep=args.keep) as cluster:
        work = cluster.tmp
        www = work / "www"
        names, big_name, big = build_tree(cluster, www)
        for p in [work, *www.rglob("*")]:
            if p.is_dir():
                os.chmod(p, 0o755)  # nginx workers run as an unprivileged user
        cfg = work / "piwheels.toml"
        cfg.write_text(f'database = "{cluster.dsn}"\nwww = "{www}"\n')
        page = (www / "simple" / names[0] / "index.json").stat().st_size
        report.add("page_json_bytes", page)
        report.add("wheel_bytes", (www / "simple" / big_name / big).stat().st_size)
        report.add("wrk", f"2 threads, 16 connections, {seconds}s per URL")
        have_wrk = shutil.which("wrk") is not None
        if not have_wrk:
            report.note("wrk not installed (apt-get install wrk): requests/s not measured")
        servers = []
        for kind in ("nginx", "piwheels", "piwheels_nagle", "pypiserver"):
            if kind == "nginx" and not shutil.which("nginx"):
                report.note("nginx not installed (apt-get install nginx): skipped")
                continue
            if kind == "pypiserver" and not (Path(sys.executable).parent / "pypi-server").exists():
                report.note("pypiserver not installed (pip install pypiserver waitress): skipped")
                continue
            servers.append(kind)
        for kind in servers:
            proc, port = start_server(kind, www, work, cfg)
            try:
                base = f"http://127.0.0.1:{port}"
                wheel_url = (f"{base}/packages/{big}" if kind == "pypiserver"
                             else f"{base}/simple/{big_name}/{big}")
                if have_wrk:
                    r = wrk(f"{base}/simple/{names[0]}/", seconds, ACCEPT)
                    report.add(f"{kind}_page_rps", round(r["rps"], 1), "/s")
                    report.add(f"{kind}_page_p99_ms", r["p99_ms"], "ms")
                    if r["non_2xx"]:
                        report.note(f"{kind}: {r['non_2xx']} non-2xx answers for the page")
                    r = wrk(wheel_url, seconds)
                    report.add(f"{kind}_wheel_rps", round(r["rps"], 1), "/s")
                    report.add(f"{kind}_wheel_MiB_s", round(r["rps"] * BIG / 2**20, 1), "MiB/s")
                    if r["non_2xx"]:
                        report.note(f"{kind}: {r['non_2xx']} non-2xx answers for the wheel")
                times = [pip_install(f"{base}/simple/", names, work) for _ in range(reps)]
                report.add(f"{kind}_pip_install_s", round(min(times), 2), "s")
            finally:
                stop(proc)
        if "nginx" in servers and have_wrk:
            for kind in servers[1:]:
                for what in ("page", "wheel"):
                    n, o = report.figures.get(f"nginx_{what}_rps"), report.figures.get(
                        f"{kind}_{what}_rps")
                    if n and o:
                        report.add(f"ratio_{what}_rps_{kind}_to_nginx", round(o / n, 3))
        if "nginx" in servers:
            for kind in servers[1:]:
                report.add(f"ratio_pip_install_{kind}_to_nginx",
                           round(report.figures[f"{kind}_pip_install_s"]
                                 / report.figures["nginx_pip_install_s"], 3))
    report.finish()


if __name__ == "__main__":
    main()
