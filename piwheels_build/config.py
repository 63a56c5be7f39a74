"""One TOML file configures every part; a wrong or missing key is a one-line error."""

from __future__ import annotations

import math
import os
import re
import socket
import tomllib
from collections.abc import Callable
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

from .errors import ConfigError

ENV_VAR = "PIWHEELS_CONFIG"
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*$", re.IGNORECASE)


def parse_size(text: str | int, key: str) -> int:
    """Bytes from ``"2G"``, ``"512M"`` or a plain integer."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise ConfigError(f"config: {key} = {text!r} is not a size; write e.g. \"2G\" or \"512M\"")
    scale = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}[m[2].upper()]
    try:
        return int(float(m[1]) * scale)
    except (OverflowError, ValueError):  # "9" * 5000: infinity, not a size
        raise ConfigError(f"config: {key} = {str(text)[:40]!r}... is too large") from None


class _SizeMarker:
    """Marks an ``int`` setting written as a size: ``"2G"``, ``"512M"`` or bytes."""


Size = Annotated[int, _SizeMarker]


def _positive(value: Any) -> str | None:
    return None if value > 0 else "must be positive"


def _positive_finite(value: Any) -> str | None:
    return None if math.isfinite(value) and value > 0 else "must be a positive number"


def _not_negative(value: Any) -> str | None:
    return None if value >= 0 else "must be 0 or more"


def _seconds_or_zero(value: Any) -> str | None:
    return None if value >= 0 else (
        "must be 0 (read the project list on every sync) or a number of seconds")


def _strings(what: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        return None if all(isinstance(v, str) for v in value) else f"must be {what}"
    return check


def _aliases(value: dict) -> str | None:
    for plat, aliases in value.items():
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            return f".{plat} must be a list of platform tags"
    return None


def setting(default: Any = None, *, factory: Callable[[], Any] | None = None,
            check: Callable[[Any], str | None] | None = None) -> Any:
    """A configuration key: its default, and a rule beyond its annotated type (``check``
    says what is wrong, or None). Every key is documented in docs/configuration.md (a
    test checks)."""
    meta = {"check": check}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Config:
    """Validated settings: each field is one key; its annotation is the type the TOML
    value must have (``Size``: a size; ``Path``: a string relative to the file;
    ``Literal``: one of these strings)."""

    database: str = setting("")
    upstream: str = setting("")
    upstream_xmlrpc: str = setting("")
    www: Path = setting(Path("www"))
    pythons: list[str] = setting(factory=list,
                                 check=_strings("a list of interpreter paths or names"))
    build_timeout: int = setting(3600, check=_positive)
    build_memory: Size = setting(2 << 30, check=_positive)
    build_disk: Size = setting(4 << 30, check=_positive)
    build_pids: int = setting(1024, check=_positive)
    build_user: str = setting("piwheels-build")
    build_network: Literal["offline", "online"] = setting("offline")
    sandbox: Literal["auto", "bubblewrap", "none"] = setting("auto")
    log_limit: Size = setting(2 << 20, check=_positive)
    builder_name: str = setting("")     # empty: the host name
    platform_aliases: dict[str, list[str]] = setting(
        factory=lambda: {"linux_armv7l": ["linux_armv6l"]}, check=_aliases)
    lease_seconds: int = setting(300, check=_positive)
    retry_limit: int = setting(5, check=_not_negative)
    retry_delay: int = setting(60, check=_positive)
    yanked: Literal["skip", "build"] = setting("skip")
    sync_workers: int = setting(8, check=_positive)
    full_list_interval: int = setting(86400, check=_seconds_or_zero)
    http_timeout: float = setting(30.0, check=_positive_finite)
    http_retries: int = setting(4, check=_not_negative)
    stats_interval: int = setting(300, check=_positive)
    root_interval: int = setting(300, check=_positive)
    # The store's free space (diskspace.py): a warning below this, 0 for none; a builder
    # refuses an upload that would leave less than the floor, 0 for no floor.
    store_free_warning: Size = setting(10 << 30, check=_not_negative)
    store_free_floor: Size = setting(1 << 30, check=_not_negative)
    # Downloads (downloads/): the web server's access logs read by `piwheels downloads`
    # and the index service; the combined-format log `piwheels serve` writes, "" none.
    access_logs: list[str] = setting(factory=list, check=_strings("a list of log file paths"))
    serve_access_log: str = setting("")
    # Not a key: the file the settings came from.
    source: Path | None = field(default=None, metadata={"key": False})

    def path(self, text: str) -> Path:
        """A path from a string key, relative to the configuration file's directory."""
        base = self.source.parent if self.source else Path.cwd()
        return (base / text).resolve()

    def upstream_url(self) -> str:
        """The configured upstream, or the one pip is configured with."""
        if self.upstream:
            return self.upstream.rstrip("/") + "/"
        from .pipconfig import default_upstream

        return default_upstream()


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list",
               dict: "a table"}


