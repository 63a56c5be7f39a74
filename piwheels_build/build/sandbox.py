"""Run other people's setup.py where it cannot hurt the builder or the next build.

Each run gets, with bubblewrap: an unprivileged user (bwrap runs as root to
build the mounts, then ``setpriv`` drops to the build user with no
capabilities and ``no_new_privs``), a read-only view of the system, a fresh
tmpfs ``/tmp`` holding the only writable directory (the build directory,
bound from the host), the store, database sockets, configuration and every
home directory hidden, its own PID, IPC and UTS namespaces (nothing it starts
outlives it), no network unless asked for, stdin from /dev/null and a
scrubbed environment. Limits: a wall-clock timeout (the whole sandbox is
killed), memory and process caps (a cgroup where one can be made, rlimits
otherwise), a disk cap on the build directory (watched, and a per-file
rlimit), and a cap on the output kept (head and tail).

Without bubblewrap (``sandbox = "none"``, or ``"auto"`` where bwrap is
missing) the same run happens directly on the host: unprivileged user,
fresh HOME/TMPDIR, scrubbed environment, its own session, the same limits;
but the system is not read-only and nothing is hidden. docs/sandbox.md says
which to use when.
"""

from __future__ import annotations

import os
import pwd
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError
from .buildlog import cut_note

INSIDE = Path("/tmp/build")  # where the build directory appears inside the sandbox
_HIDDEN_ALWAYS = ("/root", "/home", "/run/postgresql", "/var/run/postgresql",
                  "/var/lib/postgresql", "/etc/piwheels", "/srv", "/var/lib/piwheels",
                  "/run/user", "/var/tmp")


@dataclass
class Limits:
    """What one run may use."""

    timeout: float
    memory: int
    disk: int
    log: int
    pids: int = 1024


@dataclass
class RunResult:
    """How a sandboxed command ended, and what it printed (capped)."""

    returncode: int | None
    reason: str          # "exit", "timeout", "memory", "disk", "lost"
    log: bytes
    printed: int
    truncated: bool
    elapsed: float


class LogCollector(threading.Thread):
    """Keep the head and the tail of a pipe's output; never more than ``limit`` bytes."""

    def __init__(self, fd: int, limit: int) -> None:
        super().__init__(daemon=True)
        self.fd, self.half = fd, max(limit // 2, 1)
        self.head = bytearray()
        self.tail: deque[bytes] = deque()
        self.tail_size = 0
        self.printed = 0

    def run(self) -> None:
        with os.fdopen(self.fd, "rb", buffering=0) as pipe:
            while chunk := pipe.read(65536):
                self.printed += len(chunk)
                room = self.half - len(self.head)
                if room > 0:
                    self.head += chunk[:room]
                    chunk = chunk[room:]
                if chunk:
                    self.tail.append(chunk)
                    self.tail_size += len(chunk)
                    while self.tail_size - len(self.tail[0]) >= self.half:
                        self.tail_size -= len(self.tail.popleft())

    def text(self) -> tuple[bytes, int, bool]:
        tail = b"".join(self.tail)[-self.half:]
        kept = len(self.head) + len(tail)
        if kept >= self.printed:
            return bytes(self.head) + tail, self.printed, False
        return bytes(self.head) + cut_note(self.printed - kept) + tail, self.printed, True


# -- what a killed builder leaves: found by its process's identity -------------------
#
# A builder process owns one directory under the work root, named with its PID and the
# PID's start time (``piwheels-builder-PID-START-RANDOM``), holding its build
# directories and its requirements cache; its cgroups are named ``run-PID-START-...``.
# A later builder removes those whose owner is gone: no process has that PID, or the
# process that has it started at another time (the PID was reused). A live builder's
# are never touched, whoever runs the sweep.

OWN_PREFIX = "piwheels-builder-"
_OWNED = re.compile(r"(?:piwheels-builder-|run-)(\d+)-(\d+)-")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def start_time(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, /proc/PID/stat field 22); None when
    there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat[stat.rindex(")") + 2:].split()[19])


def process_tag(pid: int | None = None) -> str:
    """``PID-START`` of this process (or ``pid``): a name no later process can have."""
    pid = pid or os.getpid()
    return f"{pid}-{start_time(pid)}"


def _owner_gone(name: str) -> bool:
    m = _OWNED.match(name)
    return bool(m) and start_time(int(m[1])) != int(m[2])


def _cgroup_parents() -> list[Path]:
    return [CGROUP_ROOT / "piwheels", CGROUP_ROOT / "memory" / "piwheels",
            CGROUP_ROOT / "pids" / "piwheels"]


