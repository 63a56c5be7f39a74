"""The one way the farm makes HTTP requests that retry: a requests session with
urllib3's ``Retry`` mounted on it (the upstream client and the builder's sdist
download both use it).

``Retry`` retries a GET on a connection error, a connection dropped before the
answer's headers, a read timeout, HTTP 429 and any 5xx, with exponential
backoff, and waits what a ``Retry-After`` header asks instead (capped). A
body cut off after the headers is not retried here: the caller sees it."""

from __future__ import annotations

import re

import requests
import requests.adapters
from urllib3.exceptions import (
    InvalidHeader,
    MaxRetryError,
    ProtocolError,
)
from urllib3.exceptions import (
    TimeoutError as Urllib3Timeout,
)
from urllib3.util import Retry

RETRY_STATUSES = frozenset({429, *range(500, 600)})
BACKOFF_MAX = 30.0          # seconds: the longest pause between two attempts by backoff
RETRY_AFTER_MAX = 120.0     # seconds: the longest Retry-After honoured (an upstream asking
                            # for hours would stall a sync; the next run tries again)

_ERRNO = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")

# Errors about the URL itself: retrying cannot help, the configuration must change.
BAD_URL = (
    requests.exceptions.MissingSchema,
    requests.exceptions.InvalidSchema,
    requests.exceptions.InvalidURL,
    requests.exceptions.InvalidHeader,
)


class GaveUp(Exception):
    """Every attempt failed: ``reason`` (one line) and how many ``attempts`` were made."""

    def __init__(self, url: str, reason: str, attempts: int) -> None:
        super().__init__(f"{url}: {reason}, {attempts} attempt{'s' * (attempts > 1)}")
        self.url, self.reason, self.attempts = url, reason, attempts


class _Retry(Retry):
    """urllib3's Retry with Retry-After capped and a malformed one ignored (backoff instead)."""

    def parse_retry_after(self, retry_after: str) -> float:
        try:
            return min(super().parse_retry_after(retry_after), RETRY_AFTER_MAX)
        except InvalidHeader:
            return 0.0


def retry(retries: int, backoff: float = 0.5) -> Retry:
    """``retries`` more attempts of a GET after the first; the final answer is returned
    (not raised) when the last attempt still got a retryable status."""
    return _Retry(
        total=max(0, retries),
        allowed_methods=frozenset({"GET"}),
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff,
        backoff_max=BACKOFF_MAX,
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def session(retries: int, *, backoff: float = 0.5, pool_maxsize: int = 10) -> requests.Session:
    """A requests session whose every GET goes through ``retry(retries, backoff)``."""
    s = requests.Session()
    adapter = requests.adapters.HTTPAdapter(
        max_retries=retry(retries, backoff), pool_connections=4, pool_maxsize=pool_maxsize)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


def reason(exc: BaseException) -> str:
    """A short, one-line cause for a requests or urllib3 exception."""
    inner: BaseException = exc
    if exc.args and isinstance(exc.args[0], MaxRetryError):
        inner = exc.args[0].reason or exc.args[0]
    if isinstance(inner, (requests.exceptions.Timeout, Urllib3Timeout, TimeoutError)):
        return "timed out"
    if isinstance(inner, ProtocolError) and len(inner.args) > 1 \
            and isinstance(inner.args[1], BaseException):
        inner = inner.args[1]
        if isinstance(inner, TimeoutError):
            return "timed out"
    m = _ERRNO.search(str(inner))
    if m:
        return m[1].strip()
    text = str(inner).strip().splitlines()
    return text[0][:200] if text else type(inner).__name__


def _attempts(r: requests.Response) -> int:
    history = getattr(getattr(r.raw, "retries", None), "history", None) or ()
    return len(history) + 1


def get(s: requests.Session, url: str, *, timeout: float, retries: int,
        stream: bool = False) -> requests.Response:
    """GET ``url`` through the session's Retry: the answer (any status the Retry does not
    retry, 404 included), or ``GaveUp`` when every attempt failed. A URL that cannot be
    requested at all raises one of ``BAD_URL`` at once."""
    try:
        r = s.get(url, timeout=timeout, stream=stream)
    except BAD_URL:
        raise
    except requests.RequestException as e:
        # A MaxRetryError inside means the Retry ran out: every attempt was made.
        exhausted = bool(e.args) and isinstance(e.args[0], MaxRetryError)
        raise GaveUp(url, reason(e), max(0, retries) + 1 if exhausted else 1) from None
    if r.status_code in RETRY_STATUSES:
        r.close()
        raise GaveUp(url, f"HTTP {r.status_code}", _attempts(r))
    return r
