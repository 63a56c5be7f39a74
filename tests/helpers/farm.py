"""A farm driven through its CLI, as a user runs it, for the end-to-end and
sandbox tests: sdists made on the fly, the config file, database checks."""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import psycopg2


def sdist(name: str, version: str, files: dict[str, str]) -> tuple[str, bytes]:
    """A real sdist: PKG-INFO, pyproject.toml (unless ``files`` has one) and the files."""
    root = f"{name}-{version}"
    members = {
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        "pyproject.toml": (
            '[build-system]\nrequires = ["setuptools>=61"]\n'
            'build-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{name}"\nversion = "{version}"\n'
            'requires-python = ">=3.8"\ndependencies = ["six>=1.0"]\n'
        ),
        **files,
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{path}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return f"{root}.tar.gz", buf.getvalue()


def clean_env(**extra: str) -> dict[str, str]:
    """The machine's ambient pip configuration must not leak into checks."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_"))}
    env.update(PIP_CONFIG_FILE=os.devnull, UV_NO_CONFIG="1", **extra)
    return env


class Farm:
    """Run the piwheels CLI as a user would, against one config file."""

    def __init__(self, tmp: Path, dsn: str, upstream: str, pythons, **settings) -> None:
        self.www = tmp / "www"
        self.config = tmp / "piwheels.toml"
        values = {"database": dsn, "upstream": upstream, "www": str(self.www),
                  "pythons": [p.path for p in pythons], "build_timeout": 300,
                  "lease_seconds": 60, **settings}
        self.config.write_text(
            "".join(f"{key} = {json.dumps(value)}\n" for key, value in values.items())
            # This machine's platform stands in for linux_armv7l: same rule, same code.
            + f'[platform_aliases]\n{pythons[0].platform_tag} = ["linux_armv6l"]\n'
        )

    def run(self, *args: str) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            [sys.executable, "-m", "piwheels_build.cli", "--config", str(self.config), *args],
            capture_output=True, text=True, timeout=1200, env=clean_env(),
        )
        assert proc.returncode == 0, f"piwheels {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc


def show_failures(dsn: str) -> None:
    """Print the log of every build that did not succeed (shown when a check fails)."""
    for build_id, what, status, log in query(
            dsn, "SELECT b.build_id, b.package || ' ' || b.version || ' ' || b.target,"
            " b.status, l.log FROM builds b LEFT JOIN build_logs l USING (build_id)"
            " WHERE b.status <> 'success'"):
        text = gzip.decompress(bytes(log)).decode(errors="replace") if log else ""
        print(f"--- build {build_id} {what}: {status}\n{text[-3000:]}")


def query(dsn: str, sql: str, *args):
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute(sql, args)
        rows = cur.fetchall()
    conn.close()
    return rows
