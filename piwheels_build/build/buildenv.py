"""Build one sdist with its PEP 517 backend: requirements as wheels, hooks in the sandbox.

The steps (docs/architecture.md, "The builder"), each a sandboxed run of the
target interpreter:

1. fetch the declared ``[build-system] requires`` (network on; wheels only,
   ``--only-binary :all:``, so no package code runs; transitive dependencies
   included; skipped when the list is empty or the requirements cache has it);
2. make a venv of the target interpreter without pip and install the
   declared wheels into it from the wheelhouse (network off), or link the one
   an earlier build made from the same wheels (envcache); then unpack the
   sdist (network off);
3. call the backend's ``get_requires_for_build_wheel`` (network off: it runs
   the package's code);
4. what it adds that the environment does not have: fetched as in 1 (network
   on, wheels only, cached too), installed as in 2 (network off);
5. call ``build_wheel`` into ``out/`` (network off). The backend's output
   goes to the sandbox's log pipe as raw chunks (head and tail kept), never
   through pip's per-line logging.

The hooks are called with pyproject-hooks, whose ``runner`` runs each hook
process through the sandbox; its ``_in_process`` script is copied into the
build directory and its input and output files are passed through
``hookctl/``, since the sandbox sees neither the builder's site-packages nor
its temporary directory. ``build_network = "online"`` keeps the same steps,
but fetches may take sdists and the hooks run with the network on.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import os
import shutil
import stat
import subprocess
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from pyproject_hooks import (
    BackendUnavailable,
    BuildBackendHookCaller,
    HookMissing,
    UnsupportedOperation,
)

from .classify import classify, missing_requirements
from .envcache import EnvTemplates, wheels_key
from .interpreters import Interpreter
from .reqcache import RequirementsCache
from .sandbox import RunResult, Sandbox
from .sdists import BuildSystem

#: pip's exit code is not ours to choose; the unpack step's "not an sdist" is.
BAD_SDIST = 3
_MAX_ANSWER = 1 << 20   # a hook's output.json; ours are a list of strings or a file name

# Run by the target interpreter (-I) in the sandbox, network off.
_VENV = "import sys, venv; venv.EnvBuilder(symlinks=True, with_pip=False).create(sys.argv[1])"
# The archive is hostile, so it is unpacked by the build user where only the build
# directory is writable ("data" filter where the interpreter has it), after the build
# environment was made (and kept as a template: envcache).
_UNPACK = """\
import os, sys, tarfile, zipfile
sdist, tree = sys.argv[1:3]
try:
    os.mkdir(tree)
    if sdist.endswith(".zip"):
        with zipfile.ZipFile(sdist) as zf:
            zf.extractall(tree)
    else:
        with tarfile.open(sdist) as tf:
            if hasattr(tarfile, "data_filter"):
                tf.extractall(tree, filter="data")
            else:
                tf.extractall(tree)
except Exception as e:
    print(f"[piwheels] cannot unpack {os.path.basename(sdist)}: {e}", file=sys.stderr)
    sys.exit(3)
"""


class Log(Protocol):
    """Where each step's output goes (builder._Log)."""

    def add(self, title: str, result: RunResult) -> None: ...

    def note(self, text: str) -> None: ...


#: ``run(argv, network=..., cwd=..., env=...)``: one sandboxed run of this build.
Run = Callable[..., RunResult]


class Sources:
    """Where build requirements are fetched from, as pip arguments.

    Today the upstream only. This is the seam for the farm's own wheels for
    this target first (issue 16): put a ``--find-links`` (or an index) of them
    before the upstream here, and add what identifies them to ``key``.
    """

    def __init__(self, upstream: str, trusted: list[str]) -> None:
        self.upstream = upstream
        self.trusted = trusted

    def pip_args(self) -> list[str]:
        return ["--index-url", self.upstream, *self.trusted]

    def key(self) -> str:
        """What the requirements cache must tell apart: the same requirements fetched
        from other sources are other wheels."""
        return self.upstream


