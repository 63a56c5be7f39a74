"""A wrong or missing key is a one-line error; good files load."""

import re
from dataclasses import fields
from pathlib import Path

import pytest

from piwheels_build import config
from piwheels_build.errors import ConfigError


def _load(tmp_path, text):
    p = tmp_path / "piwheels.toml"
    p.write_text(text)
    return config.load(p)


def test_good_file_loads_with_defaults(tmp_path):
    cfg = _load(tmp_path, 'database = "dbname=x"\nbuild_memory = "512M"\n')
    assert cfg.database == "dbname=x"
    assert cfg.build_memory == 512 << 20
    assert cfg.www == (tmp_path / "www").resolve()
    assert cfg.platform_aliases == {"linux_armv7l": ["linux_armv6l"]}
    assert cfg.full_list_interval == 86400
    assert _load(tmp_path, 'database = "x"\nfull_list_interval = 0\n').full_list_interval == 0


@pytest.mark.parametrize("text, words", [
    ('database = "x"\nbuild_timeot = 5\n', "unknown key 'build_timeot'"),
    ('database = "x"\nbuild_timeout = "soon"\n', "build_timeout must be an integer"),
    ('database = "x"\nbuild_memory = "lots"\n', "not a size"),
    ('database = "x"\nyanked = "maybe"\n', "yanked must be"),
    ('database = "x"\npythons = [3]\n', "pythons must be a list"),
    ('database = "x"\nbuild_timeout = 0\n', "build_timeout must be positive"),
    ('database = "x"\nlog_limit = "0M"\n', "log_limit must be positive"),
    ('database = "x"\nsandbox = "chroot"\n', 'sandbox must be one of "auto", "bubblewrap"'),
    ('database = "x"\nbuild_network = "lan"\n', 'build_network must be "offline" or "online"'),
    ('database = "x"\nhttp_timeout = "30s"\n', "http_timeout must be a number"),
    ('database = "x"\nwww = 3\n', "www must be a string"),
    ('database = "x"\nsource = "elsewhere"\n', "unknown key 'source'"),
    ('database = "x"\nfull_list_interval = -1\n', "full_list_interval must be 0 (read the"),
    ('database = "x"\nfull_list_interval = "1d"\n', "full_list_interval must be an integer"),
    ('www = "w"\n', "no 'database' key"),
    ('database = \n', "not valid TOML"),
    ('database = "x"\nplatform_aliases = { linux_armv7l = "linux_armv6l" }\n', "must be a list"),
])
def test_bad_files_are_one_line_errors(tmp_path, text, words):
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, text)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_missing_file_and_no_file(tmp_path, monkeypatch):
    monkeypatch.delenv(config.ENV_VAR, raising=False)
    with pytest.raises(ConfigError, match="PIWHEELS_CONFIG"):
        config.load(None)
    with pytest.raises(ConfigError, match="does not exist"):
        config.load(tmp_path / "nope.toml")


def test_upstream_defaults_to_pips_own(monkeypatch, tmp_path):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/mirror/simple")
    cfg = _load(tmp_path, 'database = "x"\n')
    assert cfg.upstream_url() == "http://127.0.0.1:9/mirror/simple/"
    cfg = _load(tmp_path, 'database = "x"\nupstream = "http://127.0.0.1:8/s"\n')
    assert cfg.upstream_url() == "http://127.0.0.1:8/s/"


def test_upstream_from_pip_conf(monkeypatch, tmp_path):
    conf = tmp_path / "pip.conf"
    conf.write_text("[global]\nindex-url = http://127.0.0.1:7/conf/simple/\n")
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_CONFIG_FILE", str(conf))
    cfg = _load(tmp_path, 'database = "x"\n')
    assert cfg.upstream_url() == "http://127.0.0.1:7/conf/simple/"


DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def test_every_key_is_documented_and_the_doc_names_no_other():
    documented = re.findall(r"^\| `([A-Za-z0-9_]+)` \|", DOC.read_text(), re.MULTILINE)
    assert len(documented) == len(set(documented)), "a key documented twice"
    keys = {f.name for f in fields(config.Config) if f.metadata.get("key", True)}
    assert keys == set(config.KNOWN_KEYS)
    assert not keys - set(documented), "keys missing from docs/configuration.md"
    assert not set(documented) - keys, "docs/configuration.md names keys the code lacks"


@pytest.mark.parametrize("key", config.KNOWN_KEYS)
def test_every_key_is_type_checked(tmp_path, key):
    """The checks come from the field annotations: no key takes a value of the wrong type."""
    wrong = "[1, 2]" if key != "pythons" else "{ a = 1 }"
    db = "" if key == "database" else 'database = "x"\n'
    with pytest.raises(ConfigError) as e:
        _load(tmp_path, f"{db}{key} = {wrong}\n")
    msg = str(e.value)
    assert msg.startswith(f"config: {key} must be ") and "\n" not in msg
    with pytest.raises(ConfigError, match=f"{key} must be "):
        _load(tmp_path, f"{db}{key} = true\n")
