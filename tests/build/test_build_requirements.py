"""Build requirements, all of them, as wheels; the backend's output without pip's -v.

Each test makes its own small sdist (an in-tree standard-library backend, or
setuptools from the fixture wheels) and the wheels its build asks for, serves
them from a local upstream, and runs one real build through the Builder with
a real interpreter, real pip and the sandbox.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

import pytest
from helpers.fixture_packages import sdist_bytes, stdlib_backend, wheel_bytes

from piwheels_build.build.builder import Builder, Outcome
from piwheels_build.build.interpreters import Interpreter, discover
from piwheels_build.config import from_dict
from piwheels_build.queue import Claim

pytestmark = pytest.mark.slow
FIXTURE_WHEELS = os.environ.get("PIWHEELS_FIXTURE_WHEELS", "")


@pytest.fixture(scope="module")
def interp() -> Interpreter:
    found = discover((3, 9))
    if not found:
        pytest.fail("needs a CPython 3.9+ with pip (scripts/setup.sh)")
    return found[-1]


@pytest.fixture
def builder(dsn, fake, tmp_path, interp):
    yield from _builder(dsn, fake, tmp_path, interp)


def _builder(dsn, fake, tmp_path, interp, sandbox="auto"):
    wheels = sorted(Path(FIXTURE_WHEELS).glob("*.whl")) if FIXTURE_WHEELS else []
    if not wheels:
        pytest.fail("needs the fixture wheels: run the tests with scripts/test.sh")
    for whl in wheels:
        fake.add_file(whl.name.split("-")[0], whl.name, whl.read_bytes())
    cfg = from_dict({"database": dsn, "upstream": fake.url, "www": str(tmp_path / "www"),
                     "sandbox": sandbox, "lease_seconds": 3600, "build_timeout": 900,
                     "log_limit": "64K"})
    b = Builder(cfg, [interp])
    yield b
    b.close()


def build(builder: Builder, fake, interp: Interpreter, name: str, files: dict[str, str],
          version: str = "1.0") -> tuple[Outcome, str]:
    fn, data = sdist_bytes(name, version, files)
    fake.add_file(name, fn, data)
    claim = Claim(1, name, version, interp.target, fn, f"{fake.root}/files/{fn}",
                  hashlib.sha256(data).hexdigest())
    outcome = builder.build(interp, claim)
    return outcome, outcome.log.decode(errors="replace")


def serve_wheel(fake, name: str, version: str, module: str, requires: tuple = ()) -> None:
    fake.add_file(name, *wheel_bytes(name, version, module, requires))


def stored(builder: Builder, name: str) -> list[str]:
    return sorted(p.name for p in (builder.cfg.www / "simple" / name).glob("*.whl"))


def test_no_requirements_and_an_in_tree_stdlib_backend_builds(builder, fake, interp):
    """requires = [] with backend-path: nothing is fetched (pip download refuses an
    empty list) and the in-tree backend builds the wheel."""
    outcome, log = build(builder, fake, interp, "emptyreqs",
                         stdlib_backend("emptyreqs", "emptyreqs"))
    assert outcome.status == "success", log
    assert "fetch build requirements" not in log and "install build requirements" not in log
    assert stored(builder, "emptyreqs") == ["emptyreqs-1.0-py3-none-any.whl"]


def test_dynamic_requirements_fetched_as_wheels_with_their_dependencies(builder, fake, interp):
    """get_requires_for_build_wheel names helperdep, which needs helpersub: both are
    fetched (wheels), installed, and importable while the backend builds."""
    serve_wheel(fake, "helperdep", "1.2", "helperdep", requires=("helpersub>=1",))
    serve_wheel(fake, "helpersub", "1.0", "helpersub")
    files = stdlib_backend("dyn", "dyn", dynamic=("helperdep>=1",),
                           imports=("helperdep", "helpersub"))
    outcome, log = build(builder, fake, interp, "dyn", files)
    assert outcome.status == "success", log
    assert "fetch build requirements (dynamic): helperdep>=1" in log
    assert "helpersub-1.0-py3-none-any.whl" in log   # the transitive one came along
    # the next build asking for the same gets them from the cache, hash-checked
    files = stdlib_backend("dyn", "dyn", version="1.1", dynamic=("helperdep>=1",),
                           imports=("helperdep", "helpersub"))
    outcome, log = build(builder, fake, interp, "dyn", files, version="1.1")
    assert outcome.status == "success", log
    assert "build requirements helperdep>=1: the wheels fetched for an earlier build" in log


@pytest.mark.parametrize("which", ["oldest", "newest"])
def test_setuptools_setup_requires_is_fetched(dsn, fake, tmp_path, which):
    """setup.py's setup_requires is what setuptools' get_requires_for_build_wheel
    returns: fetched in the default offline mode, then importable by setup.py; with
    the oldest and the newest interpreter (their pips differ; the fixture setuptools
    needs 3.10)."""
    found = discover((3, 10))
    interp = found[0] if which == "oldest" else found[-1]
    builder = next(_builder(dsn, fake, tmp_path, interp))
    serve_wheel(fake, "helperdep", "1.2", "helperdep")
    files = {
        "pyproject.toml": '[build-system]\nrequires = ["setuptools>=61"]\n'
                          'build-backend = "setuptools.build_meta"\n',
        "setup.py": "import sys\nfrom setuptools import setup\n"
                    "if 'egg_info' not in sys.argv:\n"
                    "    import helperdep  # only once get_requires has been answered\n"
                    "setup(name='usesetupreq', version='1.0', packages=['usesetupreq'],\n"
                    "      setup_requires=['helperdep'])\n",
        "usesetupreq/__init__.py": "",
    }
    try:
        outcome, log = build(builder, fake, interp, "usesetupreq", files)
    finally:
        builder.close()
    assert outcome.status == "success", log
    assert "fetch build requirements (dynamic): helperdep" in log
    assert stored(builder, "usesetupreq") == ["usesetupreq-1.0-py3-none-any.whl"]


def test_a_requirement_with_no_wheel_is_missing_and_named_without_running_it(
        builder, fake, interp):
    """A dynamic requirement that exists upstream only as an sdist is never built or
    run by the fetch: missing-build-dependency, named on one line."""
    marker = "SDIST-CODE-RAN-" + os.urandom(4).hex()
    fn, data = sdist_bytes("onlysdist", "2.0", {
        "setup.py": f"print({marker!r})\nfrom setuptools import setup\n"
                    "setup(name='onlysdist', version='2.0')\n"})
    fake.add_file("onlysdist", fn, data)
    outcome, log = build(builder, fake, interp, "needsonlysdist",
                         stdlib_backend("needsonlysdist", "needsonlysdist",
                                        dynamic=("onlysdist>=1.5",)))
    assert outcome.status == "missing-build-dependency", log
    assert marker not in log
    lines = [ln for ln in log.splitlines() if ln.startswith("[piwheels] missing-build-dep")]
    assert lines == [f"[piwheels] missing-build-dependency: onlysdist>=1.5 (no wheel for "
                     f"{interp.abi_tag} {interp.platform_tag})"]


def test_online_mode_builds_a_requirement_that_is_only_an_sdist(dsn, fake, tmp_path, interp):
    """build_network = "online": fetches may take sdists, which pip builds (running
    their code, with the network on), and the build goes on."""
    for whl in sorted(Path(FIXTURE_WHEELS).glob("*.whl")):
        fake.add_file(whl.name.split("-")[0], whl.name, whl.read_bytes())
    marker = "SDIST-CODE-RAN-" + os.urandom(4).hex()
    fn, data = sdist_bytes("onlysdist", "2.0", {
        "setup.py": f"print({marker!r})\nfrom setuptools import setup\n"
                    "setup(name='onlysdist', version='2.0', py_modules=['onlysdist'])\n",
        "onlysdist.py": "VALUE = 1\n"})
    fake.add_file("onlysdist", fn, data)
    cfg = from_dict({"database": dsn, "upstream": fake.url, "www": str(tmp_path / "www"),
                     "sandbox": "auto", "lease_seconds": 3600, "build_timeout": 900,
                     "build_network": "online"})
    b = Builder(cfg, [interp])
    try:
        outcome, log = build(b, fake, interp, "onlineneeds",
                             stdlib_backend("onlineneeds", "onlineneeds",
                                            dynamic=("onlysdist>=1.5",), imports=("onlysdist",)))
    finally:
        b.close()
    assert outcome.status == "success", log
    assert "onlysdist-2.0.tar.gz" in log


def test_a_declared_requirement_with_no_wheel_is_missing(builder, fake, interp):
    outcome, log = build(builder, fake, interp, "declmissing",
                         stdlib_backend("declmissing", "declmissing",
                                        requires=("nosuchthing>=3",)))
    assert outcome.status == "missing-build-dependency", log
    assert "[piwheels] missing-build-dependency: nosuchthing>=3 (no wheel for" in log


def test_a_requirement_only_for_newer_pythons_is_missing_not_infrastructure(
        builder, fake, interp):
    """Its only wheel's METADATA says Requires-Python >=4 (the index does not): pip
    finds it and refuses it, and the build cannot happen with this interpreter;
    neither the farm's fault nor retried."""
    fake.add_file("futureonly", *wheel_bytes("futureonly", "1.0", "futureonly",
                                             requires_python=">=4"))
    outcome, log = build(builder, fake, interp, "needsfuture",
                         stdlib_backend("needsfuture", "needsfuture", requires=("futureonly",)))
    assert "requires a different Python" in log
    assert outcome.status == "missing-build-dependency", log
    assert "[piwheels] missing-build-dependency: futureonly" in log


