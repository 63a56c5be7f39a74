"""Configuration files, fuzzed: a valid Config or one ConfigError line, nothing else."""

from __future__ import annotations

import json
import math

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from piwheels_build import config
from piwheels_build.errors import ConfigError

FUZZ = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = (st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats()
           | st.text(max_size=12) | st.sampled_from(["2G", "512M", "1e9", "0", "-1K", "\0",
                                                     "a\0b", "../../etc", "/", "nan", "inf"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)
keys = st.sampled_from(config.KNOWN_KEYS) | st.text(max_size=10)


def _one_line(e: Exception) -> None:
    assert str(e).startswith("config: ") and "\n" not in str(e), repr(e)


@FUZZ
@given(data=st.dictionaries(keys, values, max_size=5))
@example(data={"www": "a\0b"})                       # NUL in a path: resolve() raised ValueError
@example(data={"http_timeout": math.nan})
@example(data={"http_timeout": -1})
@example(data={"http_retries": -3})
@example(data={"build_memory": "9" * 5000})          # int() digit limit
def test_from_dict_is_a_config_or_one_line(data):
    try:
        cfg = config.from_dict(data)
    except ConfigError as e:
        _one_line(e)
        return
    assert isinstance(cfg, config.Config)
    assert cfg.http_timeout > 0 and math.isfinite(cfg.http_timeout)
    assert cfg.http_retries >= 0 and cfg.retry_limit >= 0


def _toml(value) -> str:
    """A TOML value (JSON's string escapes are TOML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf") \
            if math.isinf(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


@FUZZ
@given(data=st.dictionaries(keys, values, max_size=5),
       raw=st.one_of(st.none(), st.binary(max_size=60)))
@example(data={}, raw=b"\xff\xfe not utf-8")         # a UnicodeDecodeError escaped load()
@example(data={}, raw=b"database = 'x'\nwww = \"\\u0000\"\n")
def test_load_is_a_config_or_one_line(tmp_path_factory, data, raw):
    path = tmp_path_factory.mktemp("cfg") / "piwheels.toml"
    if raw is None:
        text = "".join(f"{json.dumps(k)} = {_toml(v)}\n" for k, v in data.items())
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
    else:
        path.write_bytes(raw)
    try:
        cfg = config.load(path)
    except ConfigError as e:
        _one_line(e)
        return
    assert isinstance(cfg, config.Config) and cfg.database


@FUZZ
@given(name=st.text(max_size=20) | st.sampled_from(["a\0b", "/", ".", "x" * 5000]))
@example(name="a\0b")                                 # ValueError: embedded null byte
@example(name="\n")                                   # a newline made the message two lines
def test_load_with_any_file_name_is_one_line(name):
    try:
        config.load(name)
    except ConfigError as e:
        _one_line(e)
