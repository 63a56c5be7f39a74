"""A throwaway or project-local PostgreSQL cluster, for one-machine use and tests.

initdb refuses to run as root, so as root the cluster belongs to the
``postgres`` system user; it listens only on a Unix socket inside its own
directory (no TCP port to collide with), with trust authentication there.
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..errors import DatabaseError

SUPERUSER = "piwheels"


def find_bindir() -> Path:
    """The newest PostgreSQL server binaries on this machine."""
    def major(path: str) -> int:
        name = Path(path).parent.parent.name
        return int(name) if name.isdigit() else 0

    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=major)
    if candidates:
        return Path(candidates[-1]).parent
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise DatabaseError(
        "database: PostgreSQL server binaries not found; apt-get install postgresql"
    )


def _demote() -> dict:
    """Run as 'postgres' when we are root (initdb will not run as root)."""
    if os.geteuid() != 0:
        return {}
    try:
        pw = pwd.getpwnam("postgres")
    except KeyError:
        raise DatabaseError("database: running as root needs a 'postgres' user; "
                            "apt-get install postgresql") from None
    return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}


class LocalCluster:
    """A cluster in ``directory``: data in ``data/``, socket in ``run/``."""

    def __init__(self, directory: str | os.PathLike[str], port: int = 5432) -> None:
        self.dir = Path(directory).resolve()
        self.data = self.dir / "data"
        self.run = self.dir / "run"
        self.port = port
        self.bindir = find_bindir()

    def dsn(self, dbname: str = "piwheels", user: str = SUPERUSER) -> str:
        return f"host={self.run} port={self.port} dbname={dbname} user={user}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            capture_output=True, text=True, check=False, cwd="/", **_demote(),
        ) if not check else self._checked(*args)

    def _checked(self, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [str(self.bindir / args[0]), *args[1:]],
            capture_output=True, text=True, check=False, cwd="/", **_demote(),
        )
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["failed"]
            raise DatabaseError(f"database: {args[0]} failed: {tail[0]}")
        return proc

    def _own(self, path: Path) -> None:
        demote = _demote()
        if demote:
            os.chown(path, demote["user"], demote["group"])

    def init(self) -> bool:
        """Create the cluster if it does not exist yet. True if it was created."""
        if (self.data / "PG_VERSION").exists():
            return False
        for d in (self.dir, self.run):
            d.mkdir(parents=True, exist_ok=True)
        self._own(self.dir)
        self._own(self.run)
        self._checked("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust",
                      "-E", "UTF8", "--locale=C.UTF-8" if _has_c_utf8() else "--locale=C")
        conf = self.data / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write(
                "\n# piwheels-build local cluster\n"
                "listen_addresses = ''\n"
                f"unix_socket_directories = '{self.run}'\n"
                f"port = {self.port}\n"
                "fsync = on\n"
                "max_connections = 200\n"
                "shared_buffers = 256MB\n"
            )
        return True

    def running(self) -> bool:
        return self._run("pg_ctl", "status", "-D", str(self.data), check=False).returncode == 0

    def start(self) -> None:
        if self.running():
            return
        self._checked("pg_ctl", "start", "-w", "-t", "60", "-D", str(self.data),
                      "-l", str(self.dir / "postgres.log"))
        for _ in range(100):
            if (self.run / f".s.PGSQL.{self.port}").exists():
                return
            time.sleep(0.1)

    def stop(self) -> None:
        if self.running():
            self._checked("pg_ctl", "stop", "-w", "-m", "fast", "-D", str(self.data))

    def createdb(self, name: str) -> None:
        import psycopg2

        conn = psycopg2.connect(self.dsn("postgres"))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if not cur.fetchone():
                cur.execute(f'CREATE DATABASE "{name}"')
        conn.close()


def _has_c_utf8() -> bool:
    try:
        out = subprocess.run(["locale", "-a"], capture_output=True, text=True).stdout
    except OSError:
        return False
    return any(x.lower() in ("c.utf8", "c.utf-8") for x in out.split())


def main(argv: list[str] | None = None) -> int:
    """python -m piwheels_build.localdb {start,stop,dsn} DIR: used by the quick start."""
    ap = argparse.ArgumentParser(prog="python -m piwheels_build.localdb")
    ap.add_argument("action", choices=["start", "stop", "dsn"])
    ap.add_argument("directory")
    ap.add_argument("--port", type=int, default=5432)
    ap.add_argument("--dbname", default="piwheels")
    args = ap.parse_args(argv)
    cluster = LocalCluster(args.directory, args.port)
    try:
        if args.action == "start":
            cluster.init()
            cluster.start()
            cluster.createdb(args.dbname)
        elif args.action == "stop":
            cluster.stop()
    except DatabaseError as e:
        print(e, file=sys.stderr)
        return 2
    print(cluster.dsn(args.dbname))
    return 0


if __name__ == "__main__":
    sys.exit(main())