class BuildStopped(Exception):
    """A step ended the build; ``status`` is what to record."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


class _HookFailed(Exception):
    def __init__(self, result: RunResult) -> None:
        super().__init__(result.reason)
        self.result = result


class BuildEnv:
    """One build's environment and backend calls, in the build directory ``work``."""

    def __init__(self, interp: Interpreter, box: Sandbox, work: Path, run: Run, log: Log,
                 reqs: RequirementsCache, sources: Sources, online: bool = False,
                 templates: EnvTemplates | None = None) -> None:
        self.interp, self.box, self.work, self.run, self.log = interp, box, work, run, log
        self.reqs, self.sources, self.online = reqs, sources, online
        # Only where builds run as the build user (a build as the builder's own user
        # could change a template's files); online, installing may build an sdist (run
        # code) before the copy is taken.
        self.templates = templates if box.user is not None and not online else None
        self.python = self.inside("env", "bin", "python")
        self._title = ""

    def inside(self, *parts: str) -> str:
        return self.box.inside(self.work, *parts)

    def build(self, sdist: Path, system: BuildSystem) -> str:
        """Build ``sdist`` (already in build/src/) into build/out/; the status.

        ``success`` means the backend said it wrote a wheel (the builder
        verifies it); ``failed``, ``missing-build-dependency``, ``timeout``,
        ``out-of-memory`` and ``infrastructure`` as in ``classify``. Never
        raises for the package's faults."""
        try:
            self._build(sdist, system)
        except BuildStopped as e:
            return e.status
        return "success"

    def _build(self, sdist: Path, system: BuildSystem) -> None:
        if system.requires:
            self._fetch(system.requires, "wheelhouse", "declared")
        self._make_env(system.requires)
        self._unpack(sdist)
        try:
            hooks = BuildBackendHookCaller(
                self.inside("tree", self._source_root()), system.backend,
                backend_path=system.backend_path or None, runner=self._runner,
                python_executable=self.python)
        except ValueError as e:  # a backend-path outside the source tree
            self.log.note(f"build-system.backend-path: {e}")
            raise BuildStopped("failed") from None
        dynamic = self._hook("get_requires_for_build_wheel", hooks.get_requires_for_build_wheel)
        if not isinstance(dynamic, list) or not all(isinstance(r, str) for r in dynamic):
            self.log.note(f"get_requires_for_build_wheel returned {dynamic!r}, not a list of "
                          "strings")
            raise BuildStopped("failed")
        extra = [r for r in dynamic if not self._installed(r)]
        if extra:
            self._fetch(extra, "wheelhouse-dynamic", "dynamic")
            self._install(extra)
        self._hook("build_wheel", lambda: hooks.build_wheel(self.inside("out")))

    # -- steps ----------------------------------------------------------------

    def _fetch(self, requires: list[str], dest: str, what: str) -> None:
        for req in requires:
            try:
                Requirement(req)
            except InvalidRequirement as e:
                self.log.note(f"{what} build requirement {req!r}: {e}")
                raise BuildStopped("failed") from None
        mode = "any" if self.online else "wheels"
        key = (self.interp.path, self.sources.key(), mode, what, *requires)
        reused = self.reqs.get(key, self.work / "build" / dest, self.box.give)
        if reused is not None:
            self.log.note("build requirements " + " ".join(requires) + ": the wheels "
                          "fetched for an earlier build, sha256 checked: " + " ".join(reused))
            return
        only_binary = [] if self.online else ["--only-binary", ":all:"]
        fetch = self.run([
            self.interp.path, "-m", "pip", "download", "--no-cache-dir", "--progress-bar",
            "off", *self.sources.pip_args(), *only_binary, "--dest", self.inside(dest),
            *requires], network=True)
        self.log.add(f"fetch build requirements ({what}): " + " ".join(requires), fetch)
        status = classify(fetch, fetching=True)
        if status != "success":
            self._name_missing(fetch, status)
            raise BuildStopped(status)
        self.reqs.put(key, self.work / "build" / dest)

    def _make_env(self, requires: list[str]) -> None:
        """A venv of the target interpreter with the declared wheels installed: a
        template's copy (envcache), or made and installed, then kept as one."""
        key = None
        if self.templates is not None and requires:
            key = (self.interp.path, *wheels_key(self.work / "build" / "wheelhouse"))
            if self.templates.get(key, self.work / "build" / "env", self.box.user,
                                  self.inside("env")):
                self.log.note("build environment: linked from the one an earlier build "
                              "made from the same wheels")
                return
        result = self.run([self.interp.path, "-I", "-c", _VENV, self.inside("env")],
                          network=False)
        self.log.add("make the build environment", result)
        status = classify(result, fetching=True)
        if status != "success":
            raise BuildStopped(status)
        if requires:
            self._install(requires)
            if key is not None:
                self.templates.put(key, self.work / "build" / "env", self.inside("env"))

    def _unpack(self, sdist: Path) -> None:
        result = self.run([self.interp.path, "-I", "-c", _UNPACK,
                           self.inside("src", sdist.name), self.inside("tree")], network=False)
        self.log.add("unpack the sdist", result)
        if result.reason == "exit" and result.returncode == BAD_SDIST:
            raise BuildStopped("failed")
        status = classify(result, fetching=True)
        if status != "success":
            raise BuildStopped(status)
        script = importlib.resources.files("pyproject_hooks._in_process") / "_in_process.py"
        target = self.work / "build" / "hooks" / "_in_process.py"
        target.write_bytes(script.read_bytes())
        self.box.give(target)

    def _source_root(self) -> str:
        tops: list[os.DirEntry] = []
        with contextlib.suppress(OSError), os.scandir(self.work / "build" / "tree") as it:
            tops = list(it)
        if len(tops) != 1 or not tops[0].is_dir(follow_symlinks=False):
            self.log.note("the sdist does not hold exactly one top-level directory")
            raise BuildStopped("failed")
        return tops[0].name

    def _install(self, requires: list[str]) -> None:
        # Offline: only the fetched wheels. Online: an sdist among them is built by pip,
        # whose own build environment comes from the sources, so the network is on.
        source = [*self.sources.pip_args()] if self.online else ["--no-index",
                                                                 "--only-binary", ":all:"]
        result = self.run([
            *_pip_in(self.interp, self.python), "install", *source,
            "--find-links", self.inside("wheelhouse"),
            "--find-links", self.inside("wheelhouse-dynamic"), "--no-cache-dir",
            "--progress-bar", "off", "--no-warn-script-location", *requires],
            network=self.online)
        self.log.add("install build requirements: " + " ".join(requires), result)
        status = classify(result, fetching=True)
        if status != "success":
            self._name_missing(result, status)
            raise BuildStopped(status)

    def _installed(self, req: str) -> bool:
        """True when a wheel installed from the wheelhouse satisfies ``req`` for sure
        (no marker or extras to evaluate for the target): no pip run for it."""
        try:
            r = Requirement(req)
        except InvalidRequirement:
            return False
        if r.marker is not None or r.extras:
            return False
        name = canonicalize_name(r.name)
        for whl in _wheels(self.work / "build" / "wheelhouse"):
            if whl[0] == name and r.specifier.contains(whl[1], prereleases=True):
                return True
        return False

    def _name_missing(self, result: RunResult, status: str) -> None:
        if status == "missing-build-dependency":
            for req in missing_requirements(result.log):
                # one line per requirement, for people and for the dependency wait
                self.log.note(f"missing-build-dependency: {req} (no wheel for "
                              f"{self.interp.abi_tag} {self.interp.platform_tag})")

    # -- the hooks, through the sandbox --------------------------------------

    def _hook(self, name: str, call: Callable[[], object]) -> object:
        self._title = f"{name} (backend)"
        try:
            # pyproject-hooks re-raises the backend's warnings here: they go to the build
            # log, not to the builder's own output.
            with warnings.catch_warnings(record=True) as caught, _tempdir(self.work):
                warnings.simplefilter("always")
                try:
                    return call()
                finally:
                    for w in caught:
                        self.log.note(f"{w.category.__name__}: {w.message}")
        except _HookFailed as e:
            raise BuildStopped(classify(e.result)) from None
        except BackendUnavailable as e:
            self.log.note(f"the build backend cannot be imported: {e.message or ''}".strip())
            self.log.note(e.traceback.strip())
            raise BuildStopped("failed") from None
        except (HookMissing, UnsupportedOperation) as e:
            self.log.note(f"the build backend has no usable {name} hook: {e}")
            raise BuildStopped("failed") from None
        except (OSError, ValueError) as e:
            self.log.note(f"{name}: the hook's answer is unreadable: {e}")
            raise BuildStopped("failed") from None

    def _runner(self, cmd: list[str], cwd: str | None = None,
                extra_environ: dict[str, str] | None = None) -> None:
        """pyproject-hooks' runner: the hook process, in the sandbox, network off."""
        python, _script, hook, control = cmd
        ctl = self.work / "build" / "hookctl"
        for name in ("input.json", "output.json"):
            with contextlib.suppress(FileNotFoundError):
                (ctl / name).unlink()
        shutil.copyfile(Path(control) / "input.json", ctl / "input.json")
        self.box.give(ctl / "input.json")
        path = f"{self.inside('env', 'bin')}:{self.box.env(self.work)['PATH']}"
        env = self.box.env(self.work, {**(extra_environ or {}), "PATH": path,
                                       "VIRTUAL_ENV": self.inside("env")})
        result = self.run([python, self.inside("hooks", "_in_process.py"), hook,
                           self.inside("hookctl")], network=self.online, cwd=cwd, env=env)
        self.log.add(self._title, result)
        if result.reason != "exit" or result.returncode != 0:
            raise _HookFailed(result)
        _copy_answer(ctl / "output.json", Path(control) / "output.json")


