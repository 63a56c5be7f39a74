"""Source distributions the end-to-end tests build for real: pure, a C
extension, an abi3 extension, an odd name, a pre-release."""

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
