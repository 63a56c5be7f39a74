"""Drive the queue's SQL functions directly, as builders and sync do."""

from __future__ import annotations

import json


def add_version(conn, package: str, version: str, released: str = "2024-01-01",
                sdist: bool = True) -> None:
    """A version as sync records it, with (or without) an sdist upstream."""
    with conn.cursor() as cur:
        cur.execute("INSERT INTO packages (package, display_name) VALUES (%s, %s) "
                    "ON CONFLICT DO NOTHING", (package, package))
        cur.execute("INSERT INTO versions (package, version, released, skip_reason) "
                    "VALUES (%s, %s, %s, %s)",
                    (package, version, released, None if sdist else "binary-only"))
        if sdist:
            fn = f"{package}-{version}.tar.gz"
            cur.execute("INSERT INTO upstream_files (filename, package, version, kind, url, sha256)"
                        " VALUES (%s, %s, %s, 'sdist', %s, %s)",
                        (fn, package, version, f"http://upstream.invalid/{fn}", "0" * 64))
        cur.execute("SELECT refresh_queue(%s)", (package,))
    conn.commit()


def register(conn, abi: str, name: str = "b", platform: str = "linux_armv7l") -> int:
    with conn.cursor() as cur:
        cur.execute("SELECT register_builder(%s, %s, %s, %s)", (name, abi, platform, abi))
        bid = cur.fetchone()[0]
    conn.commit()
    return bid


def claim(conn, builder_id: int, lease: int = 300):
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM claim_build(%s, %s)", (builder_id, lease))
        row = cur.fetchone()
    conn.commit()
    return row


def wheel(package: str, version: str, py: str, abi: str, plat: str) -> dict:
    fn = f"{package.replace('-', '_')}-{version}-{py}-{abi}-{plat}.whl"
    return {"filename": fn, "python_tag": py, "abi_tag": abi, "platform_tag": plat,
            "size": 10, "sha256": "a" * 64, "requires_python": None,
            "metadata_sha256": None, "dependencies": [{"tool": "pip", "dependency": "six"}]}


def finish(conn, build_id: int, status: str = "success", files: list | None = None) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT finish_build(%s, %s, %s, %s, %s, %s, %s)",
                    (build_id, status, 1.5, b"log", 3, False, json.dumps(files or [])))
        ok = cur.fetchone()[0]
    conn.commit()
    return ok


def queued(conn) -> set[tuple[str, str, str]]:
    with conn.cursor() as cur:
        cur.execute("SELECT package, version, target FROM queue")
        return set(cur.fetchall())