@dataclass(frozen=True)
class _Key:
    """How one key is read, derived from its Config field."""

    name: str
    accepts: tuple[type, ...]     # the TOML types allowed
    kind: str                     # "size", "path", "float" or "plain"
    want: str
    choices: tuple[str, ...]
    check: Callable[[Any], str | None] | None


def _key(f: Field, hint: Any) -> _Key:
    origin = get_origin(hint)
    choices: tuple[str, ...] = ()
    if origin is Literal:
        accepts, kind, choices = (str,), "plain", get_args(hint)
    elif origin is Annotated and _SizeMarker in get_args(hint)[1:]:
        accepts, kind = (str, int), "size"
    elif hint is Path:
        accepts, kind = (str,), "path"
    elif hint is float:
        accepts, kind = (int, float), "float"
    elif origin in (list, dict):
        accepts, kind = (origin,), "plain"
    elif hint in (str, int):
        accepts, kind = (hint,), "plain"
    else:
        raise TypeError(f"Config.{f.name}: no TOML type for {hint!r}")
    want = "a number" if kind == "float" else " or ".join(_TYPE_NAMES[t] for t in accepts)
    return _Key(f.name, accepts, kind, want, choices, f.metadata.get("check"))


_HINTS = get_type_hints(Config, include_extras=True)
KEYS: dict[str, _Key] = {
    f.name: _key(f, _HINTS[f.name]) for f in fields(Config) if f.metadata.get("key", True)
}
KNOWN_KEYS = tuple(KEYS)


def _choices(allowed: tuple[str, ...]) -> str:
    quoted = [f'"{a}"' for a in allowed]
    return " or ".join(quoted) if len(quoted) == 2 else "one of " + ", ".join(quoted)


def _value(key: _Key, value: Any, base: Path, where: str) -> Any:
    """The checked, converted value of one key; a one-line ConfigError if it is wrong."""
    if isinstance(value, bool) or not isinstance(value, key.accepts):
        raise ConfigError(f"config: {key.name} must be {key.want}{where}, not {value!r}")
    if "\\x00" in repr(value):  # a NUL in a string, a list or a table: no path or DSN has one
        raise ConfigError(f"config: {key.name} has a NUL character{where}")
    if key.kind == "size":
        value = parse_size(value, key.name)
    elif key.kind == "path":
        value = (base / value).resolve()
    elif key.kind == "float":
        value = float(value)
    if key.choices and value not in key.choices:
        raise ConfigError(
            f"config: {key.name} must be {_choices(key.choices)}{where}, not {value!r}")
    wrong = key.check(value) if key.check else None
    if wrong:
        sep = "" if wrong.startswith(".") else " "
        raise ConfigError(f"config: {key.name}{sep}{wrong}{where}, not {value!r}")
    return value


def _shown(path: Path | str) -> str:
    """A file name fit for a one-line message (a newline in it is shown escaped)."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def from_dict(data: dict[str, Any], source: Path | None = None) -> Config:
    """Validate a parsed TOML table into a Config."""
    where = f" in {_shown(source)}" if source else ""
    for name in data:
        if name not in KEYS:
            raise ConfigError(
                f"config: unknown key {name!r}{where}; known keys: {', '.join(KNOWN_KEYS)}"
            )
    cfg = Config(source=source)
    base = source.parent if source else Path.cwd()
    for name, key in KEYS.items():
        if name in data:
            setattr(cfg, name, _value(key, data[name], base, where))
        elif key.kind == "path":
            setattr(cfg, name, (base / getattr(cfg, name)).resolve())
    if not cfg.builder_name:
        cfg.builder_name = socket.gethostname()
    return cfg


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the file named by --config, else $PIWHEELS_CONFIG."""
    name = path or os.environ.get(ENV_VAR)
    if not name:
        raise ConfigError(f"config: no configuration file; pass --config FILE or set {ENV_VAR}")
    p = Path(name)
    shown = _shown(p)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"config: {shown} does not exist; create it (see docs/configuration.md)"
        ) from None
    except OSError as e:
        raise ConfigError(f"config: cannot read {shown}: {e.strerror}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"config: {shown} is not UTF-8 text ({e.reason} at byte {e.start})"
                          ) from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config: {shown} is not valid TOML: {e}") from None
    except ValueError:  # a NUL in the file name
        raise ConfigError(f"config: {str(p)!r} is not a usable file name") from None
    cfg = from_dict(data, p.resolve())
    if not cfg.database:
        raise ConfigError(f"config: {shown} has no 'database' key; add a libpq DSN")
    return cfg
