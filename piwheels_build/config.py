"""One TOML file configures every part; a wrong or missing key is a one-line error."""

from __future__ import annotations

import os
import re
import socket
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

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
    return int(float(m[1]) * scale)


@dataclass
class Config:
    """Validated settings. Every key is documented in docs/configuration.md."""

    database: str = ""
    upstream: str = ""
    upstream_xmlrpc: str = ""
    www: Path = Path("www")
    pythons: list[str] = field(default_factory=list)
    build_timeout: int = 3600
    build_memory: int = 2 << 30
    build_disk: int = 4 << 30
    build_pids: int = 1024
    build_user: str = "piwheels-build"
    build_network: str = "offline"
    sandbox: str = "auto"
    log_limit: int = 2 << 20
    builder_name: str = ""
    platform_aliases: dict[str, list[str]] = field(
        default_factory=lambda: {"linux_armv7l": ["linux_armv6l"]}
    )
    lease_seconds: int = 300
    retry_limit: int = 5
    retry_delay: int = 60
    yanked: str = "skip"
    sync_workers: int = 8
    full_list_interval: int = 86400
    http_timeout: float = 30.0
    http_retries: int = 4
    stats_interval: int = 300
    root_interval: int = 300
    source: Path | None = None

    def upstream_url(self) -> str:
        """The configured upstream, or the one pip is configured with."""
        if self.upstream:
            return self.upstream.rstrip("/") + "/"
        from .pipconfig import default_upstream

        return default_upstream()


_TYPES: dict[str, tuple[type, ...]] = {
    "database": (str,),
    "upstream": (str,),
    "upstream_xmlrpc": (str,),
    "www": (str,),
    "pythons": (list,),
    "build_timeout": (int,),
    "build_memory": (str, int),
    "build_disk": (str, int),
    "build_pids": (int,),
    "build_user": (str,),
    "build_network": (str,),
    "sandbox": (str,),
    "log_limit": (str, int),
    "builder_name": (str,),
    "platform_aliases": (dict,),
    "lease_seconds": (int,),
    "retry_limit": (int,),
    "retry_delay": (int,),
    "yanked": (str,),
    "sync_workers": (int,),
    "full_list_interval": (int,),
    "http_timeout": (int, float),
    "http_retries": (int,),
    "stats_interval": (int,),
    "root_interval": (int,),
}
KNOWN_KEYS = tuple(_TYPES)
_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list",
               dict: "a table"}


def from_dict(data: dict[str, Any], source: Path | None = None) -> Config:
    """Validate a parsed TOML table into a Config."""
    where = f" in {source}" if source else ""
    for key, value in data.items():
        if key not in _TYPES:
            raise ConfigError(
                f"config: unknown key {key!r}{where}; known keys: {', '.join(KNOWN_KEYS)}"
            )
        if isinstance(value, bool) or not isinstance(value, _TYPES[key]):
            want = " or ".join(_TYPE_NAMES[t] for t in _TYPES[key])
            raise ConfigError(f"config: {key} must be {want}{where}, not {value!r}")
    cfg = Config(source=source)
    base = source.parent if source else Path.cwd()
    for f in fields(Config):
        if f.name in data:
            setattr(cfg, f.name, data[f.name])
    cfg.www = (base / str(data.get("www", "www"))).resolve()
    cfg.build_memory = parse_size(data.get("build_memory", cfg.build_memory), "build_memory")
    cfg.log_limit = parse_size(data.get("log_limit", cfg.log_limit), "log_limit")
    cfg.build_disk = parse_size(data.get("build_disk", cfg.build_disk), "build_disk")
    for key, allowed in (("sandbox", ("auto", "bubblewrap", "none")),
                         ("build_network", ("offline", "online"))):
        if getattr(cfg, key) not in allowed:
            raise ConfigError(f"config: {key} must be one of {', '.join(allowed)}{where}, "
                              f"not {getattr(cfg, key)!r}")
    if not all(isinstance(p, str) for p in cfg.pythons):
        raise ConfigError(f"config: pythons must be a list of interpreter paths or names{where}")
    for plat, aliases in cfg.platform_aliases.items():
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            raise ConfigError(
                f"config: platform_aliases.{plat} must be a list of platform tags{where}"
            )
    if cfg.yanked not in ("skip", "build"):
        raise ConfigError(
            f"config: yanked must be \"skip\" or \"build\"{where}, not {cfg.yanked!r}"
        )
    for key in ("build_timeout", "lease_seconds", "sync_workers", "retry_delay", "build_pids",
                "build_memory", "build_disk", "log_limit", "stats_interval",
                "root_interval"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"config: {key} must be positive{where}")
    if cfg.full_list_interval < 0:
        raise ConfigError(
            f"config: full_list_interval must be 0 (read the project list on every sync) or "
            f"a number of seconds{where}, not {cfg.full_list_interval!r}"
        )
    if not cfg.builder_name:
        cfg.builder_name = socket.gethostname()
    return cfg


def load(path: str | os.PathLike[str] | None = None) -> Config:
    """Load the file named by --config, else $PIWHEELS_CONFIG."""
    name = path or os.environ.get(ENV_VAR)
    if not name:
        raise ConfigError(f"config: no configuration file; pass --config FILE or set {ENV_VAR}")
    p = Path(name)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"config: {p} does not exist; create it (see docs/configuration.md)"
        ) from None
    except OSError as e:
        raise ConfigError(f"config: cannot read {p}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config: {p} is not valid TOML: {e}") from None
    cfg = from_dict(data, p.resolve())
    if not cfg.database:
        raise ConfigError(f"config: {p} has no 'database' key; add a libpq DSN")
    return cfg
