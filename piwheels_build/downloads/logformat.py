"""The combined access-log format, as nginx writes it, read and written.

nginx's ``combined`` (http://nginx.org/en/docs/http/ngx_http_log_module.html)::

    $remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent
    "$http_referer" "$http_user_agent"

nginx escapes ``"``, ``\\`` and bytes outside 0x20-0x7e in the quoted fields as
``\\xHH``; Apache's variant of the format escapes a quote as ``\\"``. Both are read.
``piwheels serve`` writes the same format (``format_line``), so one reader serves both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from urllib.parse import unquote, urlsplit

_QUOTED = r'"([^"\\]*(?:\\.[^"\\]*)*)"'  # unrolled: 5x faster than (?:[^"\\]|\\.)*
# Fields after the User-Agent (a format extending combined: $request_time, ...) are read
# too; without referer and User-Agent it is the common format.
# Before the time: client, ident, user (and Apache's vhost_combined's "host:port" first).
LINE = re.compile(
    r"^(\S+) (\S+) (?:\S+ )?\S+ "
    r"\[(\d\d)/([A-Z][a-z][a-z])/(\d{4}):(\d\d):(\d\d):(\d\d) ([-+]\d{4})\] "
    + _QUOTED + r" (\d{3}) (\d+|-)"
    r"(?: " + _QUOTED + " " + _QUOTED + r"(?: .*)?)?\s*$")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = {m: i for i, m in enumerate(MONTHS, 1)}
_ESCAPE = re.compile(r"\\x([0-9A-Fa-f]{2})|\\(.)")


@dataclass(frozen=True)
class Request:
    """One access-log line: the UTC day, the request's method and URL path (decoded),
    the status and the User-Agent as logged (``user_agent``: unescaped; "" when the
    line has none)."""

    day: date
    method: str
    path: str
    status: int
    logged_user_agent: str

    @property
    def user_agent(self) -> str:
        return _unescape_user_agent(self.logged_user_agent)


@lru_cache(maxsize=16384)  # User-Agents repeat (distinct ones: one per client machine)
def _unescape_user_agent(text: str) -> str:
    return _unescape(text)


def _unescape(text: str) -> str:
    """The field's text: ``\\xHH`` are bytes of UTF-8 (nginx escapes a multibyte
    character byte by byte), ``\\c`` is c."""
    if "\\" not in text:
        return text
    out, at = bytearray(), 0
    for m in _ESCAPE.finditer(text):
        out += text[at:m.start()].encode()
        out += bytes([int(m[1], 16)]) if m[1] else m[2].encode()
        at = m.end()
    out += text[at:].encode()
    return out.decode("utf-8", "replace")


def _offset(text: str) -> timedelta:
    sign = -1 if text[0] == "-" else 1
    return timedelta(hours=int(text[1:3]), minutes=int(text[3:5])) * sign


@lru_cache(maxsize=1024)  # a log's lines share their day, hour and offset
def _utc_day(day: str, month: str, year: str, hour: str, offset: str) -> date:
    local = datetime(int(year), _MONTH[month], int(day), int(hour))
    return (local - _offset(offset)).date()


def utc_day(day: str, month: str, year: str, hour: str, minute: str, second: str,
            offset: str) -> date:
    """The UTC day of ``[DD/Mon/YYYY:HH:MM:SS +ZZZZ]``'s fields; KeyError or ValueError
    for a time that does not exist (month, day, hour, minute or second out of range)."""
    if minute >= "60" or second >= "61":
        raise ValueError("no such time")
    if offset.endswith("00"):  # whole hours: the day depends on the hour only
        return _utc_day(day, month, year, hour, offset)
    local = datetime(int(year), _MONTH[month], int(day), int(hour), int(minute))
    return (local - _offset(offset)).date()


def parse_line(line: str) -> Request | None:
    """The request of one combined-format line, or None when the line is not one
    (a garbage line, a truncated one, a bad time stamp). A request line that is not
    ``METHOD TARGET PROTOCOL`` (a client speaking nonsense, logged with 400) parses,
    with an empty method."""
    m = LINE.match(line)
    if m is None:
        return None
    try:
        day = utc_day(m[3], m[4], m[5], m[6], m[7], m[8], m[9])
    except (ValueError, KeyError, OverflowError):
        return None
    parts = _unescape(m[10]).split(" ")
    method, path = "", ""
    if len(parts) in (2, 3):
        method, target = parts[0], parts[1]
        if not target.startswith("/"):  # an absolute URI: its path
            target = urlsplit(target).path
        target = target.partition("?")[0]
        try:
            path = unquote(target, errors="strict") if "%" in target else target
        except (UnicodeDecodeError, ValueError):
            method = ""
    return Request(day=day, method=method, path=path, status=int(m[11]),
                   logged_user_agent=m[14] or "")


def _escape(text: str) -> str:
    """nginx's default escaping of a quoted field (bytes of the UTF-8 text)."""
    out = []
    for b in text.encode("utf-8", "surrogateescape"):
        out.append(chr(b) if 0x20 <= b < 0x7f and b not in (0x22, 0x5c) else f"\\x{b:02X}")
    return "".join(out)


def format_line(client: str, when: datetime, request: str, status: int, sent: int,
                referer: str, user_agent: str) -> str:
    """One combined-format line as nginx writes it (newline included); ``when`` aware."""
    stamp = (f"{when.day:02d}/{MONTHS[when.month - 1]}/{when.year}:"
             f"{when:%H:%M:%S} {when:%z}")
    return (f'{client} - - [{stamp}] "{_escape(request)}" {status} {sent} '
            f'"{_escape(referer or "-")}" "{_escape(user_agent or "-")}"\n')
