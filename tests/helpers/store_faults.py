"""Real faults for the store (tests/faults/test_store_faults.py): a tmpfs that is full,
a real sshfs mount that can be slowed down and cut, a package with a big wheel, and
the farm's invariants for a wave whose failed uploads were retried."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.farm import query
from helpers.faults import wait_for
from helpers.fixture_packages import pure
from piwheels_build.fsutil import TEMP_MARK

RELAY = Path(__file__).with_name("sftp_relay.py")


def big_pure(name: str, size: int) -> dict[str, str]:
    """A pure package whose wheel holds ``size`` random (incompressible) bytes, made
    by its setup.py at build time, so the sdist stays small."""
    return {**pure(name, name),
            "setup.py": "import os\nfrom setuptools import setup\n"
                        f"blob = os.path.join({name!r}, 'blob.bin')\n"
                        "if not os.path.exists(blob):\n"
                        "    with open(blob, 'wb') as f:\n"
                        f"        f.write(os.urandom({size}))\n"
                        f"setup(package_data={{{name!r}: ['blob.bin']}})\n"}


def _unmount(path: Path) -> None:
    """Lazy unmount: a mount still busy (a killed writer's open file) goes when freed."""
    if os.path.ismount(path):
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` ("2m") mounted over ``path`` (made if missing): a disk
    that fills up. Unmounted on the way out, whatever happened."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root (CI runs the tests as root)")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
                   check=True, capture_output=True)
    try:
        yield path
    finally:
        _unmount(path)


class SshfsStore:
    """``remote`` mounted at ``mountpoint`` by a real sshfs (with ``reconnect``, as
    roles/common/templates/store.mount.j2), talking to the real OpenSSH sftp-server
    through sftp_relay.py instead of ssh: no sshd, no keys, loopback only."""

    def __init__(self, remote: Path, mountpoint: Path, control: Path) -> None:
        self.remote, self.mountpoint, self.control = remote, mountpoint, control
        self.proc: subprocess.Popen | None = None

    def mount(self) -> SshfsStore:
        for tool in ("sshfs", "fusermount3"):
            if not any(Path(d, tool).exists() for d in ("/usr/bin", "/bin")):
                pytest.fail(f"{tool} is missing: scripts/setup.sh installs sshfs and fuse3")
        if not Path("/usr/lib/openssh/sftp-server").exists():
            pytest.fail("sftp-server is missing: scripts/setup.sh installs openssh-sftp-server")
        for d in (self.remote, self.mountpoint, self.control):
            d.mkdir(parents=True, exist_ok=True)
        command = f"{sys.executable} {RELAY} {self.control}"
        # -f: sshfs stays our child, so we stop it by its PID.
        self.proc = subprocess.Popen(
            ["sshfs", "-f", "-o", f"reconnect,ssh_command={command}",
             f"store@master:{self.remote}", str(self.mountpoint)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        wait_for("the sshfs mount", lambda: os.path.ismount(self.mountpoint)
                 or self.proc.poll() is not None, deadline=60)
        if not os.path.ismount(self.mountpoint):
            pytest.fail(f"sshfs did not mount: {self.proc.stderr.read().decode()}")
        return self

    def rate(self, bytes_per_second: int) -> None:
        """Uploads at most this fast from now on (0: no limit)."""
        (self.control / "rate").write_text(str(bytes_per_second))

    def relays(self) -> list[int]:
        """The live relays (sshfs's connections to the sftp-server)."""
        pids = []
        for f in self.control.glob("relay-*.pid"):
            pid = int(f.stem.split("-")[1])
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if str(RELAY).encode() in cmd:
                pids.append(pid)
        return pids

    def cut(self) -> None:
        """The master unreachable: every connection cut, new ones refused until
        ``restore``. (SIGKILL: sshfs starts its ssh_command with SIGTERM blocked.)"""
        (self.control / "down").touch()
        for pid in self.relays():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def restore(self) -> None:
        """The master reachable again: sshfs reconnects on the next access."""
        with contextlib.suppress(FileNotFoundError):
            (self.control / "down").unlink()

    def unmount(self) -> None:
        self.restore()
        subprocess.run(["fusermount3", "-u", "-z", str(self.mountpoint)], check=False,
                       capture_output=True)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.relays():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def temp_files(directory: Path) -> list[Path]:
    """Hidden temporary files (``.NAME.tmp-...``) under ``directory``."""
    return sorted(p for p in directory.rglob("*") if TEMP_MARK in p.name)


def growing_upload(directory: Path, at_least: int) -> Path | None:
    """A hidden temporary wheel in ``directory`` holding at least ``at_least`` bytes."""
    for p in temp_files(directory):
        with contextlib.suppress(FileNotFoundError):
            if ".whl" in p.name and p.stat().st_size >= at_least:
                return p
    return None


def age(path: Path, seconds: float) -> None:
    """Move a file's times back (the index writer sweeps temporary files by age)."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def statuses(dsn: str) -> list[str]:
    return [s for (s,) in query(dsn, "SELECT status FROM builds ORDER BY build_id")]


def assert_retried_consistent(dsn: str, www: Path, expected: set[tuple[str, str, str]]) -> None:
    """The invariants (helpers/invariants.py) for a wave whose uploads failed first:
    each expected build recorded as a success exactly once, after attempts that are
    all ``infrastructure`` (or ``abandoned``); nothing queued or building; no
    temporary file under ``www/``; every linked file recorded, with its sha256, and on
    disk with those bytes; every recorded file linked; no wheel on disk unrecorded."""
    assert query(dsn, "SELECT count(*) FROM builds WHERE status = 'building'") == [(0,)]
    assert query(dsn, "SELECT package, version, target FROM queue") == []
    done: dict[tuple[str, str, str], list[str]] = {}
    for package, version, target, status in query(
            dsn, "SELECT package, version, target, status FROM builds ORDER BY build_id"):
        done.setdefault((package, version, target), []).append(status)
    assert set(done) == expected, done
    for key, history in done.items():
        assert history.count("success") == 1 and history[-1] == "success", (key, history)
        assert set(history[:-1]) <= {"infrastructure", "abandoned"}, (key, history)
    assert temp_files(www) == [], "half-written files under www/"
    files = dict(query(dsn, "SELECT filename, sha256 FROM files"))
    linked = set()
    for page in sorted((www / "simple").glob("*/index.json")):
        for f in json.loads(page.read_text())["files"]:
            name, sha = f["filename"], f["hashes"]["sha256"]
            assert files.get(name) == sha, f"{name}: linked with {sha}, recorded {files.get(name)}"
            on_disk = page.parent / f["url"]
            assert hashlib.sha256(on_disk.read_bytes()).hexdigest() == sha, name
            linked.add(name)
    assert linked == set(files), f"recorded but not linked: {set(files) - linked}"
    stored = {p.name for p in (www / "simple").glob("*/*.whl")}
    assert stored == set(files), f"on disk but not recorded: {stored - set(files)}"


def descendants(pid: int) -> set[int]:
    """Every live process under ``pid`` (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def grow(path: Path, size: str) -> None:
    """Give a mounted tmpfs more room, its files kept (the disk grown, or space freed)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True,
                   capture_output=True)
