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
from datetime import UTC, date, datetime
from urllib.parse import unquote, urlsplit

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
LINE = re.compile(
    r"^(\S+) \S+ (\S+) \[([^\]]+)\] " + _QUOTED + r" (\d{3}) (\d+|-)"
    r"(?: " + _QUOTED + " " + _QUOTED + r")?\s*$")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH = {m: i for i, m in enumerate(MONTHS, 1)}
_ESCAPE = re.compile(r"\\x([0-9A-Fa-f]{2})|\\(.)")


@dataclass(frozen=True)
class Request:
    """One access-log line: the UTC day, the request's method and URL path (decoded),
    the status and the User-Agent (unescaped; "" when the line has none)."""

    day: date
    method: str
    path: str
    status: int
    user_agent: str


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


def parse_time(text: str) -> datetime:
    """``01/Dec/2026:04:50:24 +0000`` as an aware datetime; ValueError if it is not."""
    day, month, rest = text.split("/", 2)
    return datetime.strptime(f"{day}/{_MONTH[month]:02d}/{rest}", "%d/%m/%Y:%H:%M:%S %z")


def parse_line(line: str) -> Request | None:
    """The request of one combined-format line, or None when the line is not one
    (a garbage line, a truncated one, a bad time stamp). A request line that is not
    ``METHOD TARGET PROTOCOL`` (a client speaking nonsense, logged with 400) parses,
    with an empty method."""
    m = LINE.match(line)
    if m is None:
        return None
    try:
        when = parse_time(m[3])
    except (ValueError, KeyError):
        return None
    parts = _unescape(m[4]).split(" ")
    method, path = "", ""
    if len(parts) in (2, 3):
        method = parts[0]
        try:
            path = unquote(urlsplit(parts[1]).path, errors="strict")
        except (UnicodeDecodeError, ValueError):
            method = ""
    return Request(day=when.astimezone(UTC).date(), method=method, path=path,
                   status=int(m[5]), user_agent=_unescape(m[8] or ""))


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
