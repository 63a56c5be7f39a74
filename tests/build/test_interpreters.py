"""Builders find interpreters instead of assuming them."""

import sys

import pytest

from piwheels_build.build import interpreters
from piwheels_build.errors import ConfigError


def test_probe_reports_abi_and_platform():
    interp = interpreters.probe(sys.executable)
    assert interp is not None
    assert interp.abi_tag == f"cp{sys.version_info[0]}{sys.version_info[1]}"
    assert interp.pyver == sys.version_info[:2]
    assert "-" not in interp.platform_tag and "." not in interp.platform_tag


def test_probe_rejects_what_is_not_a_python(tmp_path):
    fake = tmp_path / "python3.99"
    fake.write_text("#!/bin/sh\necho not json\n")
    fake.chmod(0o755)
    assert interpreters.probe(str(fake)) is None
    assert interpreters.probe(str(tmp_path / "missing")) is None


def test_discover_finds_one_interpreter_per_abi():
    found = interpreters.discover()
    abis = [i.abi_tag for i in found]
    assert len(abis) == len(set(abis)) and found
    assert [i.version for i in found] == sorted(i.version for i in found)
    assert all(i.pyver >= interpreters.MIN_VERSION for i in found)


def test_configured_interpreters_must_exist():
    with pytest.raises(ConfigError, match="python3.99"):
        interpreters.resolve(["python3.99"])
    assert interpreters.resolve([sys.executable])[0].abi_tag.startswith("cp3")