def test_no_pyproject_builds_with_the_legacy_setuptools_backend(builder, fake, interp):
    files = {"setup.py": "from setuptools import setup\n"
                         "setup(name='legacy', version='1.0', packages=['legacy'])\n",
             "legacy/__init__.py": ""}
    outcome, log = build(builder, fake, interp, "legacy", files)
    assert outcome.status == "success", log
    assert "with setuptools.build_meta:__legacy__" in log
    with zipfile.ZipFile(builder.cfg.www / "simple" / "legacy" /
                         "legacy-1.0-py3-none-any.whl") as zf:
        assert "legacy/__init__.py" in zf.namelist()


def test_a_backend_failure_is_failed_not_infrastructure(builder, fake, interp):
    files = stdlib_backend("brokenbackend", "brokenbackend", imports=("no_such_module_x",))
    files["stdlib_backend.py"] = files["stdlib_backend.py"].replace(
        "def build_wheel(", "def build_wheel(*a, **k):\n    raise SystemExit('broken')\n\n\n"
        "def _unused(")
    outcome, log = build(builder, fake, interp, "brokenbackend", files)
    assert outcome.status == "failed", log
    assert "broken" in log


def test_forty_megabytes_of_output_build_and_are_capped(builder, fake, interp):
    """400,000 lines (40 MB) on stderr: the backend's output is kept head and tail
    as raw chunks, not reformatted line by line, and the build succeeds."""
    outcome, log = build(builder, fake, interp, "loudbackend",
                         stdlib_backend("loudbackend", "loudbackend", loud=400_000))
    assert outcome.status == "success", log[-2000:]
    assert outcome.printed >= 40_000_000 and outcome.truncated
    assert "bytes of output cut by piwheels" in log
    assert stored(builder, "loudbackend") == ["loudbackend-1.0-py3-none-any.whl"]


