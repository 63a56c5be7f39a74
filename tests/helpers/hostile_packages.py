"""Packages that do what package authors do: each setup.py misbehaves in one way.

They build with setuptools from a setup.py; the test substitutes MARKER (a
unique string per run) and the paths it wants them to probe."""

from __future__ import annotations

from textwrap import dedent

_SETUP_TAIL = '\nsetup(name="{name}", version="{version}", packages=["{module}"])\n'
PYPROJECT = ('[build-system]\nrequires = ["setuptools>=61"]\n'
             'build-backend = "setuptools.build_meta"\n')


def _package(name: str, module: str, body: str, version: str = "1.0",
             setup_name: str | None = None, setup_version: str | None = None) -> dict:
    setup = ("import os, sys, subprocess, time\nfrom setuptools import setup\n"
             + dedent(body)
             + _SETUP_TAIL.format(name=setup_name or name, version=setup_version or version,
                                  module=module))
    return {"name": name, "version": version, "files": {
        "pyproject.toml": PYPROJECT, "setup.py": setup,
        f"{module}/__init__.py": "",
    }}


def home_writer(probe: dict[str, str]) -> dict:
    """Writes to ~, .bashrc, /tmp and the store; records what it could see."""
    return _package("homewriter", "homewriter", f"""
        probe = {probe!r}
        home = os.path.expanduser("~")
        open(os.path.join(home, ".hostile-MARKER"), "w").write("x")
        with open(os.path.join(home, ".bashrc"), "a") as fh:
            fh.write("echo pwned MARKER\\n")
        seen = []
        for label, path in probe.items():
            try:
                if os.path.isdir(path):
                    seen.append(f"{{label}}: listed {{sorted(os.listdir(path))}}")
                else:
                    seen.append(f"{{label}}: read {{open(path).read()[:40]!r}}")
            except OSError as e:
                seen.append(f"{{label}}: denied {{e.strerror}}")
        for target in ("/tmp/hostile-MARKER", probe["store"] + "/hostile-MARKER",
                       "/srv/piwheels/www/simple/hostile-MARKER"):
            try:
                open(target, "w").write("x")
                seen.append(f"wrote {{target}}")
            except OSError as e:
                seen.append(f"write {{target}}: {{e.strerror}}")
        env = sorted(k for k in os.environ if k.startswith(("PG", "PIWHEELS", "PIP_FIND")))
        seen.append(f"env: {{env}}")
        seen.append(f"uid: {{os.getuid()}}")
        open("homewriter/__init__.py", "w").write(f"SEEN = {{seen!r}}\\n")
        """)


def home_checker() -> dict:
    """Built after home_writer: fails if anything it left behind is visible."""
    return _package("homechecker", "homechecker", """
        leftovers = [p for p in (os.path.expanduser("~/.hostile-MARKER"), "/tmp/hostile-MARKER")
                     if os.path.exists(p)]
        bashrc = os.path.expanduser("~/.bashrc")
        if os.path.exists(bashrc) and "MARKER" in open(bashrc).read():
            leftovers.append(bashrc)
        if leftovers:
            sys.exit(f"a previous build left {leftovers}")
        """)


def git_cloner(url: str) -> dict:
    """Clones a repository from setup.py (and tries the network directly)."""
    return _package("gitcloner", "gitcloner", f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {url.split(":")[2].split("/")[0]}), timeout=3)
            print("NETWORK REACHABLE")
        except OSError as e:
            print("network:", e)
        subprocess.run(["git", "clone", "{url}", "repo"], check=True)
        """)


def undeclared_import() -> dict:
    """Imports numpy without declaring it."""
    return _package("needsnumpy", "needsnumpy", "import numpy\n")


def hang() -> dict:
    """Never finishes."""
    return _package("hangs", "hangs", "time.sleep(100000)\n")


def daemon() -> dict:
    """Starts a process that detaches itself and should outlive the build."""
    return _package("daemonizes", "daemonizes", """
        if os.fork() == 0:          # the classic double fork, stdio detached
            os.setsid()
            if os.fork() == 0:
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.execvp("sleep", ["sleep", "MARKER-SLEEP"])
            os._exit(0)
        """)


def memory_hog() -> dict:
    """Allocates far more memory than the cap, touching every page."""
    return _package("memhog", "memhog", """
        blocks = []
        for _ in range(64):
            blocks.append(b"x" * (256 << 20))   # written, so really resident
        """)


def loud() -> dict:
    """Prints 12 MB to stdout, then builds fine."""
    return _package("loud", "loud", """
        line = "x" * 99 + "\\n"
        for _ in range(120000):
            sys.stdout.write(line)
        sys.stdout.flush()
        """)


def impostor() -> dict:
    """Asked to build impostor 1.0, it builds numpy 99.0."""
    return _package("impostor", "impostor", "", setup_name="numpy", setup_version="99.0")


def disk_filler() -> dict:
    """Writes far more into its build directory than the disk cap allows."""
    return _package("diskfiller", "diskfiller", """
        with open("filler.bin", "wb") as fh:
            for _ in range(400):
                fh.write(b"\\0" * (1 << 20))
                fh.flush()
                time.sleep(0.01)
        """)