@contextlib.contextmanager
def _tempdir(path: Path) -> Iterator[None]:
    """pyproject-hooks makes each hook's control directory with ``tempfile``: in the
    build's own directory (root's, outside the sandbox), so a killed builder's are
    swept with it (sandbox.remove_leftovers) and a finished build's go with it."""
    old = tempfile.tempdir
    tempfile.tempdir = str(path)
    try:
        yield
    finally:
        tempfile.tempdir = old


def _pip_in(interp: Interpreter, python: str) -> list[str]:
    """The command that runs ``interp``'s pip in the venv whose interpreter is
    ``python``: pip's own ``__pip-runner__.py`` (pip >= 22.3) started by that
    interpreter, which is what ``pip --python`` runs, without starting pip twice."""
    runner = _pip_runner(interp.path)
    if runner is None:
        return [interp.path, "-m", "pip", "--python", python]
    return [python, runner]


@functools.cache
def _pip_runner(path: str) -> str | None:
    """Where ``path``'s pip keeps ``__pip-runner__.py``; None when it has none or does
    not answer (then ``pip --python`` is used)."""
    try:
        proc = subprocess.run([path, "-I", "-c", "import os, pip; print(os.path.dirname("
                               "pip.__file__))"], capture_output=True, text=True, timeout=60,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    runner = Path(proc.stdout.strip()) / "__pip-runner__.py"
    return str(runner) if proc.returncode == 0 and runner.is_file() else None


def _wheels(directory: Path) -> Iterable[tuple[str, object]]:
    try:
        names = [e.name for e in os.scandir(directory) if e.name.endswith(".whl")]
    except OSError:
        return []
    out = []
    for name in names:
        try:
            dist, version, _build, _tags = parse_wheel_filename(name)
        except InvalidWheelFilename:
            continue
        out.append((dist, version))
    return out


def _copy_answer(src: Path, dest: Path) -> None:
    """Copy a hook's output.json written by the build user: a regular file, never
    through a symlink, at most _MAX_ANSWER bytes. OSError otherwise."""
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_ANSWER:
            raise OSError(f"{src.name} is not a small regular file")
        dest.write_bytes(fh.read(_MAX_ANSWER))