def remove_leftovers(workroot: Path) -> list[str]:
    """Remove what dead builder processes left: their directories under ``workroot``
    (build directories, requirements cache) and their cgroups (whatever still runs in
    them is killed first). What was removed, for the log."""
    removed = []
    try:
        names = [e.name for e in os.scandir(workroot)
                 if e.name.startswith(OWN_PREFIX) and e.is_dir(follow_symlinks=False)]
    except OSError:
        names = []
    for name in names:
        if _owner_gone(name):
            shutil.rmtree(workroot / name, ignore_errors=True)
            if not (workroot / name).exists():
                removed.append(str(workroot / name))
    for parent in _cgroup_parents():
        try:
            groups = [e.name for e in os.scandir(parent) if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
        for name in groups:
            if _owner_gone(name):
                group = Cgroup({"left": parent / name})
                group.close()
                if not (parent / name).exists():
                    removed.append(str(parent / name))
    return removed


class Cgroup:
    """A memory + pids cgroup for one run (v2 or v1), where this machine lets us make one."""

    def __init__(self, paths: dict[str, Path]) -> None:
        self.paths = paths

    @classmethod
    def create(cls, name: str, memory: int, pids: int) -> Cgroup | None:
        if os.geteuid() != 0:
            return None
        root = Path("/sys/fs/cgroup")
        try:
            if (root / "cgroup.controllers").exists():  # unified (v2)
                parent = root / "piwheels"
                parent.mkdir(exist_ok=True)
                (root / "cgroup.subtree_control").write_text("+memory +pids")
                (parent / "cgroup.subtree_control").write_text("+memory +pids")
                path = parent / name
                path.mkdir()
                (path / "memory.max").write_text(str(memory))
                (path / "memory.swap.max").write_text("0")
                (path / "pids.max").write_text(str(pids))
                return cls({"v2": path})
            paths = {}
            for ctl, settings in (("memory", {"memory.limit_in_bytes": memory}),
                                  ("pids", {"pids.max": pids})):
                parent = root / ctl / "piwheels"
                parent.mkdir(exist_ok=True)
                path = parent / name
                path.mkdir()
                paths[ctl] = path
                for key, value in settings.items():
                    (path / key).write_text(str(value))
            return cls(paths)
        except OSError:
            for p in locals().get("paths", {}).values():
                _rmdir(p)
            return None

    def wrap(self, argv: list[str]) -> list[str]:
        """argv, joining the group before it starts: v1 does not move children that a
        process already started, so the process must be in the group before bwrap forks."""
        procs = [str(path / "cgroup.procs") for path in self.paths.values()]
        script = 'for f; do [ "$f" = -- ] && break; echo $$ > "$f" || exit 125; shift; done; ' \
                 'shift; exec "$@"'
        return ["sh", "-c", script, "sh", *procs, "--", *argv]

    def oom_killed(self) -> bool:
        try:
            if "v2" in self.paths:
                events = (self.paths["v2"] / "memory.events").read_text()
                return any(ln.split()[0] in ("oom_kill", "oom") and int(ln.split()[1]) > 0
                           for ln in events.splitlines())
            control = (self.paths["memory"] / "memory.oom_control").read_text()
            killed = [ln for ln in control.splitlines() if ln.startswith("oom_kill ")]
            if killed:
                return int(killed[0].split()[1]) > 0
            return int((self.paths["memory"] / "memory.failcnt").read_text()) > 0
        except (OSError, ValueError, KeyError):
            return False

    def kill_all(self) -> None:
        """Kill whatever is still in the group (daemons included), until it is empty."""
        for _ in range(50):
            pids = set()
            for path in self.paths.values():
                try:
                    pids |= {int(p) for p in (path / "cgroup.procs").read_text().split()}
                except OSError:
                    pass
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.05)

    def close(self) -> None:
        self.kill_all()
        for path in self.paths.values():
            _rmdir(path)


def _rmdir(path: Path) -> None:
    for _ in range(20):
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.05)


def _dir_size(path: Path) -> int:
    total = 0
    stack = [str(path)]
    while stack:
        try:
            with os.scandir(stack.pop()) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        else:
                            total += entry.stat(follow_symlinks=False).st_blocks * 512
                    except OSError:
                        pass
        except OSError:
            pass
    return total


