"""Whose fault a failed sandboxed run was, read from how it ended and what it printed."""

from __future__ import annotations

import re

from .sandbox import RunResult

_OOM = (b"MemoryError", b"Cannot allocate memory", b"virtual memory exhausted",
        b"out of memory", b"std::bad_alloc")
_MISSING = (b"ModuleNotFoundError: No module named", b"ImportError: No module named",
            b"No matching distribution found", b"Could not find a version that satisfies",
            b"requires a different Python")
_MISSING_HEADER = re.compile(rb"fatal error: [^\n]*\.h: No such file or directory")
_NETWORK = (b"NewConnectionError", b"Max retries exceeded", b"Temporary failure in name",
            b"Connection refused", b"ReadTimeoutError")
# pip's words for a requirement it found nothing installable for
_NOT_FOUND = re.compile(rb"(?:Could not find a version that satisfies the requirement|"
                        rb"No matching distribution found for) ([^\s(]+(?: ?[<>=!~;][^\s(]*)*)"
                        rb"|Package '([^'\s]+)' requires a different Python")


def classify(result: RunResult, fetching: bool = False) -> str:
    """A build status for one run: ``success``, the package's fault (``failed``,
    ``missing-build-dependency``, ``timeout``, ``out-of-memory``) or the farm's
    (``infrastructure``: retried). ``fetching``: a pip run fetching or installing
    requirements, where an unexplained failure is the farm's."""
    if result.reason == "timeout":
        return "timeout"
    if result.reason == "memory":
        return "out-of-memory"
    if result.reason == "lost":
        return "infrastructure"
    if result.reason == "disk":
        return "failed"
    if result.returncode == 0:
        return "success"
    if result.returncode is None:
        return "infrastructure"  # the sandbox itself could not start
    text = result.log
    if any(m in text for m in _NETWORK) and fetching:
        return "infrastructure"
    if any(m in text for m in _MISSING) or _MISSING_HEADER.search(text):
        return "missing-build-dependency"
    if any(m in text for m in _OOM):
        return "out-of-memory"
    return "infrastructure" if fetching else "failed"


def missing_requirements(log: bytes) -> list[str]:
    """The requirements pip said it found no distribution for, in order, once each."""
    found: list[str] = []
    for m in _NOT_FOUND.finditer(log):
        req = (m.group(1) or m.group(2)).decode(errors="replace")
        if req not in found:
            found.append(req)
    return found
