"""Source distributions the end-to-end tests build for real: pure, a C
extension, an abi3 extension, an odd name, a pre-release; and for the build
requirement tests an in-tree standard-library backend and small wheels."""

from __future__ import annotations

from textwrap import dedent

C_MODULE = dedent("""\
    #define PY_SSIZE_T_CLEAN
    #include <Python.h>
    static PyObject *add(PyObject *self, PyObject *args) {
        long a, b;
        if (!PyArg_ParseTuple(args, "ll", &a, &b)) return NULL;
        return PyLong_FromLong(a + b);
    }
    static PyMethodDef methods[] = {{"add", add, METH_VARARGS, "add"}, {NULL, NULL, 0, NULL}};
    static struct PyModuleDef mod = {PyModuleDef_HEAD_INIT, "%(name)s", NULL, -1, methods};
    PyMODINIT_FUNC PyInit_%(name)s(void) { return PyModule_Create(&mod); }
    """)


def pure(name: str, module: str) -> dict[str, str]:
    return {f"{module}/__init__.py": "VALUE = 42\n"}


def platform_data(module: str) -> dict[str, str]:
    """A platform wheel with no ELF file in it (setuptools tags it for this platform
    because the distribution says it has extension modules; it has only Python)."""
    return {
        f"{module}/__init__.py": "VALUE = 7\n",
        "setup.py": dedent("""\
            from setuptools import setup
            from setuptools.dist import Distribution


            class PlatformDistribution(Distribution):
                def has_ext_modules(self):
                    return True


            setup(distclass=PlatformDistribution)
            """),
    }


def c_extension(module: str) -> dict[str, str]:
    return {
        f"{module}/__init__.py": "from ._speed import add\n",
        f"{module}/speed.c": C_MODULE % {"name": "_speed"},
        "setup.py": dedent(f"""\
            from setuptools import Extension, setup
            setup(ext_modules=[Extension("{module}._speed", ["{module}/speed.c"])])
            """),
    }


def abi3_extension(module: str) -> dict[str, str]:
    return {
        f"{module}/__init__.py": "from ._lim import add\n",
        f"{module}/lim.c": C_MODULE % {"name": "_lim"},
        "setup.py": dedent(f"""\
            from setuptools import Extension, setup
            setup(
                ext_modules=[Extension("{module}._lim", ["{module}/lim.c"], py_limited_api=True,
                                       define_macros=[("Py_LIMITED_API", "0x03090000")])],
                options={{"bdist_wheel": {{"py_limited_api": "cp39"}}}},
            )
            """),
    }


# -- build requirements (tests/build/test_build_requirements.py) ---------------------

# An in-tree PEP 517 backend that needs only the standard library, as flit_core's
# and setuptools' own are: it writes a pure wheel of the module named in
# pyproject.toml's [tool.stdlib_backend]. DYNAMIC (a list of requirement strings)
# is what its get_requires_for_build_wheel answers; IMPORTS are imported while
# building (so a requirement that was not installed fails the build); LOUD lines of
# 100 bytes are printed on stderr first.
STDLIB_BACKEND = dedent('''\
    import base64, hashlib, os, sys, zipfile

    DYNAMIC = %(dynamic)r
    IMPORTS = %(imports)r
    LOUD = %(loud)d
    NAME, VERSION, MODULE = %(name)r, %(version)r, %(module)r


    def get_requires_for_build_wheel(config_settings=None):
        return list(DYNAMIC)


    def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
        for mod in IMPORTS:
            __import__(mod)
        line = "x" * 99 + "\\n"
        for _ in range(LOUD):
            sys.stderr.write(line)
        sys.stderr.flush()
        dist = f"{NAME}-{VERSION}.dist-info"
        files = {
            f"{MODULE}/__init__.py": b"VALUE = 42\\n",
            f"{dist}/METADATA": f"Metadata-Version: 2.1\\nName: {NAME}\\n"
                                f"Version: {VERSION}\\n".encode(),
            f"{dist}/WHEEL": b"Wheel-Version: 1.0\\nGenerator: stdlib_backend\\n"
                             b"Root-Is-Purelib: true\\nTag: py3-none-any\\n",
        }
        record = []
        for path, data in files.items():
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{path},sha256={digest.decode()},{len(data)}")
        record.append(f"{dist}/RECORD,,")
        files[f"{dist}/RECORD"] = ("\\n".join(record) + "\\n").encode()
        name = f"{NAME}-{VERSION}-py3-none-any.whl"
        with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
            for path, data in files.items():
                zf.writestr(path, data)
        return name
    ''')


def stdlib_backend(name: str, module: str, version: str = "1.0", requires: tuple = (),
                   dynamic: tuple = (), imports: tuple = (), loud: int = 0) -> dict[str, str]:
    """The files of an sdist built by the in-tree STDLIB_BACKEND (backend-path ".")."""
    reqs = ", ".join(f'"{r}"' for r in requires)
    return {
        "pyproject.toml": (f'[build-system]\nrequires = [{reqs}]\n'
                           'build-backend = "stdlib_backend"\nbackend-path = ["."]\n'),
        "stdlib_backend.py": STDLIB_BACKEND % {
            "dynamic": list(dynamic), "imports": list(imports), "loud": loud,
            "name": name, "version": version, "module": module},
    }


def sdist_bytes(name: str, version: str, files: dict[str, str]) -> tuple[str, bytes]:
    """An sdist ``name-version.tar.gz`` with PKG-INFO and exactly ``files`` (no
    pyproject.toml unless given)."""
    import io
    import tarfile

    root = f"{name}-{version}"
    members = {"PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
               **files}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, text in sorted(members.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{path}")
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
            tar.addfile(info, io.BytesIO(data))
    return f"{root}.tar.gz", buf.getvalue()


def wheel_bytes(name: str, version: str, module: str, requires: tuple = (),
                requires_python: str | None = None) -> tuple[str, bytes]:
    """A pure wheel of ``module`` (``VALUE = 42``) with ``Requires-Dist`` lines (and
    ``Requires-Python`` in its METADATA when given)."""
    import base64
    import hashlib
    import io
    import zipfile

    dist = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires) + (
        f"Requires-Python: {requires_python}\n" if requires_python else "")
    files = {f"{module}/__init__.py": b"VALUE = 42\n", f"{dist}/METADATA": meta.encode(),
             f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              b"Tag: py3-none-any\n"}
    def digest(data: bytes) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()

    record = [f"{p},sha256={digest(d)},{len(d)}" for p, d in files.items()]
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
    return f"{name}-{version}-py3-none-any.whl", buf.getvalue()