POISON = '''def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    import wheel
    script = os.path.join(sys.prefix, "bin", "wheel")
    with open(script) as fh:
        named = fh.readline().startswith("#!" + sys.prefix + "/")
    print("SCRIPT NAMES THIS VENV" if named else "SCRIPT NAMES ANOTHER VENV")
    try:
        with open(wheel.__file__, "a") as fh:
            fh.write("POISONED = True\\n")
        print("POISON WRITTEN")
    except OSError as e:
        print("poison refused:", e)
    if getattr(wheel, "POISONED", False):
        raise SystemExit("a template file was changed by an earlier build")
    return _build_wheel(wheel_directory, config_settings, metadata_directory)


def _build_wheel('''


@pytest.mark.parametrize("sandbox", ["bubblewrap", "none"])
def test_the_build_environment_is_reused_and_no_build_can_change_it(
        dsn, fake, tmp_path, interp, sandbox):
    """The second build with the same declared wheels gets the environment the first
    made, as links to the copy taken before the first build's code ran: the first
    changed an installed file in its own environment, the second sees it as
    installed, and may not change it (the template's files are not the build's)."""
    if os.getuid() != 0:
        pytest.fail("needs root: templates are used only where builds run as build_user")
    if sandbox == "none":  # the build user must reach it without bubblewrap's binds
        usable = [i for i in discover((3, 9)) if not i.path.startswith("/root/")]
        if not usable:
            pytest.fail("needs a CPython outside /root (the system's python3)")
        interp = usable[-1]
    gen = _builder(dsn, fake, tmp_path, interp, sandbox=sandbox)
    builder = next(gen)
    logs = []
    try:
        for name in ("poisoner", "poisonchecker"):
            files = stdlib_backend(name, name, requires=("wheel",))
            files["stdlib_backend.py"] = files["stdlib_backend.py"].replace(
                "def build_wheel(", POISON)
            outcome, log = build(builder, fake, interp, name, files)
            assert outcome.status == "success", log
            logs.append(log)
    finally:
        builder.close()
    # each build's console scripts name its own venv (without bubblewrap the path
    # differs per build: the linked ones were rewritten)
    assert all("SCRIPT NAMES THIS VENV" in log for log in logs), logs
    assert "POISON WRITTEN" in logs[0]
    assert "poison refused" in logs[1] and "POISON WRITTEN" not in logs[1]
    assert "make the build environment" in logs[0] and "linked from the one" not in logs[0]
    assert "linked from the one an earlier build made from the same wheels" in logs[1]
    assert "install build requirements" not in logs[1]