@dataclass
class Sandbox:
    """Where and as whom builds run; one per builder process."""

    kind: str                      # "bubblewrap" or "none"
    user: tuple[int, int] | None   # (uid, gid) to drop to, when we are root
    hide: list[str] = field(default_factory=list)
    workroot: Path = field(default_factory=lambda: Path(tempfile.gettempdir()))
    owned: Path | None = None      # this process's directory under workroot (take_workroot)

    @classmethod
    def from_config(cls, cfg) -> Sandbox:
        kind = cfg.sandbox
        bwrap = shutil.which("bwrap")
        if kind == "auto":
            kind = "bubblewrap" if bwrap else "none"
        if kind == "bubblewrap" and not bwrap:
            raise ConfigError("config: sandbox = \"bubblewrap\" but bwrap is not installed; "
                              "apt-get install bubblewrap")
        user = None
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(cfg.build_user)
            except KeyError:
                raise ConfigError(
                    f"config: build_user {cfg.build_user!r} does not exist; create it with "
                    f"useradd --system --no-create-home {cfg.build_user}") from None
            if pw.pw_uid == 0:
                raise ConfigError("config: build_user must not be root")
            user = (pw.pw_uid, pw.pw_gid)
        hide = list(_HIDDEN_ALWAYS) + [str(cfg.www)]
        if cfg.source:
            hide.append(str(cfg.source))
        hide += _dsn_paths(cfg.database)
        return cls(kind=kind, user=user, hide=hide)

    # -- the build directory --------------------------------------------------

    def take_workroot(self) -> list[str]:
        """Remove what killed builders left (``remove_leftovers``), then make this
        process's own directory under the work root, where build directories (and the
        requirements cache) go from now on. What was removed."""
        removed = remove_leftovers(self.workroot)
        self.owned = self.workroot / f"{OWN_PREFIX}{process_tag()}-{secrets.token_hex(4)}"
        self.owned.mkdir(mode=0o711)
        os.chmod(self.owned, 0o711)  # the build user passes through to its build directory
        return removed

    def release_workroot(self) -> None:
        """Remove this process's directory (a clean exit)."""
        if self.owned is not None:
            shutil.rmtree(self.owned, ignore_errors=True)
            self.owned = None

    def new_workdir(self) -> Path:
        """A fresh directory for one build, owned by the build user: build/{home,tmp,src,out}
        and the build environment's wheelhouse/, wheelhouse-dynamic/, hooks/ (the
        PEP 517 hook script) and hookctl/ (its input and output)."""
        work = Path(tempfile.mkdtemp(prefix="piwheels-build-", dir=self.owned or self.workroot))
        os.chmod(work, 0o711)
        build = work / "build"
        for sub in ("", "home", "tmp", "src", "out", "wheelhouse", "wheelhouse-dynamic",
                    "hooks", "hookctl"):
            (build / sub).mkdir(exist_ok=True)
            if self.user:
                os.chown(build / sub, *self.user)
        return work

    def inside(self, work: Path, *parts: str) -> str:
        """The path a command inside the sandbox uses for build/<parts>."""
        base = INSIDE if self.kind == "bubblewrap" else work / "build"
        return str(base.joinpath(*parts))

    def give(self, path: Path) -> None:
        """Let the build user read a file the builder put in the build directory."""
        if self.user:
            os.chown(path, *self.user)

    # -- running --------------------------------------------------------------

    def env(self, work: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": self.inside(work, "home"),
            "TMPDIR": self.inside(work, "tmp"),
            "LANG": "C.UTF-8",
            "PIP_CONFIG_FILE": os.devnull,   # no pip.conf, no ambient PIP_* variables
            "PIP_NO_INPUT": "1",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
            "GIT_ALLOW_PROTOCOL": "file",    # git may not fetch anything
            "GIT_TERMINAL_PROMPT": "0",
        }
        env.update(extra or {})
        return env

    def command(self, argv: list[str], work: Path, env: dict[str, str], *, network: bool,
                readonly: list[str], limits: Limits, rlimit_memory: bool,
                cwd: str | None = None) -> list[str]:
        """The full command line: bwrap (or nothing), the user switch, rlimits, argv.

        ``cwd`` is a directory as the command sees it (``inside``), the build
        directory by default."""
        prlimit = ["prlimit", f"--fsize={limits.disk}", "--core=0"]
        if rlimit_memory:
            prlimit += [f"--as={limits.memory}", f"--nproc={limits.pids}"]
        prlimit.append("--")
        drop = []
        if self.user:
            drop = ["setpriv", f"--reuid={self.user[0]}", f"--regid={self.user[1]}",
                    "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
                    "--no-new-privs", "--"]
        if self.kind != "bubblewrap":
            return drop + prlimit + argv
        cmd = ["bwrap", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
               "--die-with-parent", "--new-session", "--ro-bind", "/", "/",
               "--dev", "/dev", "--proc", "/proc",
               "--size", str(min(limits.disk, 1 << 30)), "--tmpfs", "/tmp",
               "--tmpfs", "/dev/shm"]
        if not network:
            cmd.append("--unshare-net")
        cmd += self._hide_args()
        cmd += self._readonly_args(readonly)
        cmd += ["--perms", "0755", "--dir", str(INSIDE),
                "--bind", str(work / "build"), str(INSIDE), "--chdir", cwd or str(INSIDE),
                "--clearenv"]
        for key, value in env.items():
            cmd += ["--setenv", key, value]
        return cmd + ["--"] + drop + prlimit + argv

    def _hide_args(self) -> list[str]:
        args: list[str] = []
        real = sorted({os.path.realpath(h) for h in self.hide if os.path.lexists(h)}, key=len)
        for path in real:
            p = Path(path)
            if any(path.startswith(h.rstrip("/") + "/") for h in real if h != path):
                continue  # already inside a hidden directory
            if p.is_dir() and not p.is_symlink():
                args += ["--tmpfs", str(p)]
            elif p.is_file():
                args += ["--ro-bind", "/dev/null", str(p)]
        return args

    def _readonly_args(self, paths: list[str]) -> list[str]:
        """Make interpreter prefixes under hidden directories visible again, read-only."""
        args: list[str] = []
        roots = [*self.hide, "/tmp"]  # /tmp is a fresh tmpfs inside, so it hides too
        for path in paths:
            hidden = [h for h in roots if path.startswith(h.rstrip("/") + "/")]
            if not hidden:
                continue
            top = Path(min(hidden, key=len))
            chain = []
            for parent in Path(path).parents:
                if parent == top:
                    break
                chain.append(parent)
            for d in reversed(chain):
                args += ["--perms", "0755", "--dir", str(d)]
            args += ["--ro-bind", path, path]
        return args

    def run(self, argv: list[str], work: Path, *, env: dict[str, str], network: bool,
            readonly: list[str], limits: Limits, lost: threading.Event | None = None,
            cgroup_name: str | None = None, cwd: str | None = None) -> RunResult:
        """Run argv in the sandbox; kill everything it started when it ends or overruns.

        ``cwd``: where it starts, as the command sees it (``inside``); the build
        directory when None."""
        start = time.monotonic()
        group = Cgroup.create(cgroup_name or f"run-{process_tag()}-{time.monotonic_ns()}",
                              limits.memory, limits.pids)
        cmd = self.command(argv, work, env, network=network, readonly=readonly,
                           limits=limits, rlimit_memory=group is None, cwd=cwd)
        if group:
            cmd = group.wrap(cmd)
        read_fd, write_fd = os.pipe()
        collector = LogCollector(read_fd, limits.log)
        collector.start()
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=write_fd,
                                    stderr=write_fd, env=env,
                                    cwd=str(work / "build") if cwd is None or
                                    self.kind == "bubblewrap" else cwd,
                                    start_new_session=True)
        except OSError as e:
            os.close(write_fd)
            collector.join()
            if group:
                group.close()
            return RunResult(None, "exit", f"[piwheels] cannot start sandbox: {e}\n".encode(),
                             0, False, time.monotonic() - start)
        os.close(write_fd)
        reason = self._watch(proc, work, limits, lost or threading.Event())
        if group:
            group.kill_all()
        _killpg(proc.pid)
        collector.join(timeout=10)
        if group and group.oom_killed() and reason == "exit" and proc.returncode != 0:
            reason = "memory"
        if group:
            group.close()
        text, printed, truncated = collector.text()
        return RunResult(proc.returncode, reason, text, printed, truncated,
                         time.monotonic() - start)

    def _watch(self, proc: subprocess.Popen, work: Path, limits: Limits,
               lost: threading.Event) -> str:
        deadline = time.monotonic() + limits.timeout
        next_disk = 0.0
        while True:
            try:
                proc.wait(timeout=0.25)
                return "exit"
            except subprocess.TimeoutExpired:
                pass
            now = time.monotonic()
            reason = None
            if now > deadline:
                reason = "timeout"
            elif lost.is_set():
                reason = "lost"
            elif now >= next_disk:
                next_disk = now + 1.0
                if _dir_size(work / "build") > limits.disk:
                    reason = "disk"
            if reason:
                _killpg(proc.pid)
                proc.kill()
                proc.wait()
                return reason


def _killpg(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _dsn_paths(dsn: str) -> list[str]:
    """Socket directories and password files a DSN names: hidden from builds."""
    out = []
    for part in dsn.split():
        key, _, value = part.partition("=")
        if key in ("host", "passfile", "sslkey", "sslcert", "sslrootcert") and \
                value.startswith("/"):
            out.append(value)
    return out
